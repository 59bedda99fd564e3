"""Read and write labelled structures: ASE SQLite (canonical), extended XYZ, HDF5.

The format follows the file suffix (:mod:`mlff.data.formats`). Writes never leave a
half-written store and never duplicate data:

- one writer at a time: every write holds the store's lock (:mod:`.locking`);
- a new or overwritten store is built under a temporary name in the destination
  folder and renamed into place (:func:`mlff.atomic.atomic_write`), so a failure
  leaves no file (or the old one);
- appends to a database are one SQLite transaction, appends to whole-file formats a
  new file renamed over the old one;
- an append whose structures are already in the store (same sample identity,
  :mod:`.identity`) is refused.
"""

from __future__ import annotations

import hashlib
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Literal, Optional, Sequence

from ..atomic import atomic_write
from .errors import DatasetError
from .formats import FORMATS, ase_db, format_of
from .identity import SampleIndex, describe_duplicates, find_duplicate_identities, sample_identity, update_content_hash
from .locking import store_lock
from .records import Record, fidelity_name

__all__ = [
    "DatasetError",
    "WriteMode",
    "read_records",
    "write_records",
    "read_metadata",
    "convert",
    "import_extxyz",
    "export_extxyz",
    "dataset_hash",
]

#: ``append`` adds to the store (creating it if absent); ``create`` refuses an existing
#: store; ``overwrite`` replaces it atomically
WriteMode = Literal["append", "create", "overwrite"]


@contextmanager
def _reading(path: Path, kind: str) -> Iterator[None]:
    """Every reader failure as a DatasetError that names the file (h5py and ase.io raise many types)."""
    if not path.exists():
        raise DatasetError(f"dataset {str(path)!r} does not exist")
    try:
        yield
    except DatasetError:
        raise
    except Exception as exc:
        raise DatasetError(f"{path}: cannot be read as a {kind} dataset ({type(exc).__name__}: {exc})") from exc


def read_records(path: str | os.PathLike, selection: Optional[str] = None) -> List[Record]:
    """All records of a store (``selection`` is an ASE-db query, databases only)."""
    path = Path(path)
    kind = format_of(path)
    if selection and kind != "db":
        raise DatasetError("a selection query needs an ASE database (.db)")
    with _reading(path, kind):
        if kind == "db":
            return list(ase_db.read(path, selection))
        return list(FORMATS[kind].read(path))


def read_metadata(path: str | os.PathLike) -> Dict[str, Any]:
    """Store-level metadata (teacher, settings, provenance)."""
    path = Path(path)
    kind = format_of(path)
    with _reading(path, kind):
        return FORMATS[kind].read_metadata(path)


def _present(kind: str, records: Sequence[Record], stored: Iterable[Record]) -> Dict[str, str]:
    """identity -> id of the stored row, for the new records whose identity is among ``stored``."""
    index = SampleIndex(stored)
    # compare the records as the format would store them (extxyz rounds the atom columns)
    as_stored = getattr(FORMATS[kind], "as_stored", list)
    return {sample_identity(r): found.id for r in as_stored(records) if (found := index.find(r)) is not None}


def _present_in_db(path: Path, records: Sequence[Record]) -> Dict[str, str]:
    sample_ids = [r.info["sample_id"] for r in records if r.info.get("sample_id") is not None]
    if len(sample_ids) == len(records):
        # labelling appends one row at a time to a growing database: an indexed query
        # per id instead of reading every row
        return _present("db", records, ase_db.rows_with_sample_ids(path, sample_ids))
    with _reading(path, "db"):
        return _present("db", records, ase_db.read(path))


def _refuse_present(path: Path, records: Sequence[Record], present: Dict[str, str]) -> None:
    if present:
        raise DatasetError(
            f"refusing to append to {path}: {len(present)} of the {len(records)} new structures are "
            "already there (appending them again would duplicate training data):\n"
            + describe_duplicates({ident: [row] for ident, row in present.items()})
        )


def write_records(
    path: str | os.PathLike,
    records: Iterable[Record],
    metadata: Optional[Dict[str, Any]] = None,
    mode: WriteMode = "append",
) -> None:
    """Write records to a store, all or nothing, holding the store's write lock.

    ``mode="append"`` (the default) adds to the store and refuses records whose sample
    identity is already there; ``"create"`` refuses an existing store; ``"overwrite"``
    replaces it atomically. ``metadata`` is merged into the store's metadata.
    """
    if mode not in ("append", "create", "overwrite"):
        raise ValueError(f"mode must be 'append', 'create' or 'overwrite', got {mode!r}")
    path = Path(path)
    kind = format_of(path)
    records = list(records)
    repeated = find_duplicate_identities(records)
    if repeated:
        raise DatasetError(
            f"refusing to write {path}: structures repeat within the new data:\n" + describe_duplicates(repeated)
        )
    fmt = FORMATS[kind]
    with store_lock(path):
        if path.exists() and mode == "create":
            raise DatasetError(
                f"{path} already exists; refusing to change it (append to it or overwrite it explicitly; "
                "CLI: --append or --overwrite)"
            )
        if path.exists() and mode == "append":
            if kind == "db":
                _refuse_present(path, records, _present_in_db(path, records))
                ase_db.append(path, records, metadata)
                return
            with _reading(path, kind):
                old = list(fmt.read(path))
                metadata = {**fmt.read_metadata(path), **(metadata or {})}
            _refuse_present(path, records, _present(kind, records, old))
            records = old + records
        atomic_write(path, lambda tmp: fmt.write(Path(tmp), records, metadata or {}))


def _same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two spellings name one file (symlinks, ``..``, relative paths, hard links)."""
    a, b = Path(a), Path(b)
    if a.exists() and b.exists():
        return os.path.samefile(a, b)
    return a.resolve() == b.resolve()


def convert(
    source: str | os.PathLike,
    destination: str | os.PathLike,
    mode: WriteMode = "create",
    fidelity: Optional[str] = None,
) -> int:
    """Copy every record and the store metadata from ``source`` to ``destination``.

    The formats follow the suffixes. Refuses to convert a store onto itself (that would
    read and append the same rows). ``fidelity`` tags the records that carry no fidelity
    (data from other tools or older stores); tagged ones keep theirs. Returns the number
    of records written.
    """
    source, destination = Path(source), Path(destination)
    format_of(destination)  # an unknown destination format fails before anything is read
    if _same_file(source, destination):
        raise DatasetError(
            f"source and destination are the same file ({source} -> {destination}); "
            "convert into a new file instead"
        )
    records = read_records(source)
    if fidelity is not None:
        fidelity = fidelity_name(fidelity)
        for rec in records:
            rec.fidelity = rec.fidelity or fidelity
    write_records(destination, records, read_metadata(source), mode=mode)
    return len(records)


def import_extxyz(src: str | os.PathLike, dst: str | os.PathLike, metadata: Optional[Dict[str, Any]] = None) -> int:
    """Append an extended-XYZ file to another store (usually an ASE database)."""
    records = read_records(src)
    for r in records:
        r.info.setdefault("source", f"{Path(src).name}:{r.id}")
    write_records(dst, records, metadata)
    return len(records)


def export_extxyz(src: str | os.PathLike, dst: str | os.PathLike) -> int:
    """Write every record of a store as one extended-XYZ file (replacing ``dst`` atomically)."""
    return convert(src, dst, mode="overwrite")


def dataset_hash(records: Sequence[Record]) -> str:
    """Content hash of the labelled data (goes into model provenance)."""
    h = hashlib.sha256()
    for r in records:
        update_content_hash(h, r)
    return h.hexdigest()[:16]
