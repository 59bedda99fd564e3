"""Physics terms from specs: ``{kind: d3bj, functional: pbe, cutoff: 15}`` -> a contract-v2 module.

A spec is what the training config (``dispersion:``, ``terms:``), checkpoints and
``mlff export --dispersion`` use to name a term. Its keys are ``kind`` plus the term
class's constructor arguments other than ``elements`` (the network's elements are
used), so the options accepted here are always the constructor's own.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from torch import nn

#: kind -> (module, class); imported when a term of that kind is used
TERM_KINDS: Dict[str, Tuple[str, str]] = {
    "d3bj": ("mlff.physics.d3", "D3BJ"),
    "zbl": ("mlff.physics.zbl", "ZBL"),
    "coulomb": ("mlff.physics.coulomb", "FixedChargeCoulomb"),
    "sae": ("mlff.physics.sae_term", "AtomicEnergies"),
}
#: the kind of a ``dispersion:`` block
DISPERSION_KIND = "d3bj"


def term_class(kind: str) -> type:
    """The class of a term kind; an unknown kind is refused with the known ones."""
    try:
        module, name = TERM_KINDS[kind]
    except (KeyError, TypeError):
        raise ValueError(f"unknown physics term kind {kind!r}; known kinds: {sorted(TERM_KINDS)}") from None
    return getattr(importlib.import_module(module), name)


def term_options(kind: str) -> List[str]:
    """The options a spec of ``kind`` may give: the constructor's arguments but ``elements``."""
    params = inspect.signature(term_class(kind).__init__).parameters
    return [p for p in params if p not in ("self", "elements")]


def validate_term_spec(spec: Any, where: str = "term") -> Dict[str, Any]:
    """A copy of ``spec`` whose kind and option names are known (values are checked at build)."""
    if not isinstance(spec, Mapping):
        raise ValueError(f"{where}: a physics term is a mapping like {{kind: d3bj, functional: pbe}}, got {spec!r}")
    if "kind" not in spec:
        raise ValueError(f"{where}: give the term's kind (one of {sorted(TERM_KINDS)})")
    kind = spec["kind"]
    if kind not in TERM_KINDS:
        raise ValueError(f"{where}: unknown physics term kind {kind!r}; known kinds: {sorted(TERM_KINDS)}")
    allowed = term_options(kind) + ["fidelities"]
    unknown = [key for key in spec if key != "kind" and key not in allowed]
    if unknown:
        raise ValueError(
            f"{where}: unknown option{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} "
            f"for a {kind} term; it accepts {', '.join(allowed)}"
        )
    return dict(spec)


def build_term(
    spec: Mapping[str, Any], elements: Sequence[int], where: str = "term",
    fidelities: Optional[Sequence[str]] = None,
) -> nn.Module:
    """Build the term a spec describes for ``elements`` (atomic numbers).

    A spec with ``fidelities: [names]`` applies to those fidelities of a multi-fidelity
    model only (``fidelities`` here: the model's, in order), e.g. D3 for the DFT level
    and not for GFN-xTB levels that contain dispersion already.
    """
    spec = validate_term_spec(spec, where)
    options = {k: v for k, v in spec.items() if k not in ("kind", "fidelities")}
    try:
        term = term_class(spec["kind"])(list(elements), **options)
    except (TypeError, ValueError, KeyError) as exc:
        raise ValueError(f"{where} ({spec['kind']}): {exc}") from exc
    if "fidelities" not in spec:
        return term
    from ..models.fidelity import FidelityGatedTerm

    if not fidelities:
        raise ValueError(f"{where}: 'fidelities' given, but the model has no named fidelities")
    try:
        return FidelityGatedTerm(term, list(fidelities), list(spec["fidelities"]))
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from exc


def term_spec(term: nn.Module) -> Dict[str, Any]:
    """The spec that rebuilds ``term`` exactly (resolved parameters, not only the names given)."""
    info = term.contract_info()
    hyper = {k: v for k, v in info.get("hyperparameters", {}).items() if k != "elements"}
    return {"kind": info["kind"], **hyper}


def dispersion_spec(block: Mapping[str, Any], where: str = "dispersion") -> Dict[str, Any]:
    """A ``dispersion:`` block as a term spec (its kind defaults to, and must be, d3bj)."""
    if not isinstance(block, Mapping):
        raise ValueError(f"{where}: expected a mapping like {{functional: pbe, cutoff: 15}}, got {block!r}")
    kind = block.get("kind", DISPERSION_KIND)
    if kind != DISPERSION_KIND:
        raise ValueError(
            f"{where}: kind {kind!r} is not a dispersion correction (only {DISPERSION_KIND!r}); "
            "list other terms under terms:"
        )
    return validate_term_spec({"kind": kind, **{k: v for k, v in block.items() if k != "kind"}}, where)


#: teacher methods that already contain a dispersion correction (GFN1-xTB: D3(BJ); GFN2-xTB: D4)
DISPERSION_INCLUDED = ("gfn1", "gfn2", "ipea1")


def check_dispersion_addable(provenance: Optional[Mapping[str, Any]], where: str = "") -> None:
    """Refuse to add D3 to a model whose teacher's method already includes dispersion."""
    provenance = provenance or {}
    settings = provenance.get("teacher_settings") or {}
    method = str(settings.get("method", "")) if isinstance(settings, Mapping) else ""
    if any(tag in method.lower().replace("-", "") for tag in DISPERSION_INCLUDED):
        raise ValueError(
            f"{where}the model was trained on {provenance.get('teacher', 'teacher')} {method} labels, which already "
            "include dispersion (GFN1-xTB: D3(BJ), GFN2-xTB: D4); adding D3 would count it twice"
        )


__all__ = [
    "TERM_KINDS",
    "DISPERSION_KIND",
    "term_class",
    "term_options",
    "validate_term_spec",
    "build_term",
    "term_spec",
    "dispersion_spec",
    "check_dispersion_addable",
]
