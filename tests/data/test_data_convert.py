"""`mlff data convert`: every direction round-trips, nothing is appended or doubled by accident,
and a failed conversion leaves no destination."""

from __future__ import annotations

import os

import numpy as np
import pytest
from ase.db import connect

from mlff.cli import main
from mlff.data import read_records, write_records
from mlff.data.store import read_metadata

from data_helpers import assert_same_records, emt_records

SUFFIXES = [".db", ".xyz", ".h5"]
DIRECTIONS = [(a, b) for a in SUFFIXES for b in SUFFIXES if a != b]
METADATA = {
    "teacher": "emt",
    "teacher_settings": {"cutoff": 6.5, "flags": [1, 2]},
    "provenance": {"tool": "mlff label", "mlff_version": "0.0-test"},
}


def _records():
    """Labelled records with the info kinds that broke conversions: numeric-looking strings,
    nested settings, arrays, bools, text that extxyz cannot quote; and one without stress."""
    recs = emt_records(3)
    for k, r in enumerate(recs):
        r.info = {
            "sample_id": f"md-b0-T300-{k}",
            "sample_kind": "md",
            "temperature": 300.0,
            "teacher": "emt",
            "teacher_settings": {"asap": False, "cutoff": 6.5},
            "momenta": np.arange(12.0).reshape(4, 3) * (k + 1),
            "source_id": str(k + 1),  # "1": ASE refuses it as a key-value string
            "note": 'a "quoted", spaced = string' if k else "back\\slash\nnewline",
            "flag": bool(k % 2),
            "count": k,
        }
    recs[2].stress = None
    return recs


@pytest.mark.parametrize("src,dst", DIRECTIONS, ids=[f"{a[1:]}-to-{b[1:]}" for a, b in DIRECTIONS])
def test_convert_round_trips(tmp_path, src, dst):
    original = _records()
    a, b, back = tmp_path / f"a{src}", tmp_path / f"b{dst}", tmp_path / f"back{src}"
    write_records(a, original, METADATA)
    assert main(["data", "convert", str(a), str(b)]) == 0
    assert main(["data", "convert", str(b), str(back)]) == 0
    text = ".xyz" in (src, dst)  # extxyz atom columns are text with 8 decimals
    for path in (b, back):
        assert_same_records(original, read_records(path), atol=1e-8 if text else 0)
        assert read_metadata(path) == METADATA


def test_existing_destination_needs_append_or_overwrite(tmp_path, capsys):
    recs = emt_records(4)
    src, dst = tmp_path / "a.db", tmp_path / "b.xyz"
    write_records(src, recs[:2], METADATA)
    assert main(["data", "convert", str(src), str(dst)]) == 0
    before = dst.read_bytes()
    assert main(["data", "convert", str(src), str(dst)]) == 2  # a second run does not double the data
    assert "already exists" in capsys.readouterr().err
    assert dst.read_bytes() == before
    assert main(["data", "convert", str(src), str(dst), "--append"]) == 2  # the same rows again: refused
    assert "already there" in capsys.readouterr().err
    assert dst.read_bytes() == before

    write_records(src, recs[2:])
    os.chmod(dst, 0o640)
    assert main(["data", "convert", str(src), str(dst), "--overwrite"]) == 0
    assert len(read_records(dst)) == 4
    assert oct(dst.stat().st_mode & 0o777) == oct(0o640)  # replaced, not re-created with other permissions
    other = tmp_path / "c.db"
    write_records(other, emt_records(2, seed=9))
    assert main(["data", "convert", str(other), str(dst), "--append"]) == 0
    assert len(read_records(dst)) == 6
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("spelling", ["same", "dotdot", "symlink", "hardlink"])
def test_self_conversion_is_refused(tmp_path, spelling, capsys):
    src = tmp_path / "a.db"
    write_records(src, emt_records(2))
    dst = {
        "same": src,
        "dotdot": tmp_path / "sub" / ".." / "a.db",
        "symlink": tmp_path / "link.db",
        "hardlink": tmp_path / "hard.db",
    }[spelling]
    (tmp_path / "sub").mkdir()
    if spelling == "symlink":
        dst.symlink_to(src)
    if spelling == "hardlink":
        os.link(src, dst)
    for flag in ([], ["--append"], ["--overwrite"]):
        assert main(["data", "convert", str(src), str(dst), *flag]) == 2
        assert "same file" in capsys.readouterr().err
    assert len(read_records(src)) == 2


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_failed_write_leaves_no_destination(tmp_path, suffix):
    """A write that fails half-way (a value that cannot be stored) leaves no file behind."""
    bad = emt_records(3)
    bad[2].info["callback"] = object()
    path = tmp_path / f"new{suffix}"
    with pytest.raises(Exception):
        write_records(path, bad)
    assert not path.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_failed_conversion_leaves_no_destination(tmp_path, monkeypatch):
    """Conversion into a database stops after some rows: neither a partial nor an empty database stays."""
    from mlff.data.formats import ase_db

    src, dst = tmp_path / "a.xyz", tmp_path / "b.db"
    write_records(src, emt_records(4), METADATA)
    real_write = ase_db._write_rows

    def fail_after_two(db, records, metadata):
        real_write(db, records[:2], metadata)
        raise OSError("disk full")

    monkeypatch.setattr(ase_db, "_write_rows", fail_after_two)
    with pytest.raises(OSError, match="disk full"):
        main(["data", "convert", str(src), str(dst)])
    assert not dst.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_h5_to_db_of_labelled_rows(tmp_path):
    """The reported failure: 'Value 1 is put in as string but can be interpreted as int', empty y.db left."""
    db = tmp_path / "x.db"
    write_records(db, _records(), METADATA)
    assert main(["data", "convert", str(db), str(tmp_path / "x.h5")]) == 0
    assert main(["data", "convert", str(tmp_path / "x.h5"), str(tmp_path / "y.db")]) == 0
    rows = list(connect(str(tmp_path / "y.db")).select())
    assert [r.sample_id for r in rows] == [f"md-b0-T300-{k}" for k in range(3)]  # still queryable keys
