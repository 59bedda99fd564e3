"""Process-level tuning that engines apply once before evaluating a model.

glibc serves every allocation above 128 KiB-32 MiB with a fresh mmap and unmaps it on
free, so each MD step page-faults all of the model's large edge tensors anew. On a
4000-atom PaiNN that is most of the step (measured 4.4x; see BENCHMARKS.md). Raising
the thresholds keeps freed blocks in the heap for the next step. Set
``MLFF_NO_MALLOC_TUNING=1`` to leave the allocator alone.

The settings (issue 14; numbers in BENCHMARKS.md, "Faster student"):
- mmap threshold 2^31 - 1 bytes, the largest ``mallopt`` takes: blocks above the
  threshold are still mapped and unmapped every step, and one [E, 3, F] edge tensor of
  the 64-feature PaiNN (fcc Cu, 5 Å, 42 edges per atom) passes 1 GiB at ~17k atoms in
  float64 and ~33k in float32.
- trimming off: any finite trim threshold (at most 2 GiB here) is below the step's
  working set from a few thousand atoms on (peak RSS 4.5 GB at 4000 atoms, ~30 GB
  extrapolated at 32000), and then every step hands the top of the heap back to the
  kernel and faults it in again (32000 atoms, 16 features: 1.26x slower, 4x the sys time).
  The price is that a process keeps its peak heap until it exits; an MD loop reuses it
  every step.
- a 256 MiB top pad, so the heap grows in large steps.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3
#: the largest value mallopt's int argument can carry
MMAP_THRESHOLD = 2**31 - 1
#: -1 disables trimming (glibc mallopt(3))
TRIM_THRESHOLD = -1
TOP_PAD = 256 << 20
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
    ok = mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    ok = ok and mallopt(_M_TOP_PAD, TOP_PAD)
    _done = bool(ok)
    return _done
