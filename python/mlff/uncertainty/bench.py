"""What uncertainty costs: one PaiNN vs a shallow ensemble vs a deep committee.

``python -m mlff.uncertainty.bench`` times the raw model step (forward + backward through
the contract, neighbour list built once outside the timed region, as in
:mod:`mlff.bench`) per atom, on one thread, for

- one PaiNN (the reference: energy and forces),
- a shallow ensemble of 4 heads on the same backbone (``PaiNN(n_heads=4)``),
- a deep committee of 4 independent PaiNNs (:class:`mlff.uncertainty.Committee`),

each ensemble twice: energies only (``system["outputs"] = 0``: what LAMMPS asks between
output steps and OpenMM during dynamics) and with the member outputs and the derived
deviations (an output step, ASE). All models are exported and loaded as TorchScript, as
every engine runs them. Steps of the configurations are interleaved, their order
rotated and reversed every round, so a shared machine's load drift hits all of them
alike; the table gives medians and ratios to one PaiNN.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import torch

from ..bench import cu_supercell
from ..contract import ModelMetadata, evaluate, export_model, load_model, make_system
from ..neighbors import graph_from_atoms

#: the benchmark PaiNN's size (that of :func:`mlff.bench.default_bench_model`)
PAINN = dict(cutoff=5.0, n_features=64, num_interactions=3)
#: (row label, model key, member outputs on)
CONFIGS: Tuple[Tuple[str, str, bool], ...] = (
    ("PaiNN", "single", False),
    ("shallow, 4 heads: energies only", "shallow", False),
    ("shallow, 4 heads: with uncertainty", "shallow", True),
    ("committee of 4: energies only", "committee", False),
    ("committee of 4: with uncertainty", "committee", True),
)


def build_models(
    folder: Path, n_members: int = 4, dtype: torch.dtype = torch.float32
) -> Dict[str, Tuple[torch.nn.Module, ModelMetadata]]:
    """Export and load the three models (random weights: the cost does not depend on them)."""
    from ..models import PaiNN
    from .committee import build_committee

    paths: List[Path] = []
    for k in range(n_members):
        torch.manual_seed(k)
        paths.append(folder / f"painn{k}.pt")
        export_model(PaiNN([29], **PAINN).to(dtype).eval(), paths[-1])
    torch.manual_seed(0)
    export_model(PaiNN([29], n_heads=n_members, **PAINN).to(dtype).eval(), folder / "shallow.pt")
    build_committee(paths, folder / "committee.pt")
    models = {}
    for key, path in (("single", paths[0]), ("shallow", folder / "shallow.pt"), ("committee", folder / "committee.pt")):
        loaded = load_model(path)
        models[key] = (loaded.module, loaded.metadata)
    return models


def time_configs(
    models: Dict[str, Tuple[torch.nn.Module, ModelMetadata]],
    n_atoms: int,
    rounds: int,
    dtype: torch.dtype = torch.float32,
) -> Dict[str, List[float]]:
    """Seconds per step of every configuration of :data:`CONFIGS`, ``rounds`` interleaved steps each."""
    atoms = cu_supercell(n_atoms)
    meta0 = models["committee"][1]
    g = graph_from_atoms(atoms, meta0.list_cutoffs, dtype)
    ev0 = [ev.detach() for ev in g.edge_vectors()]

    def step(label: str) -> float:
        _, key, outputs = next(c for c in CONFIGS if c[0] == label)
        module, meta = models[key]
        system = make_system()
        if not outputs:
            system["outputs"] = torch.zeros((), dtype=torch.long)
        # every model here has the committee's one list (same name and cutoff)
        edges = [e.clone().requires_grad_(True) for e in ev0[: len(meta.neighbor_lists)]]
        t0 = time.perf_counter()
        with torch.jit.optimized_execution(False):  # as the engines run them (see mlff.calculator)
            out = evaluate(module, g.atomic_numbers, g.edge_indices[: len(edges)], edges, g.n_atoms, system)
        out = meta.complete_outputs(out)
        out["forces"].sum().item()
        return time.perf_counter() - t0

    labels = [c[0] for c in CONFIGS]
    for label in labels:  # warm-up: TorchScript's first calls profile and compile
        step(label)
        step(label)
    times: Dict[str, List[float]] = {label: [] for label in labels}
    for r in range(rounds):
        # rotated and reversed every round: no configuration always runs first, or
        # always after the largest one (the allocator and a shared machine's load drift)
        order = labels[r % len(labels):] + labels[: r % len(labels)]
        for label in order if r % 2 == 0 else order[::-1]:
            times[label].append(step(label))
    return times


def run(sizes: Sequence[int] = (256, 864), rounds: int = 10, dtype: torch.dtype = torch.float32) -> str:
    """The markdown table: µs per atom-step (median) and the ratio to one PaiNN, per size."""
    torch.set_num_threads(1)
    lines = [
        f"one thread, {dtype}, PaiNN {PAINN}, medians of {rounds} interleaved steps",
        "",
        "| atoms | model | µs / atom-step | ratio to one PaiNN |",
        "|---:|---|---:|---:|",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        models = build_models(Path(tmp), dtype=dtype)
        for n in sizes:
            times = time_configs(models, n, rounds, dtype)
            n_real = len(cu_supercell(n))
            ref = statistics.median(times[CONFIGS[0][0]])
            for label, _, _ in CONFIGS:
                t = statistics.median(times[label])
                lines.append(f"| {n_real} | {label} | {1e6 * t / n_real:.1f} | {t / ref:.2f} |")
    return "\n".join(lines)


def _main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m mlff.uncertainty.bench", description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 864], help="atoms (fcc Cu supercells)")
    parser.add_argument("--rounds", type=int, default=10, help="interleaved steps per configuration")
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    args = parser.parse_args(argv)
    print(run(args.sizes, args.rounds, getattr(torch, args.dtype)))


if __name__ == "__main__":
    _main()


__all__ = ["CONFIGS", "build_models", "run", "time_configs"]
