"""Compiled models: AOTInductor ``.pt2`` packages of the contract (inference only).

TorchScript is deprecated upstream and runs PaiNN at about the speed of eager PyTorch;
inductor-compiled code is 2.4-2.6x faster on the CPU (DESIGN.md, "Speed facts").
A ``.pt2`` carries the same metadata as a ``.pt`` (``*/extra/mlff_metadata.json``, so
:func:`mlff.contract.read_metadata` and the LAMMPS plugin read it the same way) plus
``compiled``: the devices it was compiled for, the CPU vector ISA, the torch version.

Calling convention of the compiled function (what the LAMMPS plugin calls too)::

    inputs : atomic_numbers [N] int64, edge_index_k [2, E_k] int64 (each list k),
             edge_vectors_k [E_k, 3] (model dtype), local [n_local, 0] (its first dimension
             is n_local), charge [] float64, fidelity [] int64
    outputs: energies [N], edge_gradient_k [E_k, 3] = d(sum of the local energies)/d r_ij,
             then the model's returned named outputs in metadata order

The gradient is computed inside the package (the contract's rule from the edge
gradients to forces and virials stays in the engines). It is traced with ``make_fx``
before ``torch.export``: torch 2.9's non-strict export of ``autograd.grad`` loses the
tensors that ops such as sqrt and sigmoid save for backward under dynamic shapes
(pytorch#185496, fixed after 2.9); ``make_fx`` traces them correctly.
Graphs with fewer than two atoms or edges are padded (a ghost node, edges beyond the
cutoff, which every contract model weights zero): the compiled shapes start at two.

Not supported (refused at export, naming why): geometry inputs (Ewald), whole-system
sums, version-1 modules.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
import zipfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch

from .atomic import atomic_write
from .contract import (
    METADATA_ENTRY,
    MLFFModelError,
    ModelMetadata,
    _probe_graph,
    derive_from_energies,
    export_model,
    make_system,
    metadata_for,
    read_metadata,
)

PT2_SUFFIX = ".pt2"
#: where the metadata lives inside the package (any ``*/extra/`` entry is found)
PT2_METADATA_PATH = "package/extra/" + METADATA_ENTRY
#: compiled shapes start here (torch specialises sizes 0 and 1)
MIN_SIZE = 2


def cpu_isa() -> str:
    """The vector instruction set inductor compiles CPU kernels for on this machine."""
    from torch._inductor import cpu_vec_isa

    return str(cpu_vec_isa.pick_vec_isa()) or "none"


#: inductor's ISA words and the /proc/cpuinfo flags each needs (x86-64 Linux)
_ISA_FLAGS = {
    "avx512": ("avx512f", "avx512dq", "avx512vl", "avx512bw"),
    "avx2": ("avx2", "fma"),
    "amx_tile": ("amx_tile",),
    "neon": ("asimd",),  # aarch64 Linux names its flags differently
    "sve256": ("sve",),
}


def _cpu_flags() -> Optional[set]:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return None


def isa_runs_here(isa: str) -> bool:
    """Whether this CPU can run kernels compiled for ``isa`` (inductor's words, e.g.
    ``"avx512 amx_tile"``). Reads the CPU flags (inductor's own probe compiles test
    programs, ~15 s per process); elsewhere it asks inductor."""
    flags = _cpu_flags()
    words = isa.split() or ["none"]
    if flags is not None and all(w == "none" or w in _ISA_FLAGS for w in words):
        return all(w == "none" or all(f in flags for f in _ISA_FLAGS[w]) for w in words)
    from torch._inductor import cpu_vec_isa

    return isa in ["none"] + [str(x) for x in cpu_vec_isa.valid_vec_isa_list()]


def _check_exportable(meta: ModelMetadata) -> None:
    if meta.needs_geometry:
        raise MLFFModelError(
            f"this {meta.kind} model needs positions and the cell (an Ewald sum); .pt2 export does not "
            "support geometry inputs yet: export a .pt, or use coulomb dsf"
        )
    if meta.global_sums:
        raise MLFFModelError(
            f"this {meta.kind} model has whole-system sums (global_sums); .pt2 export does not support "
            "them yet: export a .pt"
        )


def _flat_function(model: torch.nn.Module, meta: ModelMetadata):
    n_lists = len(meta.neighbor_lists)
    names = [o.name for o in meta.returned_outputs]

    def f(z, *rest):
        eis = list(rest[:n_lists])
        evs = [ev.detach().requires_grad_(True) for ev in rest[n_lists:2 * n_lists]]
        local_t, charge, fidelity = rest[2 * n_lists:]
        n_local = local_t.shape[0]
        out = model(z, eis, evs, n_local, {"charge": charge, "fidelity": fidelity})
        energies = out["energies"]
        local = torch.arange(energies.shape[0], device=energies.device) < n_local
        total = torch.where(local, energies, torch.zeros_like(energies)).sum()
        grads = torch.autograd.grad([total], evs, allow_unused=True)
        grads = [torch.zeros_like(ev) if g is None else g for g, ev in zip(grads, evs)]
        return (energies.detach(), *[g.detach() for g in grads], *[out[n].detach() for n in names])

    return f


def _example_inputs(meta: ModelMetadata, device: torch.device) -> Tuple[torch.Tensor, ...]:
    """A random cluster whose every list has many edges, with ghosts (n_local < N) and
    distinct sizes, so that tracing relates no dimension to another."""
    gen = torch.Generator().manual_seed(2024)
    n = 23
    side = 0.9 * max(meta.list_cutoffs)
    pos = torch.rand((n, 3), generator=gen, dtype=torch.float64) * side
    z = torch.tensor([meta.elements[k % len(meta.elements)] for k in range(n)], dtype=torch.long)
    ii, jj = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    mask = ii != jj
    ii, jj = ii[mask], jj[mask]
    vec = pos[jj] - pos[ii]
    r = torch.linalg.norm(vec, dim=1)
    eis, evs = [], []
    for k, c in enumerate(meta.list_cutoffs):
        keep = torch.nonzero(r < c).flatten()
        keep = keep[: max(MIN_SIZE + 1, keep.numel() - 7 * k)]  # distinct edge counts per list
        eis.append(torch.stack([ii[keep], jj[keep]]).to(device))
        evs.append(vec[keep].to(meta.torch_dtype).to(device))
    n_local = n - 3
    return (z.to(device), *eis, *evs, torch.empty((n_local, 0), dtype=torch.float32, device=device),
            torch.tensor(0.0, dtype=torch.float64, device=device), torch.tensor(0, dtype=torch.long, device=device))


class _Traced(torch.nn.Module):
    def __init__(self, gm: torch.nn.Module):
        super().__init__()
        self.gm = gm

    def forward(self, *args):
        return self.gm(*args)


def _compile_for(model: torch.nn.Module, meta: ModelMetadata, device: torch.device, workdir: Path) -> List[str]:
    from torch.fx.experimental.proxy_tensor import make_fx

    n_lists = len(meta.neighbor_lists)
    model = model.to(device).eval()
    example = _example_inputs(meta, device)
    from .elements import export_tracing

    with torch.enable_grad(), export_tracing():
        gm = make_fx(_flat_function(model, meta), tracing_mode="symbolic", _allow_non_fake_inputs=True)(*example)
    dims: List[Any] = [{0: torch.export.Dim("atoms", min=MIN_SIZE)}]
    dims += [{1: torch.export.Dim(f"edges_{k}", min=MIN_SIZE)} for k in range(n_lists)]
    dims += [{0: torch.export.Dim(f"edges_{k}", min=MIN_SIZE)} for k in range(n_lists)]
    dims += [{0: torch.export.Dim("local", min=0)}, None, None]
    ep = torch.export.export(_Traced(gm), example, dynamic_shapes=(tuple(dims),), strict=False)
    options = {"aot_inductor.package": True, "aot_inductor.output_path": str(workdir / device.type)}
    return torch._inductor.aot_compile(ep.module(), example, options=options)


def default_devices() -> List[str]:
    """CPU always; CUDA as well where a GPU is present."""
    return ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]


def export_compiled(
    model: torch.nn.Module,
    path: str | os.PathLike,
    provenance: Optional[Dict[str, Any]] = None,
    devices: Optional[Sequence[str]] = None,
    fallback: bool = True,
) -> ModelMetadata:
    """Compile ``model`` with AOTInductor into the ``.pt2`` package ``path``.

    ``devices``: default :func:`default_devices`. With ``fallback`` the TorchScript
    ``.pt`` of the same model is written beside it (same stem): engines load it when the
    package cannot run on their machine (another device, torch or CPU). The package
    is checked against the eager model on the probe system before it is written.
    """
    from torch._inductor.package import package_aoti

    path = Path(path)
    if path.suffix != PT2_SUFFIX:
        raise ValueError(f"AOTInductor packages use the .pt2 extension, got {path.name!r}")
    devices = list(devices or default_devices())
    for d in devices:
        if d not in ("cpu", "cuda"):
            raise ValueError(f"devices must be cpu and/or cuda, got {d!r}")
        if d == "cuda" and not torch.cuda.is_available():
            raise MLFFModelError("compiling for CUDA needs a GPU on this machine (torch sees none)")
    # the package exposes no layers (LAMMPS runs it with the deep ghost shell): version 2
    meta = metadata_for(model, provenance, layer_exchange=False)
    _check_exportable(meta)
    was_training = model.training
    model.eval()
    if fallback:
        probe = export_model(model, path.with_suffix(".pt"), provenance).probe_energy
    else:
        from .contract import _probe

        probe = float(_probe(model, meta)["energy"].detach())
    meta = meta.model_copy(update={"probe_energy": probe})
    meta = meta.model_copy(update={"compiled": {
        "format": "aotinductor",
        "devices": devices,
        "cpu_isa": cpu_isa(),
        "torch_version": torch.__version__.split("+")[0],
        "fallback": path.with_suffix(".pt").name if fallback else None,
    }})
    work = Path(tempfile.mkdtemp(prefix="mlff-pt2-"))
    try:
        files = {}
        for d in devices:
            try:
                files[d] = _compile_for(model, meta, torch.device(d), work)
            except Exception as exc:  # tracing and inductor raise many types
                raise MLFFModelError(
                    f"{type(model).__name__} could not be compiled for {d} with AOTInductor "
                    f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
                ) from exc
        package = work / "package.pt2"
        package_aoti(str(package), files)
        with zipfile.ZipFile(package, "a") as zf:
            zf.writestr(PT2_METADATA_PATH, meta.to_json())
        check = CompiledModel(package, read_metadata(package), "cpu" if "cpu" in devices else devices[0])
        _check_probe(check, meta, str(path))
        atomic_write(path, lambda tmp: shutil.copyfile(package, tmp))
    finally:
        shutil.rmtree(work, ignore_errors=True)
        model.train(was_training)
    return meta


def _check_probe(module: "CompiledModel", meta: ModelMetadata, where: str) -> None:
    if meta.probe_energy is None:
        return
    z, eis, evs = _probe_graph(meta)
    evs = [ev.detach().to(module.device).requires_grad_(True) for ev in evs]
    out = module(z.to(module.device), [e.to(module.device) for e in eis], evs, z.shape[0], make_system())
    got = float(out["energies"].detach().sum())
    rel = 1e-4 if meta.dtype == "float32" else 1e-9
    if not abs(got - meta.probe_energy) <= rel * max(1.0, abs(meta.probe_energy)):
        raise MLFFModelError(
            f"{where}: the compiled model gives {got!r} eV on the probe system, its metadata records "
            f"{meta.probe_energy!r} eV; the package is inconsistent. Re-export it with `mlff export`"
        )


class _CompiledCall(torch.autograd.Function):
    """Energies from the package; backward hands out its edge gradients.

    The package knows d(sum of the local energies)/d r_ij only, which is all any engine
    differentiates (the contract's rule): backward accepts exactly that weighting
    (a constant on the local atoms, zero on ghosts) and refuses anything else.
    """

    @staticmethod
    def forward(ctx, runner, n_lists, n_local, extra, *tensors):
        outputs = runner(list(tensors[: 2 * n_lists + 1]) + list(extra))
        energies = outputs[0]
        ctx.grads = outputs[1: 1 + n_lists]
        ctx.n_local = n_local
        ctx.n_lists = n_lists
        named = tuple(outputs[1 + n_lists:])
        ctx.mark_non_differentiable(*named)
        return (energies, *named)

    @staticmethod
    def backward(ctx, grad_energies, *unused):
        n_local = ctx.n_local
        g = grad_energies
        scale = g[0] if n_local > 0 else g.new_zeros(())
        expected = torch.zeros_like(g)
        expected[:n_local] = scale
        if not torch.equal(g, expected):
            raise RuntimeError(
                "a compiled .pt2 model gives the gradient of the total energy of the local atoms only "
                "(the contract's forces and virials); per-atom energy gradients need the .pt model"
            )
        edge = [scale * gr for gr in ctx.grads]
        return (None, None, None, None, None, *([None] * ctx.n_lists), *edge)


class CompiledModel(torch.nn.Module):
    """A ``.pt2`` package with the contract-v2 signature (engines call it like a ``.pt``).

    Inference only: forces, virials and named outputs; no training, no double backward.
    """

    def __init__(self, path: str | os.PathLike, metadata: ModelMetadata, device: str | torch.device = "cpu"):
        super().__init__()
        self.path = Path(path)
        self.metadata = metadata
        self.device = torch.device(device)
        check_runnable(self.path, metadata, self.device)
        try:
            from torch._inductor.package import load_package

            index = self.device.index if self.device.index is not None else -1
            self._runner = load_package(str(self.path), model_name=self.device.type, device_index=index)
        except Exception as exc:
            raise MLFFModelError(f"{self.path} could not be loaded by AOTInductor ({exc})") from exc
        self._n_lists = len(metadata.neighbor_lists)
        self._names = [o.name for o in metadata.returned_outputs]
        self.register_buffer("dtype_probe", torch.zeros(0, dtype=metadata.torch_dtype, device=self.device))

    def forward(
        self,
        atomic_numbers: torch.Tensor,
        edge_indices: List[torch.Tensor],
        edge_vectors: List[torch.Tensor],
        n_local: int,
        system: Dict[str, torch.Tensor],
    ) -> Dict[str, torch.Tensor]:
        n = int(atomic_numbers.shape[0])
        z = atomic_numbers
        eis, evs = list(edge_indices), list(edge_vectors)
        pad_atoms = max(0, MIN_SIZE - n)
        if pad_atoms:  # ghost nodes: no energy, no edges
            z = torch.cat([z, z.new_full((pad_atoms,), self.metadata.elements[0])])
        pads = []
        for k in range(self._n_lists):
            missing = max(0, MIN_SIZE - int(evs[k].shape[0]))
            pads.append(missing)
            if missing:  # edges far beyond the cutoff: weight zero in every contract model
                cutoff = self.metadata.list_cutoffs[k]
                far = evs[k].new_zeros((missing, 3))
                far[:, 0] = 3.0 * cutoff
                eis[k] = torch.cat([eis[k], eis[k].new_zeros((2, missing))], dim=1)
                evs[k] = torch.cat([evs[k], far])
        charge = system["charge"].to(torch.float64).reshape(())
        fidelity = system["fidelity"].to(torch.long).reshape(())
        local = torch.empty((n_local, 0), dtype=torch.float32, device=z.device)
        outs = _CompiledCall.apply(self._runner, self._n_lists, n_local, (local, charge, fidelity), z, *eis, *evs)
        energies = outs[0][:n]
        result = {"energies": energies}
        for name, spec, value in zip(self._names, self.metadata.returned_outputs, outs[1:]):
            result[name] = value[:n] if spec.per_atom else value
        return result


def check_runnable(path: Path, meta: ModelMetadata, device: torch.device) -> None:
    """Refuse, before anything is loaded, a package this process cannot run: compiled for
    another device, with another torch, or for CPU instructions this machine lacks (its
    kernels would die of SIGILL)."""
    info = meta.compiled or {}
    devices = info.get("devices", [])
    fallback = info.get("fallback")
    hint = (f"; use {fallback} (the TorchScript model written beside it)" if fallback else
            "; re-export the model on this machine with `mlff export ... -o model.pt2`")
    if device.type not in devices:
        raise MLFFModelError(f"{path} was compiled for {', '.join(devices) or 'no device'}, not {device.type}{hint}")
    here = torch.__version__.split("+")[0]
    if info.get("torch_version") != here:
        raise MLFFModelError(
            f"{path} was compiled with torch {info.get('torch_version')}, and this is torch {here}: "
            f"AOTInductor packages run only with the torch that compiled them{hint}"
        )
    isa = info.get("cpu_isa", "none")
    if device.type == "cpu" and not isa_runs_here(isa):
        raise MLFFModelError(f"{path} was compiled for CPUs with {isa}, which this CPU does not have{hint}")


def is_compiled_path(path: str | os.PathLike) -> bool:
    return Path(path).suffix == PT2_SUFFIX


def load_compiled(path: str | os.PathLike, device: str | torch.device = "cpu",
                  fallback: bool = True) -> Tuple[torch.nn.Module, ModelMetadata]:
    """The package's model for ``device``; where it cannot run here and a fallback ``.pt``
    ships beside it, that model, with a warning saying why."""
    from .contract import load_model

    path = Path(path)
    meta = read_metadata(path)
    if meta.compiled is None:
        raise MLFFModelError(f"{path} has mlff metadata but no compiled model; export it with `mlff export -o x.pt2`")
    try:
        module = CompiledModel(path, meta, device)
        _check_probe(module, meta, str(path))
        return module, meta
    except MLFFModelError as exc:
        name = (meta.compiled or {}).get("fallback")
        beside = path.with_name(name) if name else None
        if not fallback or beside is None or not beside.exists():
            raise
        warnings.warn(f"{exc}; running {beside} instead (TorchScript, slower)", RuntimeWarning, stacklevel=3)
        loaded = load_model(beside, device)
        return loaded.module, loaded.metadata


__all__ = [
    "CompiledModel",
    "PT2_SUFFIX",
    "check_runnable",
    "cpu_isa",
    "default_devices",
    "export_compiled",
    "is_compiled_path",
    "isa_runs_here",
    "load_compiled",
]
