"""OpenMM timings for `mlff bench --engines openmm-torch openmm-python`.

Seconds per VelocityVerlet step on OpenMM's CPU platform with the whole system as ML
atoms: the step, the neighbour list built inside the module, and OpenMM's own work.
"""

from __future__ import annotations

import time

from .md import _context, system_from_atoms


def _time(atoms, model_path: str, steps: int, backend: str, platform: str = "CPU", warmup: int = 3) -> float:
    import openmm

    system, pos, force = system_from_atoms(model_path, atoms, backend=backend)
    integrator = openmm.VerletIntegrator(0.001)
    ctx = _context(system, pos, platform, integrator)
    # TorchScript's profiling executor optimises the module only after a few calls
    integrator.step(warmup)
    t0 = time.perf_counter()
    integrator.step(steps)
    # the state read forces the platform to finish the queued steps
    ctx.getState(getEnergy=True)
    return (time.perf_counter() - t0) / steps


def time_torchforce(atoms, model_path: str, steps: int) -> float:
    """Seconds per MD step with the openmm-torch TorchForce backend (CPU platform)."""
    return _time(atoms, model_path, steps, "torch")


def time_pythonforce(atoms, model_path: str, steps: int) -> float:
    """Seconds per MD step with the openmm.PythonForce backend (CPU platform)."""
    return _time(atoms, model_path, steps, "python")


def overhead_rows(model_path: str, sizes=(256, 1024, 4096), rounds: int = 5, warmup: int = 3):
    """Interleaved medians: raw model, in-module neighbour list, TorchForce and PythonForce steps.

    On a shared machine, load drifts between consecutive measurements; measuring each
    variant once per round, round after round, and taking medians keeps the ratios
    meaningful. The raw step runs with TorchScript optimisations on, as in the engines.
    """
    import statistics

    import numpy as np
    import openmm
    import torch

    from ..bench import cu_supercell
    from ..contract import evaluate
    from ..loading import resolve_model
    from ..neighbors import graph_from_atoms
    from .celllist import grid_shape, neighbor_pairs, perpendicular_widths, search_range

    model, meta = resolve_model(model_path)
    nl = torch.jit.script(neighbor_pairs)
    rows = []
    for n in sizes:
        atoms = cu_supercell(n)
        g = graph_from_atoms(atoms, meta.list_cutoffs, meta.torch_dtype)
        ev0 = [ev.detach() for ev in g.edge_vectors()]
        pos = torch.as_tensor(atoms.positions)
        box = torch.as_tensor(np.asarray(atoms.cell))

        def raw():
            out = evaluate(model, g.atomic_numbers, g.edge_indices, [e.clone().requires_grad_(True) for e in ev0],
                           g.n_atoms, compute_virial=False)
            out["forces"].sum().item()

        def neighbours():
            w = perpendicular_widths(box)
            shape = grid_shape(w, meta.cutoff, len(atoms))
            r = search_range(w, shape, meta.cutoff)
            nl(pos, box, meta.cutoff, shape, [int(r[0]), int(r[1]), int(r[2])])

        engines = {}
        for backend in ("torch", "python"):
            system, p0, _ = system_from_atoms(model_path, atoms, backend=backend)
            integrator = openmm.VerletIntegrator(0.001)
            ctx = _context(system, p0, "CPU", integrator)
            engines[backend] = (ctx, integrator)

        def step(backend):
            ctx, integrator = engines[backend]
            integrator.step(1)
            ctx.getState(getPositions=True)

        variants = {"raw": raw, "neighbour list": neighbours,
                    "openmm-torch": lambda: step("torch"), "openmm-python": lambda: step("python")}
        for f in variants.values():
            for _ in range(warmup):
                f()
        times = {k: [] for k in variants}
        for _ in range(rounds):
            for k, f in variants.items():
                t0 = time.perf_counter()
                f()
                times[k].append(time.perf_counter() - t0)
        med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
        rows.append({
            "atoms": len(atoms),
            "raw_ms": med["raw"],
            "nlist_ms": med["neighbour list"],
            "openmm-torch_ms": med["openmm-torch"],
            "openmm-torch_overhead_pct": (med["openmm-torch"] / med["raw"] - 1) * 100,
            "openmm-python_ms": med["openmm-python"],
            "openmm-python_overhead_pct": (med["openmm-python"] / med["raw"] - 1) * 100,
        })
        del engines
    return rows


def main(argv=None) -> int:
    """``python -m mlff.openmm.bench --model model.pt``: the interleaved overhead table."""
    import argparse

    import torch

    from ..bench import format_rows

    p = argparse.ArgumentParser(description=overhead_rows.__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--sizes", type=int, nargs="+", default=[256, 1024, 4096])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(format_rows(overhead_rows(args.model, args.sizes, args.rounds)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
