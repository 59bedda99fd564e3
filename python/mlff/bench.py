"""`mlff bench`: the raw-model reference time that every engine's overhead is measured against.

The quantity is forward + backward (energy, forces, virial through the contract) per
atom per MD step, on fcc Cu supercells, with the neighbour list built once outside the
timed region: exactly the work an engine delegates to the model.
"""

from __future__ import annotations

import json
import time
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import torch
from ase import Atoms
from ase.build import bulk

from .contract import evaluate
from .loading import ModelSpec, resolve_model
from .neighbors import graph_from_atoms

#: engine name -> "module:function"; the function takes (atoms, model_path, steps) and
#: returns seconds per MD step in that engine. Imported lazily: engines are optional.
ENGINES: Dict[str, str] = {
    "ase": "mlff.bench:time_ase",
    "lammps": "mlff.lammps.bench:time_lammps",
    "lammps-np2": "mlff.lammps.bench:time_lammps_np2",
    "openmm-torch": "mlff.openmm.bench:time_torchforce",
    "openmm-python": "mlff.openmm.bench:time_pythonforce",
    "pyace": "mlff.ace.bench:time_pyace",
}


def _engine(name: str) -> Callable[[Atoms, str, int], float]:
    import importlib

    if name not in ENGINES:
        raise ValueError(f"unknown engine {name!r}; available: {sorted(ENGINES)}")
    module, func = ENGINES[name].split(":")
    return getattr(importlib.import_module(module), func)


def time_ase(atoms: Atoms, model_path: str, steps: int) -> float:
    """Seconds per VelocityVerlet step with the ASE calculator (neighbour list included)."""
    from ase import units
    from ase.md.verlet import VelocityVerlet

    from .calculator import MLFFCalculator

    atoms = atoms.copy()
    atoms.calc = MLFFCalculator(model_path)
    dyn = VelocityVerlet(atoms, 1.0 * units.fs)
    dyn.run(2)
    t0 = time.perf_counter()
    dyn.run(steps)
    return (time.perf_counter() - t0) / steps


def cu_supercell(n_target: int, a: float = 3.615, seed: int = 0) -> Atoms:
    """fcc Cu cubic supercell with about ``n_target`` atoms, slightly rattled."""
    reps = max(1, round((n_target / 4) ** (1 / 3)))
    atoms = bulk("Cu", "fcc", a=a, cubic=True).repeat((reps, reps, reps))
    atoms.rattle(0.02, seed=seed)
    return atoms


def default_bench_model(dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    from .models import PaiNN

    torch.manual_seed(0)
    return PaiNN([29], cutoff=5.0, n_features=64, num_interactions=3).to(dtype)


def time_raw(
    model: torch.nn.Module, atoms: Atoms, cutoffs: float | Sequence[float], dtype, device, steps: int, warmup: int = 2
) -> float:
    """Seconds per step for the raw model (forward + backward), neighbour lists excluded."""
    g = graph_from_atoms(atoms, cutoffs, dtype, device)
    ev0 = [ev.detach() for ev in g.edge_vectors()]

    def step():
        ev = [e.clone().requires_grad_(True) for e in ev0]
        out = evaluate(model, g.atomic_numbers, g.edge_indices, ev, g.n_atoms)
        out["forces"].sum().item()  # forces a device sync

    for _ in range(warmup):
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - t0) / steps


def run_bench(
    model: Optional[ModelSpec] = None,
    sizes: Sequence[int] = (256, 1024, 4096),
    steps: int = 5,
    device: str = "cpu",
    dtype: Optional[str] = None,
    engines: Sequence[str] = (),
) -> List[Dict[str, float]]:
    if model is None:
        module = default_bench_model(getattr(torch, dtype or "float32"))
        from .contract import metadata_for

        meta = metadata_for(module)
    else:
        module, meta = resolve_model(model, device)
        if dtype is not None:
            module = module.to(getattr(torch, dtype))
    module = module.to(device).eval()
    tdtype = getattr(torch, dtype) if dtype else meta.torch_dtype
    from .runtime import tune_allocator

    tune_allocator()
    rows = []
    for n in sizes:
        atoms = cu_supercell(n)
        with torch.jit.optimized_execution(False):
            t = time_raw(module, atoms, meta.list_cutoffs, tdtype, device, steps)
        row = {"atoms": len(atoms), "raw_ms_per_step": t * 1e3, "raw_us_per_atom_step": t / len(atoms) * 1e6}
        for name in engines:
            if not isinstance(model, str):
                raise ValueError("engine benchmarks need a model file (--model model.pt)")
            te = _engine(name)(atoms, model, steps)
            row[f"{name}_ms_per_step"] = te * 1e3
            row[f"{name}_overhead_pct"] = (te / t - 1.0) * 100.0
        rows.append(row)
    return rows


def format_rows(rows: List[Dict[str, float]]) -> str:
    keys = list(rows[0].keys())
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for r in rows:
        lines.append("| " + " | ".join(f"{r[k]:.4g}" if isinstance(r[k], float) else str(r[k]) for k in keys) + " |")
    return "\n".join(lines)


def rows_to_json(rows) -> str:
    return json.dumps(rows, indent=1)
