"""Model zoo. Every model implements the contract (see :mod:`mlff.contract`) and the
training interface of :mod:`mlff.models.base`; ``kind`` selects the class."""

from __future__ import annotations

from typing import Any, Dict, Sequence, Type

import torch

from .base import MLFFModel, ModelOptions, check_model_class
from .aimnet2 import AIMNet2
from .painn import PaiNN

MODEL_REGISTRY: Dict[str, Type[MLFFModel]] = {cls.kind: check_model_class(cls) for cls in (PaiNN, AIMNet2)}
#: the kind a training config without ``model.kind`` trains
DEFAULT_MODEL_KIND = "painn"


def model_class(kind: str) -> Type[MLFFModel]:
    """The registered class of ``kind``; an unknown kind is refused with the known ones."""
    try:
        return MODEL_REGISTRY[kind]
    except KeyError:
        raise ValueError(f"unknown model kind {kind!r}; known kinds: {sorted(MODEL_REGISTRY)}") from None


def build_model(kind: str, **config: Any) -> torch.nn.Module:
    """Instantiate a registered model from its stored configuration (``model.config``)."""
    return model_class(kind)(**config)


def model_from_options(kind: str, elements: Sequence[int], options: Dict[str, Any]) -> torch.nn.Module:
    """Build from a training config's ``model:`` block (``elements`` as atomic numbers)."""
    return model_class(kind).from_config(list(elements), **options)


__all__ = [
    "PaiNN",
    "AIMNet2",
    "MLFFModel",
    "ModelOptions",
    "MODEL_REGISTRY",
    "DEFAULT_MODEL_KIND",
    "model_class",
    "build_model",
    "model_from_options",
]
