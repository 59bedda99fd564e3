"""Extended XYZ (``.xyz``, ``.extxyz``): the exchange format.

Other tools read the plain info values from the comment line, so those are written
as usual. The comment line cannot carry everything, and what it carries does not come
back with its type (ASE reads the string ``"1"`` as the integer 1 and cannot escape
every string), so each frame also stores its whole info dict as type-preserving JSON
under ``mlff_info`` and the first frame the store metadata under ``mlff_metadata``,
both base64-encoded (the comment-line syntax has no safe quoting for arbitrary text).
Numbers in the atom columns are text with 8 decimals.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import IO, Any, Dict, Iterator, List, Sequence

from ..records import Record
from . import infojson

SUFFIXES = (".xyz", ".extxyz")
INFO_KEY = "mlff_info"
METADATA_KEY = "mlff_metadata"
#: comment-line keys with a meaning of their own in the format (besides calculator results)
_FORMAT_KEYS = {"Lattice", "Properties", "pbc", "virial"}


def _pack(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _unpack(text: str) -> str:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()


def _comment_keys(info: Dict[str, Any]) -> Dict[str, Any]:
    """The info values other tools can read from the comment line."""
    from ase.calculators.calculator import all_properties

    # ASE's reader would take a key named like a calculator result for that result
    return {
        k: v for k, v in info.items()
        if str(k).isidentifier() and k not in _FORMAT_KEYS and k not in all_properties
        and infojson.scalar(v) and not _unsafe_text(v)
    }


def _unsafe_text(value: Any) -> bool:
    """Strings ASE cannot write into a comment line and read back (newlines end it; backslashes are mangled)."""
    return isinstance(value, str) and (not value or "\\" in value or not value.isprintable())


def write(path: Path | IO[str], records: Sequence[Record], metadata: Dict[str, Any]) -> None:
    """Write a new extxyz file at ``path`` with every record."""
    from ase.io import write as ase_write

    frames = []
    for k, rec in enumerate(records):
        atoms = rec.to_atoms()
        info = rec.full_info()  # fidelity, charge and mult as comment-line keys other tools read
        atoms.info = _comment_keys(info)
        atoms.info[INFO_KEY] = _pack(infojson.dumps(info, f"info of structure {rec.id}"))
        if k == 0 and metadata:
            atoms.info[METADATA_KEY] = _pack(infojson.dumps(metadata, "store metadata"))
        frames.append(atoms)
    ase_write(path if isinstance(path, io.IOBase) else str(path), frames, format="extxyz")


def as_stored(records: Sequence[Record]) -> List[Record]:
    """The records as they come back from a file (numbers in atom columns are rounded)."""
    buf = io.StringIO()
    write(buf, records, {})
    buf.seek(0)
    return list(read(buf))


def read(path: Path | IO[str]) -> Iterator[Record]:
    from ase.io import iread

    for k, atoms in enumerate(iread(path if isinstance(path, io.IOBase) else str(path), index=":", format="extxyz")):
        packed = atoms.info.pop(INFO_KEY, None)
        atoms.info.pop(METADATA_KEY, None)
        if packed is not None:  # files from other tools have only the comment-line values
            atoms.info = infojson.loads(_unpack(packed))
        yield Record.from_atoms(atoms, id=str(k))


def read_metadata(path: Path) -> Dict[str, Any]:
    from ase.io import read as ase_read

    if path.stat().st_size == 0:
        return {}
    first = ase_read(str(path), index=0, format="extxyz")
    packed = first.info.get(METADATA_KEY)
    return {} if packed is None else infojson.loads(_unpack(packed))
