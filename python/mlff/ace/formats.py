"""Which files are ACE potentials (kept free of heavy imports: the CLI uses it at start-up)."""

from __future__ import annotations

import os
from pathlib import Path

#: C-tilde potentials (the YAML .yace, the older text .ace) and B-basis potentials
#: (pacemaker's .yaml, which also give the extrapolation grade)
ACE_SUFFIXES = (".yace", ".ace", ".yaml", ".yml")


def is_ace_path(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in ACE_SUFFIXES
