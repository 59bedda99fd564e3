"""Training checkpoints: model configuration + weights (+ trainer state), written atomically."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, Optional

import torch

from .atomic import atomic_write
from .models import build_model

CHECKPOINT_FORMAT = "mlff-checkpoint-1"


def save_checkpoint(
    path: str | os.PathLike,
    model: torch.nn.Module,
    trainer_state: Optional[Dict[str, Any]] = None,
    provenance: Optional[Dict[str, Any]] = None,
) -> Path:
    """Write a checkpoint that :func:`load_checkpoint` can rebuild the model from."""
    if not hasattr(model, "config") or not hasattr(model, "kind"):
        raise TypeError("only mlff models (with .kind and .config) can be checkpointed")
    payload = {
        "format": CHECKPOINT_FORMAT,
        "kind": model.kind,
        "config": dict(model.config),
        "dtype": str(next(model.parameters()).dtype).replace("torch.", ""),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "trainer_state": trainer_state or {},
        "provenance": provenance or {},
    }
    return atomic_write(path, lambda tmp: torch.save(payload, tmp))


def read_checkpoint(path: str | os.PathLike) -> Dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise RuntimeError(f"{path} is not a readable checkpoint (truncated or corrupt?): {exc}") from exc
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise RuntimeError(f"{path} is not an mlff checkpoint (expected format {CHECKPOINT_FORMAT})")
    return payload


def load_checkpoint(path: str | os.PathLike) -> torch.nn.Module:
    """Rebuild the model stored in a checkpoint (eval mode, the stored dtype)."""
    payload = read_checkpoint(path)
    model = build_model(payload["kind"], **payload["config"])
    model = model.to(getattr(torch, payload["dtype"]))
    model.load_state_dict(payload["state_dict"])
    model.provenance = payload.get("provenance", {})
    return model.eval()
