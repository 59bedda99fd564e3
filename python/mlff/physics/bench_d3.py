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


def time_module(module, atoms: Atoms, dtype: torch.dtype, repeats: int) -> dict:
    from mlff.neighbors import neighbor_list

    cutoff = module.neighbor_lists()[0][1]
    t0 = time.perf_counter()
    ei, shifts = neighbor_list(atoms.positions, atoms.cell[:], atoms.pbc, cutoff)
    t_list = time.perf_counter() - t0
    vec0 = torch.as_tensor(atoms.positions[ei[1]] - atoms.positions[ei[0]] + shifts @ atoms.cell[:], dtype=dtype)
    ei_t = torch.as_tensor(ei)
    z = torch.as_tensor(atoms.numbers)
    n = len(atoms)

    def step():
        vec = vec0.clone().requires_grad_(True)
        e = module(z, [ei_t], [vec], n, {})["energies"][:n].sum()
        (g,) = torch.autograd.grad(e, [vec])
        forces = torch.zeros(n, 3, dtype=dtype).index_add_(0, ei_t[0], g).index_add_(0, ei_t[1], -g)
        return float(e.detach()), forces

    for _ in range(3):  # TorchScript's profiling executor optimises after two runs
        step()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    med, best = statistics.median(times), min(times)
    return dict(edges=int(ei.shape[1]), list_s=t_list, step_s=med, us_per_atom=med / n * 1e6,
                us_per_atom_min=best / n * 1e6)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--cutoff", type=float, default=15.0)
    parser.add_argument("--cn-cutoff", type=float, default=10.0)
    parser.add_argument("--switch", type=float, default=2.0)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    from mlff.physics import D3BJ

    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, OMP_NUM_THREADS="
          f"{os.environ.get('OMP_NUM_THREADS')}; cutoff {args.cutoff} Å, cn_cutoff {args.cn_cutoff} Å, "
          f"switch {args.switch} Å; median (and min) of {args.repeats} steps, energy + forces")
    for name, atoms in (("Cu fcc", cu_box()), ("water", water_box())):
        for dtype in (torch.float64, torch.float32):
            module = D3BJ(sorted(set(atoms.numbers)), "pbe", cutoff=args.cutoff, cn_cutoff=args.cn_cutoff,
                          switch_width=args.switch).to(dtype)
            for label, mod in (("eager", module), ("torchscript", torch.jit.script(module))):
                r = time_module(mod, atoms, dtype, args.repeats)
                print(f"{name:7s} {len(atoms):4d} atoms  {str(dtype).replace('torch.', ''):8s} {label:12s} "
                      f"{r['edges']:8d} edges ({r['edges'] / len(atoms):6.0f}/atom)  "
                      f"{r['step_s'] * 1e3:7.1f} ms/step  {r['us_per_atom']:7.1f} µs/atom-step "
                      f"(min {r['us_per_atom_min']:6.1f})  (neighbour list once: {r['list_s'] * 1e3:.0f} ms)")


if __name__ == "__main__":
    main()
