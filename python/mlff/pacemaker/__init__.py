"""Running pacemaker (python-ace) for users who have installed it: mlff prepares the data
and ``input.yaml``, runs the tools as monitored subprocesses and hands back the ``.yace``
with its metrics.

- :mod:`.config`: ``TrainingConfig`` (pydantic, unknown keys refused) and the loss-weight
  mapping to pacemaker's κ;
- :mod:`.dataset`: mlff stores ⇄ pacemaker's ``.pckl.gzip`` DataFrame;
- :mod:`.render`: ``input.yaml`` from a Jinja2 template (the default one ships here);
- :mod:`.process`: one tool as a subprocess (process group, streamed log, timeout);
- :mod:`.metrics`: the final train/test RMSEs from pacemaker's files;
- :mod:`.trainer`: ``PacemakerTrainer(config).train() -> Potential``;
- :mod:`.cli`: ``mlff pacemaker config.yaml``.

python-ace is under an academic, non-commercial licence: mlff never imports it, only runs
its command-line tools when asked to.
"""

from .._lazy import lazy_getattr

_EXPORTS = {
    "TrainingConfig": "config",
    "LossWeights": "config",
    "load_config": "config",
    "ExecutableNotFoundError": "config",
    "PacemakerTrainer": "trainer",
    "Potential": "trainer",
    "TooFewStructuresError": "trainer",
    "NoPotentialError": "trainer",
    "TrainingError": "process",
    "ToolTimeoutError": "process",
    "MissingLabelsError": "dataset",
    "store_to_pacemaker": "dataset",
    "pacemaker_to_store": "dataset",
    "render_input": "render",
    "TemplateError": "render",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_getattr(__name__, _EXPORTS)
