"""One entry point for every engine: turn a path or module into (module, metadata)."""

from __future__ import annotations

import copy
import os
import zipfile
from pathlib import Path
from typing import Optional, Tuple, Union

import torch

from .ace.formats import is_ace_path
from .ace.potential import native_module
from .checkpoint import load_checkpoint
from .contract import METADATA_ENTRY, MLFFModelError, ModelMetadata, _check_exists, load_model, metadata_for

ModelSpec = Union[str, os.PathLike, torch.nn.Module]


def _is_torchscript_export(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as zf:
            return any(n.endswith("/extra/" + METADATA_ENTRY) or n.endswith("/constants.pkl") for n in zf.namelist())
    except zipfile.BadZipFile:
        return False


def resolve_model(
    model: ModelSpec,
    device: str | torch.device = "cpu",
    scriptable: bool = False,
    activeset: Optional[str | os.PathLike] = None,
) -> Tuple[torch.nn.Module, ModelMetadata]:
    """Accept an exported ``.pt``, a training checkpoint, an ACE file or an in-memory model.

    ACE files (``.yace``, ``.ace``) run on the native ACE core on the CPU, and as the
    TorchScript ACE module on CUDA or where ``scriptable`` TorchScript is required (OpenMM's
    TorchForce). ``activeset`` (a .asi file, with a B-basis .yaml potential) adds the
    per-atom ``extrapolation_grade`` output on the native core.

    An in-memory module is deep-copied: engines put their module in eval mode, cast it
    and freeze its parameters, which must not stop the caller's model from training.
    A missing file raises :class:`MLFFModelNotFoundError` (an ``MLFFModelError`` and a
    ``FileNotFoundError``) whatever the engine.
    """
    if isinstance(model, torch.nn.Module):
        meta = metadata_for(model)
        return copy.deepcopy(model).to(device), meta
    path = Path(model)
    _check_exists(path)
    if activeset is not None and not is_ace_path(path):
        raise MLFFModelError(f"activeset={activeset!r} is for ACE potentials (.yaml), and {path} is not one")
    if is_ace_path(path):
        if activeset is not None:
            if scriptable or torch.device(device).type != "cpu":
                raise MLFFModelError(
                    "the ACE extrapolation grade (activeset) is computed by the native ACE core on the "
                    "CPU; this engine needs TorchScript or CUDA"
                )
            return native_module(path, activeset)
        if scriptable or torch.device(device).type != "cpu":
            from .ace.torch_module import ace_module_from_file

            module, meta = ace_module_from_file(path)
            return module.to(device), meta
        return native_module(path)
    if path.suffix == ".pt2":
        from .compiled import load_compiled

        module, meta = load_compiled(path, device)
        if scriptable and not isinstance(module, torch.jit.ScriptModule):
            raise MLFFModelError(
                f"{path} is an AOTInductor package, which cannot run inside TorchScript (OpenMM's "
                "TorchForce); use the PythonForce backend (MLFFForce(..., backend='python')) or the .pt"
            )
        return module, meta
    if _is_torchscript_export(path):
        loaded = load_model(path, device)
        return loaded.module, loaded.metadata
    try:
        module = load_checkpoint(path)
    except RuntimeError as exc:
        raise MLFFModelError(
            f"{path} is neither an exported mlff model nor an mlff checkpoint: {exc}"
        ) from exc
    return module.to(device), metadata_for(module, getattr(module, "provenance", None))
