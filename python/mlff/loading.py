"""One entry point for every engine: turn a path or module into (module, metadata)."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Tuple, Union

import torch

from .checkpoint import load_checkpoint
from .contract import METADATA_ENTRY, MLFFModelError, ModelMetadata, load_model, metadata_for

ModelSpec = Union[str, os.PathLike, torch.nn.Module]


def _is_torchscript_export(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as zf:
            return any(n.endswith("/extra/" + METADATA_ENTRY) or n.endswith("/constants.pkl") for n in zf.namelist())
    except zipfile.BadZipFile:
        return False


def resolve_model(model: ModelSpec, device: str | torch.device = "cpu") -> Tuple[torch.nn.Module, ModelMetadata]:
    """Accept an exported ``.pt``, a training checkpoint, or an in-memory mlff model."""
    if isinstance(model, torch.nn.Module):
        return model.to(device), metadata_for(model)
    path = Path(model)
    if not path.exists():
        raise FileNotFoundError(f"model file {str(path)!r} does not exist")
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
