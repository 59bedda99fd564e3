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


# ---------------------------------------------------------------------- A/B measurements
def _painn_from_file(path: str):
    """The ``PaiNN`` class of a painn.py from another checkout (``git show REV:...``)."""
    import importlib.util
    import re
    import sys
    import tempfile
    from pathlib import Path

    source = Path(path).read_text()
    # the file's package-relative imports, made absolute so it loads beside this mlff
    source = re.sub(r"^from \.\.(\w+)", r"from mlff.\1", source, flags=re.M)
    source = re.sub(r"^from \.(\w+)", r"from mlff.models.\1", source, flags=re.M)
    tmp = Path(tempfile.mkdtemp()) / "mlff_painn_ab.py"
    tmp.write_text(source)
    spec = importlib.util.spec_from_file_location("mlff_painn_ab", tmp)
    module = importlib.util.module_from_spec(spec)
    sys.modules["mlff_painn_ab"] = module  # TorchScript resolves classes through sys.modules
    spec.loader.exec_module(module)
    return module.PaiNN


def interleaved_raw(
    models: Dict[str, torch.nn.Module], atoms: Atoms, cutoff: float, dtype, rounds: int
) -> Dict[str, List[float]]:
    """Seconds per raw step of each model, one step of each per round, order alternating
    between rounds (so drift of a shared machine's load hits all models alike)."""
    g = graph_from_atoms(atoms, cutoff, dtype, "cpu")
    ev0 = [ev.detach() for ev in g.edge_vectors()]

    def step(model):
        ev = [e.clone().requires_grad_(True) for e in ev0]
        with torch.jit.optimized_execution(False):
            out = evaluate(model, g.atomic_numbers, g.edge_indices, ev, g.n_atoms)
        out["forces"].sum().item()

    for m in models.values():
        step(m)
    times: Dict[str, List[float]] = {k: [] for k in models}
    names = list(models)
    for r in range(rounds):
        for k in names if r % 2 == 0 else names[::-1]:
            t0 = time.perf_counter()
            step(models[k])
            times[k].append(time.perf_counter() - t0)
    return times


def painn_ab(old_painn: str, sizes: Sequence[int], rounds: int, dtype: str = "float32", script: bool = True) -> List[str]:
    """The bench PaiNN as written in ``old_painn`` (a painn.py) against this checkout's,
    same weights, interleaved; each line also gives the largest force difference."""
    import statistics

    from .models import PaiNN

    tdtype = getattr(torch, dtype)
    new = default_bench_model(tdtype).eval()
    old = _painn_from_file(old_painn)([29], cutoff=5.0, n_features=64, num_interactions=3).to(tdtype).eval()
    old.load_state_dict(new.state_dict())
    assert isinstance(new, PaiNN)
    models = {"old": old, "new": new}
    if script:
        models = {k: torch.jit.script(m) for k, m in models.items()}
    lines = []
    for n in sizes:
        atoms = cu_supercell(n)
        g = graph_from_atoms(atoms, 5.0, tdtype, "cpu")
        forces = []
        for m in models.values():
            ev = [e.detach().requires_grad_(True) for e in g.edge_vectors()]
            forces.append(evaluate(m, g.atomic_numbers, g.edge_indices, ev, g.n_atoms)["forces"])
        df = float((forces[0] - forces[1]).abs().max())
        t = interleaved_raw(models, atoms, 5.0, tdtype, rounds)
        ratios = [o / w for o, w in zip(t["old"], t["new"])]
        lines.append(
            f"{len(atoms)} atoms, {'TorchScript' if script else 'eager'} {dtype}: old {statistics.median(t['old']) * 1e3:.0f} ms, "
            f"new {statistics.median(t['new']) * 1e3:.0f} ms; old/new per round "
            f"{', '.join(f'{x:.2f}' for x in ratios)}; median {statistics.median(ratios):.2f}; max |dF| {df:.1e} eV/Å"
        )
    return lines


#: glibc settings compared by ``python -m mlff.bench malloc`` (mallopt parameter: value)
MALLOC_SETTINGS = {
    "glibc": {},  # glibc's defaults (dynamic mmap threshold, 128 KiB trim)
    "trim-1gib": {-3: 1 << 30, -1: 1 << 30, -2: 256 << 20},  # mlff before issue 14
    "no-trim": {-3: 1 << 30, -1: -1, -2: 256 << 20},  # trimming off, 1 GiB mmap threshold
    "mlff": {},  # what mlff.runtime.tune_allocator sets now
}


def malloc_step(setting: str, n_atoms: int, steps: int, n_features: int = 64) -> Dict[str, float]:
    """Raw float32 step of the bench PaiNN in this process under one allocator setting.

    Run each setting in a fresh process (with ``MLFF_NO_MALLOC_TUNING=1`` so nothing
    else tunes), alternating: the heap's state is per process. Returns the median step,
    CPU and system time per step, minor page faults per step and the peak RSS.
    """
    import ctypes
    import ctypes.util
    import resource

    from .runtime import tune_allocator

    if setting == "mlff":
        if not tune_allocator():
            raise RuntimeError("mlff's allocator settings could not be applied (unset MLFF_NO_MALLOC_TUNING)")
    else:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c")).mallopt
        mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        for param, value in MALLOC_SETTINGS[setting].items():
            if not mallopt(param, value):
                raise RuntimeError(f"mallopt({param}, {value}) failed")
    from .models import PaiNN

    torch.manual_seed(0)
    model = PaiNN([29], cutoff=5.0, n_features=n_features, num_interactions=3).eval()
    atoms = cu_supercell(n_atoms)
    g = graph_from_atoms(atoms, 5.0, torch.float32, "cpu")
    ev0 = [ev.detach() for ev in g.edge_vectors()]

    def step():
        ev = [e.clone().requires_grad_(True) for e in ev0]
        out = evaluate(model, g.atomic_numbers, g.edge_indices, ev, g.n_atoms)
        out["forces"].sum().item()

    step()
    times = []
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    return dict(
        setting=setting, atoms=len(atoms), features=n_features, ms=float(np.median(times)) * 1e3,
        cpu_ms=((r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)) / steps * 1e3,
        sys_ms=(r1.ru_stime - r0.ru_stime) / steps * 1e3, faults_per_step=(r1.ru_minflt - r0.ru_minflt) / steps,
        peak_rss_gb=r1.ru_maxrss / 1024**2,
    )


def saved_for_backward(model: torch.nn.Module, atoms: Atoms, cutoff: float, dtype: torch.dtype) -> Dict[str, float]:
    """What autograd keeps between one step's forward and backward pass (energy -> forces):
    the bytes of the distinct storages saved, and the number of edges. This is what sets a
    step's peak memory, hence the atoms that fit on one rank or GPU."""
    g = graph_from_atoms(atoms, cutoff, dtype, "cpu")
    ev = [e.detach().requires_grad_(True) for e in g.edge_vectors()]
    storages: Dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        st = t.untyped_storage()
        storages[st.data_ptr()] = max(storages.get(st.data_ptr(), 0), st.nbytes())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(g.atomic_numbers, g.edge_indices, ev, g.n_atoms, {})["energies"].sum()
    return {"atoms": float(len(atoms)), "edges": float(g.edge_indices[0].shape[1]),
            "saved_bytes": float(sum(storages.values()))}


def memory_ab(old_painn: Optional[str], sizes: Sequence[int], n_features: int = 64) -> List[str]:
    """The bench PaiNN's saved-for-backward memory (float32), in bytes and in units of one
    [E, 3F] edge tensor, for this checkout and optionally the painn.py ``old_painn``."""
    from .models import PaiNN

    torch.manual_seed(0)  # the bench model's weights (default_bench_model) at any width
    new = PaiNN([29], cutoff=5.0, n_features=n_features, num_interactions=3).eval()
    models = {"new": new}
    if old_painn:
        old = _painn_from_file(old_painn)([29], cutoff=5.0, n_features=n_features, num_interactions=3).eval()
        old.load_state_dict(new.state_dict())
        models = {"old": old, "new": new}
    lines = []
    for n in sizes:
        atoms = cu_supercell(n)
        for name, m in models.items():
            r = saved_for_backward(m, atoms, 5.0, torch.float32)
            unit = r["edges"] * 3 * n_features * 4
            lines.append(f"{len(atoms)} atoms, {int(r['edges'])} edges, F={n_features}, {name}: "
                         f"{r['saved_bytes'] / 1e9:.3f} GB saved for the backward pass "
                         f"= {r['saved_bytes'] / unit:.1f} [E, 3F] edge tensors")
    return lines


def ase_compile_ab(sizes: Sequence[int], rounds: int, steps: int = 1, dtype: str = "float32") -> List[str]:
    """VelocityVerlet in ASE with the bench PaiNN (in memory), ``compile=False`` against
    the compiled model (what ``compile="auto"`` switches to), interleaved; the first
    call's time is the warm-up (compilation) that the switch costs."""
    import statistics

    from ase import units
    from ase.md.verlet import VelocityVerlet

    from .calculator import MLFFCalculator

    tdtype = getattr(torch, dtype)
    lines = []
    for n in sizes:
        atoms = cu_supercell(n)
        runs, first = {}, {}
        for name, compile_ in (("eager", False), ("compiled", True)):
            copy = atoms.copy()
            copy.calc = MLFFCalculator(default_bench_model(tdtype), compile=compile_)
            dyn = VelocityVerlet(copy, 1.0 * units.fs)
            t0 = time.perf_counter()
            dyn.run(0)  # the first force evaluation
            first[name] = time.perf_counter() - t0
            dyn.run(1)
            runs[name] = dyn
        times: Dict[str, List[float]] = {k: [] for k in runs}
        for r in range(rounds):
            for k in list(runs) if r % 2 == 0 else list(runs)[::-1]:
                t0 = time.perf_counter()
                runs[k].run(steps)
                times[k].append((time.perf_counter() - t0) / steps)
        ratios = [e / c for e, c in zip(times["eager"], times["compiled"])]
        lines.append(
            f"{len(atoms)} atoms, ASE {dtype}: first call eager {first['eager']:.1f} s, compiled {first['compiled']:.1f} s; "
            f"eager {statistics.median(times['eager']) * 1e3:.0f} ms/step, compiled "
            f"{statistics.median(times['compiled']) * 1e3:.0f} ms/step; eager/compiled per round "
            f"{', '.join(f'{x:.2f}' for x in ratios)}; median {statistics.median(ratios):.2f}"
        )
    return lines


#: (engine label, engine for the .pt, engine for the .pt2): openmm-torch cannot run a
#: package, so OpenMM compares each file's fastest path
PT2_ENGINES = {
    "raw": (None, None),
    "ase": ("ase", "ase"),
    "lammps": ("lammps", "lammps"),
    "openmm": ("openmm-torch", "openmm-python"),
}


def pt2_ab(sizes: Sequence[int], rounds: int, steps: int, engines: Sequence[str], workdir: str) -> List[str]:
    """The default bench PaiNN (64 features, 3 layers, 5 Å, float32) as .pt and as .pt2,
    per atom-step in each engine, interleaved (pt, pt2, pt, pt2, ...); medians and ratio."""
    from pathlib import Path

    from .compiled import export_compiled

    pt2 = Path(workdir) / "bench_painn.pt2"
    pt = pt2.with_suffix(".pt")
    if not pt2.exists():
        export_compiled(default_bench_model(torch.float32), pt2, devices=["cpu"])
    lines = ["| engine | atoms | .pt µs/atom-step | .pt2 µs/atom-step | speed-up |", "|---|---|---|---|---|"]
    for n in sizes:
        atoms = cu_supercell(n)
        for name in engines:
            times: Dict[str, List[float]] = {"pt": [], "pt2": []}
            for _ in range(rounds):
                for kind, path in (("pt", pt), ("pt2", pt2)):
                    if name == "raw":
                        module, meta = resolve_model(str(path))
                        with torch.jit.optimized_execution(False):
                            t = time_raw(module, atoms, meta.list_cutoffs, meta.torch_dtype, "cpu", steps)
                    else:
                        engine = PT2_ENGINES[name][0 if kind == "pt" else 1]
                        t = _engine(engine)(atoms, str(path), steps)
                    times[kind].append(t / len(atoms) * 1e6)
            a, b = float(np.median(times["pt"])), float(np.median(times["pt2"]))
            lines.append(f"| {name} | {len(atoms)} | {a:.1f} | {b:.1f} | {a / b:.2f}x |")
            print(lines[-1], flush=True)
    return lines


def _schnetpack_model(n_features: int, n_interactions: int, cutoff: float, n_rbf: int):
    """schnetpack's PaiNN with the bench model's hyperparameters (energy + forces).

    schnetpack is not in the lock: install it for the benchmark only (see BENCHMARKS.md).
    Its 2.1 releases import a torch-internal TypeVar that torch 2.9 no longer has.
    """
    import typing

    import torch.utils.data.dataloader as dataloader

    if not hasattr(dataloader, "T_co"):
        dataloader.T_co = typing.TypeVar("T_co", covariant=True)
    import schnetpack as spk

    return spk.model.NeuralNetworkPotential(
        representation=spk.representation.PaiNN(
            n_features, n_interactions, spk.nn.GaussianRBF(n_rbf, cutoff), spk.nn.CosineCutoff(cutoff)
        ),
        input_modules=[spk.atomistic.PairwiseDistances()],
        output_modules=[spk.atomistic.Atomwise(n_features, output_key="energy"),
                        spk.atomistic.Forces(energy_key="energy", force_key="forces")],
    )


def schnetpack_ab(sizes: Sequence[int], rounds: int, steps: int, workdir: str) -> List[str]:
    """One raw step (energy + forces, neighbour list outside) of mlff's student as TorchScript
    and as .pt2 against schnetpack's PaiNN (eager, its deployed form) with the same
    hyperparameters (64 features, 3 interactions, 5 Å, 20 radial functions, float32),
    interleaved; medians."""
    from pathlib import Path

    from .compiled import export_compiled

    pt2 = Path(workdir) / "bench_painn.pt2"
    if not pt2.exists():
        export_compiled(default_bench_model(torch.float32), pt2, devices=["cpu"])
    peer = _schnetpack_model(64, 3, 5.0, 20).float().eval()
    lines = ["| atoms | schnetpack µs/atom-step | mlff .pt | mlff .pt2 | schnetpack / .pt | schnetpack / .pt2 |",
             "|---|---|---|---|---|---|"]
    for n in sizes:
        atoms = cu_supercell(n)
        g = graph_from_atoms(atoms, [5.0], torch.float32, "cpu")
        i, j = g.edge_indices[0]
        pos = torch.as_tensor(atoms.positions, dtype=torch.float32)
        vec = g.edge_vectors()[0].detach()
        inputs = {
            "_atomic_numbers": torch.as_tensor(atoms.numbers), "_positions": pos,
            "_idx_i": i, "_idx_j": j, "_offsets": vec - (pos[j] - pos[i]),
            "_n_atoms": torch.tensor([len(atoms)]), "_idx_m": torch.zeros(len(atoms), dtype=torch.long),
            "_cell": torch.as_tensor(atoms.cell[:], dtype=torch.float32).unsqueeze(0),
            "_pbc": torch.tensor([[True, True, True]]),
        }

        def peer_step() -> float:
            t0 = time.perf_counter()
            for _ in range(steps):
                out = peer({k: v.clone() for k, v in inputs.items()})
                out["forces"].sum().item()
            return (time.perf_counter() - t0) / steps

        models = {kind: resolve_model(str(pt2.with_suffix(suffix)))[0] for kind, suffix in (("pt", ".pt"), ("pt2", ".pt2"))}
        times: Dict[str, List[float]] = {"peer": [], "pt": [], "pt2": []}
        peer_step()  # warm-up
        for _ in range(rounds):
            times["peer"].append(peer_step())
            for kind, module in models.items():
                with torch.jit.optimized_execution(False):
                    times[kind].append(time_raw(module, atoms, [5.0], torch.float32, "cpu", steps, warmup=1))
        med = {k: float(np.median(v)) / len(atoms) * 1e6 for k, v in times.items()}
        lines.append(f"| {len(atoms)} | {med['peer']:.1f} | {med['pt']:.1f} | {med['pt2']:.1f} | "
                     f"{med['peer'] / med['pt']:.2f}x | {med['peer'] / med['pt2']:.2f}x |")
        print(lines[-1], flush=True)
    return lines


def _main(argv: Optional[Sequence[str]] = None) -> None:
    import argparse

    p = argparse.ArgumentParser(prog="python -m mlff.bench", description="A/B measurements of the raw PaiNN step")
    sub = p.add_subparsers(dest="cmd", required=True)
    ab = sub.add_parser("ab", help="this checkout's PaiNN against another painn.py, interleaved")
    ab.add_argument("old_painn", help="painn.py of the other version, e.g. from `git show REV:python/mlff/models/painn.py`")
    ab.add_argument("--sizes", type=int, nargs="+", default=[864, 4000])
    ab.add_argument("--rounds", type=int, default=5)
    ab.add_argument("--dtype", default="float32")
    ab.add_argument("--eager", action="store_true", help="time the eager modules instead of TorchScript")
    ac = sub.add_parser("ase-compile", help="ASE MD steps, eager against compiled, interleaved")
    ac.add_argument("--sizes", type=int, nargs="+", default=[864, 4000])
    ac.add_argument("--rounds", type=int, default=4)
    ac.add_argument("--steps", type=int, default=1)
    mm = sub.add_parser("malloc", help="one raw step timing under one glibc allocator setting (JSON)")
    mm.add_argument("setting", choices=sorted(MALLOC_SETTINGS))
    mm.add_argument("atoms", type=int)
    mm.add_argument("--steps", type=int, default=3)
    mm.add_argument("--features", type=int, default=64)
    me = sub.add_parser("memory", help="what the bench PaiNN keeps for its backward pass (optionally vs another painn.py)")
    me.add_argument("--old-painn", help="painn.py of the other version")
    me.add_argument("--sizes", type=int, nargs="+", default=[864, 4000])
    me.add_argument("--features", type=int, default=64)
    pp = sub.add_parser("pt2", help="the bench PaiNN as .pt and .pt2 in each engine, interleaved")
    pp.add_argument("--sizes", type=int, nargs="+", default=[256, 864, 4000])
    pp.add_argument("--rounds", type=int, default=3)
    pp.add_argument("--steps", type=int, default=3)
    pp.add_argument("--engines", nargs="+", default=list(PT2_ENGINES), choices=list(PT2_ENGINES))
    pp.add_argument("--workdir", default="bench_output", help="where the compiled model is kept")
    sp = sub.add_parser("schnetpack", help="the student (.pt and .pt2) against schnetpack's PaiNN, interleaved")
    sp.add_argument("--sizes", type=int, nargs="+", default=[256, 864, 4000])
    sp.add_argument("--rounds", type=int, default=3)
    sp.add_argument("--steps", type=int, default=3)
    sp.add_argument("--workdir", default="bench_output")
    sp.add_argument("--peer-path", help="where schnetpack is installed (pip install --target DIR schnetpack); "
                                        "appended to sys.path after the environment's packages")
    args = p.parse_args(argv)
    if args.cmd == "schnetpack":
        import sys
        from pathlib import Path

        from .runtime import tune_allocator

        if args.peer_path:
            sys.path.append(args.peer_path)  # after site-packages: mlff's torch, not the peer's pin
        tune_allocator()
        torch.set_num_threads(1)
        Path(args.workdir).mkdir(parents=True, exist_ok=True)
        print("\n".join(schnetpack_ab(args.sizes, args.rounds, args.steps, args.workdir)))
        return
    if args.cmd == "pt2":
        from pathlib import Path

        from .runtime import tune_allocator

        tune_allocator()
        torch.set_num_threads(1)
        Path(args.workdir).mkdir(parents=True, exist_ok=True)
        print("\n".join(pt2_ab(args.sizes, args.rounds, args.steps, args.engines, args.workdir)))
        return
    if args.cmd == "memory":
        print("\n".join(memory_ab(args.old_painn, args.sizes, args.features)), flush=True)
        return
    if args.cmd == "malloc":
        print(json.dumps(malloc_step(args.setting, args.atoms, args.steps, args.features)), flush=True)
        return
    from .runtime import tune_allocator

    tune_allocator()
    if args.cmd == "ase-compile":
        for line in ase_compile_ab(args.sizes, args.rounds, args.steps):
            print(line, flush=True)
        return
    for line in painn_ab(args.old_painn, args.sizes, args.rounds, args.dtype, script=not args.eager):
        print(line, flush=True)


if __name__ == "__main__":
    _main()
