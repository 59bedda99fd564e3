"""LAMMPS timings for ``mlff bench --engines lammps lammps-np2``.

Seconds per MD step (velocity Verlet, NVE) as LAMMPS reports it in "Loop time", i.e.
neighbour lists, communication, the graph build and the model, without start-up. The
single-rank run gets as many torch threads as the raw-model reference in the same
``mlff bench`` process; the two-rank run uses one thread per rank on the same cores.
"""

from __future__ import annotations

from .md import run_md


def _threads() -> int:
    import torch

    return torch.get_num_threads()


def _time(atoms, model_path: str, steps: int, nprocs: int, threads: int, warmup: int = 2) -> float:
    res = run_md(model_path, atoms, steps, temperature=300.0, report_interval=steps,
                 nprocs=nprocs, threads=threads, warmup_steps=warmup)
    return res.seconds_per_step


def time_lammps(atoms, model_path: str, steps: int) -> float:
    """Seconds per MD step in ``lmp`` on one MPI rank."""
    return _time(atoms, model_path, steps, nprocs=1, threads=_threads())


def time_lammps_np2(atoms, model_path: str, steps: int) -> float:
    """Seconds per MD step with ``mpirun -np 2 lmp`` (one torch thread per rank)."""
    return _time(atoms, model_path, steps, nprocs=2, threads=1)


def interleaved(model_path: str, sizes=(256, 1024, 4096), steps: int = 3, rounds: int = 3, threads: int = 1):
    """Raw model, LAMMPS on 1 rank and on 2 ranks, timed in turn for ``rounds`` rounds;
    medians per size. Consecutive measurements on a shared machine drift with its load
    by more than the effects measured; interleaving spreads the drift over all three."""
    import statistics

    import torch

    from ..bench import cu_supercell, time_raw
    from ..contract import load_model
    from ..runtime import tune_allocator

    tune_allocator()  # as mlff bench does for the raw model, and as the plugin does in lmp
    torch.set_num_threads(threads)
    loaded = load_model(model_path)
    rows = []
    for n in sizes:
        atoms = cu_supercell(n)
        t = {"raw": [], "lammps": [], "lammps-np2": []}
        for _ in range(rounds):
            with torch.jit.optimized_execution(False):
                t["raw"].append(time_raw(loaded.module, atoms, loaded.metadata.list_cutoffs, loaded.metadata.torch_dtype,
                                         "cpu", steps))
            t["lammps"].append(_time(atoms, model_path, steps, nprocs=1, threads=threads))
            t["lammps-np2"].append(_time(atoms, model_path, steps, nprocs=2, threads=1))
        med = {k: statistics.median(v) for k, v in t.items()}
        rows.append({
            "atoms": len(atoms),
            "raw_ms": med["raw"] * 1e3,
            "lammps_ms": med["lammps"] * 1e3,
            "lammps_overhead_pct": (med["lammps"] / med["raw"] - 1) * 100,
            "lammps-np2_ms": med["lammps-np2"] * 1e3,
            "lammps-np2_overhead_pct": (med["lammps-np2"] / med["raw"] - 1) * 100,
        })
    return rows


if __name__ == "__main__":
    import argparse

    from ..bench import format_rows

    p = argparse.ArgumentParser(description="interleaved LAMMPS vs raw-model timings (medians)")
    p.add_argument("--model", required=True)
    p.add_argument("--sizes", type=int, nargs="+", default=[256, 1024, 4096])
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    print(f"# python -m mlff.lammps.bench --model {a.model} --sizes {' '.join(map(str, a.sizes))} "
          f"--steps {a.steps} --rounds {a.rounds} --threads {a.threads}")
    print(format_rows(interleaved(a.model, a.sizes, a.steps, a.rounds, a.threads)))
