"""Running the real `lmp` on an input script and building test structures."""

from __future__ import annotations

import re
import signal
import subprocess
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
from ase import Atoms
from ase.build import bulk, molecule

from mlff.lammps.plugin import lmp_command, mpirun_command, subprocess_env


class LmpRun:
    def __init__(self, proc: subprocess.CompletedProcess):
        self.returncode = proc.returncode
        self.output = proc.stdout + proc.stderr

    @property
    def crashed(self) -> bool:
        """Killed by a signal (segfault, abort) rather than exiting with an error."""
        return self.returncode < 0 or self.returncode >= 128

    def values(self, tag: str) -> List[float]:
        """Numbers of a line `TAG v1 v2 ...` printed with the `print` command."""
        for line in self.output.splitlines():
            if line.startswith(tag + " "):
                return [float(v) for v in line.split()[1:]]
        raise AssertionError(f"no line starting with {tag!r} in:\n{self.output[-3000:]}")


def run_lmp(script: str, cwd: Path, nprocs: int = 1, env_extra: Optional[Dict[str, str]] = None,
            timeout: float = 300, check: bool = True) -> LmpRun:
    cwd = Path(cwd)
    (cwd / "in.lammps").write_text(script)
    cmd = lmp_command() + ["-in", "in.lammps", "-log", "none", "-nocite"]
    if nprocs > 1:
        cmd = mpirun_command(nprocs) + cmd
    env = subprocess_env(1)
    env.update(env_extra or {})
    run = LmpRun(subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env, timeout=timeout))
    if check and run.returncode != 0:
        raise AssertionError(f"lmp failed with {run.returncode}:\n{run.output[-4000:]}")
    return run


def cu_box_script(model: Path, reps: int = 2, extra: str = "", pair_args: str = "", elements: str = "Cu",
                  ntypes: int = 1, units: str = "metal") -> str:
    """A rattled fcc Cu cube (4*reps^3 atoms) with pair_style mlff; `extra` follows."""
    return f"""
units {units}
atom_style atomic
atom_modify map yes
lattice fcc 3.615
region box block 0 {reps} 0 {reps} 0 {reps}
create_box {ntypes} box
create_atoms 1 box
mass * 63.546
displace_atoms all random 0.05 0.05 0.05 4321
pair_style mlff {model} {pair_args}
pair_coeff * * {elements}
{extra}
"""


# ----------------------------------------------------------------------------- structures


def cubic_cuo() -> Atoms:
    a = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(2)
    a.rattle(0.06, seed=1)
    a.symbols[[0, 5, 11]] = "O"
    return a


def triclinic_cuo() -> Atoms:
    a = bulk("Cu", "fcc", a=3.61).repeat((2, 3, 2))
    a.set_cell(a.cell[:] + np.array([[0.1, 0.3, -0.2], [0.0, 0.2, 0.1], [0.3, -0.1, 0.0]]), scale_atoms=True)
    a.rattle(0.05, seed=2)
    a.symbols[[1, 7]] = "O"
    return a


def small_cell() -> Atoms:
    """Cell smaller than twice the cutoff: many images of each atom are neighbours."""
    a = bulk("Cu", "fcc", a=3.61, cubic=True)
    a.rattle(0.05, seed=3)
    a.symbols[2] = "O"
    return a


def molecule_big_box() -> Atoms:
    """A non-periodic CuO cluster (vacuum all round)."""
    m = molecule("CH4")
    m.positions *= 1.7
    m.symbols[:] = ["O", "Cu", "Cu", "Cu", "O"]
    m.center(vacuum=10.0)
    m.pbc = False
    return m


def cluster_in_periodic_box() -> Atoms:
    """Atoms in one corner of a big periodic box: under 2 ranks one subdomain is empty."""
    m = molecule_big_box()
    m.set_cell([30.0, 30.0, 30.0])
    m.positions += 2.0 - m.positions.min(axis=0)
    m.pbc = True
    return m
