"""Starting a run from a trained checkpoint's weights (``model.init_from``).

Every tensor of the new model (parameters and buffers) whose name and shape match one of
the checkpoint's is copied; the rest keep their fresh initialisation (data-fitted
reference energies, random weights) and are reported, so a changed architecture never
fails with a size-mismatch dump nor loads silently less than expected.

A trained multi-fidelity AIMNet2 model can be given more fidelities: its per-fidelity
tables (embedding rows, energy heads, element shifts) are matched by fidelity name, and
a fidelity the checkpoint does not have starts as a copy of the checkpoint's fidelity 0
(the usual choice in transfer learning; mlff has not measured it against a random start; the
levels' absolute energies belong in the ``sae:`` baseline, not in the heads).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Tuple

import torch

from ..checkpoint import read_checkpoint

#: model kinds with per-fidelity tables: the embedding rows are ``fidelity * n_elements + element``,
#: ``heads.<fidelity>.*`` the energy heads, ``atomic_energies[fidelity]`` the shifts
FIDELITY_TABLE_KINDS = ("aimnet2",)


@dataclass
class TransferReport:
    """What ``init_from`` loaded and what it did not."""

    source: str
    loaded: List[str] = field(default_factory=list)
    #: tensor of the model -> why it kept its fresh value
    not_loaded: Dict[str, str] = field(default_factory=dict)
    #: tensors of the checkpoint the model has no place for
    unused: List[str] = field(default_factory=list)
    #: new fidelity -> the checkpoint fidelity its tables were copied from
    new_fidelities: Dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        lines = [f"init_from {self.source}: loaded {len(self.loaded)} tensors"]
        for name, why in self.not_loaded.items():
            lines.append(f"  not loaded: {name} ({why})")
        if self.unused:
            lines.append(f"  unused from the checkpoint: {', '.join(self.unused)}")
        for new, old in self.new_fidelities.items():
            lines.append(f"  new fidelity {new!r}: embedding rows, head and shifts copied from {old!r}")
        return "\n".join(lines)

    def as_dict(self) -> Dict[str, Any]:
        return {"source": self.source, "loaded": len(self.loaded), "not_loaded": dict(self.not_loaded),
                "unused": list(self.unused), "new_fidelities": dict(self.new_fidelities)}


def _tables(config: Mapping[str, Any]) -> List[Optional[str]]:
    """The fidelity name of each table of a fidelity-table model (None: one unnamed table)."""
    names = list(config.get("fidelities") or [])
    if config.get("use_fidelity_readouts"):
        return names
    return [names[0] if names else None]


def remap_fidelity_tables(
    state: Mapping[str, torch.Tensor], old_config: Mapping[str, Any], new_config: Mapping[str, Any]
) -> Tuple[Dict[str, torch.Tensor], Dict[str, str]]:
    """``state`` with its per-fidelity tables arranged for ``new_config``'s fidelities.

    Table ``k`` of the new model takes the checkpoint's table of the same fidelity name,
    else its table 0. Returns the state and {new fidelity: source fidelity} for the
    copied ones.
    """
    old, new = _tables(old_config), _tables(new_config)
    sources = [old.index(name) if name in old and name is not None else 0 for name in new]
    copied = {str(name): str(old[0] if old[0] is not None else "the only table")
              for name, src in zip(new, sources) if name is not None and name not in old}
    if sources == list(range(len(old))):
        return dict(state), {}
    out = {k: v for k, v in state.items() if not k.startswith("heads.")}
    index = torch.tensor(sources, dtype=torch.long)
    same_elements = list(old_config.get("elements", [])) == list(new_config.get("elements", []))
    if same_elements and "embedding.weight" in state:
        emb = state["embedding.weight"]
        n_elements = emb.shape[0] // len(old)
        out["embedding.weight"] = emb.view(len(old), n_elements, -1)[index].reshape(len(new) * n_elements, -1)
    if same_elements and "atomic_energies" in state:
        out["atomic_energies"] = state["atomic_energies"][index]
    for k, src in enumerate(sources):
        prefix = f"heads.{src}."
        for key, value in state.items():
            if key.startswith(prefix):
                out[f"heads.{k}." + key[len(prefix):]] = value
    return out, copied


def load_matching_weights(model: torch.nn.Module, path: str) -> TransferReport:
    """Copy the checkpoint's tensors of the same name and shape into ``model`` (in its dtype)."""
    payload = read_checkpoint(path)
    state: Dict[str, torch.Tensor] = dict(payload["state_dict"])
    report = TransferReport(source=str(path))
    if payload.get("kind") == getattr(model, "kind", None) and model.kind in FIDELITY_TABLE_KINDS:
        state, report.new_fidelities = remap_fidelity_tables(state, payload.get("config", {}), model.config)
    target = model.state_dict()
    with torch.no_grad():
        for name, tensor in target.items():
            if name not in state:
                report.not_loaded[name] = "not in the checkpoint"
            elif tuple(state[name].shape) != tuple(tensor.shape):
                report.not_loaded[name] = f"shape {tuple(state[name].shape)} there, {tuple(tensor.shape)} here"
            else:
                # state_dict() tensors share storage with the model's: an in-place copy loads them
                tensor.copy_(state[name].to(device=tensor.device, dtype=tensor.dtype))
                report.loaded.append(name)
    report.unused = [name for name in state if name not in target]
    return report


__all__ = ["TransferReport", "load_matching_weights", "remap_fidelity_tables", "FIDELITY_TABLE_KINDS"]
