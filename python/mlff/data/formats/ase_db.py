"""ASE SQLite database (``.db``): the canonical store.

Plain info values that ASE accepts as key-value pairs (queryable: ``sample_id``,
``temperature``) become key-value pairs; everything else (arrays, dicts, strings that
look like numbers, keys ASE reserves) goes to the row's ``data``, so every info dict
can be written and comes back equal. The record's fidelity, total charge and multiplicity
are key-value pairs ``fidelity`` and ``mult`` (so ``fidelity=gfn1-xtb`` selects a level) and
``charge`` is in the row's data (ASE's own ``charge`` column, the sum of the initial charges,
would shadow a key-value pair); per-atom charges are the row's ``charges``, as ASE stores
calculator results.
"""

from __future__ import annotations

import sqlite3
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import DatasetError
from ..records import Record

SUFFIXES = (".db",)


@contextmanager
def _readable(path: Path) -> Iterator[None]:
    """Turn "not a database" into a message that names the file and the way out."""
    try:
        yield
    except sqlite3.OperationalError as exc:  # locked, read-only, I/O error: the file may be fine
        raise DatasetError(
            f"{path}: the database cannot be used now ({exc}); check its permissions, the disk, and "
            "whether another program holds it locked"
        ) from exc
    except (sqlite3.DatabaseError, OSError) as exc:
        raise DatasetError(
            f"{path} is not a valid, readable ASE SQLite database ({type(exc).__name__}: {exc}). "
            "mlff left it unchanged: move it aside (or restore it from a backup) and write to a new file."
        ) from exc


def _connect(path: Path):
    from ase.db import connect

    # type="db" whatever the suffix: stores are built under a temporary name
    return connect(str(path), type="db", append=True)


def _split_info(info: Dict[str, Any]) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    from ase.db.core import check, numeric_keys

    kvp, data = {}, {}
    for key, value in info.items():
        if key in numeric_keys:
            # the database has columns of these names (``charge`` is the sum of the initial
            # charges) that replace a key-value pair of the same name when read back
            data[key] = value
            continue
        try:
            with warnings.catch_warnings():
                # ASE only warns about keys that look like chemical formulas: they cannot be
                # selected by key, so they are data too
                warnings.simplefilter("error")
                check({key: value})
        except (ValueError, UserWarning):
            data[key] = value
        else:
            kvp[key] = value
    return kvp, data


def _write_rows(db, records: Sequence[Record], metadata: Optional[Dict[str, Any]]) -> None:
    for rec in records:
        kvp, data = _split_info(rec.full_info())
        db.write(rec.to_atoms(), key_value_pairs=kvp, data=data)
    if metadata:
        db.metadata = {**db.metadata, **metadata}


def write(path: Path, records: Sequence[Record], metadata: Dict[str, Any]) -> None:
    """Write a new database at ``path`` (an empty or absent file)."""
    db = _connect(path)
    with db:  # one transaction
        _write_rows(db, records, metadata)


def append(path: Path, records: Sequence[Record], metadata: Optional[Dict[str, Any]]) -> None:
    """Append in place, all or nothing: one transaction (a kill rolls the journal back)."""
    db = _connect(path)
    with _readable(path), db:
        _write_rows(db, records, metadata)


def _record(row) -> Record:
    info: Dict[str, Any] = dict(row.key_value_pairs)
    info.update(row.get("data", {}) or {})
    stress = row.get("stress")
    return Record(
        id=str(row.id),
        numbers=np.asarray(row.numbers, dtype=np.int64),
        positions=np.array(row.positions, dtype=np.float64),
        cell=np.asarray(row.cell, dtype=np.float64),
        pbc=np.asarray(row.pbc, dtype=bool),
        energy=None if row.get("energy") is None else float(row.energy),
        forces=None if row.get("forces") is None else np.array(row.forces, dtype=np.float64),
        stress=None if stress is None else np.asarray(stress, dtype=np.float64),
        info=info,  # Record moves fidelity, charge and mult into its fields
        charges=None if row.get("charges") is None else np.array(row.charges, dtype=np.float64),
    )


def read(path: Path, selection: Optional[str] = None) -> Iterator[Record]:
    with _readable(path):
        db = _connect(path)
        for row in db.select(selection) if selection else db.select():
            yield _record(row)


def read_metadata(path: Path) -> Dict[str, Any]:
    with _readable(path):
        return dict(_connect(path).metadata)


def rows_with_sample_ids(path: Path, sample_ids: Iterable[str]) -> List[Record]:
    """The stored rows whose sample_id is among ``sample_ids`` (an indexed query each)."""
    with _readable(path):
        db = _connect(path)
        with db:  # one connection for all queries
            return [_record(row) for sid in set(sample_ids) for row in db.select(sample_id=sid)]
