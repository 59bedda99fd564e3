"""Sample identity: repeats are found (and named) through noise and rounding; merged runs are not repeats."""

from __future__ import annotations

import pytest

from mlff.data import (
    DatasetError,
    find_duplicate_identities,
    read_records,
    refuse_duplicate_identities,
    validate_records,
    write_records,
)

from data_helpers import emt_records


def _labelled(seed, ids):
    recs = emt_records(len(ids), seed=seed)
    for r, sid in zip(recs, ids):
        r.info["sample_id"] = sid
    return recs


def test_stores_merged_from_two_runs_share_task_ids_not_samples(tmp_path):
    """Every labelling run numbers its tasks from 0: equal ids on different structures are two samples."""
    run_a, run_b = (_labelled(seed, ["rattle-b0-0", "rattle-b0-1"]) for seed in (1, 2))
    merged = tmp_path / "merged.db"
    write_records(merged, run_a)
    write_records(merged, run_b)  # not refused: other structures
    assert len(validate_records(read_records(merged)).kept) == 4


def test_one_task_written_twice_is_a_repeat_despite_last_bit_noise():
    """Two runs of one task differ in the last bits (MD frames of identical EMT runs: 1e-14 Å)."""
    a = _labelled(0, ["md-b0-T300-0", "md-b0-T300-1"])
    again = _labelled(0, ["md-b0-T300-0"])[0]
    again.id = "3"
    again.positions = again.positions + 1e-12
    again.energy += 1e-9
    assert find_duplicate_identities(a + [again]) == {"sample_id=md-b0-T300-0": ["0", "3"]}
    moved = _labelled(0, ["md-b0-T300-0"])[0]
    moved.id = "4"
    moved.positions[0, 0] += 0.01  # another structure under the same task id: a merged run
    assert find_duplicate_identities(a + [moved]) == {}


def test_unlabelled_rows_are_repeats_only_as_exact_copies():
    recs = emt_records(3)
    copy = emt_records(1)[0]
    copy.id = "9"
    relabelled = emt_records(1)[0]
    relabelled.id = "10"
    relabelled.energy += 0.5  # the same geometry at another level of theory: another sample
    dup = find_duplicate_identities(recs + [copy, relabelled])
    assert list(dup.values()) == [["0", "9"]] and next(iter(dup)).startswith("content=")


def test_refusal_names_rows_and_the_way_out():
    recs = _labelled(0, ["rattle-b0-0", "rattle-b0-1"]) + _labelled(0, ["rattle-b0-0"])
    recs[2].id = "7"
    with pytest.raises(DatasetError) as err:
        refuse_duplicate_identities(recs, source="train.db")
    msg = str(err.value)
    assert "train.db: 1 sample occurs more than once" in msg
    assert "sample_id=rattle-b0-0 in rows 0, 7" in msg
    assert "--skip-invalid" in msg
