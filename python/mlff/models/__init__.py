"""Model zoo. Every model implements the contract (see :mod:`mlff.contract`)."""

from __future__ import annotations

from typing import Any, Dict, Type

import torch

from .painn import PaiNN

MODEL_REGISTRY: Dict[str, Type[torch.nn.Module]] = {"painn": PaiNN}


def build_model(kind: str, **config: Any) -> torch.nn.Module:
    """Instantiate a registered model from its stored configuration."""
    try:
        cls = MODEL_REGISTRY[kind]
    except KeyError:
        raise ValueError(f"unknown model kind {kind!r}; known kinds: {sorted(MODEL_REGISTRY)}") from None
    return cls(**config)


__all__ = ["PaiNN", "MODEL_REGISTRY", "build_model"]
