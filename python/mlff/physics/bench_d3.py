"""Cost of the D3(BJ) term per atom and step (energy + forces), one CPU thread.

Run: ``OMP_NUM_THREADS=1 python -m mlff.physics.bench_d3`` (options: ``--repeats``,
``--cutoff``, ``--cn-cutoff``, ``--switch``). The neighbour list is built once outside the
timed region (engines build it); each timed step evaluates the module and the gradient
with respect to the edge vectors, as an engine does to get forces and virial.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from ase import Atoms  # noqa: E402
from ase.build import bulk, molecule  # noqa: E402


def cu_box() -> Atoms:
    """512 Cu atoms (4 x 4 x 8 cubic fcc cells), slightly rattled."""
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((4, 4, 8))
    atoms.rattle(0.05, seed=0)
    return atoms


def water_box(n_molecules: int = 171, seed: int = 0) -> Atoms:
    """513 atoms of randomly oriented water at 1 g/cm^3 on a jittered grid (periodic)."""
    rng = np.random.default_rng(seed)
    length = (n_molecules * 29.915) ** (1.0 / 3.0)
    n_side = int(np.ceil(n_molecules ** (1.0 / 3.0)))
    sites = np.array(list(np.ndindex(n_side, n_side, n_side)))[rng.permutation(n_side**3)[:n_molecules]]
    atoms = Atoms(cell=np.eye(3) * length, pbc=True)
    h2o = molecule("H2O")
    for site in sites:
        m = h2o.copy()
        m.rotate(rng.uniform(0, 360), rng.normal(size=3))
        m.positions += (site + 0.5) * length / n_side + rng.normal(scale=0.05, size=3)
        atoms += m
    atoms.wrap()
    return atoms


def step_function(module, atoms: Atoms, dtype: torch.dtype):
    """One engine step of ``module`` on ``atoms`` (its first list; edges built once)."""
    from mlff.neighbors import neighbor_list

    cutoff = module.neighbor_lists()[0][1]
    ei, shifts = neighbor_list(atoms.positions, atoms.cell[:], atoms.pbc, cutoff)
    vec0 = torch.as_tensor(atoms.positions[ei[1]] - atoms.positions[ei[0]] + shifts @ atoms.cell[:], dtype=dtype)
    ei_t = torch.as_tensor(ei)
    z = torch.as_tensor(atoms.numbers)
    n = len(atoms)
    system = {"charge": torch.tensor(0.0, dtype=torch.float64), "fidelity": torch.tensor(0)}

    def step():
        vec = vec0.clone().requires_grad_(True)
        with torch.jit.optimized_execution(False):  # as the engines run TorchScript
            e = module(z, [ei_t], [vec], n, system)["energies"][:n].sum()
        (g,) = torch.autograd.grad(e, [vec])
        forces = torch.zeros(n, 3, dtype=dtype).index_add_(0, ei_t[0], g).index_add_(0, ei_t[1], -g)
        return float(e.detach()), forces

    for _ in range(3):  # TorchScript's profiling executor optimises after two runs
        step()
    return step, int(ei.shape[1])


def interleaved(steps: dict, repeats: int) -> dict:
    """Median seconds per step of each function, timed in alternation (shared-machine noise
    hits all of them alike, so their ratio is meaningful)."""
    times = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            t0 = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(t) for name, t in times.items()}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--cutoff", type=float, default=15.0)
    parser.add_argument("--cn-cutoff", type=float, default=10.0)
    parser.add_argument("--switch", type=float, default=2.0)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    from mlff.runtime import tune_allocator

    tune_allocator()  # as every engine does (BENCHMARKS.md, "The allocator finding")

    from mlff.bench import default_bench_model
    from mlff.physics import D3BJ

    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}; D3 cutoff {args.cutoff} Å, cn_cutoff "
          f"{args.cn_cutoff} Å, switch {args.switch} Å, vs the `mlff bench` PaiNN (5 Å, 64 features, 3 layers); "
          f"median of {args.repeats} interleaved steps, energy + forces, TorchScript")
    for name, atoms in (("Cu fcc", cu_box()), ("water", water_box())):
        elements = sorted(set(int(z) for z in atoms.numbers))
        for dtype in (torch.float64, torch.float32):
            d3 = torch.jit.script(D3BJ(elements, "pbe", cutoff=args.cutoff, cn_cutoff=args.cn_cutoff,
                                       switch_width=args.switch).to(dtype))
            torch.manual_seed(0)
            net = default_bench_model(dtype)
            if set(elements) != {29}:
                from mlff.models import PaiNN

                net = PaiNN(elements, cutoff=5.0, n_features=64, num_interactions=3).to(dtype)
            net = torch.jit.script(net.eval())
            (d3_step, d3_edges), (net_step, net_edges) = step_function(d3, atoms, dtype), step_function(net, atoms, dtype)
            t = interleaved({"d3": d3_step, "net": net_step}, args.repeats)
            n = len(atoms)
            print(f"{name:7s} {n:4d} atoms {str(dtype).replace('torch.', ''):8s} "
                  f"D3 {d3_edges / n:5.0f} edges/atom {t['d3'] / n * 1e6:7.1f} µs/atom-step | "
                  f"PaiNN {net_edges / n:4.0f} edges/atom {t['net'] / n * 1e6:7.1f} µs/atom-step | "
                  f"D3/PaiNN {t['d3'] / t['net']:.2f}")


if __name__ == "__main__":
    main()
