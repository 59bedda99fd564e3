"""pacemaker's ``input.yaml`` from a :class:`~mlff.pacemaker.config.TrainingConfig` and a Jinja2 template.

The template receives one variable per configured setting (:data:`PLACEHOLDERS`);
every value is rendered with the ``yaml`` filter, which writes JSON (a subset of YAML
1.2 that pacemaker's ruamel loader reads as flow collections and scalars), so strings,
lists and mappings never need quoting in the template. A user template must use every
placeholder (a setting it leaves out would be silently ignored) and no unknown name
(Jinja2 would render it empty): both are checked with the names listed in the error.
"""

from __future__ import annotations

import json
import math
from importlib.resources import files
from pathlib import Path
from typing import Any, Dict, FrozenSet, List

from .config import TrainingConfig

#: the variables a template receives (and must use)
PLACEHOLDERS: FrozenSet[str] = frozenset({
    "seed", "metadata", "elements", "embedding", "bond", "number_of_functions_per_element", "functions_all",
    "data_filename", "test_size", "loss", "weighting", "optimizer", "maxiter", "repulsion", "ladder_step",
    "ladder_type", "evaluator", "batch_size", "display_step",
})


class TemplateError(ValueError):
    """A user template that cannot render the configured settings."""


def default_template_text() -> str:
    return files("mlff.pacemaker").joinpath("templates/input.yaml.j2").read_text()


def _to_yaml(value: Any) -> str:
    """``value`` as JSON, with every float written so YAML 1.1 readers (PyYAML) take it for
    a float too: ``1e-08`` is a float in YAML 1.2 (pacemaker's ruamel) but a string in 1.1."""
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return json.dumps(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise TemplateError(f"cannot render the non-finite number {value}")
        text = repr(value)
        if "e" in text and "." not in text.split("e")[0]:
            mantissa, exponent = text.split("e")
            text = f"{mantissa}.0e{exponent}"
        return text
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(str(k))}: {_to_yaml(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_to_yaml(v) for v in value) + "]"
    raise TemplateError(f"cannot render a {type(value).__name__} into input.yaml")


def _environment():
    import jinja2

    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False)
    env.filters["yaml"] = _to_yaml
    return env


def _template_names(source: str, where: str) -> FrozenSet[str]:
    import jinja2
    from jinja2 import meta

    try:
        return frozenset(meta.find_undeclared_variables(_environment().parse(source)))
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"{where}: line {exc.lineno}: Jinja2 syntax error: {exc.message}") from None


def check_template(path: Path) -> None:
    """Refuse a template that misses placeholders or uses unknown names (both listed)."""
    if not path.is_file():
        raise TemplateError(f"template {str(path)!r} does not exist")
    names = _template_names(path.read_text(), str(path))
    missing: List[str] = sorted(PLACEHOLDERS - names)
    unknown: List[str] = sorted(names - PLACEHOLDERS)
    problems = []
    if missing:
        problems.append(f"missing placeholders {missing} (the config sets them; a template without them "
                        "would ignore those settings)")
    if unknown:
        problems.append(f"unknown names {unknown} (the config fills only {sorted(PLACEHOLDERS)})")
    if problems:
        raise TemplateError(f"template {path}: " + "; ".join(problems))


def template_values(cfg: TrainingConfig, elements: List[str], data_filename: str) -> Dict[str, Any]:
    """The values the template receives for ``cfg`` (``elements`` as fitted, sorted)."""
    basis, fit = cfg.basis, cfg.fit
    bond: Dict[str, Any] = {
        "radbase": basis.radbase, "radparameters": list(basis.radparameters),
        "rcut": cfg.cutoff, "dcut": basis.dcut, "NameOfCutoffFunction": "cos",
    }
    dl = cfg.delta_learning
    repulsion = None
    if dl.kind == "zbl":
        if dl.r_in == "auto":
            repulsion = "auto"
        else:
            bond.update({"r_in": float(dl.r_in), "delta_in": dl.delta_in, "inner_cutoff_type": "zbl"})
    return {
        "seed": fit.seed,
        "metadata": {
            "origin": "mlff.pacemaker",
            # pacemaker reads metadata as a string map
            "mlff_loss_weights": json.dumps(cfg.loss.model_dump()),
        },
        "elements": list(elements),
        "embedding": basis.embedding(),
        "bond": bond,
        "number_of_functions_per_element": basis.number_of_functions_per_element,
        "functions_all": {"nradmax_by_orders": list(basis.nradmax_by_orders),
                          "lmax_by_orders": list(basis.lmax_by_orders)},
        "data_filename": data_filename,
        "test_size": fit.test_size,
        "loss": {"kappa": cfg.loss.kappa, "L1_coeffs": cfg.loss.L1_coeffs, "L2_coeffs": cfg.loss.L2_coeffs},
        "weighting": None if cfg.weighting is None else cfg.weighting.to_pacemaker(),
        "optimizer": fit.optimizer,
        "maxiter": fit.maxiter,
        "repulsion": repulsion,
        "ladder_step": fit.ladder_step,
        "ladder_type": fit.ladder_type,
        "evaluator": fit.evaluator,
        "batch_size": fit.batch_size,
        "display_step": fit.display_step,
    }


def render_input(cfg: TrainingConfig, elements: List[str], data_filename: str) -> str:
    """The text of pacemaker's ``input.yaml`` for ``cfg``."""
    if cfg.template is not None:
        check_template(cfg.template)
        source, where = cfg.template.read_text(), str(cfg.template)
    else:
        source, where = default_template_text(), "the default template"
    import jinja2

    try:
        return _environment().from_string(source).render(**template_values(cfg, elements, data_filename))
    except jinja2.TemplateError as exc:
        raise TemplateError(f"{where}: cannot render: {exc}") from None
