"""One writer per store: an OS lock on a sidecar file next to the store.

Two processes appending to one store (two ``mlff label`` runs on one database) would
each plan the same work and write every row twice. Every writer therefore holds an
exclusive ``flock`` on ``.<store name>.lock`` for its whole write session; a second
writer waits, then sees what the first wrote. The lock sits on a sidecar file, not on
the store itself, because whole-file formats replace the store by renaming a new file
over it, which would drop a lock held on the old inode. The OS releases the lock when
a writer dies (even by SIGKILL), so a killed run never blocks the next one.
"""

from __future__ import annotations

import os
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Dict, Iterator, Optional

try:
    import fcntl
except ImportError:  # not POSIX: no OS lock; the identity check on append still refuses duplicates
    fcntl = None  # type: ignore[assignment]

# locks this thread already holds (lock path -> depth): write_records takes the lock
# inside a labelling session that holds it already, and a second flock on a new file
# descriptor of the same file would wait for ourselves forever
_held = threading.local()


def lock_path(store: str | os.PathLike) -> Path:
    """The sidecar lock file of ``store`` (hidden, in the same folder).

    Named after the resolved path, so writers that spell the store differently
    (relative, ``..``, through a symlink) share one lock.
    """
    store = Path(store).resolve()
    return store.parent / f".{store.name}.lock"


@contextmanager
def store_lock(store: str | os.PathLike, on_wait: Optional[Callable[[Path], None]] = None) -> Iterator[Path]:
    """Hold the exclusive write lock of ``store`` for the ``with`` block (re-entrant per thread).

    ``on_wait(lock_file)`` is called once if another writer holds the lock, before
    waiting for it, so a caller can say why it seems to hang.
    """
    lock = lock_path(store)
    depth: Dict[str, int] = _held.__dict__.setdefault("depth", {})
    key = str(lock)
    if depth.get(key, 0) or fcntl is None:
        depth[key] = depth.get(key, 0) + 1
        try:
            yield lock
        finally:
            depth[key] -= 1
        return
    lock.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait is not None:
                on_wait(lock)
            fcntl.flock(fd, fcntl.LOCK_EX)
        depth[key] = 1
        try:
            yield lock
        finally:
            depth[key] = 0
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
