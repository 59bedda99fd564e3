"""The interface every trainable mlff model implements.

The trainer, checkpoints and export know a model only through this interface, so a new
model kind needs no change to them: implement the methods below, give the class a
``kind`` and an ``Options`` model, and add it to :data:`mlff.models.MODEL_REGISTRY`.

What a model provides:

- ``kind`` (class attribute, ``str``): the registry key, also written into checkpoints
  and exported metadata;
- ``Options`` (class attribute): a :class:`ModelOptions` subclass validating the
  kind-specific keys of the training config's ``model:`` block (unknown keys refused);
- ``config`` (instance attribute, ``Dict[str, Any]``): the constructor arguments,
  ``elements`` included, that rebuild the model: ``type(model)(**model.config)``;
- ``min_distance`` (instance attribute, ``Optional[float]``): the shortest interatomic
  distance of the training data in Å, set by the trainer and reported in the metadata
  (engines can warn when a simulation goes below it);
- :meth:`from_config`, :meth:`initialize_from_data`, :meth:`shift_energies`,
  :meth:`no_decay_parameters`, :meth:`param_groups`, :meth:`neighbor_lists`,
  :meth:`parameter_roles` (optional: the backbone/readout split fine-tuning uses),
  :meth:`contract_info` and the contract-v2 ``forward``
  (see :mod:`mlff.contract`).

Implementations must mark ``neighbor_lists`` and ``contract_info`` ``@torch.jit.unused``:
they are plain Python, read at export, never inside the scripted ``forward``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Sequence, Set, Tuple

from pydantic import BaseModel, ConfigDict, ValidationError

if TYPE_CHECKING:  # pragma: no cover
    from ..data.records import Record

#: the methods a model class must define itself (the mixin has no implementation of them)
ABSTRACT_METHODS = (
    "initialize_from_data",
    "shift_energies",
    "no_decay_parameters",
    "neighbor_lists",
    "contract_info",
    "forward",
)


class ModelOptions(BaseModel):
    """Base of a model kind's options: the ``model:`` block without ``kind`` and ``elements``."""

    model_config = ConfigDict(extra="forbid")


def format_options_error(kind: str, exc: ValidationError, where: str = "model") -> str:
    """One line per problem, each naming the offending key as ``model.<key>``."""
    lines = []
    for err in exc.errors():
        key = ".".join(str(part) for part in err["loc"]) or "(options)"
        if err["type"] == "extra_forbidden":
            lines.append(f"{where}.{key}: unknown option for a {kind} model")
        else:
            lines.append(f"{where}.{key}: {err['msg']} (got {err.get('input')!r})")
    return "\n".join(lines)


class MLFFModel:
    """Mixin with the shared part of the model interface (see the module docstring).

    Put it before ``nn.Module`` in the bases: ``class MyModel(MLFFModel, nn.Module)``.
    Attributes are documented, not annotated, here: TorchScript reads class annotations
    as attribute types when it scripts the module.
    """

    #: shortest interatomic distance of the training data (Å); the trainer sets it
    min_distance = None

    # ------------------------------------------------------------------ building
    @classmethod
    def validate_options(cls, options: Mapping[str, Any]) -> Dict[str, Any]:
        """The kind's options with defaults filled in; a ``ValueError`` names bad keys."""
        try:
            return cls.Options(**options).model_dump()  # type: ignore[attr-defined]
        except ValidationError as exc:
            raise ValueError(format_options_error(cls.kind, exc)) from None  # type: ignore[attr-defined]

    @classmethod
    def from_config(cls, elements: Sequence[int], **options: Any) -> "MLFFModel":
        """Build from the training config's ``model:`` block (``elements`` resolved to Z)."""
        return cls(elements, **cls.validate_options(options))  # type: ignore[call-arg]

    # ------------------------------------------------------------------ training
    def initialize_from_data(self, records: Sequence["Record"]) -> None:
        """Set data-dependent constants (reference energies, output scale) from the labels.

        Called once on the freshly built model, before it is cast to the training dtype
        and moved to the device, with the training records (already minus any physics
        terms, i.e. the residual the model learns).
        """
        raise NotImplementedError(f"{type(self).__name__} does not implement initialize_from_data")

    def shift_energies(self, per_atom: float) -> None:
        """Add ``per_atom`` eV to the energy of every atom, whatever its element.

        The trainer calls it after :meth:`initialize_from_data` with the mean per-atom
        energy error of the untrained model (in the training dtype, on the first
        training batches), so that early energy errors are those of the data's spread
        and not of the random readout's offset.
        """
        raise NotImplementedError(f"{type(self).__name__} does not implement shift_energies")

    def no_decay_parameters(self) -> Set[str]:
        """Names (as in ``named_parameters()``) of parameters exempt from weight decay."""
        raise NotImplementedError(f"{type(self).__name__} does not implement no_decay_parameters")

    def param_groups(self, weight_decay: float) -> List[Dict[str, Any]]:
        """Optimizer groups: ``[decayed, not decayed]``, parameters in ``named_parameters`` order."""
        exempt = self.no_decay_parameters()
        decay, no_decay = [], []
        for name, p in self.named_parameters():  # type: ignore[attr-defined]
            if not p.requires_grad:
                continue
            (no_decay if name in exempt else decay).append(p)
        return [
            {"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]

    # ------------------------------------------------------------------ fine-tuning
    @classmethod
    def parameter_roles(cls) -> Dict[str, List[str]]:
        """Regexes (``re.search`` on ``named_parameters()`` names) of the kind's parameter roles.

        ``{"backbone": [...], "readout": [...]}``: the backbone builds the atomic
        representation (embeddings, message passing), the readout maps it to energies
        (output heads, per-element reference energies). ``optim.freeze: ["@backbone"]``,
        ``optim.param_groups: [{pattern: "@readout", ...}]`` and ``optim.backbone_lr_scale``
        use them, so a fine-tuning recipe does not depend on a kind's parameter names.
        A kind without the split returns ``{}`` (the aliases are then refused).
        """
        return {}

    # ------------------------------------------------------------------ contract
    def neighbor_lists(self) -> List[Tuple[Any, ...]]:
        """Every neighbour list ``forward`` reads, in that order, as ``(name, cutoff[, reach])``
        (see :class:`mlff.contract.NeighborListSpec`)."""
        raise NotImplementedError(f"{type(self).__name__} does not implement neighbor_lists")

    def contract_info(self) -> Dict[str, Any]:
        """What :func:`mlff.contract.metadata_for` needs (kind, elements, lists, range,
        ``min_distance``, hyperparameters, ...)."""
        raise NotImplementedError(f"{type(self).__name__} does not implement contract_info")


# ---------------------------------------------------------------------------- shared parts
# Conventions the built-in kinds share: per-element reference energies in a parameter
# ``atomic_energies`` (one table, or one per fidelity) and embeddings named ``embedding*``.


def conventional_no_decay(model: "torch.nn.Module") -> Set[str]:
    """Embeddings, per-element energies and biases: decay would pull the eV-scale
    reference energies and the element identities towards zero."""
    return {
        name for name, _ in model.named_parameters()
        if name.startswith("embedding") or name == "atomic_energies" or name.endswith(".bias")
    }


def add_to_atomic_energies(model: "torch.nn.Module", per_atom: float) -> None:
    """``shift_energies`` of a model whose reference energies live in ``atomic_energies``."""
    import torch

    with torch.no_grad():
        model.atomic_energies.add_(per_atom)


def force_rms(records: Sequence["Record"]) -> Optional[float]:
    """RMS force component of the records that have forces (None if none has)."""
    import numpy as np

    forces = [r.forces.ravel() for r in records if r.forces is not None]
    return float(np.sqrt(np.mean(np.concatenate(forces) ** 2))) if forces else None


def check_model_class(cls: type) -> type:
    """Refuse a model class that lacks part of the interface (at registration, not mid-training)."""
    from torch import nn

    inherited = {name: getattr(MLFFModel, name, None) for name in ABSTRACT_METHODS}
    inherited["forward"] = nn.Module.forward  # nn.Module's placeholder that raises
    missing = [
        name for name in ABSTRACT_METHODS
        if not callable(getattr(cls, name, None)) or getattr(cls, name) is inherited[name]
    ]
    if not issubclass(cls, MLFFModel):
        missing.append("the MLFFModel mixin (from_config, param_groups)")
    for attr in ("kind", "Options"):
        if getattr(cls, attr, None) is None:
            missing.append(attr)
    options = getattr(cls, "Options", None)
    if options is not None and not (isinstance(options, type) and issubclass(options, ModelOptions)):
        missing.append("Options (a ModelOptions subclass)")
    if missing:
        raise TypeError(f"{cls.__name__} does not implement the mlff model interface: missing {missing}")
    return cls


__all__ = [
    "MLFFModel",
    "ModelOptions",
    "check_model_class",
    "format_options_error",
    "ABSTRACT_METHODS",
]
