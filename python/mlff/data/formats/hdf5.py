"""HDF5 store (``.h5``, ``.hdf5``) for large sets, grouped by atom count.

Grouping by atom count lets every group be a dense array ``[M, N, ...]``, which is
what batched readers (and the multi-fidelity trainer) want. The layout (format
``mlff-h5-2``) uses AIMNet2's dataset names, so its training code reads our files:

- one group per atom count N, named ``f"{N:03d}"`` (``"028"``);
- ``coord`` [M,N,3] Å, ``numbers`` [M,N], ``charge`` [M] total charge (e), ``energy`` [M] eV;
  ``forces`` [M,N,3] eV/Å, ``charges`` [M,N] e, ``mult`` [M], ``stress`` [M,6] eV/Å³
  only where some structure of the group has them;
- ``has_<label>`` [M] booleans for every label: explicit masks, because NaN is a value
  to validate, not a marker for "absent" (absent entries hold NaN, or 0 for charge and mult);
- ``fidelity`` [M] the level of theory of each structure ("" = not stated);
- ``cell`` [M,3,3], ``pbc`` [M,3], ``source_id`` [M] (the row id in the source, for
  people reading the file) and ``info`` [M], type-preserving JSON (:mod:`.infojson`).

The store metadata is a JSON attribute. Files of the first layout (``mlff-h5-1``:
groups ``n<N>``, ``positions``, no charges or fidelities) are still read, and so are
AIMNet2 files (no ``mlff_format`` attribute; groups with ``coord`` and ``numbers``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence

import numpy as np

from ..errors import DatasetError
from ..records import Record
from . import infojson

SUFFIXES = (".h5", ".hdf5")
FORMAT = "mlff-h5-2"
#: the layout before charges and fidelities: groups ``n<N>``, coordinates in ``positions``
FORMAT_V1 = "mlff-h5-1"

#: per-structure labels that may be absent: dataset name -> (Record attribute, fill value, dtype)
_OPTIONAL = {
    "energy": ("energy", np.nan, np.float64),
    "forces": ("forces", np.nan, np.float64),
    "stress": ("stress", np.nan, np.float64),
    "charges": ("charges", np.nan, np.float64),
    # an absent total charge is stored as 0 (what an unmasked reader should assume), an
    # absent multiplicity as 0 (invalid on purpose: never mistaken for a stated one)
    "charge": ("charge", 0.0, np.float64),
    "mult": ("mult", 0, np.int64),
}
#: written even when no structure of a group has them (AIMNet2's readers expect them)
_ALWAYS = ("energy", "charge")


def _shape(name: str, n: int) -> tuple:
    return {"forces": (n, 3), "stress": (6,), "charges": (n,)}.get(name, ())


def write(path: Path, records: Sequence[Record], metadata: Dict[str, Any]) -> None:
    """Write a new store at ``path`` with every record."""
    import h5py

    groups: Dict[int, List[Record]] = {}
    for rec in records:
        groups.setdefault(rec.n_atoms, []).append(rec)
    text = h5py.string_dtype()
    with h5py.File(path, "w") as fh:
        fh.attrs["mlff_format"] = FORMAT
        fh.attrs["metadata"] = infojson.dumps(metadata or {}, "store metadata")
        for n, recs in sorted(groups.items()):
            g = fh.create_group(f"{n:03d}")
            g["coord"] = np.stack([r.positions for r in recs])
            g["numbers"] = np.stack([r.numbers for r in recs])
            g["cell"] = np.stack([r.cell for r in recs])
            g["pbc"] = np.stack([r.pbc for r in recs])
            for name, (attr, fill, dtype) in _OPTIONAL.items():
                values = [getattr(r, attr) for r in recs]
                has = np.array([v is not None for v in values])
                g[f"has_{name}"] = has
                if has.any() or name in _ALWAYS:
                    blank = np.full(_shape(name, n), fill, dtype=dtype)
                    g[name] = np.stack([blank if v is None else np.asarray(v, dtype=dtype) for v in values])
            g["fidelity"] = np.array([r.fidelity or "" for r in recs], dtype=text)
            g["source_id"] = np.array([r.id for r in recs], dtype=text)
            # the system fields are columns of their own
            g["info"] = np.array([infojson.dumps(r.info, f"info of structure {r.id}") for r in recs], dtype=text)


def _layout(fh, path: Path) -> str:
    """FORMAT, FORMAT_V1 or "aimnet2"; anything else is refused with what was expected."""
    fmt = fh.attrs.get("mlff_format")
    if fmt in (FORMAT, FORMAT_V1):
        return fmt
    if fmt is None and len(fh) and all(
        isinstance(g, _group_type()) and "coord" in g and "numbers" in g for g in fh.values()
    ):
        return "aimnet2"
    raise DatasetError(
        f"{path} is not an mlff HDF5 store (mlff_format attribute {fmt!r}, expected {FORMAT!r} or "
        f"{FORMAT_V1!r}) nor an AIMNet2-style file (groups with coord and numbers datasets)"
    )


def _group_type():
    import h5py

    return h5py.Group


def _group_size(name: str) -> int:
    return int(name[1:]) if name.startswith("n") else int(name)


def _strings(values: np.ndarray) -> List[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values]


def _column(arrays: Dict[str, np.ndarray], name: str, m: int) -> Callable[[int], Optional[Any]]:
    """k -> the value of label ``name`` of structure k, or None where the mask says absent.

    A dataset without a mask (AIMNet2 files) is present for every structure.
    """
    values = arrays.get(name)
    if values is None:
        return lambda k: None
    has = arrays.get(f"has_{name}", np.ones(m, dtype=bool))
    if name in ("energy", "charge"):
        return lambda k: float(values[k]) if has[k] else None
    if name == "mult":
        return lambda k: int(values[k]) if has[k] else None
    return lambda k: values[k] if has[k] else None


def _group_records(name: str, arrays: Dict[str, np.ndarray]) -> Iterator[Record]:
    if "positions" in arrays:  # mlff-h5-1
        arrays = {**arrays, "coord": arrays["positions"]}
    coord = arrays["coord"]
    m, n = coord.shape[:2]
    labels = {attr: _column(arrays, dataset, m) for dataset, (attr, _, _) in _OPTIONAL.items()}
    fidelity = _strings(arrays["fidelity"]) if "fidelity" in arrays else [""] * m
    info = arrays.get("info")
    for k in range(m):
        yield Record(
            id=f"{name}/{k}",
            numbers=arrays["numbers"][k].astype(np.int64),
            positions=np.asarray(coord[k], dtype=np.float64),
            # AIMNet2 files hold molecules: no cell, no periodicity
            cell=arrays["cell"][k] if "cell" in arrays else np.zeros((3, 3)),
            pbc=arrays["pbc"][k].astype(bool) if "pbc" in arrays else np.zeros(3, dtype=bool),
            info={} if info is None else infojson.loads(info[k]),
            fidelity=fidelity[k] or None,
            **{attr: column(k) for attr, column in labels.items()},
        )


def read(path: Path) -> Iterator[Record]:
    import h5py

    with h5py.File(path, "r") as fh:
        _layout(fh, path)
        for name in sorted(fh.keys(), key=_group_size):
            g = fh[name]
            yield from _group_records(name, {k: g[k][()] for k in g.keys()})


def read_metadata(path: Path) -> Dict[str, Any]:
    import h5py

    with h5py.File(path, "r") as fh:
        _layout(fh, path)
        return infojson.loads(fh.attrs.get("metadata", "{}"))
