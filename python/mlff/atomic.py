"""Atomic file writes: a crash or kill never leaves a half-written model, checkpoint or dataset."""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path
from typing import Callable


def _new_temporary(path: Path) -> Path:
    """An empty, unique file next to ``path``, with the permissions a plain ``open`` would give.

    (``tempfile.mkstemp`` creates files readable by the owner only, which a rename would
    hand on to the store, model or checkpoint.)
    """
    while True:
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))  # the umask applies
            return tmp
        except FileExistsError:
            continue


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)``, fsync, then rename over ``path`` in one step.

    The temporary file lives in the destination directory so ``os.replace`` is atomic
    on POSIX file systems; readers see either the old file or the complete new one.
    A replaced file keeps its permission bits.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _new_temporary(path)
    try:
        write(str(tmp))
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        if path.exists():
            os.chmod(tmp, stat.S_IMODE(os.stat(path).st_mode))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
