"""Contract v2 end to end: two neighbour lists, a total-charge input, a fidelity and a
per-atom output give the same numbers in ASE, LAMMPS (1 and 2 ranks) and OpenMM
(Reference and CPU); a whole-system model is exact on one LAMMPS rank and refused on two."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk, molecule

import mlff
from contract_models import GlobalChargeModel, PerRankChargeModel, TwoListModel
from mlff.contract import read_metadata

TOL = 1e-9


@pytest.fixture(scope="module")
def two_list_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("v2") / "two_lists.pt"
    mlff.export_model(TwoListModel([8, 29]).double(), path)
    return path


@pytest.fixture(scope="module")
def global_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("v2") / "global.pt"
    mlff.export_model(GlobalChargeModel([8, 29]).double(), path)
    return path


def _crystal():
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((2, 2, 2))
    atoms.symbols[[1, 9, 20]] = "O"
    atoms.rattle(0.06, seed=5)
    return atoms


def _ase(path, atoms, **kw):
    atoms = atoms.copy()
    atoms.calc = mlff.MLFFCalculator(path, **kw)
    res = {k: atoms.calc.get_property(k, atoms) for k in ("energy", "energies", "forces", "charges")}
    if atoms.pbc.all():
        res["stress"] = atoms.get_stress()
    return res


def _close(a, b, keys, tol=TOL):
    for key in keys:
        np.testing.assert_allclose(np.asarray(a[key]), np.asarray(b[key]), rtol=0, atol=tol, err_msg=key)


def test_metadata_describes_lists_outputs_and_inputs(two_list_file):
    meta = read_metadata(two_list_file)
    assert meta.contract_version == 2
    assert [(nl.name, nl.cutoff) for nl in meta.neighbor_lists] == [("short", 3.0), ("long", 6.0)]
    assert meta.cutoff == 6.0 and meta.interaction_range == 9.0
    assert meta.output("charges").unit == "e" and meta.output("charges").per_atom
    assert meta.fidelities == ["low", "high"] and meta.uses_charge and meta.locality == "local"


def test_ase_system_inputs_change_the_numbers(two_list_file):
    atoms = _crystal()
    base = _ase(two_list_file, atoms)
    high = _ase(two_list_file, atoms, fidelity="high")
    assert high["energy"] == pytest.approx(1.1 * base["energy"], rel=1e-12)
    charged = _ase(two_list_file, atoms, charge=2)
    np.testing.assert_allclose(charged["charges"] - base["charges"], 0.02, atol=1e-12)
    info = atoms.copy()
    info.info["charge"] = 2
    _close(_ase(two_list_file, info), charged, ("energy", "forces", "charges"), tol=0)
    # atoms.get_charges() is the ASE way to read them
    atoms.calc = mlff.MLFFCalculator(two_list_file)
    np.testing.assert_array_equal(atoms.get_charges(), base["charges"])


def test_ase_forces_and_stress_are_gradients_of_the_energy(two_list_file):
    """Both lists enter the forces and the stress (finite differences, float64)."""
    atoms = _crystal()
    atoms.calc = mlff.MLFFCalculator(two_list_file, charge=1, fidelity=1)
    forces = atoms.get_forces()
    stress = atoms.get_stress(voigt=False)
    h = 1e-5
    for a, c in [(0, 0), (1, 2), (9, 1)]:
        p = atoms.copy()
        p.calc = atoms.calc
        p.positions[a, c] += h
        ep = p.get_potential_energy()
        p.positions[a, c] -= 2 * h
        em = p.get_potential_energy()
        assert -(ep - em) / (2 * h) == pytest.approx(forces[a, c], abs=1e-7)
    cell = atoms.get_cell()
    for a, b in [(0, 0), (0, 1), (2, 2)]:
        e = []
        for sign in (1, -1):
            eps = np.zeros((3, 3))
            eps[a, b] = eps[b, a] = sign * h / (2 if a != b else 1)
            p = atoms.copy()
            p.calc = atoms.calc
            p.set_cell(cell @ (np.eye(3) + eps), scale_atoms=True)
            e.append(p.get_potential_energy())
        assert (e[0] - e[1]) / (2 * h) / atoms.get_volume() == pytest.approx(stress[a, b], abs=1e-7)


@pytest.mark.parametrize("nprocs", [1, 2])
def test_lammps_equals_ase(two_list_file, nprocs):
    from mlff.lammps import evaluate

    atoms = _crystal()
    ref = _ase(two_list_file, atoms, charge=-1, fidelity="high")
    got = evaluate(two_list_file, [atoms], nprocs=nprocs, charge=-1, fidelity="high")[0]
    _close(ref, got, ("energy", "energies", "forces", "stress", "charges"))


def test_lammps_triclinic_two_ranks(two_list_file):
    """The per-list reach is measured to a triclinic subdomain (lamda coordinates)."""
    from mlff.lammps import evaluate

    atoms = bulk("Cu", "fcc", a=3.6).repeat((3, 3, 3))
    atoms.set_cell(atoms.cell[:] + np.array([[0.2, 0.4, -0.3], [0.0, 0.3, 0.2], [0.4, -0.2, 0.1]]), scale_atoms=True)
    atoms.symbols[[2, 11, 20]] = "O"
    atoms.rattle(0.05, seed=7)
    ref = _ase(two_list_file, atoms, charge=1, fidelity=0)
    for nprocs in (1, 2):
        got = evaluate(two_list_file, [atoms], nprocs=nprocs, charge=1, fidelity=0)[0]
        _close(ref, got, ("energy", "energies", "forces", "stress", "charges"))


def test_lammps_molecule_and_ghost_graph(two_list_file):
    """Open boundaries, and the multi-rank graph construction forced on one rank."""
    from mlff.lammps import evaluate

    mol = molecule("CH3CH2OH")
    mol.numbers[mol.numbers == 6] = 29
    mol.numbers[mol.numbers == 1] = 8
    mol.positions *= 1.6
    ref = _ase(two_list_file, mol, charge=1)
    got = evaluate(two_list_file, [mol], graph="ghosts", charge=1)[0]
    _close(ref, got, ("energy", "energies", "forces", "charges"))


@pytest.mark.parametrize("platform", ["Reference", "CPU"])
def test_openmm_equals_ase(two_list_file, platform):
    from mlff.openmm import evaluate_atoms

    atoms = _crystal()
    ref = _ase(two_list_file, atoms, charge=-1, fidelity=1)
    got = evaluate_atoms(two_list_file, atoms, platform=platform, charge=-1, fidelity=1)
    # energies travel through OpenMM in kJ/mol: relative tolerance on the total
    _close(ref, got, ("energy",), tol=TOL * max(1.0, abs(ref["energy"])))
    _close(ref, got, ("forces", "energies", "charges"))


def test_engines_refuse_bad_system_inputs(two_list_file):
    from mlff.lammps import LammpsError, evaluate
    from mlff.openmm import MLFFForce

    with pytest.raises(ValueError, match=r"unknown fidelity 'dft'; this model has: 0 \('low'\), 1 \('high'\)"):
        mlff.MLFFCalculator(two_list_file, fidelity="dft")
    with pytest.raises(ValueError, match="fidelity index 2 is out of range"):
        MLFFForce(two_list_file, [29, 8], fidelity=2, periodic=False)
    with pytest.raises(LammpsError, match="unknown fidelity 'dft'; model .* has: 0 \\('low'\\), 1 \\('high'\\)"):
        evaluate(two_list_file, [_crystal()], fidelity="dft")
    with pytest.raises(ValueError, match="total charge must be finite"):
        mlff.MLFFCalculator(two_list_file, charge=float("nan"))


def test_global_model_exact_under_mpi(global_file):
    """Charges normalised over all atoms: LAMMPS all-reduces the sums and their adjoints."""
    from mlff.lammps import evaluate

    assert read_metadata(global_file).global_sums == 2
    atoms = _crystal()
    ref = _ase(global_file, atoms, charge=1.5)
    assert ref["charges"].sum() == pytest.approx(1.5, abs=1e-12)
    for nprocs in (1, 2):
        got = evaluate(global_file, [atoms], nprocs=nprocs, charge=1.5)[0]
        _close(ref, got, ("energy", "energies", "forces", "stress", "charges"))
        assert got["charges"].sum() == pytest.approx(1.5, abs=1e-12)


def test_global_model_without_sums_is_refused_on_two_ranks(tmp_path):
    from mlff.lammps import LammpsError, evaluate

    path = tmp_path / "per_rank.pt"
    mlff.export_model(PerRankChargeModel([8, 29]).double(), path)
    atoms = _crystal()
    ref = _ase(path, atoms, charge=1.5)
    _close(ref, evaluate(path, [atoms], nprocs=1, charge=1.5)[0], ("energy", "forces", "charges"))
    with pytest.raises(LammpsError, match="does not expose their sums .* one MPI rank only"):
        evaluate(path, [atoms], nprocs=2, charge=1.5)
