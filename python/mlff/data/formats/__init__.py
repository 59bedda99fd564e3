"""Store formats, chosen by file suffix. Each module reads and writes one format:

``read(path) -> Iterator[Record]``, ``read_metadata(path) -> dict`` and
``write(path, records, metadata)`` (a complete new file). The ASE database can also
``append`` in place (one SQLite transaction); the whole-file formats are appended to
by :mod:`mlff.data.store` writing a new file and renaming it over the old one. A format
that does not store numbers exactly (extxyz) has ``as_stored(records)``, the records as
they would read back, so that duplicates are recognised after the rounding.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Dict

from ..errors import DatasetError
from . import ase_db, extxyz, hdf5

#: format name -> module
FORMATS: Dict[str, ModuleType] = {"db": ase_db, "xyz": extxyz, "h5": hdf5}


def format_of(path: Path) -> str:
    """The format name of ``path`` from its suffix, or a message listing the known ones."""
    suffix = path.suffix.lower()
    for name, module in FORMATS.items():
        if suffix in module.SUFFIXES:
            return name
    raise DatasetError(
        f"{path}: unknown dataset format {suffix or '(no suffix)'!r}; "
        "use .db (ASE SQLite), .xyz/.extxyz or .h5/.hdf5"
    )
