"""Training checkpoints: model configuration + weights (+ trainer state), written atomically.

A checkpoint holds the trained network (``kind`` + ``config`` rebuild it, ``state_dict``
fills it), the shortest interatomic distance of its training data, and the specs of
the physics terms it was trained with (the network learned the labels minus those
terms; see :mod:`mlff.training.residual`). :func:`load_checkpoint` returns what engines
must evaluate: the network plus its terms.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import torch

from .atomic import atomic_write
from .models import build_model

CHECKPOINT_FORMAT = "mlff-checkpoint-1"  # "terms" and "min_distance" are optional: older files have neither


def save_checkpoint(
    path: str | os.PathLike,
    model: torch.nn.Module,
    trainer_state: Optional[Dict[str, Any]] = None,
    provenance: Optional[Dict[str, Any]] = None,
    terms: Sequence[torch.nn.Module] = (),
) -> Path:
    """Write a checkpoint that :func:`load_checkpoint` can rebuild the model (and its terms) from."""
    from .physics.terms import term_spec

    if not hasattr(model, "config") or not hasattr(model, "kind"):
        raise TypeError("only mlff models (with .kind and .config) can be checkpointed")
    payload = {
        "format": CHECKPOINT_FORMAT,
        "kind": model.kind,
        "config": dict(model.config),
        "dtype": str(next(model.parameters()).dtype).replace("torch.", ""),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "min_distance": getattr(model, "min_distance", None),
        "terms": [term_spec(t) for t in terms],
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


Checkpoint = Union[str, os.PathLike, Mapping[str, Any]]


def _payload(checkpoint: Checkpoint) -> Mapping[str, Any]:
    return checkpoint if isinstance(checkpoint, Mapping) else read_checkpoint(checkpoint)


def load_network(checkpoint: Checkpoint) -> torch.nn.Module:
    """The trained network alone (eval mode, the stored dtype), without its physics terms."""
    payload = _payload(checkpoint)
    model = build_model(payload["kind"], **payload["config"])
    model = model.to(getattr(torch, payload["dtype"]))
    model.load_state_dict(payload["state_dict"])
    model.min_distance = payload.get("min_distance")
    model.provenance = payload.get("provenance", {})
    return model.eval()


def load_terms(checkpoint: Checkpoint) -> List[torch.nn.Module]:
    """The physics terms the network was trained with (empty for a plain network)."""
    from .physics.terms import build_term

    payload = _payload(checkpoint)
    elements = payload["config"]["elements"]
    fidelities = payload["config"].get("fidelities") or None  # terms may belong to some fidelities only
    return [
        build_term(spec, elements, where=f"checkpoint term {k}", fidelities=fidelities)
        for k, spec in enumerate(payload.get("terms", []))
    ]


def with_terms(network: torch.nn.Module, terms: Sequence[torch.nn.Module]) -> torch.nn.Module:
    """``network`` alone, or network + terms as one contract model (export adds the terms back)."""
    if not terms:
        return network
    from .models.composite import compose

    model = compose(network, list(terms))
    model.provenance = getattr(network, "provenance", {})
    return model.eval()


def load_checkpoint(path: str | os.PathLike) -> torch.nn.Module:
    """What engines evaluate: the network, plus its physics terms when it was trained with some."""
    payload = read_checkpoint(path)
    return with_terms(load_network(payload), load_terms(payload))
