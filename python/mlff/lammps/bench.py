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


def interleaved(model_path: str, sizes=(256, 1024, 4096), steps: int = 3, rounds: int = 3, threads: int = 1,
                raw: bool = True):
    """Raw model, LAMMPS on 1 rank and on 2 ranks, timed in turn for ``rounds`` rounds;
    medians per size, and the 2-rank speed-up (1-rank median / 2-rank median, and per
    round). Consecutive measurements on a shared machine drift with its load by more than
    the effects measured; interleaving spreads the drift over all three.

    ``raw=False`` leaves out the raw model: this process would keep its peak heap (the
    allocator tuning does not trim) beside the LAMMPS runs, which at 32000 atoms does not
    fit in memory twice."""
    import statistics

    import torch

    from ..bench import cu_supercell, time_raw
    from ..contract import load_model
    from ..runtime import tune_allocator

    tune_allocator()  # as mlff bench does for the raw model, and as the plugin does in lmp
    torch.set_num_threads(threads)
    loaded = load_model(model_path) if raw else None
    rows = []
    for n in sizes:
        atoms = cu_supercell(n)
        t = {"raw": [], "lammps": [], "lammps-np2": []}
        for _ in range(rounds):
            if loaded is not None:
                with torch.jit.optimized_execution(False):
                    t["raw"].append(time_raw(loaded.module, atoms, loaded.metadata.list_cutoffs,
                                             loaded.metadata.torch_dtype, "cpu", steps))
            t["lammps"].append(_time(atoms, model_path, steps, nprocs=1, threads=threads))
            t["lammps-np2"].append(_time(atoms, model_path, steps, nprocs=2, threads=1))
        med = {k: statistics.median(v) for k, v in t.items() if v}
        row = {"atoms": len(atoms)}
        if loaded is not None:
            row["raw_ms"] = med["raw"] * 1e3
        row["lammps_ms"] = med["lammps"] * 1e3
        row["lammps-np2_ms"] = med["lammps-np2"] * 1e3
        if loaded is not None:
            row["lammps_overhead_pct"] = (med["lammps"] / med["raw"] - 1) * 100
            row["lammps-np2_overhead_pct"] = (med["lammps-np2"] / med["raw"] - 1) * 100
        row["np2_speedup"] = med["lammps"] / med["lammps-np2"]
        row["np2_speedup_per_round"] = ", ".join(f"{a / b:.2f}" for a, b in zip(t["lammps"], t["lammps-np2"]))
        rows.append(row)
    return rows


def bench_painn_file(path: str, n_features: int, layers: int) -> str:
    """Export the ``mlff bench`` PaiNN (Cu, 5 Å, float32, seed 0) at another width or depth
    to ``path`` (contract version 3: layer exchange on several ranks)."""
    import torch

    from ..contract import export_model
    from ..models import PaiNN

    torch.manual_seed(0)
    export_model(PaiNN([29], cutoff=5.0, n_features=n_features, num_interactions=layers).float().eval(), path)
    return path


if __name__ == "__main__":
    import argparse

    from ..bench import format_rows

    p = argparse.ArgumentParser(description="interleaved LAMMPS (1 and 2 ranks) vs raw-model timings (medians)")
    p.add_argument("--model", help="a model file; default: the bench PaiNN at --features/--layers")
    p.add_argument("--features", type=int, default=64)
    p.add_argument("--layers", type=int, default=3)
    p.add_argument("--no-raw", action="store_true", help="LAMMPS only (large sizes: memory)")
    p.add_argument("--sizes", type=int, nargs="+", default=[256, 1024, 4096])
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        model = a.model or bench_painn_file(f"{tmp}/painn_{a.features}x{a.layers}.pt", a.features, a.layers)
        what = f"--model {a.model}" if a.model else f"--features {a.features} --layers {a.layers}"
        print(f"# python -m mlff.lammps.bench {what} --sizes {' '.join(map(str, a.sizes))} "
              f"--steps {a.steps} --rounds {a.rounds} --threads {a.threads}{' --no-raw' if a.no_raw else ''}")
        print(format_rows(interleaved(model, a.sizes, a.steps, a.rounds, a.threads, raw=not a.no_raw)), flush=True)
