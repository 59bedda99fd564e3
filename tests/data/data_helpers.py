from __future__ import annotations

import numpy as np
from ase.build import bulk
from ase.calculators.emt import EMT

from mlff.data import Record


def emt_records(n: int = 6, repeat=(1, 1, 1), seed: int = 0):
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        a = bulk("Cu", cubic=True).repeat(repeat)
        a.positions += rng.normal(0, 0.05, a.positions.shape)
        a.calc = EMT()
        a.get_potential_energy(), a.get_forces(), a.get_stress()
        out.append(Record.from_atoms(a, id=str(k), info={"teacher": "emt", "k": k}))
    return out


