"""Bad input to the data commands (`mlff label`, `mlff data check|convert`): one table.

Each row runs the real CLI in a fresh process with a clean environment and expects a
non-zero exit, a message that names the problem and the way out (no traceback), and
no file written or changed. Add new bad inputs here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence, Tuple

import pytest

from data_helpers import emt_records, run_cli

# fast sampling settings for label rows that would get as far as labelling
FAST = ["--temperatures", "300", "--md-frames", "1", "--md-interval", "1", "--rattle", "1", "--strain", "1",
        "--no-progress"]


@dataclass(frozen=True)
class Case:
    id: str
    argv: Sequence[str]  # "{d}" is the folder with the fixture files
    fragments: Sequence[str]  # each must appear in stderr
    absent: Tuple[str, ...] = ()  # files that must not exist afterwards
    unchanged: Tuple[str, ...] = ()  # fixture files that must keep their bytes
    code: int = 2


CASES = [
    Case("check-unknown-element", ["data", "check", "{d}/good.db", "--elements", "Cu", "Xx"],
         ["'Xx' is not an element symbol", "--elements"]),
    Case("label-element-the-teacher-lacks", ["label", "Au", "--teacher", "lammps-snap", "-o", "{d}/au.db", *FAST],
         ["teacher 'lammps-snap' covers Cu only", "contain Au", "--teacher-option element=X"], absent=("au.db",)),
    Case("label-element-emt-lacks", ["label", "Fe", "-o", "{d}/fe.db", *FAST],
         ["teacher 'emt' covers", "contain Fe", "--teacher"], absent=("fe.db",)),
    Case("label-zero-repeat", ["label", "Cu", "--repeat", "0", "1", "1", "-o", "{d}/r0.db", *FAST],
         ["repeat must be three positive integers", "got 0 1 1"], absent=("r0.db",)),
    Case("label-negative-repeat", ["label", "Cu", "--repeat", "2", "-1", "1", "-o", "{d}/r1.db", *FAST],
         ["repeat must be three positive integers", "got 2 -1 1"], absent=("r1.db",)),
    Case("label-into-corrupt-db", ["label", "Cu", "-o", "{d}/corrupt.db", *FAST],
         ["corrupt.db is not a valid, readable ASE SQLite database", "move it aside"], unchanged=("corrupt.db",)),
    Case("check-corrupt-db", ["data", "check", "{d}/corrupt.db"],
         ["corrupt.db is not a valid, readable ASE SQLite database"], unchanged=("corrupt.db",)),
    Case("convert-corrupt-db", ["data", "convert", "{d}/corrupt.db", "{d}/from-corrupt.xyz"],
         ["corrupt.db is not a valid, readable ASE SQLite database"], absent=("from-corrupt.xyz",)),
    # the store metadata (teacher, provenance) is part of the data: unreadable metadata is an error,
    # not an empty dict (training would record the teacher as "unknown")
    Case("convert-unreadable-metadata", ["data", "convert", "{d}/badmeta.h5", "{d}/from-badmeta.xyz"],
         ["badmeta.h5: cannot be read", "JSONDecodeError"], absent=("from-badmeta.xyz",)),
    Case("label-other-teacher-into-db", ["label", "Cu", "--teacher", "ase.calculators.emt:EMT", "-o", "{d}/good.db", *FAST],
         ["labelled by teacher 'emt'", "use another output file"], unchanged=("good.db",)),
    Case("label-unknown-teacher", ["label", "Cu", "--teacher", "dft", "-o", "{d}/dft.db", *FAST],
         ["unknown teacher 'dft'", "emt", "module:factory"], absent=("dft.db",)),
    Case("label-into-xyz", ["label", "Cu", "-o", "{d}/labels.xyz", *FAST],
         ["ASE SQLite database (.db)", "labels.xyz"], absent=("labels.xyz",)),
    Case("convert-existing-destination", ["data", "convert", "{d}/good.db", "{d}/good.xyz"],
         ["good.xyz already exists", "--append", "--overwrite"], unchanged=("good.db", "good.xyz")),
    Case("convert-append-rows-already-there", ["data", "convert", "{d}/good.xyz", "{d}/good.db", "--append"],
         ["refusing to append", "already there", "sample_id=rattle-b0-0"], unchanged=("good.db", "good.xyz")),
    Case("convert-append-and-overwrite", ["data", "convert", "{d}/good.db", "{d}/x.h5", "--append", "--overwrite"],
         ["not allowed with argument"], absent=("x.h5",)),
    Case("convert-onto-itself", ["data", "convert", "{d}/good.db", "{d}/good.db", "--append"],
         ["source and destination are the same file"], unchanged=("good.db",)),
    Case("convert-onto-itself-other-spelling", ["data", "convert", "{d}/good.db", "{d}/sub/../good.db", "--overwrite"],
         ["source and destination are the same file"], unchanged=("good.db",)),
    Case("convert-onto-itself-via-symlink", ["data", "convert", "{d}/link.db", "{d}/good.db", "--append"],
         ["source and destination are the same file"], unchanged=("good.db",)),
    Case("convert-unknown-destination-format", ["data", "convert", "{d}/good.db", "{d}/out.csv"],
         ["out.csv: unknown dataset format '.csv'", ".db", ".xyz", ".h5"], absent=("out.csv",)),
    Case("check-unknown-format", ["data", "check", "{d}/notes.txt"],
         ["notes.txt: unknown dataset format '.txt'"], unchanged=("notes.txt",)),
    Case("check-missing-file", ["data", "check", "{d}/missing.db"],
         ["missing.db", "does not exist"], absent=("missing.db",)),
    Case("convert-missing-source", ["data", "convert", "{d}/missing.xyz", "{d}/from-missing.db"],
         ["missing.xyz", "does not exist"], absent=("missing.xyz", "from-missing.db")),
    Case("check-repeated-identities", ["data", "check", "{d}/dup.db"],
         ["repeated sample identity: 1 (rows 4)", "sample_id=rattle-b0-0 in rows 1, 4"], unchanged=("dup.db",)),
]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    """good.db (labelled rows), good.xyz (the same rows), dup.db (a repeated row), corrupt.db,
    badmeta.h5 (unreadable metadata), link.db -> good.db, notes.txt."""
    import h5py
    from ase.db import connect

    from mlff.data import write_records

    d = tmp_path_factory.mktemp("bad-input")
    recs = emt_records(3)
    for r in recs:
        r.info = {"sample_id": f"rattle-b0-{r.id}", "teacher": "emt"}
    write_records(d / "good.db", recs, {"teacher": "emt"})
    write_records(d / "good.xyz", recs, {"teacher": "emt"})
    con = connect(str(d / "dup.db"))
    for r in recs + recs[:1]:  # written around mlff, as two unlocked writers did
        con.write(r.to_atoms(), sample_id=r.info["sample_id"])
    (d / "corrupt.db").write_bytes(b"this is not an SQLite file\n" * 100)
    write_records(d / "badmeta.h5", recs)
    with h5py.File(d / "badmeta.h5", "a") as fh:
        fh.attrs["metadata"] = "{teacher: emt"
    (d / "link.db").symlink_to(d / "good.db")
    (d / "sub").mkdir()
    (d / "notes.txt").write_text("not a dataset\n")
    return d


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(inputs, case):
    before = {name: (inputs / name).read_bytes() for name in case.unchanged}
    p = run_cli(*[a.format(d=inputs) for a in case.argv], cwd=inputs)
    assert p.returncode == case.code, (p.stdout, p.stderr)
    assert "Traceback" not in p.stderr, p.stderr
    for fragment in case.fragments:
        assert fragment in p.stderr, f"{fragment!r} not in:\n{p.stderr}"
    for name in case.absent:
        assert not (inputs / name).exists(), f"{name} was written"
    for name, content in before.items():
        assert (inputs / name).read_bytes() == content, f"{name} was changed"
    assert not [n for n in os.listdir(inputs) if n.endswith(".tmp")]
