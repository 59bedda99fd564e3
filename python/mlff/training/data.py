"""Which labelled structures the trainer trains, validates and tests on.

Repeated structures are refused, not silently dropped: a repeat weights a structure
twice in training, and a structure in both the training and the validation (or test)
set makes the validation error optimistic.

- Within one store, :func:`mlff.data.validate.validate_records` refuses repeated sample
  identities (``on_invalid: skip`` keeps the first copy of each and warns, naming them).
- Across stores (``data.valid`` / ``data.test`` given as separate files), the same
  structure (geometry and labels, bit for bit) in two sets is refused here. Sample ids
  are not compared across stores: ``mlff label`` numbers its tasks per store, so two
  stores legitimately reuse ids for different structures.
"""

from __future__ import annotations

import hashlib
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..data.errors import DatasetError
from ..data.identity import MAX_SHOWN, update_content_hash
from ..data.records import Record
from ..data.store import read_metadata, read_records
from ..data.validate import split_counts, validate_records
from .config import DataConfig


def resolve_elements(elements: Optional[Sequence[Union[str, int]]]) -> Optional[List[int]]:
    """``model.elements`` (symbols or atomic numbers) as sorted atomic numbers; None = from the data."""
    if elements is None:
        return None
    from ase.data import atomic_numbers

    out = []
    for e in elements:
        if isinstance(e, int):
            out.append(e)
        elif e in atomic_numbers:
            out.append(atomic_numbers[e])
        else:
            raise ValueError(f"model.elements: unknown element {e!r}")
    return sorted(set(out))


def refuse_shared_structures(sets: Dict[str, Sequence[Record]]) -> None:
    """Raise :class:`DatasetError` if one structure (geometry + labels) is in two of ``sets``."""
    where: Dict[str, List[Tuple[str, str]]] = {}
    for name, records in sets.items():
        for rec in records:
            h = hashlib.sha256()
            update_content_hash(h, rec)
            where.setdefault(h.hexdigest(), []).append((name, rec.id))
    shared = [rows for rows in where.values() if len({name for name, _ in rows}) > 1]
    if shared:
        lines = [" = ".join(f"{name} row {row}" for name, row in rows) for rows in shared[:MAX_SHOWN]]
        if len(shared) > MAX_SHOWN:
            lines.append(f"and {len(shared) - MAX_SHOWN} more")
        raise DatasetError(
            f"{len(shared)} structures occur in more than one of the sets "
            f"({', '.join(sets)}), so validation would measure memorised structures:\n  "
            + "\n  ".join(lines)
            + "\nRemove them from one of the files."
        )


def load_split(
    d: DataConfig, elements: Optional[List[int]]
) -> Tuple[List[Record], List[Record], List[Record], Dict[str, Any]]:
    """Train, validation and test records (validated), and the training store's metadata."""
    records = read_records(d.train, d.selection)
    report = validate_records(records, elements, d.on_invalid, d.min_structures, source=d.train)
    records = report.kept
    rng = np.random.default_rng(d.split_seed)
    order = rng.permutation(len(records)).tolist()
    n_valid, n_test = split_counts(len(records), (0.0 if d.valid else d.valid_fraction, 0.0 if d.test else d.test_fraction))
    valid = [records[k] for k in order[:n_valid]]
    test = [records[k] for k in order[n_valid : n_valid + n_test]]
    train = [records[k] for k in order[n_valid + n_test :]]
    if len(train) < d.min_structures:
        raise ValueError(
            f"{d.train}: after the validation/test split only {len(train)} training structures remain "
            f"(min_structures = {d.min_structures}); label more data or lower the fractions"
        )
    if d.valid:
        valid = validate_records(read_records(d.valid), elements, d.on_invalid, 1, source=d.valid).kept
    if d.test:
        test = validate_records(read_records(d.test), elements, d.on_invalid, 1, source=d.test).kept
    if d.valid or d.test:
        refuse_shared_structures({d.train: train, **({d.valid: valid} if d.valid else {}), **({d.test: test} if d.test else {})})
    # a store whose metadata cannot be read is an error like any other read error: the
    # provenance (teacher, settings) of the exported model comes from it
    meta = read_metadata(d.train)
    return train, valid, test, meta
