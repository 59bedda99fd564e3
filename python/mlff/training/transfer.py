"""Starting a run from trained weights (``model.init_from``).

The source is a training checkpoint (``.ckpt``) or an exported contract file (``.pt``,
:func:`mlff.contract.export_model`) of the same model kind and elements; both go through
:func:`load_matching_weights`, so the policy is one:

- a source of another model kind, or trained on other elements, is refused with what
  differs (the embedding rows and reference energies are per element: loading them onto
  other elements would be silently wrong even where the shapes agree);
- every tensor of the new model (parameters and buffers) whose name and shape match one
  of the source's is copied; the rest keep their fresh initialisation (data-fitted
  reference energies, random weights) and are reported, so a changed architecture never
  fails with a size-mismatch dump nor loads silently less than expected;
- a source from which not one parameter matches is refused, with the shapes that differ.

An exported file is a TorchScript module: its weights are read by name from its
``state_dict``. When the network was exported composed with physics terms
(:class:`mlff.models.composite.AdditiveModel`), the network's tensors are those under
``parts.0.``; the terms' (``parts.1.`` ...) are not network weights and are skipped (the
run's own ``sae:``/``dispersion:``/``terms:`` decide its terms).

A trained multi-fidelity AIMNet2 model can be given more fidelities: its per-fidelity
tables (embedding rows, energy heads, element shifts) are matched by fidelity name, and
a fidelity the source does not have starts as a copy of the source's fidelity 0
(the usual choice in transfer learning; mlff has not measured it against a random start; the
levels' absolute energies belong in the ``sae:`` baseline, not in the heads).

What was loaded is recorded (:meth:`TransferReport.as_dict`): the source path, its format,
its sha256, the tensors loaded / not loaded (and why) / unused; the trainer writes it into
``summary.json`` and the checkpoints' and exported file's provenance (``init_from``).
"""

from __future__ import annotations

import hashlib
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

import torch

from ..checkpoint import read_checkpoint

#: model kinds with per-fidelity tables: the embedding rows are ``fidelity * n_elements + element``,
#: ``heads.<fidelity>.*`` the energy heads, ``atomic_energies[fidelity]`` the shifts
FIDELITY_TABLE_KINDS = ("aimnet2",)
#: where the network's tensors live in an exported network + terms module (AdditiveModel.parts[0])
COMPOSED_NETWORK_PREFIX = "parts.0."


def file_sha256(path: str | Path) -> str:
    """The sha256 of a file (provenance: which exact file a run started from)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class WeightSource:
    """Trained weights read from a checkpoint or an exported file, with what identifies them."""

    path: str
    #: "checkpoint" or "exported"
    format: str
    kind: str
    elements: List[int]
    #: the network's constructor arguments (fidelities etc.), as far as the file records them
    config: Dict[str, Any]
    state: Dict[str, torch.Tensor]
    sha256: str
    #: tensors of the file that are not the network's (physics terms of an exported composite)
    skipped: List[str] = field(default_factory=list)


def _is_exported(path: Path) -> bool:
    """An mlff export: a zip archive with the contract metadata entry (checkpoints are
    ``torch.save`` zips too, so the suffix or the zip format alone does not tell)."""
    from ..contract import METADATA_ENTRY

    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as zf:
        return any(n.endswith("/extra/" + METADATA_ENTRY) for n in zf.namelist())


def read_weight_source(path: str | Path) -> WeightSource:
    """The network weights of a checkpoint or of an exported ``.pt`` file (on the CPU)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"model.init_from: {str(path)!r} does not exist")
    digest = file_sha256(path)
    if not _is_exported(path):
        payload = read_checkpoint(path)
        config = dict(payload.get("config", {}))
        return WeightSource(str(path), "checkpoint", str(payload["kind"]), [int(z) for z in config.get("elements", [])],
                            config, dict(payload["state_dict"]), digest)
    from ..contract import read_metadata

    meta = read_metadata(path)  # validates the metadata and every entry's checksum
    hyper = dict(meta.hyperparameters)
    composed = isinstance(hyper.get("network"), Mapping) and "terms" in hyper
    net = dict(hyper["network"]) if composed else hyper
    kind = str(net.pop("kind", meta.kind)) if composed else meta.kind
    try:
        module = torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:  # torch raises many types here
        raise RuntimeError(f"model.init_from: {path} has valid metadata but its module cannot be loaded: {exc}") from exc
    full = {k: v.detach() for k, v in module.state_dict().items()}
    if composed:
        n = len(COMPOSED_NETWORK_PREFIX)
        state = {k[n:]: v for k, v in full.items() if k.startswith(COMPOSED_NETWORK_PREFIX)}
        skipped = sorted(k for k in full if not k.startswith(COMPOSED_NETWORK_PREFIX))
    else:
        state, skipped = full, []
    return WeightSource(str(path), "exported", kind, list(meta.elements), net, state, digest, skipped)


@dataclass
class TransferReport:
    """What ``init_from`` loaded and what it did not."""

    source: str
    loaded: List[str] = field(default_factory=list)
    #: tensor of the model -> why it kept its fresh value
    not_loaded: Dict[str, str] = field(default_factory=dict)
    #: tensors of the source the model has no place for
    unused: List[str] = field(default_factory=list)
    #: new fidelity -> the source fidelity its tables were copied from
    new_fidelities: Dict[str, str] = field(default_factory=dict)
    #: "checkpoint" or "exported"
    format: str = "checkpoint"
    sha256: str = ""
    #: tensors of the file that are not network weights (an exported composite's physics terms)
    skipped_terms: List[str] = field(default_factory=list)

    def describe(self) -> str:
        lines = [f"init_from {self.source} ({self.format}, sha256 {self.sha256[:12]}): "
                 f"loaded {len(self.loaded)} tensors"]
        for name, why in self.not_loaded.items():
            lines.append(f"  not loaded: {name} ({why})")
        if self.unused:
            lines.append(f"  unused from the source: {', '.join(self.unused)}")
        if self.skipped_terms:
            lines.append(f"  skipped: {len(self.skipped_terms)} tensors of the exported physics terms")
        for new, old in self.new_fidelities.items():
            lines.append(f"  new fidelity {new!r}: embedding rows, head and shifts copied from {old!r}")
        return "\n".join(lines)

    def as_dict(self) -> Dict[str, Any]:
        return {"source": self.source, "format": self.format, "sha256": self.sha256, "loaded": len(self.loaded),
                "not_loaded": dict(self.not_loaded), "unused": list(self.unused),
                "skipped_terms": len(self.skipped_terms), "new_fidelities": dict(self.new_fidelities)}


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

    Table ``k`` of the new model takes the source's table of the same fidelity name,
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


def _check_compatible(model: torch.nn.Module, src: WeightSource) -> None:
    """Refuse a source of another kind or other elements, naming what differs."""
    kind = getattr(model, "kind", None)
    if src.kind != kind:
        raise ValueError(
            f"model.init_from: {src.path} holds a {src.kind} model ({src.format}), but this run trains "
            f"model.kind {kind}; start from a file of the same kind (or set model.kind: {src.kind})"
        )
    mine = [int(z) for z in getattr(model, "config", {}).get("elements", [])]
    if src.elements and src.elements != mine:
        from ase.data import chemical_symbols

        def names(zs: List[int]) -> List[str]:
            return [chemical_symbols[z] for z in zs]

        raise ValueError(
            f"model.init_from: {src.path} was trained on elements {names(src.elements)}, this run's model "
            f"has {names(mine)}; embeddings and reference energies are per element, so set model.elements "
            f"to {names(src.elements)} (or start from a model of these elements)"
        )


def load_matching_weights(model: torch.nn.Module, path: str | Path) -> TransferReport:
    """Copy the source's tensors of the same name and shape into ``model`` (in its dtype).

    ``path``: a checkpoint or an exported ``.pt`` file of the same kind and elements.
    """
    src = read_weight_source(path)
    _check_compatible(model, src)
    state = src.state
    report = TransferReport(source=str(path), format=src.format, sha256=src.sha256, skipped_terms=src.skipped)
    if model.kind in FIDELITY_TABLE_KINDS:
        state, report.new_fidelities = remap_fidelity_tables(state, src.config, model.config)
    target = model.state_dict()
    with torch.no_grad():
        for name, tensor in target.items():
            if name not in state:
                report.not_loaded[name] = f"not in the {src.format}"
            elif tuple(state[name].shape) != tuple(tensor.shape):
                report.not_loaded[name] = f"shape {tuple(state[name].shape)} there, {tuple(tensor.shape)} here"
            else:
                # state_dict() tensors share storage with the model's: an in-place copy loads them
                tensor.copy_(state[name].to(device=tensor.device, dtype=tensor.dtype))
                report.loaded.append(name)
    report.unused = [name for name in state if name not in target]
    parameters = {name for name, _ in model.named_parameters()}
    if not parameters & set(report.loaded):
        # nothing trained arrives: a wrong file, not a partial transfer
        differ = [f"{n}: {why}" for n, why in report.not_loaded.items() if n in parameters][:8]
        raise ValueError(f"model.init_from: no parameter of {path} fits this model "
                         f"({'; '.join(differ) or 'no names in common'}); is it the same architecture?")
    return report


__all__ = ["TransferReport", "WeightSource", "load_matching_weights", "read_weight_source", "remap_fidelity_tables",
           "file_sha256", "FIDELITY_TABLE_KINDS", "COMPOSED_NETWORK_PREFIX"]
