"""The ACE extrapolation grade γ the way users get it: `mlff activeset data.db pot.yaml -o
pot.asi` (fresh interpreter), then `pair_style mlff pot.yaml activeset pot.asi gamma_every N`
with `compute mlff/atom extrapolation_grade` in dump, variable and `fix halt`, and
`MLFFCalculator("pot.yaml", activeset="pot.asi")` and OpenMM's ExtrapolationGradeReporter —
the same γ in LAMMPS (1 and 2 ranks), ASE and OpenMM, equal to the core's grade (itself
checked against pyace in test_ace_grade.py).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.singlepoint import SinglePointCalculator
from ase.db import connect

import potentials  # this folder's helpers
from mlff import MLFFCalculator
from mlff.lammps import evaluate
from mlff.lammps.plugin import lmp_command, subprocess_env


CONFIG = {
    "deltaSplineBins": 1e-4,
    "elements": ["Cu"],
    "embeddings": {"ALL": {"npot": "FinnisSinclairShiftedScaled", "fs_parameters": [1, 0.5, 1, 1.5], "ndensity": 2}},
    "bonds": {"ALL": {"radbase": "ChebExpCos", "radparameters": [5.25], "rcut": 4.6, "dcut": 0.01}},
    "functions": {"ALL": {"nradmax_by_orders": [5, 2, 2], "lmax_by_orders": [0, 2, 1]}},
}


def training_structures(n: int = 24):
    rng = np.random.default_rng(0)
    out = []
    for k in range(n):
        kind = ("fcc", "bcc", "sc")[k % 3]
        if kind == "sc":
            atoms = bulk("Cu", "sc", a=2.4).repeat((3, 3, 3))
        else:
            atoms = bulk("Cu", kind, a=3.61 if kind == "fcc" else 2.87, cubic=True).repeat((2, 2, 2))
        atoms.set_cell(atoms.cell.array * (1 + 0.3 * (rng.random() - 0.5)), scale_atoms=True)
        atoms.rattle(0.25 * rng.random(), seed=int(rng.integers(1 << 30)))
        out.append(atoms)
    return out


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """(potential.yaml, potential.asi) made with `mlff activeset` from an ASE database."""
    pyace = pytest.importorskip("pyace", reason=potentials.PYACE_REASON)
    d = tmp_path_factory.mktemp("grade")
    np.random.seed(7)  # pyace draws its random coefficients from numpy's global generator
    config = pyace.create_multispecies_basis_config(CONFIG, func_coefs_initializer="random")
    config.set_func_coeffs(list(np.asarray(config.get_func_coeffs()) * 3e3))
    potential = d / "Cu.yaml"
    config.save(str(potential))
    db = d / "train.db"
    with connect(db) as con:
        for atoms in training_structures():
            atoms.calc = SinglePointCalculator(atoms, energy=0.0, forces=np.zeros((len(atoms), 3)))
            con.write(atoms)
    asi = d / "Cu.asi"
    proc = subprocess.run([sys.executable, "-m", "mlff.cli", "activeset", str(db), str(potential), "-o", str(asi)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert asi.exists() and "linear active set" in proc.stdout
    return potential, asi


def extrapolating():
    atoms = bulk("Cu", "fcc", a=2.8, cubic=True).repeat((3, 3, 3))  # -22 % lattice constant
    atoms.rattle(0.3, seed=4)
    return atoms


def test_grade_in_lammps_equals_ase(graded):
    potential, asi = graded
    from mlff.ace.activeset import GradeCalculator

    for atoms in (training_structures(4)[1], extrapolating()):
        a = atoms.copy()
        a.calc = MLFFCalculator(str(potential), activeset=str(asi))
        a.calc.calculate(a, ["energy", "forces", "extrapolation_grade"])
        gamma_ase = a.calc.results["extrapolation_grade"]
        np.testing.assert_allclose(gamma_ase, GradeCalculator(potential, asi).grades(atoms), rtol=1e-12, atol=1e-12)
        for nprocs in (1, 2):
            res = evaluate(str(potential), [atoms], nprocs=nprocs, activeset=str(asi))[0]
            np.testing.assert_allclose(res["extrapolation_grade"], gamma_ase, rtol=1e-9, atol=1e-9)
            np.testing.assert_allclose(res["forces"], a.calc.results["forces"], atol=1e-9, rtol=0)
    assert gamma_ase.max() > 1.5  # the compressed crystal is outside the training domain


def test_fix_halt_on_gamma_every_n_steps(graded, tmp_path):
    potential, asi = graded
    lines = [
        "units metal",
        "lattice fcc 2.8",
        "region box block 0 3 0 3 0 3",
        "create_box 1 box",
        "create_atoms 1 box",
        "mass 1 63.546",
        "displace_atoms all random 0.3 0.3 0.3 5",
        f"pair_style mlff {potential} activeset {asi} gamma_every 5",
        "pair_coeff * * Cu",
        "compute g all mlff/atom extrapolation_grade",
        "compute gmax all reduce max c_g",
        "variable gmax equal c_gmax",
        "dump d all custom 5 grades.dump id c_g",
        "fix integrate all nve",
        "fix stop all halt 5 v_gmax > 1.5 error continue",
        "thermo_style custom step pe c_gmax",
        "thermo 5",
        # a random-coefficient potential: tiny steps keep the atoms where they are
        "timestep 1e-7",
        "run 50",
    ]
    (tmp_path / "in.lmp").write_text("\n".join(lines) + "\n")
    proc = subprocess.run(lmp_command() + ["-in", "in.lmp"], cwd=tmp_path, capture_output=True, text=True,
                          env=subprocess_env(), timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "Fix halt condition for fix-id stop met on step 5" in out, out[-3000:]
    assert (tmp_path / "grades.dump").exists()


def test_gamma_on_a_step_between_is_a_clear_error(graded, tmp_path):
    potential, asi = graded
    lines = [
        "units metal", "lattice fcc 3.62", "region box block 0 2 0 2 0 2", "create_box 1 box",
        "create_atoms 1 box", "mass 1 63.546",
        f"pair_style mlff {potential} activeset {asi} gamma_every 10",
        "pair_coeff * * Cu",
        "compute g all mlff/atom extrapolation_grade",
        "compute gmax all reduce max c_g",
        "thermo_style custom step c_gmax",
        "thermo 3",
        "fix integrate all nve",
        "run 6",
    ]
    (tmp_path / "in.lmp").write_text("\n".join(lines) + "\n")
    proc = subprocess.run(lmp_command() + ["-in", "in.lmp"], cwd=tmp_path, capture_output=True, text=True,
                          env=subprocess_env(), timeout=300)
    assert proc.returncode != 0
    assert "every 10 steps (gamma_every)" in proc.stdout + proc.stderr


def test_activeset_with_a_yace_is_refused_with_the_reason(graded, tmp_path):
    potential, asi = graded
    import pyace

    yace = tmp_path / "Cu.yace"
    pyace.ACEBBasisSet(str(potential)).to_ACECTildeBasisSet().save_yaml(str(yace))
    with pytest.raises(Exception, match="B-basis"):
        MLFFCalculator(str(yace), activeset=str(asi))
    with pytest.raises(Exception, match="B-basis"):
        evaluate(str(yace), [extrapolating()], activeset=str(asi))


def test_openmm_reporter_reports_and_stops(graded, tmp_path):
    openmm = pytest.importorskip("openmm")
    from openmm import app, unit

    from mlff.openmm import ExtrapolationError, ExtrapolationGradeReporter

    potential, asi = graded
    atoms = extrapolating()
    ref = MLFFCalculator(str(potential), activeset=str(asi))
    ref.calculate(atoms, ["energy", "extrapolation_grade"])
    topology = app.Topology()
    chain = topology.addChain()
    for _ in range(len(atoms)):
        topology.addAtom("Cu", app.Element.getBySymbol("Cu"), topology.addResidue("CU", chain))
    topology.setPeriodicBoxVectors(atoms.cell.array * 0.1)
    system = openmm.System()
    for _ in range(len(atoms)):
        system.addParticle(63.546)
    system.setDefaultPeriodicBoxVectors(*(openmm.Vec3(*v) for v in atoms.cell.array * 0.1))
    system.addForce(openmm.CMMotionRemover())  # any force; the grade needs no ML force
    simulation = app.Simulation(topology, system, openmm.VerletIntegrator(1e-9),
                                openmm.Platform.getPlatformByName("Reference"))
    simulation.context.setPositions(atoms.positions * 0.1)
    log = tmp_path / "gamma.txt"
    reporter = ExtrapolationGradeReporter(str(log), 2, str(potential), str(asi), topology)
    simulation.reporters.append(reporter)
    simulation.step(4)
    np.testing.assert_allclose(reporter.last_grades, ref.results["extrapolation_grade"], rtol=1e-9, atol=1e-9)
    rows = [line.split() for line in log.read_text().splitlines() if not line.startswith("#")]
    assert [int(r[0]) for r in rows] == [2, 4]
    simulation.reporters[:] = [ExtrapolationGradeReporter(str(tmp_path / "g2.txt"), 2, str(potential), str(asi),
                                                          topology, stop_above=1.5)]
    with pytest.raises(ExtrapolationError, match="left the training domain"):
        simulation.step(2)
