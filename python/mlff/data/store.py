"""Read and write labelled structures: ASE SQLite (canonical), extended XYZ, HDF5.

The format follows the file suffix: ``.db`` (ASE SQLite), ``.xyz``/``.extxyz``,
``.h5``/``.hdf5``. Writes never leave a half-written store: SQLite writes happen in
one transaction per call (a kill rolls the journal back), whole-file formats go
through :func:`mlff.atomic.atomic_write`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence

import numpy as np

from ..atomic import atomic_write
from .records import Record

DB_SUFFIXES = (".db",)
XYZ_SUFFIXES = (".xyz", ".extxyz")
H5_SUFFIXES = (".h5", ".hdf5")


class DatasetError(ValueError):
    """A dataset is missing, unreadable, invalid or too small."""


def _kind(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in DB_SUFFIXES:
        return "db"
    if suffix in XYZ_SUFFIXES:
        return "xyz"
    if suffix in H5_SUFFIXES:
        return "h5"
    raise DatasetError(
        f"{path}: unknown dataset format {suffix!r}; use .db (ASE SQLite), .xyz/.extxyz or .h5/.hdf5"
    )


def _plain(value: Any) -> bool:
    return isinstance(value, (str, int, float, bool, np.integer, np.floating, np.bool_))


# --------------------------------------------------------------------------- ASE SQLite


def _connect(path: Path, must_exist: bool):
    from ase.db import connect

    if must_exist and not path.exists():
        raise DatasetError(f"dataset {str(path)!r} does not exist")
    return connect(str(path), type="db", append=True)


def _db_write(path: Path, records: Sequence[Record], metadata: Optional[Dict[str, Any]]) -> List[int]:
    db = _connect(path, must_exist=False)
    ids = []
    # one transaction: either every record of this call is in the file or none is
    with db:
        for rec in records:
            key_value_pairs = {k: v for k, v in rec.info.items() if _plain(v) and str(k).isidentifier()}
            data = {k: v for k, v in rec.info.items() if k not in key_value_pairs}
            ids.append(db.write(rec.to_atoms(), key_value_pairs=key_value_pairs, data=data))
    if metadata:
        db.metadata = {**db.metadata, **metadata}
    return ids


def _db_read(path: Path, selection: Optional[str]) -> Iterator[Record]:
    db = _connect(path, must_exist=True)
    for row in db.select(selection) if selection else db.select():
        info: Dict[str, Any] = dict(row.key_value_pairs)
        info.update(row.get("data", {}) or {})
        stress = row.get("stress")
        yield Record(
            id=str(row.id),
            numbers=np.asarray(row.numbers, dtype=np.int64),
            positions=np.array(row.positions, dtype=np.float64),
            cell=np.asarray(row.cell, dtype=np.float64),
            pbc=np.asarray(row.pbc, dtype=bool),
            energy=None if row.get("energy") is None else float(row.energy),
            forces=None if row.get("forces") is None else np.array(row.forces, dtype=np.float64),
            stress=None if stress is None else np.asarray(stress, dtype=np.float64),
            info=info,
        )


# --------------------------------------------------------------------------- extended XYZ


def _xyz_write(path: Path, records: Sequence[Record]) -> None:
    from ase.io import write

    existing = list(_xyz_read(path)) if path.exists() else []
    atoms = [r.to_atoms() for r in existing + list(records)]
    for a in atoms:
        # extxyz can only carry scalars and strings in the comment line
        for k in [k for k, v in a.info.items() if not _plain(v)]:
            del a.info[k]
    atomic_write(path, lambda tmp: write(tmp, atoms, format="extxyz"))


def _xyz_read(path: Path) -> Iterator[Record]:
    from ase.io import iread

    if not path.exists():
        raise DatasetError(f"dataset {str(path)!r} does not exist")
    for k, atoms in enumerate(iread(str(path), index=":", format="extxyz")):
        yield Record.from_atoms(atoms, id=str(k))


# --------------------------------------------------------------------------- HDF5


def _h5_write(path: Path, records: Sequence[Record], metadata: Optional[Dict[str, Any]]) -> None:
    """Rewrite the store with the old and new records, grouped by atom count.

    Grouping by atom count lets every group be a dense array ``[M, N, ...]``, which is
    what batched readers (and the multi-fidelity trainer) want for large sets.
    """
    import h5py

    old_meta: Dict[str, Any] = {}
    existing: List[Record] = []
    if path.exists():
        existing = list(_h5_read(path))
        old_meta = read_metadata(path)
    groups: Dict[int, List[Record]] = {}
    for rec in existing + list(records):
        groups.setdefault(rec.n_atoms, []).append(rec)
    meta = {**old_meta, **(metadata or {})}

    def write(tmp: str) -> None:
        with h5py.File(tmp, "w") as fh:
            fh.attrs["mlff_format"] = "mlff-h5-1"
            fh.attrs["metadata"] = json.dumps(meta, default=str)
            for n, recs in sorted(groups.items()):
                g = fh.create_group(f"n{n}")
                m = len(recs)
                g["numbers"] = np.stack([r.numbers for r in recs])
                g["positions"] = np.stack([r.positions for r in recs])
                g["cell"] = np.stack([r.cell for r in recs])
                g["pbc"] = np.stack([r.pbc for r in recs])
                # explicit masks: NaN is a value to validate, not a marker for "absent"
                g["has_energy"] = np.array([r.energy is not None for r in recs])
                g["energy"] = np.array([np.nan if r.energy is None else r.energy for r in recs])
                g["has_forces"] = np.array([r.forces is not None for r in recs])
                g["forces"] = np.stack(
                    [np.full((n, 3), np.nan) if r.forces is None else r.forces for r in recs]
                )
                g["has_stress"] = np.array([r.stress is not None for r in recs])
                g["stress"] = np.stack([np.full(6, np.nan) if r.stress is None else r.stress for r in recs]) if m else np.zeros((0, 6))
                g["source_id"] = np.array([r.id for r in recs], dtype=h5py.string_dtype())
                g["info"] = np.array(
                    [json.dumps({k: v for k, v in r.info.items() if _plain(v)}, default=str) for r in recs],
                    dtype=h5py.string_dtype(),
                )

    atomic_write(path, write)


def _h5_read(path: Path) -> Iterator[Record]:
    import h5py

    if not path.exists():
        raise DatasetError(f"dataset {str(path)!r} does not exist")
    with h5py.File(path, "r") as fh:
        if fh.attrs.get("mlff_format") != "mlff-h5-1":
            raise DatasetError(f"{path} is not an mlff HDF5 store (no mlff_format attribute)")
        for name in sorted(fh.keys(), key=lambda s: int(s[1:])):
            g = fh[name]
            arrays = {k: g[k][()] for k in g.keys()}
            for k in range(len(arrays["numbers"])):
                yield Record(
                    id=f"{name}/{k}",
                    numbers=arrays["numbers"][k].astype(np.int64),
                    positions=arrays["positions"][k],
                    cell=arrays["cell"][k],
                    pbc=arrays["pbc"][k].astype(bool),
                    energy=float(arrays["energy"][k]) if arrays["has_energy"][k] else None,
                    forces=arrays["forces"][k] if arrays["has_forces"][k] else None,
                    stress=arrays["stress"][k] if arrays["has_stress"][k] else None,
                    info={"source_id": _str(arrays["source_id"][k]), **json.loads(_str(arrays["info"][k]))},
                )


def _str(x: Any) -> str:
    return x.decode() if isinstance(x, bytes) else str(x)


# --------------------------------------------------------------------------- public API


def read_records(path: str | os.PathLike, selection: Optional[str] = None) -> List[Record]:
    """All records of a store (``selection`` is an ASE-db query, databases only)."""
    path = Path(path)
    kind = _kind(path)
    if selection and kind != "db":
        raise DatasetError("a selection query needs an ASE database (.db)")
    try:
        if kind == "db":
            return list(_db_read(path, selection))
        if kind == "xyz":
            return list(_xyz_read(path))
        return list(_h5_read(path))
    except DatasetError:
        raise
    except Exception as exc:  # sqlite3, h5py and ase.io raise many types
        raise DatasetError(f"{path}: cannot be read as a {kind} dataset ({type(exc).__name__}: {exc})") from exc


def write_records(
    path: str | os.PathLike, records: Iterable[Record], metadata: Optional[Dict[str, Any]] = None
) -> None:
    """Append records to a store, all or nothing."""
    path = Path(path)
    kind = _kind(path)
    records = list(records)
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "db":
        _db_write(path, records, metadata)
    elif kind == "xyz":
        _xyz_write(path, records)
    else:
        _h5_write(path, records, metadata)


def read_metadata(path: str | os.PathLike) -> Dict[str, Any]:
    """Store-level metadata (teacher, settings, provenance) where the format has it."""
    path = Path(path)
    kind = _kind(path)
    if not path.exists():
        raise DatasetError(f"dataset {str(path)!r} does not exist")
    if kind == "db":
        return dict(_connect(path, must_exist=True).metadata)
    if kind == "h5":
        import h5py

        with h5py.File(path, "r") as fh:
            return json.loads(fh.attrs.get("metadata", "{}"))
    return {}


def import_extxyz(src: str | os.PathLike, dst: str | os.PathLike, metadata: Optional[Dict[str, Any]] = None) -> int:
    """Copy an extended-XYZ file into another store (usually an ASE database)."""
    records = read_records(src)
    for r in records:
        r.info.setdefault("source", f"{Path(src).name}:{r.id}")
    write_records(dst, records, metadata)
    return len(records)


def export_extxyz(src: str | os.PathLike, dst: str | os.PathLike) -> int:
    """Write every record of a store as one extended-XYZ file (atomically)."""
    from ase.io import write

    records = read_records(src)
    atoms = [r.to_atoms() for r in records]
    for a in atoms:
        for k in [k for k, v in a.info.items() if not _plain(v)]:
            del a.info[k]
    atomic_write(Path(dst), lambda tmp: write(tmp, atoms, format="extxyz"))
    return len(records)


def dataset_hash(records: Sequence[Record]) -> str:
    """Content hash of the labelled data (goes into model provenance)."""
    import hashlib

    h = hashlib.sha256()
    for r in records:
        for arr in (r.numbers, r.positions, r.cell, r.pbc):
            h.update(np.ascontiguousarray(arr).tobytes())
        for arr in (r.energy, r.forces, r.stress):
            h.update(b"-" if arr is None else np.ascontiguousarray(np.asarray(arr, dtype=np.float64)).tobytes())
    return h.hexdigest()[:16]
