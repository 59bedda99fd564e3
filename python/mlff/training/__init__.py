"""Training students on labelled data: config, trainer (resumable, DDP), metrics, plots.

Names are resolved on first use: the CLI imports this package to register ``mlff
train``, and importing the trainer (torch) there would slow every ``mlff`` command.
"""

from .._lazy import lazy_getattr

_EXPORTS = {"TrainConfig": "config", "load_config": "config", "Trainer": "trainer", "train": "trainer"}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_getattr(__name__, _EXPORTS)
