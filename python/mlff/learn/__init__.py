"""Active learning (`mlff learn config.yaml`): explore, select, label, retrain, repeat.

- :mod:`.config`: the YAML config (pydantic, unknown keys refused).
- :mod:`.state`: which stage of which iteration is finished (atomic JSON), for resuming.
- :mod:`.explore`: MD with the committee (or ACE potential) at the configured temperatures.
- :mod:`.select`: trust window on the force deviation (or the ACE extrapolation grade),
  a cap per iteration and farthest-point de-duplication.
- :mod:`.executor`: where teacher calculations run (local processes or a Dask cluster).
- :mod:`.loop`: the driver; :mod:`.report`: report.csv and report.png.

Names are resolved on first use: the CLI imports this package to register ``mlff learn``,
and importing the loop (torch) there would slow every ``mlff`` command.
"""

from .._lazy import lazy_getattr

_EXPORTS = {
    "LearnConfig": "config",
    "load_learn_config": "config",
    "learn": "loop",
    "LearnSummary": "loop",
    "LocalExecutor": "executor",
    "DaskExecutor": "executor",
    "select_frames": "select",
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_getattr(__name__, _EXPORTS)
