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


def test_energies_only_store(tmp_path):
    recs = emt_records(4)
    for r in recs[2:]:
        r.forces, r.fidelity = None, "cheap"
    with pytest.raises(DatasetError, match="missing forces: 2"):
        validate_records(recs)  # the trainer's default: forces are needed
    report = validate_records(recs, require_forces=False)
    assert len(report.kept) == 4
    assert report.labels["0"] == ("energy", "forces", "stress") and report.labels["2"] == ("energy", "stress")
    assert report.fidelities["2"] == "cheap"
    assert report.contents().splitlines() == [
        "cheap: 2 structures (energy 2, stress 2)",
        "(no fidelity): 2 structures (energy 2, forces 2, stress 2)",
    ]
    recs[3].forces = np.full((4, 3), np.nan)  # optional, but never NaN
    with pytest.raises(DatasetError, match="non-finite forces: 1 .rows 3."):
        validate_records(recs, require_forces=False)


def test_optional_labels_are_checked():
    recs = emt_records(5)
    recs[0].charges = np.array([0.1, -0.1, 0.0, 0.0])
    recs[1].charges = np.array([0.1, np.nan, 0.0, 0.0])
    recs[2].charges = np.zeros(3)
    recs[3].charges, recs[3].charge = np.full(4, 0.25), 0.0
    recs[4].mult = 0
    with pytest.raises(DatasetError) as err:
        validate_records(recs)
    msg = str(err.value)
    assert "4 of 5 structures are invalid" in msg
    assert "non-finite charges: 1 (rows 1)" in msg
    assert "charges of the wrong shape: 1 (rows 2)" in msg
    assert "partial charges that do not sum to the total charge: 1 (rows 3)" in msg
    assert "spin multiplicity below 1: 1 (rows 4)" in msg


def test_cli_check_energies_only(tmp_path):
    recs = emt_records(3)
    recs[1].forces = None
    db = tmp_path / "e.db"
    write_records(db, recs)
    p = subprocess.run([sys.executable, "-m", "mlff.cli", "data", "check", str(db), "--energies-only"],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert "3 valid structures of 3" in p.stdout and "(energy 3, forces 2, stress 3)" in p.stdout
