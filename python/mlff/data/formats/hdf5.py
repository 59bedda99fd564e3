"""HDF5 store (``.h5``, ``.hdf5``) for large sets, grouped by atom count.

Grouping by atom count lets every group be a dense array ``[M, N, ...]``, which is
what batched readers (and the multi-fidelity trainer) want. Each structure's info is
type-preserving JSON (:mod:`.infojson`); the store metadata is a JSON attribute.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Iterator, List, Sequence

import numpy as np

from ..errors import DatasetError
from ..records import Record
from . import infojson

SUFFIXES = (".h5", ".hdf5")
FORMAT = "mlff-h5-1"


def write(path: Path, records: Sequence[Record], metadata: Dict[str, Any]) -> None:
    """Write a new store at ``path`` with every record."""
    import h5py

    groups: Dict[int, List[Record]] = {}
    for rec in records:
        groups.setdefault(rec.n_atoms, []).append(rec)
    with h5py.File(path, "w") as fh:
        fh.attrs["mlff_format"] = FORMAT
        fh.attrs["metadata"] = infojson.dumps(metadata or {}, "store metadata")
        for n, recs in sorted(groups.items()):
            g = fh.create_group(f"n{n}")
            g["numbers"] = np.stack([r.numbers for r in recs])
            g["positions"] = np.stack([r.positions for r in recs])
            g["cell"] = np.stack([r.cell for r in recs])
            g["pbc"] = np.stack([r.pbc for r in recs])
            # explicit masks: NaN is a value to validate, not a marker for "absent"
            g["has_energy"] = np.array([r.energy is not None for r in recs])
            g["energy"] = np.array([np.nan if r.energy is None else r.energy for r in recs])
            g["has_forces"] = np.array([r.forces is not None for r in recs])
            g["forces"] = np.stack([np.full((n, 3), np.nan) if r.forces is None else r.forces for r in recs])
            g["has_stress"] = np.array([r.stress is not None for r in recs])
            g["stress"] = np.stack([np.full(6, np.nan) if r.stress is None else r.stress for r in recs])
            # where each structure came from (the row id in its source), for people reading the file
            g["source_id"] = np.array([r.id for r in recs], dtype=h5py.string_dtype())
            g["info"] = np.array(
                [infojson.dumps(r.info, f"info of structure {r.id}") for r in recs], dtype=h5py.string_dtype()
            )


def _check_format(fh, path: Path) -> None:
    if fh.attrs.get("mlff_format") != FORMAT:
        raise DatasetError(f"{path} is not an mlff HDF5 store (no mlff_format attribute {FORMAT!r})")


def read(path: Path) -> Iterator[Record]:
    import h5py

    with h5py.File(path, "r") as fh:
        _check_format(fh, path)
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
                    info=infojson.loads(arrays["info"][k]),
                )


def read_metadata(path: Path) -> Dict[str, Any]:
    import h5py

    with h5py.File(path, "r") as fh:
        _check_format(fh, path)
        return infojson.loads(fh.attrs.get("metadata", "{}"))
