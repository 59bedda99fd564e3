"""Where the teacher runs: local processes (default) or a Dask distributed cluster.

Both executors compute :func:`label_frame` for a list of frames and hand back the
results **in the order of the frames**, whatever order they finish in; the driver
writes each record to the store as soon as it and all frames before it are back. A
labelled record is a deterministic function of the frame and the teacher, so the
dataset is the same with any executor, any number of workers and any completion order.

This module imports no torch: worker processes load only numpy, ASE and the teacher.
"""

from __future__ import annotations

import json
import time
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence

import numpy as np

#: teachers built in this process, by spec (a worker labels many frames with one teacher)
_TEACHERS: Dict[str, Any] = {}


def _teacher(spec: Dict[str, Any]):
    from ..data.teachers import make_teacher

    key = json.dumps(spec, sort_keys=True, default=str)
    if key not in _TEACHERS:
        _TEACHERS[key] = make_teacher(spec["name"], **spec.get("settings", {}))
    return _TEACHERS[key]


def label_frame(spec: Dict[str, Any], frame: Dict[str, Any]) -> Dict[str, Any]:
    """The teacher's labels of one frame: energy, forces, stress (periodic cells), charges.

    ``frame``: ``numbers``, ``positions``, ``cell``, ``pbc`` and ``info`` (charge, mult).
    Runs in a worker process (or a Dask worker), so arguments and results are plain data.
    """
    from ase import Atoms
    from ase.calculators.calculator import PropertyNotImplementedError

    teacher = _teacher(spec)
    atoms = Atoms(numbers=frame["numbers"], positions=frame["positions"], cell=frame["cell"], pbc=frame["pbc"])
    atoms.info.update(frame.get("info") or {})
    atoms.calc = teacher.calculator
    out: Dict[str, Any] = {
        "energy": float(atoms.get_potential_energy()),
        "forces": np.array(atoms.get_forces(), dtype=np.float64),
        "stress": None,
        "charges": None,
    }
    if atoms.pbc.all():
        try:
            out["stress"] = np.array(atoms.get_stress(voigt=True), dtype=np.float64)
        except (PropertyNotImplementedError, NotImplementedError):
            pass
    if "charges" in getattr(teacher.calculator, "implemented_properties", ()):
        out["charges"] = np.array(atoms.get_charges(), dtype=np.float64)
    atoms.calc = None
    return out


def _exit_with_parent(parent: int) -> None:
    """Worker initializer: end this worker when the driver dies.

    A driver killed by SIGKILL cannot shut its pool down, and a pool worker waits for
    work forever; polling the parent id is the portable way to notice (no prctl).
    """
    import os
    import threading

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="mlff-learn-parent-watch", daemon=True).start()


class LocalExecutor:
    """Teacher calculations in ``workers`` local processes (started fresh: spawn).

    Spawned, not forked: the driver holds torch and its thread pools, which a fork
    would copy half-initialised into the workers.
    """

    def __init__(self, workers: int = 2):
        self.workers = int(workers)
        self._pool = None

    def __enter__(self) -> "LocalExecutor":
        import multiprocessing
        import os
        from concurrent.futures import ProcessPoolExecutor

        self._pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=multiprocessing.get_context("spawn"),
                                         initializer=_exit_with_parent, initargs=(os.getpid(),))
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._pool is not None:
            # a failed frame cancels the rest: nothing is left running behind the error
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def map(self, fn: Callable[..., Any], spec: Dict[str, Any], frames: Sequence[Dict[str, Any]]) -> Iterator[Any]:
        """``fn(spec, frame)`` for every frame, yielded in frame order."""
        if self._pool is None:
            raise RuntimeError("use the executor as a context manager")
        futures = [self._pool.submit(fn, spec, f) for f in frames]
        for fut in futures:
            yield fut.result()

    def describe(self) -> str:
        return f"{self.workers} local process{'es' if self.workers != 1 else ''}"


class DaskExecutor:
    """Teacher calculations on a Dask distributed cluster (``distributed.Client(address)``).

    The workers need mlff (and a ``module:factory`` teacher's module) importable.
    """

    def __init__(self, address: str):
        self.address = address
        self._client = None

    def __enter__(self) -> "DaskExecutor":
        try:
            from distributed import Client
        except ImportError as exc:
            raise RuntimeError("the dask executor needs dask.distributed (pip install distributed)") from exc
        # not the default client: the driver's own code never ends up on the cluster by accident
        self._client = Client(self.address, set_as_default=False)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def map(self, fn: Callable[..., Any], spec: Dict[str, Any], frames: Sequence[Dict[str, Any]]) -> Iterator[Any]:
        if self._client is None:
            raise RuntimeError("use the executor as a context manager")
        # pure=False: a teacher call is not deduplicated by Dask's key hashing (frames are
        # distinct anyway; this keeps a retry from reusing a stale result)
        futures = [self._client.submit(fn, spec, f, pure=False) for f in frames]
        try:
            for fut in futures:
                yield fut.result()
        finally:
            self._client.cancel([f for f in futures if not f.done()])

    def describe(self) -> str:
        return f"the Dask cluster at {self.address}"


def make_executor(kind: str, workers: int = 2, scheduler: Optional[str] = None):
    """The executor a :class:`mlff.learn.config.LabelConfig` describes."""
    if kind == "dask":
        if not scheduler:
            raise ValueError("the dask executor needs a scheduler address")
        return DaskExecutor(scheduler)
    if kind == "local":
        return LocalExecutor(workers)
    raise ValueError(f"unknown executor {kind!r}: local or dask")


__all__: List[str] = ["DaskExecutor", "LocalExecutor", "label_frame", "make_executor"]
