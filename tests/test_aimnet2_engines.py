"""An exported AIMNet2-style model gives the same energies, forces, per-atom energies and
charges in ASE, OpenMM (Reference) and LAMMPS on one and two MPI ranks, for every
fidelity chosen at run time: a charged molecule with simple Coulomb, and a periodic
water-like box with DSF Coulomb (stress too). On two ranks the charge normalisation is a
whole-system sum the engine all-reduces (``global_sums``), so the results are exact."""

from __future__ import annotations

import numpy as np
import pytest

import mlff
from test_models_aimnet2 import FIDELITIES, charged_molecules, small_model, water_box

TOL = 1e-9
KEYS = ("energy", "energies", "forces", "charges")


@pytest.fixture(scope="module")
def molecule_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("aimnet2") / "molecule.pt"
    mlff.export_model(small_model("simple"), path)
    return path


@pytest.fixture(scope="module")
def box_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("aimnet2") / "box.pt"
    mlff.export_model(small_model("dsf", seed=1), path)
    return path


def _ase(path, atoms, **kw):
    atoms = atoms.copy()
    atoms.calc = mlff.MLFFCalculator(path, **kw)
    res = {k: atoms.calc.get_property(k, atoms) for k in KEYS}
    if atoms.pbc.all():
        res["stress"] = atoms.get_stress()
    return res


def _close(ref, got, keys):
    for key in keys:
        tol = TOL * max(1.0, abs(ref["energy"])) if key == "energy" else TOL
        np.testing.assert_allclose(np.asarray(got[key]), np.asarray(ref[key]), rtol=0, atol=tol, err_msg=key)


def _molecule():
    return charged_molecules()[1]  # acetamide, +1


@pytest.mark.parametrize("fidelity", FIDELITIES)
def test_openmm_equals_ase(molecule_file, fidelity):
    from mlff.openmm import evaluate_atoms

    ref = _ase(molecule_file, _molecule(), charge=1, fidelity=fidelity)
    assert ref["charges"].sum() == pytest.approx(1.0, abs=1e-12)
    got = evaluate_atoms(molecule_file, _molecule(), platform="Reference", charge=1, fidelity=fidelity)
    _close(ref, got, KEYS)


@pytest.mark.parametrize("nprocs", [1, 2])
@pytest.mark.parametrize("fidelity", FIDELITIES)
def test_lammps_equals_ase(molecule_file, fidelity, nprocs):
    from mlff.lammps import evaluate

    ref = _ase(molecule_file, _molecule(), charge=1, fidelity=fidelity)
    got = evaluate(molecule_file, [_molecule()], nprocs=nprocs, charge=1, fidelity=fidelity)[0]
    _close(ref, got, KEYS)


def test_fidelities_differ_and_charge_changes_energy(molecule_file):
    energies = [_ase(molecule_file, _molecule(), charge=1, fidelity=f)["energy"] for f in FIDELITIES]
    assert len(set(energies)) == len(FIDELITIES)
    neutral = _ase(molecule_file, _molecule(), charge=0, fidelity=FIDELITIES[0])
    assert neutral["energy"] != energies[0] and abs(neutral["charges"].sum()) < 1e-12


def test_dsf_water_box_in_every_engine(box_file):
    """Periodic, DSF Coulomb, total charge -1: ASE = OpenMM = LAMMPS (1 rank, the ghost
    graph on 1 rank, 2 ranks), stress included."""
    from mlff.lammps import evaluate
    from mlff.openmm import evaluate_atoms

    box = water_box()
    kw = dict(charge=-1, fidelity="gfn2")
    ref = _ase(box_file, box, **kw)
    assert ref["charges"].sum() == pytest.approx(-1.0, abs=1e-12)
    _close(ref, evaluate_atoms(box_file, box, platform="Reference", **kw), KEYS)
    for nprocs, graph in ((1, "auto"), (1, "ghosts"), (2, "auto")):
        got = evaluate(box_file, [box], nprocs=nprocs, graph=graph, **kw)[0]
        _close(ref, got, KEYS + ("stress",))


def test_with_physics_terms_still_exact_on_two_ranks(tmp_path):
    """Network + ZBL through the composite: the network's whole-system sums survive export."""
    from mlff.lammps import evaluate
    from mlff.models.composite import GlobalAdditiveModel, compose
    from mlff.physics import ZBL

    net = small_model("simple")
    model = compose(net, [ZBL(net.config["elements"], inner=0.8, outer=1.6).double()])
    assert isinstance(model, GlobalAdditiveModel)
    path = tmp_path / "aimnet2_zbl.pt"
    meta = mlff.export_model(model, path)
    assert meta.global_sums == 2 and meta.locality == "global"
    atoms = _molecule()
    ref = _ase(path, atoms, charge=1)
    for nprocs in (1, 2):
        _close(ref, evaluate(path, [atoms], nprocs=nprocs, charge=1)[0], KEYS)


def test_evaluate_batch_keeps_charges_per_structure(molecule_file):
    """Several structures in one forward pass: each one's charges sum to its own total."""
    mols = charged_molecules()
    calc = mlff.MLFFCalculator(molecule_file)
    batch = calc.evaluate_batch(mols)
    for atoms, res in zip(mols, batch):
        single = _ase(molecule_file, atoms)
        assert res["charges"].sum() == pytest.approx(atoms.info.get("charge", 0.0), abs=1e-9)
        _close(single, res, KEYS)
