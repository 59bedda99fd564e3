"""The AIMNet2-style model with ``coulomb: ewald`` (periodic cells): metadata and geometry
inputs, forces and stress as energy gradients (float64), batches, the same energies,
forces, per-atom energies and charges in ASE, OpenMM and LAMMPS on one rank for every
fidelity (1e-9), and the clear refusals: several LAMMPS ranks, non-periodic structures in
every engine."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms

import mlff
from mlff.contract import MLFFModelError, metadata_for, read_metadata
from mlff.physics.ewald import ewald_parameters
from test_models_aimnet2 import FIDELITIES, SMALL, charged_molecules, small_model, water_box

TOL = 1e-9
KEYS = ("energy", "energies", "forces", "charges")


def sheared_box() -> Atoms:
    """The water box in a triclinic cell (LAMMPS rotates it into its own frame)."""
    box = water_box(seed=5)
    cell = np.asarray(box.cell[:])
    box.set_cell(cell @ np.array([[1.0, 0.04, -0.03], [0.08, 1.0, 0.05], [0.0, -0.06, 1.02]]), scale_atoms=True)
    return box


@pytest.fixture(scope="module")
def ewald_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("aimnet2") / "ewald.pt"
    mlff.export_model(small_model("ewald", seed=2), path)
    return path


def _ase(path, atoms, **kw):
    atoms = atoms.copy()
    atoms.calc = mlff.MLFFCalculator(path, **kw)
    res = {k: atoms.calc.get_property(k, atoms) for k in KEYS}
    res["stress"] = atoms.get_stress()
    return res


def _close(ref, got, keys):
    for key in keys:
        tol = TOL * max(1.0, abs(ref["energy"])) if key == "energy" else TOL
        np.testing.assert_allclose(np.asarray(got[key]), np.asarray(ref[key]), rtol=0, atol=tol, err_msg=key)


# ----------------------------------------------------------------------------- model


def test_metadata_declares_geometry_inputs_and_parameters(ewald_file):
    meta = read_metadata(ewald_file)
    assert meta.geometry_inputs == ["positions", "cell"] and meta.needs_geometry
    assert meta.locality == "global" and meta.global_sums == 2 and meta.uses_charge
    rc = SMALL["coulomb_cutoff"]
    assert [(nl.name, nl.cutoff) for nl in meta.neighbor_lists] == [("local", SMALL["cutoff"]), ("coulomb", rc)]
    hyper = meta.hyperparameters
    assert hyper["coulomb"] == "ewald" and hyper["ewald_accuracy"] == 1e-6
    assert (hyper["ewald_alpha"], hyper["ewald_kspace_cutoff"]) == ewald_parameters(rc, 1e-6)
    # other methods' metadata is unchanged: no geometry inputs
    assert metadata_for(small_model("dsf")).geometry_inputs == []
    assert "ewald_accuracy" not in small_model("dsf").config
    model = small_model("ewald", ewald_accuracy=1e-8)
    assert type(model)(**model.config).config == model.config


@pytest.mark.parametrize("atoms", [water_box(), sheared_box()], ids=["cubic", "triclinic"])
def test_forces_and_stress_are_energy_gradients(atoms):
    """Central finite differences, float64: charges, their normalisation, real and reciprocal sums."""
    model = small_model("ewald")
    h = 1e-5
    calc = mlff.MLFFCalculator(model, charge=-1.0, fidelity="gfn2")
    atoms = atoms.copy()
    atoms.calc = calc
    forces = atoms.get_forces()
    stress = atoms.get_stress(voigt=False)
    assert atoms.get_charges().sum() == pytest.approx(-1.0, abs=1e-12)

    def energy(a: Atoms) -> float:
        a = a.copy()
        a.calc = calc
        return a.get_potential_energy()

    for a, c in [(0, 0), (2, 1), (7, 2), (len(atoms) - 1, 2)]:
        plus, minus = atoms.copy(), atoms.copy()
        plus.positions[a, c] += h
        minus.positions[a, c] -= h
        assert -(energy(plus) - energy(minus)) / (2 * h) == pytest.approx(forces[a, c], abs=1e-6)
    cell = atoms.get_cell()
    for i, j in [(0, 0), (1, 1), (2, 2), (0, 1), (1, 2), (0, 2)]:
        e = []
        for sign in (1, -1):
            eps = np.zeros((3, 3))
            eps[i, j] = eps[j, i] = sign * h / (2 if i != j else 1)
            strained = atoms.copy()
            strained.set_cell(cell @ (np.eye(3) + eps), scale_atoms=True)
            e.append(energy(strained))
        assert (e[0] - e[1]) / (2 * h) / atoms.get_volume() == pytest.approx(stress[i, j], abs=1e-6)
    # Ewald matters here: the DSF model with the same weights gives other forces
    dsf = small_model("dsf")
    other = atoms.copy()
    other.calc = mlff.MLFFCalculator(dsf, charge=-1.0, fidelity="gfn2")
    assert np.abs(other.get_forces() - forces).max() > 1e-4


def test_torchscript_export_equals_eager(ewald_file):
    model = small_model("ewald", seed=2)
    for atoms in (water_box(), sheared_box()):
        for fid in ("gfn1", "pbe-def2svp"):
            ref = _ase(model, atoms, charge=1.0, fidelity=fid)
            _close(ref, _ase(ewald_file, atoms, charge=1.0, fidelity=fid), KEYS + ("stress",))


def test_batch_equals_single_structures(ewald_file):
    structures = [water_box(), sheared_box(), water_box(seed=9)]
    for a, q in zip(structures, (0.0, -1.0, 2.0)):
        a.info["charge"] = q
    calc = mlff.MLFFCalculator(ewald_file, fidelity=1)
    for atoms, res in zip(structures, calc.evaluate_batch(structures)):
        ref = _ase(ewald_file, atoms, fidelity=1)
        assert res["charges"].sum() == pytest.approx(atoms.info["charge"], abs=1e-9)
        _close(ref, res, KEYS + ("stress",))


# ----------------------------------------------------------------------------- engines


@pytest.mark.parametrize("fidelity", FIDELITIES)
def test_openmm_equals_ase(ewald_file, fidelity):
    from mlff.openmm import evaluate_atoms

    for box in (water_box(), sheared_box()):
        ref = _ase(ewald_file, box, charge=-1, fidelity=fidelity)
        got = evaluate_atoms(ewald_file, box, platform="Reference", charge=-1, fidelity=fidelity)
        _close(ref, got, KEYS)


@pytest.mark.parametrize("fidelity", FIDELITIES)
def test_lammps_one_rank_equals_ase(ewald_file, fidelity):
    """Both graph modes of one rank (ghosts mapped to their owners, and ghost nodes), stress
    included, and the per-atom virials summing to the virial."""
    from mlff.lammps import evaluate

    boxes = [water_box(), sheared_box()]
    refs = [_ase(ewald_file, box, charge=-1, fidelity=fidelity) for box in boxes]
    for graph in ("auto", "ghosts"):
        got = evaluate(ewald_file, boxes, graph=graph, charge=-1, fidelity=fidelity)
        for ref, res in zip(refs, got):
            _close(ref, res, KEYS + ("stress",))
            np.testing.assert_allclose(res["atom_virial"].sum(0), res["virial"], rtol=0, atol=1e-9)


def test_lammps_real_units(ewald_file):
    """units real: the position and cell gradients are scaled like the edge gradients."""
    from mlff.lammps import evaluate

    metal, real = (evaluate(ewald_file, [sheared_box()], units=u, charge=-1)[0] for u in ("metal", "real"))
    for key in ("energy", "forces", "virial", "energies", "charges"):
        np.testing.assert_allclose(real[key], metal[key], atol=1e-9 * max(1.0, np.abs(metal[key]).max()), rtol=0)


def test_lammps_several_ranks_are_refused(ewald_file, tmp_path):
    from mlff.lammps import evaluate
    from mlff.lammps.plugin import LammpsError

    with pytest.raises(LammpsError, match=r"(?s)Ewald.*one MPI rank only.*coulomb dsf"):
        evaluate(ewald_file, [water_box()], nprocs=2, charge=-1)
    # a fixed-charge Ewald term (global, no whole-system sums) gets the same specific reason
    from mlff.physics import FixedChargeCoulomb

    term = tmp_path / "term.pt"
    mlff.export_model(FixedChargeCoulomb([1, 8], {"O": -0.8476, "H": 0.4238}, method="ewald", cutoff=6.0), term)
    with pytest.raises(LammpsError, match=r"(?s)Ewald.*one MPI rank only"):
        evaluate(term, [water_box()], nprocs=2)
    box = water_box()
    box.calc = mlff.MLFFCalculator(term)
    ref = dict(energy=box.get_potential_energy(), energies=box.get_potential_energies(), forces=box.get_forces(),
               stress=box.get_stress())
    _close(ref, evaluate(term, [water_box()])[0], ("energy", "energies", "forces", "stress"))


def test_non_periodic_structures_are_refused_by_every_engine(ewald_file):
    from mlff.lammps import evaluate
    from mlff.lammps.plugin import LammpsError
    from mlff.openmm import evaluate_atoms

    mol = charged_molecules()[1]
    mol.calc = mlff.MLFFCalculator(ewald_file, charge=1)
    with pytest.raises(MLFFModelError, match=r"not periodic in all three directions.*'dsf'"):
        mol.get_potential_energy()
    with pytest.raises(MLFFModelError, match="OpenMM System is not periodic"):
        evaluate_atoms(ewald_file, charged_molecules()[1], platform="Reference", charge=1)
    with pytest.raises(LammpsError, match=r"(?s)Ewald, which needs a box.*periodic in x, y and z"):
        evaluate(ewald_file, [charged_molecules()[1]], charge=1)
