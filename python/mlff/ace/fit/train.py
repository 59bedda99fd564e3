"""`mlff train config.yaml` with ``model.kind: ace``: the same config format as every
other kind (``data:``, ``model:``, ``run:``), fitted by :func:`mlff.ace.fit.fit.fit_ace`.

``model:`` holds the ACE fit options (:class:`~mlff.ace.fit.fit.ACEFitOptions`):
``potential`` (pacemaker's basis spec, inline or the path of a pacemaker ``input.yaml``),
``kappa``, ``stress_weight``, ``L1_coeffs``, ``L2_coeffs``, ``w0_rad``/``w1_rad``/``w2_rad``,
``maxiter``, ``ladder_step``, ``ladder_type``, ``fit_radial``, ``weighting``,
``reference_energy``, ``repulsion``. ``model.init_from``: a B-basis ``.yaml`` (mlff's or
pacemaker's ``output_potential.yaml``) the fit starts from (see :mod:`mlff.ace.fit.fit`);
``potential`` may then be omitted (the file's basis is fitted). The data split is the
trainer's (``data.valid_fraction``, ``data.test_fraction``); validation and test metrics are those of the held-out records.
Outputs go to ``run.output_dir``: ``output_potential.{yaml,yace,asi}``, ``metrics.json``,
``log.csv``, ``parity_*.png``.

An L-BFGS fit is one short run over the whole set, so there are no checkpoints:
``--resume`` is refused with that reason.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Dict, Mapping

from .fit import ACEFitOptions, fit_ace


def validate_ace_options(options: Mapping[str, Any]) -> Dict[str, Any]:
    """The ``model:`` options of kind ace, defaults filled in; unknown keys refused."""
    opts = dict(options)
    opts.pop("elements", None)
    opts.pop("init_from", None)
    parsed = ACEFitOptions.from_mapping(opts)
    return dataclasses.asdict(parsed)


def train_ace(cfg: Any, resume: bool = False) -> Dict[str, Any]:
    """Fit an ACE potential from a :class:`mlff.training.config.TrainConfig`; returns the summary."""
    from ...training.data import load_split, resolve_elements

    if resume:
        raise ValueError("model.kind ace is fitted in one L-BFGS run and has no checkpoints to resume; "
                         "run without --resume")
    options = ACEFitOptions.from_mapping(cfg.model.options)
    source_elements = None
    if cfg.model.init_from and not options.potential:
        from .basis import read_bbasis_yaml

        if Path(cfg.model.init_from).suffix.lower() in (".yaml", ".yml") and Path(cfg.model.init_from).exists():
            source_elements = read_bbasis_yaml(cfg.model.init_from).elements
    elements = resolve_elements(cfg.model.elements or options.potential.get("elements") or source_elements)
    split = load_split(cfg.data, elements)
    result = fit_ace(
        split.train,
        options,
        output_dir=cfg.run.output_dir,
        test_structures=list(split.valid) + list(split.test),
        plots=cfg.run.plots,
        initial_potential=cfg.model.init_from,
    )
    return dict(
        kind="ace",
        output_dir=str(cfg.run.output_dir),
        files=result.files,
        metrics=result.metrics,
        e0=result.e0,
        functions=result.basis.num_functions(),
        wall_time_s=result.wall_time_s,
        **({"init_from": result.init_from} if result.init_from else {}),
    )


__all__ = ["validate_ace_options", "train_ace"]
