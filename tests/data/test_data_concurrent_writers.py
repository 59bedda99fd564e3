"""Writers of one store exclude each other: two `mlff label` runs never duplicate a row."""

from __future__ import annotations

import subprocess
import threading
import time
from collections import Counter

import pytest
from ase.db import connect

from mlff.cli import main

from data_helpers import cli_command, cli_env, emt_records, run_cli

# long enough (a few seconds of EMT MD) that two runs started together overlap
ARGS = ["Cu", "--repeat", "2", "2", "2", "--temperatures", "300", "900", "--md-frames", "10",
        "--md-interval", "40", "--rattle", "10", "--strain", "10", "--no-progress"]
PLANNED = 2 * 10 + 10 + 10


def test_two_label_processes_on_one_database_never_duplicate(tmp_path):
    db = tmp_path / "cu.db"
    procs = [subprocess.Popen(cli_command("label", *ARGS, "-o", db), env=cli_env(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    ids = [row.sample_id for row in connect(str(db)).select()]
    assert len(ids) == PLANNED, f"{len(ids)} rows for {PLANNED} tasks; repeated: {[i for i, n in Counter(ids).items() if n > 1][:5]}"
    assert len(set(ids)) == PLANNED
    # between them the two runs labelled each task once; the later one said that it waited
    stdout = "".join(o for o, _ in outs)
    assert "already there" in stdout
    assert any("waiting for it to finish" in e for _, e in outs), outs
    # and the store passes the check
    p = run_cli("data", "check", db, "--elements", "Cu")
    assert p.returncode == 0 and f"{PLANNED} valid structures of {PLANNED}" in p.stdout, p.stderr


def test_data_check_names_repeated_identities(tmp_path, capsys):
    """A database that already has duplicates (written before writers were locked) is refused, naming rows."""
    db = tmp_path / "dup.db"
    con = connect(str(db))
    for rec in emt_records(3):
        con.write(rec.to_atoms(), sample_id=f"rattle-b0-{rec.id}")
    rec = emt_records(1)[0]
    con.write(rec.to_atoms(), sample_id="rattle-b0-0")  # row 4 repeats row 1
    assert main(["data", "check", str(db)]) == 2
    err = capsys.readouterr().err
    assert "repeated sample identity: 1 (rows 4)" in err
    assert "sample_id=rattle-b0-0 in rows 1, 4" in err
    with pytest.warns(UserWarning, match="skipped"):
        assert main(["data", "check", str(db), "--skip-invalid"]) == 0
    assert "3 valid structures of 4" in capsys.readouterr().out


def test_in_process_writers_wait_for_the_lock(tmp_path):
    """A writer that finds the store locked waits for the holder, then appends after it."""
    from mlff.data import read_records, write_records
    from mlff.data.locking import store_lock

    path = tmp_path / "s.xyz"
    recs = emt_records(4)
    write_records(path, recs[:2])
    done = []

    def other_writer():
        write_records(path, recs[2:])
        done.append(time.monotonic())

    with store_lock(path):
        t = threading.Thread(target=other_writer)  # another thread: its own lock, not re-entrant
        t.start()
        time.sleep(0.5)
        released = time.monotonic()
        assert not done, "the second writer did not wait for the lock"
    t.join(30)
    assert done and done[0] >= released
    assert len(read_records(path)) == 4


@pytest.mark.parametrize("suffix", [".db", ".xyz", ".h5"])
def test_append_refuses_structures_already_stored(tmp_path, suffix):
    from mlff.data import DatasetError, read_records, write_records

    path = tmp_path / f"s{suffix}"
    recs = emt_records(4)
    labelled = emt_records(2, seed=5)
    for k, r in enumerate(labelled):
        r.info["sample_id"] = f"rattle-b0-{k}"
    write_records(path, recs[:3] + labelled)
    with pytest.raises(DatasetError, match="2 of the 3 new structures are already there"):
        write_records(path, [recs[1], recs[3], labelled[0]])  # identity by content, and by sample_id
    with pytest.raises(DatasetError, match="repeat within the new data"):
        write_records(path, [recs[3], recs[3]])
    assert len(read_records(path)) == 5  # nothing of the refused calls was written


def test_every_spelling_of_a_store_shares_one_lock(tmp_path):
    from mlff.data.locking import lock_path

    store = tmp_path / "s.db"
    (tmp_path / "sub").mkdir()
    (tmp_path / "link.db").symlink_to(store)
    assert lock_path(tmp_path / "sub" / ".." / "s.db") == lock_path(tmp_path / "link.db") == lock_path(store)
    assert lock_path(store) == tmp_path.resolve() / ".s.db.lock"

