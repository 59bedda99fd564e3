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

Levels of theory: a store entry may name the fidelity of its untagged structures; a
structure of a level the run does not train is refused (:func:`check_fidelities`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..data.errors import DatasetError
from ..data.identity import MAX_SHOWN, update_content_hash
from ..data.records import Record
from ..data.store import read_metadata, read_records
from ..data.validate import list_ids, split_counts, validate_records
from .config import DataConfig, StoreSpec


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


def refuse_shared_structures(sets: Dict[str, Dict[str, Sequence[Record]]]) -> None:
    """Raise :class:`DatasetError` if one structure (geometry + labels) is in two of ``sets``.

    ``sets``: set name -> {store path -> its records in that set}.
    """
    where: Dict[str, List[Tuple[str, str, str]]] = {}
    for name, stores in sets.items():
        for path, records in stores.items():
            for rec in records:
                h = hashlib.sha256()
                update_content_hash(h, rec)
                where.setdefault(h.hexdigest(), []).append((name, path, rec.id))
    shared = [rows for rows in where.values() if len({name for name, _, _ in rows}) > 1]
    if shared:
        lines = [" = ".join(f"{path} row {row}" for _, path, row in rows) for rows in shared[:MAX_SHOWN]]
        if len(shared) > MAX_SHOWN:
            lines.append(f"and {len(shared) - MAX_SHOWN} more")
        raise DatasetError(
            f"{len(shared)} structures occur in more than one of the sets "
            f"({', '.join(sets)}), so validation would measure memorised structures:\n  "
            + "\n  ".join(lines)
            + "\nRemove them from one of the files."
        )


def tag_fidelity(records: Sequence[Record], fidelity: Optional[str]) -> List[Record]:
    """``records`` with ``fidelity`` given to those that carry no fidelity tag."""
    if fidelity is None:
        return list(records)
    return [rec if rec.fidelity is not None else dataclasses.replace(rec, fidelity=fidelity) for rec in records]


def check_fidelities(records: Sequence[Record], fidelities: Sequence[str], source: str) -> None:
    """Refuse records whose level of theory is not one the run trains (named, with their rows).

    With ``fidelities`` empty (a single-level model) the records may carry at most one
    distinct tag: two levels in one energy head would be fitted as one.
    """
    if fidelities:
        bad: Dict[Optional[str], List[str]] = {}
        for rec in records:
            if rec.fidelity not in fidelities:
                bad.setdefault(rec.fidelity, []).append(rec.id)
        if bad:
            lines = [
                f"{'no fidelity tag' if f is None else f'fidelity {f!r}'}: {len(ids)} (rows {list_ids(ids)})"
                for f, ids in bad.items()
            ]
            raise DatasetError(
                f"{source}: structures of levels of theory this run does not train (data.fidelities = "
                f"{list(fidelities)}):\n  " + "\n  ".join(lines)
                + "\nTag untagged stores with {path: ..., fidelity: NAME} in data.train, add the level to "
                "data.fidelities (and the model's), or select the other structures away."
            )
        return
    tags = sorted({rec.fidelity for rec in records if rec.fidelity is not None})
    if len(tags) > 1:
        raise DatasetError(
            f"{source}: the structures come from {len(tags)} levels of theory {tags}, but the model has one "
            "energy head; list them in data.fidelities (with a multi-fidelity model) or train on one level"
        )


@dataclass
class Split:
    """Train, validation and test records (validated), with each store's metadata."""

    train: List[Record]
    valid: List[Record]
    test: List[Record]
    #: training store path -> its metadata (teacher, settings)
    metadata: Dict[str, Dict[str, Any]] = field(default_factory=dict)

    def provenance(self) -> Dict[str, Any]:
        """Teacher and settings for an exported model's provenance (one store: as stored)."""
        metas = list(self.metadata.values())
        if len(metas) == 1:
            return metas[0]
        teachers = list(dict.fromkeys(str(m.get("teacher", "unknown")) for m in metas))
        return {
            "teacher": "+".join(teachers),
            "teacher_settings": {os.path.basename(p): m.get("teacher_settings", {}) for p, m in self.metadata.items()},
        }


def _read_store(
    spec: StoreSpec, d: DataConfig, elements: Optional[List[int]], fidelities: Sequence[str], min_structures: int,
    selection: Optional[str] = None,
) -> List[Record]:
    """One store's records: read, tagged with the store's fidelity, checked, validated."""
    records = tag_fidelity(read_records(spec.path, spec.selection or selection), spec.fidelity)
    check_fidelities(records, fidelities, spec.path)
    report = validate_records(
        records, elements, d.on_invalid, min_structures, source=spec.path, require_forces=d.require_forces
    )
    return report.kept


def _read_set(
    stores: Sequence[StoreSpec], d: DataConfig, elements: Optional[List[int]], fidelities: Sequence[str]
) -> Dict[str, List[Record]]:
    return {spec.path: _read_store(spec, d, elements, fidelities, 1) for spec in stores}


def load_split(d: DataConfig, elements: Optional[List[int]], fidelities: Sequence[str] = ()) -> Split:
    """Train, validation and test records (validated), and the training stores' metadata.

    Each training store is split on its own (store ``k`` with the seed ``[split_seed, k]``,
    the first with ``split_seed`` as before several stores existed), so every store,
    typically one level of theory each, has its share in the validation set.
    """
    train_stores = d.train_stores
    n_min = d.min_structures if len(train_stores) == 1 else 1  # several stores: the total counts
    rows: Dict[str, Dict[str, List[Record]]] = {"train": {}, "valid": {}, "test": {}}
    for k, spec in enumerate(train_stores):
        records = _read_store(spec, d, elements, fidelities, n_min, d.selection)
        rng = np.random.default_rng(d.split_seed if k == 0 else [d.split_seed, k])
        order = rng.permutation(len(records)).tolist()
        n_valid, n_test = split_counts(
            len(records), (0.0 if d.valid else d.valid_fraction, 0.0 if d.test else d.test_fraction)
        )
        rows["valid"][spec.path] = [records[i] for i in order[:n_valid]]
        rows["test"][spec.path] = [records[i] for i in order[n_valid : n_valid + n_test]]
        rows["train"][spec.path] = [records[i] for i in order[n_valid + n_test :]]
    train = [r for recs in rows["train"].values() for r in recs]
    source = ", ".join(s.path for s in train_stores)
    if len(train) < d.min_structures:
        raise ValueError(
            f"{source}: after the validation/test split only {len(train)} training structures remain "
            f"(min_structures = {d.min_structures}); label more data or lower the fractions"
        )
    if d.valid:
        rows["valid"] = _read_set(d.valid_stores, d, elements, fidelities)
    if d.test:
        rows["test"] = _read_set(d.test_stores, d, elements, fidelities)
    if d.valid or d.test:
        named = {"train": source}
        for part, given in (("valid", d.valid), ("test", d.test)):
            if given:
                named[part] = ", ".join(rows[part])
        refuse_shared_structures({named[part]: rows[part] for part in named})
    split = Split(
        train=train,
        valid=[r for recs in rows["valid"].values() for r in recs],
        test=[r for recs in rows["test"].values() for r in recs],
    )
    # each store had one level; several stores together must too for a single-level run
    check_fidelities(split.train + split.valid + split.test, fidelities,
                     ", ".join(dict.fromkeys(path for part in rows.values() for path in part)))
    # a store whose metadata cannot be read is an error like any other read error: the
    # provenance (teacher, settings) of the exported model comes from it
    split.metadata = {spec.path: read_metadata(spec.path) for spec in train_stores}
    return split
