"""Sample identity: when two rows are "the same sample" (a repeat, not two observations).

A row written by ``mlff label`` carries its task id (``info["sample_id"]``). Two rows
with the same task id and the same geometry (atoms, cell and positions within
:data:`GEOMETRY_TOLERANCE`) are one sample written twice: two labelling runs that
raced, an append of the same file again. Neither labels nor positions are compared bit
for bit, because two runs of the same task differ in the last bits (the MD frames of two
identical EMT runs differ by 1e-14 Å). The task id alone is not enough: every labelling
run numbers its tasks from zero, so a store merged from two runs holds equal ids for
different structures.

A row without a task id is identified by its geometry and labels, bit for bit (a copy);
the same geometry labelled at two levels of theory is two samples. So is the same task
labelled at two fidelities (a multi-fidelity set merges stores whose task ids and rattled
geometries coincide): the fidelity is part of the identity.

Training on repeats silently weights those structures twice, so validation, appends
and training refuse them.
"""

from __future__ import annotations

import hashlib
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from .errors import DatasetError
from .records import Record

#: how many repeated identities a message spells out
MAX_SHOWN = 10

#: Å: rows of one task whose positions and cell agree to this are one sample; far below
#: any difference between two samples (rattles are ~0.1 Å), far above run-to-run noise
GEOMETRY_TOLERANCE = 1e-4


def update_content_hash(h: "hashlib._Hash", rec: Record) -> None:
    """Feed a record's geometry and labels to ``h`` (also the recipe of the dataset hash in model provenance)."""
    for arr in (rec.numbers, rec.positions, rec.cell, rec.pbc):
        h.update(np.ascontiguousarray(arr).tobytes())
    for arr in (rec.energy, rec.forces, rec.stress):
        h.update(b"-" if arr is None else np.ascontiguousarray(np.asarray(arr, dtype=np.float64)).tobytes())
    # fields added with multi-fidelity data count only when set, so the hash of older data is unchanged
    for name, value in (("charges", rec.charges), ("charge", rec.charge), ("mult", rec.mult)):
        if value is not None:
            h.update(name.encode() + np.ascontiguousarray(np.asarray(value, dtype=np.float64)).tobytes())
    if rec.fidelity is not None:
        h.update(b"fidelity=" + rec.fidelity.encode())


def sample_identity(rec: Record) -> str:
    """``"sample_id=<task id>[@<fidelity>]"`` for labelled rows, ``"content=<hash>"`` for any other row.

    Rows with equal identities are one sample if :func:`same_sample` says so.
    """
    sid = rec.info.get("sample_id")
    if sid is not None:
        return f"sample_id={sid}" + (f"@{rec.fidelity}" if rec.fidelity is not None else "")
    h = hashlib.sha256()
    update_content_hash(h, rec)
    return f"content={h.hexdigest()[:16]}"


def same_sample(a: Record, b: Record) -> bool:
    """Whether two rows are one sample (see the module docstring)."""
    if sample_identity(a) != sample_identity(b):
        return False
    if a.info.get("sample_id") is None:
        return True  # equal content hashes
    return (
        np.array_equal(a.numbers, b.numbers)
        and np.array_equal(a.pbc, b.pbc)
        and bool(np.all(np.abs(np.asarray(a.cell) - np.asarray(b.cell)) <= GEOMETRY_TOLERANCE))
        and bool(np.all(np.abs(a.positions - b.positions) <= GEOMETRY_TOLERANCE))
    )


class SampleIndex:
    """The samples seen so far, each with the ids of the rows that carry it."""

    def __init__(self, records: Iterable[Record] = ()) -> None:
        # identity -> [(first row of a sample, ids of all its rows)]; several samples share
        # an identity only where stores from different labelling runs were merged
        self._samples: Dict[str, List[Tuple[Record, List[str]]]] = {}
        for rec in records:
            self.add(rec)

    def find(self, rec: Record) -> Optional[Record]:
        """The first stored row of the sample ``rec`` repeats, if any."""
        for first, _ in self._samples.get(sample_identity(rec), []):
            if same_sample(first, rec):
                return first
        return None

    def add(self, rec: Record) -> List[str]:
        """Record ``rec``; returns the ids of every row of its sample so far (``rec`` last)."""
        samples = self._samples.setdefault(sample_identity(rec), [])
        for first, ids in samples:
            if same_sample(first, rec):
                ids.append(rec.id)
                return ids
        samples.append((rec, [rec.id]))
        return samples[-1][1]

    def repeated(self) -> Dict[str, List[str]]:
        """Identity -> ids of all rows, for every sample stored more than once."""
        out: Dict[str, List[str]] = {}
        for ident, samples in self._samples.items():
            for first, ids in samples:
                if len(ids) > 1:
                    out[ident if ident not in out else f"{ident} (structure of row {first.id})"] = ids
        return out


def find_duplicate_identities(records: Iterable[Record]) -> Dict[str, List[str]]:
    """Samples that occur more than once -> the ids of every record carrying them (in order)."""
    return SampleIndex(records).repeated()


def describe_duplicates(duplicates: Dict[str, List[str]], indent: str = "  ") -> str:
    """One line per repeated sample (at most :data:`MAX_SHOWN`), naming its rows."""
    lines = [f"{indent}{ident} in rows {', '.join(ids)}" for ident, ids in list(duplicates.items())[:MAX_SHOWN]]
    if len(duplicates) > MAX_SHOWN:
        lines.append(f"{indent}and {len(duplicates) - MAX_SHOWN} more repeated samples")
    return "\n".join(lines)


def refuse_duplicate_identities(records: Sequence[Record], source: str = "dataset") -> None:
    """Raise :class:`DatasetError` naming the rows if any sample occurs more than once."""
    duplicates = find_duplicate_identities(records)
    if duplicates:
        raise DatasetError(
            f"{source}: {len(duplicates)} {'sample occurs' if len(duplicates) == 1 else 'samples occur'} more than once "
            "(training would weight those structures twice):\n"
            + describe_duplicates(duplicates)
            + "\nDelete the repeated rows (ASE database: ase db FILE id=N --delete --yes) or rebuild "
            "the set; with on_invalid: skip (CLI: --skip-invalid) only the first row of each is used."
        )
