"""Process-level tuning that engines apply once before evaluating a model.

glibc serves every allocation above 128 KiB-32 MiB with a fresh mmap and unmaps it on
free, so each MD step page-faults all of the model's large edge tensors anew. On a
4000-atom PaiNN that is most of the step (measured 4.4x; see BENCHMARKS.md). Raising
the thresholds keeps freed blocks in the heap for the next step. Set
``MLFF_NO_MALLOC_TUNING=1`` to leave the allocator alone.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3
_done = False


def tune_allocator() -> bool:
    """Apply the glibc settings once per process; returns whether they are in effect."""
    global _done
    if _done:
        return True
    if os.environ.get("MLFF_NO_MALLOC_TUNING"):
        return False
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl, macOS)
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    ok = mallopt(_M_MMAP_THRESHOLD, 1 << 30) and mallopt(_M_TRIM_THRESHOLD, 1 << 30)
    ok = ok and mallopt(_M_TOP_PAD, 256 << 20)
    _done = bool(ok)
    return _done
