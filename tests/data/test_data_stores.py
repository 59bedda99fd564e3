"""Round trips through every store, transactional/atomic writes."""

from __future__ import annotations

import numpy as np
import pytest

from mlff.data import DatasetError, Record, export_extxyz, import_extxyz, read_records, write_records
from mlff.data.store import read_metadata

from data_helpers import assert_same_records, emt_records


@pytest.mark.parametrize("suffix", [".db", ".xyz", ".h5"])
def test_round_trip(tmp_path, records, suffix):
    path = tmp_path / f"set{suffix}"
    write_records(path, records[:3], {"teacher": "emt"})
    write_records(path, records[3:])  # append
    # extxyz atom columns are text with 8 decimals; info comes back with its types everywhere
    assert_same_records(records, read_records(path), atol=1e-8 if suffix == ".xyz" else 0)


def test_hdf5_groups_by_atom_count(tmp_path):
    import h5py

    mixed = emt_records(3) + emt_records(2, repeat=(2, 1, 1), seed=1)
    mixed[1].forces = None  # the cheap level of a multi-fidelity set: energy only
    for r in mixed:
        r.fidelity = "emt"
    path = tmp_path / "mixed.h5"
    write_records(path, mixed, {"teacher": "emt", "settings": {"x": 1}})
    with h5py.File(path) as fh:
        assert fh.attrs["mlff_format"] == "mlff-h5-2"
        assert sorted(fh.keys()) == ["004", "008"]  # AIMNet2's group names
        g = fh["004"]
        assert g["coord"].shape == (3, 4, 3) and g["numbers"].shape == (3, 4)
        assert g["charge"].shape == (3,) and g["energy"].shape == (3,)
        assert g["has_forces"][()].tolist() == [True, False, True]
        assert np.isnan(g["forces"][1]).all()  # absent, and said so by the mask
        assert "charges" not in g and "mult" not in g  # optional datasets only where some structure has them
        assert [f.decode() for f in g["fidelity"][()]] == ["emt"] * 3
        assert fh["008/forces"].shape == (2, 8, 3)
    assert read_metadata(path)["settings"] == {"x": 1}
    back = read_records(path)
    assert sorted(r.n_atoms for r in back) == [4, 4, 4, 8, 8]
    assert_same_records(mixed, back)


def test_extxyz_import_export(tmp_path, records):
    db = tmp_path / "a.db"
    write_records(db, records)
    xyz = tmp_path / "a.xyz"
    assert export_extxyz(db, xyz) == len(records)
    db2 = tmp_path / "b.db"
    assert import_extxyz(xyz, db2) == len(records)
    assert_same_records(records, read_records(db2), atol=1e-8, info=False)  # import adds "source"


def test_db_write_is_one_transaction(tmp_path, records):
    db = tmp_path / "t.db"
    write_records(db, records[:2])
    bad = Record(id="bad", numbers=np.array([29, 29]), positions=np.zeros((2, 3)), cell=np.eye(3) * 5,
                 pbc=np.array([True] * 3), energy=1.0, forces=np.zeros((2, 3)), info={"x": object()})
    with pytest.raises(Exception):  # the last row cannot be encoded: the whole call is rolled back
        write_records(db, records[2:4] + [bad])
    assert len(read_records(db)) == 2  # nothing of the failed call was kept


def test_failed_whole_file_write_keeps_old_file(tmp_path, records):
    path = tmp_path / "t.h5"
    write_records(path, records[:2])
    before = path.read_bytes()
    bad = Record(id="bad", numbers=np.array([29, 29]), positions=np.zeros((2, 3)), cell=np.eye(3),
                 pbc=np.array([True] * 3), energy=1.0, forces=np.zeros((5, 3)))
    with pytest.raises(Exception):
        # two 2-atom rows whose force arrays cannot be stacked: fails inside the write
        write_records(path, [bad, Record(**{**bad.__dict__, "id": "b2", "forces": np.zeros((2, 3))})])
    assert path.read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_unknown_format_and_missing_file(tmp_path):
    with pytest.raises(DatasetError, match="unknown dataset format"):
        read_records(tmp_path / "x.csv")
    with pytest.raises(DatasetError, match="does not exist"):
        read_records(tmp_path / "x.db")
