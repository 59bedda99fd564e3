"""`mlff label`: writes as it goes, resumes after SIGKILL without losing or duplicating rows."""

from __future__ import annotations

import importlib.util
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
from ase.db import connect

from mlff.data import DatasetError, read_records
from mlff.data.label import label, parse_structure
from mlff.data.sampling import SamplingConfig, plan
from mlff.data.teachers import make_teacher

ARGS = ["Cu", "--repeat", "2", "2", "2", "--temperatures", "300", "900", "--md-frames", "15",
        "--md-interval", "25", "--rattle", "10", "--strain", "10", "--no-progress"]


def _rows(db):
    try:
        con = sqlite3.connect(str(db))
        return con.execute("select count(*) from systems").fetchone()[0]
    except sqlite3.Error:
        return 0


def test_label_resumes_after_sigkill(tmp_path):
    db = tmp_path / "cu.db"
    cmd = [sys.executable, "-m", "mlff.cli", "label", *ARGS, "-o", str(db)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 60
    while _rows(db) < 8 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "labelling finished before it could be killed; make it longer"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    n_killed = _rows(db)
    assert 8 <= n_killed < 50
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    assert f"({n_killed} already there, 50 planned)" in out
    ids = [r.sample_id for r in connect(str(db)).select()]
    assert len(ids) == 50 and len(set(ids)) == 50
    # every MD chain has consecutive frames, continued from the stored positions and momenta
    for chain in ("md-b0-T300", "md-b0-T900"):
        assert sorted(int(i.rsplit("-", 1)[1]) for i in ids if i.startswith(chain + "-")) == list(range(15))
    recs = read_records(db)
    assert all(r.stress is not None and r.forces.shape == (32, 3) for r in recs)
    assert connect(str(db)).metadata["teacher"] == "emt"


def test_label_in_process_resume_and_teacher_guard(tmp_path):
    db = tmp_path / "m.db"
    bases = parse_structure("H2O")
    cfg = SamplingConfig(temperatures=[300.0], md_frames=3, md_interval=2, rattle=3, strain=5, seed=1)
    assert [t.kind for t in plan(bases, cfg)] == ["md"] * 3 + ["rattle"] * 3  # molecules: no strain
    teacher = make_teacher("emt")  # EMT knows H and O (crudely): enough to test the bookkeeping
    s1 = label(db, bases, teacher, cfg, progress=False, max_new=2)
    s2 = label(db, bases, teacher, cfg, progress=False)
    assert (s1.labelled, s2.already_done, s2.labelled) == (2, 2, 4)
    recs = read_records(db)
    assert all(r.stress is None for r in recs)
    other = make_teacher("ase.calculators.emt:EMT")  # another name: another teacher
    with pytest.raises(DatasetError, match="labelled by teacher 'emt'"):
        label(db, bases, other, cfg, progress=False)


def test_label_fidelity_option(tmp_path, capsys):
    from mlff.cli import main

    db = tmp_path / "toy.db"
    args = ["label", "H2O", "-o", str(db), "--temperatures", "300", "--md-frames", "1", "--md-interval", "2",
            "--rattle", "1", "--no-progress"]
    assert main(args + ["--fidelity", "toy-emt"]) == 0
    assert "labelled by emt (toy-emt)" in capsys.readouterr().out
    assert {r.fidelity for r in read_records(db)} == {"toy-emt"}
    assert main(args + ["--fidelity", "other"]) == 2  # one store, one level of theory
    assert "labelled by fidelity 'toy-emt'" in capsys.readouterr().err


@pytest.mark.skipif(importlib.util.find_spec("tblite") is None,
                    reason="tblite (optional xTB teacher) is not installed: pip install tblite")
def test_label_tblite_gfn1_charged(tmp_path):
    from ase.build import molecule

    db = tmp_path / "oh.db"
    anion = molecule("OH")
    anion.info["charge"] = -1
    cfg = SamplingConfig(temperatures=[300.0], md_frames=3, md_interval=2, rattle=2, seed=2)
    teacher = make_teacher("tblite", method="GFN1-xTB")
    label(db, [anion], teacher, cfg, progress=False, max_new=2)
    label(db, [anion], make_teacher("tblite", method="GFN1-xTB"), cfg, progress=False)  # resumes the MD chain
    recs = read_records(db)
    assert len(recs) == 5
    for r in recs:
        assert (r.fidelity, r.charge, r.mult) == ("gfn1-xtb", -1.0, 1)
        assert r.charges.shape == (2,) and r.charges.sum() == pytest.approx(-1.0, abs=1e-8)
        assert r.info["teacher"] == "tblite"
    with pytest.raises(DatasetError, match="labelled by fidelity 'gfn1-xtb'"):
        label(db, [anion], make_teacher("tblite"), cfg, progress=False)
