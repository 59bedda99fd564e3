"""Helpers of the pacemaker tests: EMT-labelled Cu stores and a tiny fit configuration.

The data are generated here with ASE's EMT (rattled and strained fcc cells of 4 and 8
atoms); nothing is downloaded. python-ace (academic licence) is an optional test extra:
the tests that run its tools skip, with that reason, where it is absent.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
from ase.build import bulk
from ase.calculators.emt import EMT

from mlff.data.records import Record
from mlff.data.store import write_records

PYACE_REASON = "python-ace (pacemaker, academic licence) is an optional test extra and is not installed"


def pacemaker_installed() -> bool:
    beside = Path(sys.executable).parent
    return all(shutil.which(t) or (beside / t).is_file() for t in ("pacemaker", "pace_yaml2yace"))


def cu_records(n: int, seed: int = 0, with_forces: bool = True) -> List[Record]:
    """EMT-labelled fcc Cu: cubic cells of 4 atoms and 2x1x1 cells of 8, strained ±3 %, rattled 0.05 Å."""
    rng = np.random.default_rng(seed)
    records = []
    for k in range(n):
        atoms = bulk("Cu", "fcc", a=3.61, cubic=True)
        if k % 2:
            atoms = atoms.repeat((2, 1, 1))
        atoms.set_cell(atoms.cell * (1 + rng.uniform(-0.03, 0.03)), scale_atoms=True)
        atoms.rattle(0.05, seed=int(rng.integers(1 << 30)))
        atoms.calc = EMT()
        energy, forces = atoms.get_potential_energy(), atoms.get_forces()
        atoms.calc = None
        records.append(Record(id=str(k), numbers=atoms.numbers.astype(np.int64), positions=atoms.positions,
                              cell=np.asarray(atoms.cell), pbc=atoms.pbc, energy=float(energy),
                              forces=forces if with_forces else None))
    return records


def write_store(path: Path, records: List[Record]) -> Path:
    write_records(path, records, {"teacher": "emt"}, mode="create")
    return path


#: a basis of 6 functions (ranks 1-3), 3 BFGS iterations: ~10 s of pacemaker's pyace backend
TINY: Dict[str, Any] = {
    "cutoff": 4.5,
    "basis": {"number_of_functions_per_element": 6, "nradmax_by_orders": [4, 2, 1], "lmax_by_orders": [0, 1, 1],
              "ndensity": 1, "radbase": "ChebExpCos"},
    "fit": {"maxiter": 3, "test_size": 0.2, "evaluator": "pyace", "display_step": 1},
    "reference_energies": {"Cu": -0.005},
    "min_structures": 40,
}


def tiny_config(database: Path, output: Path, **overrides: Any):
    from mlff.pacemaker import TrainingConfig

    values: Dict[str, Any] = {**TINY, "database": database, "output": output}
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(values.get(key), dict):
            values[key] = {**values[key], **value}
        else:
            values[key] = value
    return TrainingConfig(**values)
