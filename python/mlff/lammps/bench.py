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
