"""Invalid rows are named, counted, refused or skipped; too-small sets are refused."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from mlff.data import DatasetError, read_records, validate_records, write_records

from data_helpers import emt_records


def _broken(tmp_path):
    recs = emt_records(8)
    recs[1].forces = None  # missing forces
    recs[3].forces[2, 1] = np.nan  # NaN
    recs[5].numbers = recs[5].numbers.copy()
    recs[5].numbers[0] = 28  # Ni: not a model element
    db = tmp_path / "broken.db"
    write_records(db, recs)
    return db


def test_refuse_names_rows(tmp_path):
    db = _broken(tmp_path)
    records = read_records(db)
    with pytest.raises(DatasetError) as err:
        validate_records(records, elements=[29], source=str(db))
    msg = str(err.value)
    assert "3 of 8 structures are invalid" in msg
    assert "missing forces: 1 (rows 2)" in msg  # ASE row ids start at 1
    assert "non-finite forces: 1 (rows 4)" in msg
    assert "elements outside the model (Ni): 1 (rows 6)" in msg


def test_skip_keeps_valid_rows(tmp_path):
    db = _broken(tmp_path)
    with pytest.warns(UserWarning, match="skipped"):
        report = validate_records(read_records(db), elements=[29], on_invalid="skip")
    assert [r.id for r in report.kept] == ["1", "3", "5", "7", "8"]


def test_minimum_size(tmp_path):
    with pytest.raises(DatasetError, match="2 valid structures, but at least 10 are needed"):
        validate_records(emt_records(2), min_structures=10)


def test_many_ids_are_abbreviated():
    recs = emt_records(25)
    for r in recs:
        r.energy = float("nan")
    with pytest.raises(DatasetError, match="non-finite energy: 25 .* and 5 more"):
        validate_records(recs)


def test_cli_check_reports_rows(tmp_path):
    db = _broken(tmp_path)
    p = subprocess.run([sys.executable, "-m", "mlff.cli", "data", "check", str(db), "--elements", "Cu"],
                       capture_output=True, text=True)
    assert p.returncode == 2
    assert "missing forces: 1 (rows 2)" in p.stderr and "non-finite forces: 1 (rows 4)" in p.stderr
    p = subprocess.run([sys.executable, "-m", "mlff.cli", "data", "check", str(db), "--elements", "Cu", "--skip-invalid"],
                       capture_output=True, text=True)
    assert p.returncode == 0 and "5 valid structures of 8" in p.stdout
