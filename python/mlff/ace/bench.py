"""``mlff bench --engines pyace``: pyace's evaluator on the same ACE file, as the reference.

pyace (python-ace, academic licence) is optional: only the benchmark and the tests use
it, never mlff itself. Its recursive evaluator is the one ML-PACE runs in LAMMPS.
"""

from __future__ import annotations

import time

from ase import Atoms


def time_pyace(atoms: Atoms, model_path: str, steps: int, warmup: int = 2) -> float:
    """Seconds per energy+forces evaluation with pyace's recursive evaluator (its
    neighbour list included, as every MD step of an engine includes one)."""
    try:
        from pyace import PyACECalculator
    except ImportError as exc:
        raise RuntimeError(f"the pyace engine needs python-ace installed ({exc})") from exc
    atoms = atoms.copy()
    atoms.calc = PyACECalculator(model_path, recursive_evaluator=True, recursive=True)
    # ML-PACE's pair_style pace does not compute the B-projections either
    atoms.calc.compute_projections = False
    displacement = 1e-4

    def step(k: int):
        # move an atom so that the calculator cannot return a cached result
        atoms.positions[0, 0] += displacement if k % 2 == 0 else -displacement
        atoms.get_forces()

    for k in range(warmup):
        step(k)
    t0 = time.perf_counter()
    for k in range(steps):
        step(k)
    return (time.perf_counter() - t0) / steps
