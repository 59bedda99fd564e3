"""One entry point for every engine: turn a path or module into (module, metadata)."""

from __future__ import annotations

import copy
import os
import zipfile
from pathlib import Path
from typing import Tuple, Union

import torch

from .checkpoint import load_checkpoint
from .contract import METADATA_ENTRY, MLFFModelError, ModelMetadata, _check_exists, load_model, metadata_for

ModelSpec = Union[str, os.PathLike, torch.nn.Module]


def _is_torchscript_export(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as zf:
            return any(n.endswith("/extra/" + METADATA_ENTRY) or n.endswith("/constants.pkl") for n in zf.namelist())
    except zipfile.BadZipFile:
        return False


def resolve_model(model: ModelSpec, device: str | torch.device = "cpu") -> Tuple[torch.nn.Module, ModelMetadata]:
    """Accept an exported ``.pt``, a training checkpoint, or an in-memory mlff model.

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
    if path.suffix == ".yace":
        raise MLFFModelError(f"{path}: .yace (ACE) files are not supported by this mlff build yet")
    if path.suffix == ".pt2":
        raise MLFFModelError(f"{path}: .pt2 (AOTInductor) files are not supported by this mlff build yet")
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
