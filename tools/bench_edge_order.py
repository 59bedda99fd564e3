"""Does the order of edges matter to the raw model? vesin's order vs sorted by centre atom.

Interleaved in one process so machine load affects both alike:
    OMP_NUM_THREADS=1 .venv/bin/python tools/bench_edge_order.py [n_atoms]
"""

import sys
import time

import torch

from mlff.bench import cu_supercell, default_bench_model
from mlff.contract import evaluate
from mlff.neighbors import graph_from_atoms
from mlff.runtime import tune_allocator


def main() -> None:
    torch.set_num_threads(1)
    tune_allocator()
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1024
    model = default_bench_model().eval()
    g = graph_from_atoms(cu_supercell(n), 5.0, torch.float32)
    order = torch.argsort(g.edge_index[0] * g.n_atoms + g.edge_index[1])

    def ms(ei, off, steps=3):
        ev0 = g.positions[ei[1]] - g.positions[ei[0]] + off
        for _ in range(2):
            evaluate(model, g.atomic_numbers, ei, ev0.clone().requires_grad_(True), g.n_atoms)
        t0 = time.perf_counter()
        for _ in range(steps):
            evaluate(model, g.atomic_numbers, ei, ev0.clone().requires_grad_(True), g.n_atoms)
        return (time.perf_counter() - t0) / steps * 1e3

    for r in range(2):
        print(f"round {r}: vesin order {ms(g.edge_index, g.offsets):.1f} ms, "
              f"sorted by centre {ms(g.edge_index[:, order], g.offsets[order]):.1f} ms ({g.n_atoms} atoms)")


if __name__ == "__main__":
    main()
