"""Where an active-learning run stands: the finished stages of every iteration (atomic JSON).

Iteration 0 is the bootstrap (``initial`` data, ``trained`` members, ``committee``);
iterations 1, 2, ... run ``explored`` -> ``selected`` -> ``labelled`` -> ``trained`` ->
``committee`` -> ``reported``. A stage is marked here only after its result is on disk
(written atomically), so a kill at any point leaves either the stage unmarked (it runs
again, and every stage is safe to repeat: see :mod:`.loop`) or marked with its result
complete. Each mark rewrites ``state.json`` by renaming a new file over it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, List, Optional

from ..atomic import atomic_write

STATE_VERSION = 1

#: stages of the bootstrap iteration 0, in order
BOOTSTRAP_STAGES = ("initial", "trained", "committee")
#: stages of every later iteration, in order
ITERATION_STAGES = ("explored", "selected", "labelled", "trained", "committee", "reported")


class LearnState:
    """The resumable state of one run (``<output_dir>/state.json``)."""

    def __init__(self, path: Path, data: Dict[str, Any]):
        self.path = path
        self.data = data

    @classmethod
    def open(cls, path: str | os.PathLike, fingerprint: str) -> "LearnState":
        """Load the state, or start one; refuses a state written for another config."""
        path = Path(path)
        if path.exists():
            data = json.loads(path.read_text())
            if data.get("version") != STATE_VERSION:
                raise RuntimeError(f"{path}: state version {data.get('version')}, this mlff writes {STATE_VERSION}")
            if data.get("fingerprint") != fingerprint:
                raise RuntimeError(
                    f"{path} belongs to a run with other settings (only stop and label may change when resuming); "
                    "restore the config, or choose another output_dir"
                )
            return cls(path, data)
        state = cls(path, {"version": STATE_VERSION, "fingerprint": fingerprint, "iterations": {},
                           "finished": None})
        state.save()
        return state

    def save(self) -> None:
        text = json.dumps(self.data, indent=1, sort_keys=True, default=str)
        atomic_write(self.path, lambda tmp: Path(tmp).write_text(text))

    # ------------------------------------------------------------------ stages
    def _iteration(self, k: int) -> Dict[str, Any]:
        return self.data["iterations"].setdefault(str(k), {})

    def done(self, k: int, stage: str) -> bool:
        return stage in self.data["iterations"].get(str(k), {})

    def result(self, k: int, stage: str) -> Dict[str, Any]:
        return self.data["iterations"][str(k)][stage]

    def mark(self, k: int, stage: str, result: Optional[Dict[str, Any]] = None) -> None:
        """Record ``stage`` of iteration ``k`` as finished (its result must already be on disk)."""
        stages = BOOTSTRAP_STAGES if k == 0 else ITERATION_STAGES
        if stage not in stages:
            raise ValueError(f"unknown stage {stage!r} of iteration {k}")
        missing = [s for s in stages[: stages.index(stage)] if not self.done(k, s)]
        if missing:  # a programming error: stages run in order
            raise RuntimeError(f"iteration {k}: stage {stage} before {', '.join(missing)}")
        self._iteration(k)[stage] = dict(result or {})
        self.save()

    def partial(self, k: int, stage: str) -> Dict[str, Any]:
        """Progress inside a stage that is not finished yet (e.g. the members trained so far)."""
        return self._iteration(k).setdefault("_partial", {}).setdefault(stage, {})

    def save_partial(self, k: int, stage: str, progress: Dict[str, Any]) -> None:
        self._iteration(k).setdefault("_partial", {})[stage] = dict(progress)
        self.save()

    # ------------------------------------------------------------------ the run
    @property
    def finished(self) -> Optional[Dict[str, Any]]:
        """``{"reason": ..., "iteration": k, "committee": path}`` once the loop has stopped."""
        return self.data.get("finished")

    def finish(self, reason: str, iteration: int, model: str) -> None:
        self.data["finished"] = {"reason": reason, "iteration": iteration, "model": model}
        self.save()

    def reopen(self) -> None:
        """Continue a run that stopped at its iteration budget (the budget was raised)."""
        self.data["finished"] = None
        self.save()

    def iterations(self) -> List[int]:
        return sorted(int(k) for k in self.data["iterations"])
