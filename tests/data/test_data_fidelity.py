"""Fidelity tags and optional labels (energy without forces, partial charges, total charge,
multiplicity) in records and every store, old HDF5 files and AIMNet2 files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from ase.build import molecule

from mlff.data import DatasetError, Record, read_records, validate_records, write_records
from mlff.data.identity import find_duplicate_identities, sample_identity

from data_helpers import assert_same_records, emt_records

FIXTURES = Path(__file__).parent / "fixtures"


def _molecules():
    """Three levels: DFT with forces and charges (an anion doublet), xTB energies with charges, and
    an untagged energy-only row with nothing else stated."""
    out = []
    for k, (name, fidelity, charge, mult) in enumerate(
        [("H2O", "pbe/def2-svp", -1.0, 2), ("NH3", "gfn1-xtb", 0.0, 1), ("CH4", None, None, None)]
    ):
        a = molecule(name)
        a.positions += 0.01 * k
        rec = Record.from_atoms(a, id=str(k), info={"sample_id": f"rattle-b{k}-0", "k": k})
        rec.energy = -100.0 - k
        rec.forces = np.full((len(a), 3), 0.25) if k == 0 else None
        rec.charges = None if charge is None else np.linspace(-0.4, 0.4, len(a)) + charge / len(a)
        rec.charge, rec.mult, rec.fidelity = charge, mult, fidelity
        out.append(rec)
    return out


@pytest.mark.parametrize("suffix", [".db", ".xyz", ".h5"])
def test_optional_labels_round_trip(tmp_path, suffix):
    recs = _molecules()
    path = tmp_path / f"mf{suffix}"
    write_records(path, recs[:2])
    write_records(path, recs[2:])  # append
    back = sorted(read_records(path), key=lambda r: r.info["k"])  # HDF5 orders by atom count
    assert_same_records(recs, back, atol=1e-8 if suffix == ".xyz" else 0)


def test_info_keys_become_fields():
    a = molecule("OH")
    rec = Record.from_atoms(a, id="x", info={"charge": -1, "mult": 1, "fidelity": "gfn2-xtb", "note": 1})
    assert (rec.charge, rec.mult, rec.fidelity) == (-1.0, 1, "gfn2-xtb")
    assert type(rec.charge) is float and rec.info == {"note": 1}  # one place for each value
    atoms = rec.to_atoms()
    assert atoms.info["charge"] == -1.0 and atoms.info["mult"] == 1  # where the trainer and teachers read them
    with pytest.raises(ValueError, match="disagrees"):
        Record(id="y", numbers=a.numbers, positions=a.positions, cell=np.zeros((3, 3)), pbc=np.zeros(3, bool),
               info={"charge": 1}, charge=-1.0)
    with pytest.raises(ValueError, match="invalid mult"):
        Record.from_atoms(a, id="z", info={"mult": 1.5})
    assert rec.labels() == ("charge", "mult")


def test_same_task_at_two_fidelities_is_two_samples():
    a, b = emt_records(1)[0], emt_records(1)[0]
    for r, fid in ((a, "gfn1-xtb"), (b, "gfn2-xtb")):
        r.info["sample_id"] = "rattle-b0-0"
        r.fidelity = fid
    assert sample_identity(a) == "sample_id=rattle-b0-0@gfn1-xtb"
    assert not find_duplicate_identities([a, b])
    b.fidelity = "gfn1-xtb"
    assert find_duplicate_identities([a, b])


def test_old_hdf5_store_is_read():
    """``store_mlff-h5-1.h5`` was written by the HDF5 store of commit 1534321 (format mlff-h5-1: groups
    n<N>, ``positions``, masks for energy/forces/stress only); the JSON holds what was written."""
    expected = json.loads((FIXTURES / "store_mlff-h5-1.expected.json").read_text())
    back = read_records(FIXTURES / "store_mlff-h5-1.h5")
    assert [r.id for r in back] == ["n3/0", "n4/0", "n4/1", "n5/0"]  # H2O, 2 x Cu, CH4
    by_source = dict(zip(["2", "0", "1", "3"], back))
    for exp in expected:
        rec = by_source[exp["id"]]
        np.testing.assert_array_equal(rec.numbers, exp["numbers"])
        np.testing.assert_array_equal(rec.positions, exp["positions"])
        assert rec.energy == exp["energy"]
        assert (rec.forces is None) == (exp["forces"] is None)
        if exp["forces"] is not None:
            np.testing.assert_array_equal(rec.forces, exp["forces"])
        assert (rec.stress is None) == (exp["stress"] is None)
        info = dict(exp["info"])
        # the old store kept the total charge in info; it is now the record's field
        assert rec.charge == info.pop("charge", None)
        assert rec.info == info and rec.fidelity is None and rec.charges is None and rec.mult is None


def test_aimnet2_hdf5_file_is_read(tmp_path):
    import h5py

    path = tmp_path / "aimnet2.h5"
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as fh:  # the layout of AIMNet2's training files: no masks, no mlff attributes
        g = fh.create_group("003")
        g["coord"] = rng.normal(size=(2, 3, 3))
        g["numbers"] = np.array([[8, 1, 1], [8, 1, 1]])
        g["charge"] = np.array([0.0, -1.0])
        g["energy"] = np.array([-2075.0, -2070.0])
        g["forces"] = rng.normal(size=(2, 3, 3))
        g["charges"] = np.array([[-0.6, 0.3, 0.3], [-1.0, 0.0, 0.0]])
    back = read_records(path)
    assert [r.id for r in back] == ["003/0", "003/1"]
    assert back[1].charge == -1.0 and back[1].energy == -2070.0 and back[1].fidelity is None
    assert not back[0].pbc.any() and back[0].forces.shape == (3, 3)
    validate_records(back, elements=[1, 8])


def test_not_an_hdf5_store(tmp_path):
    import h5py

    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as fh:
        fh["x"] = np.zeros(3)
    with pytest.raises(DatasetError, match="not an mlff HDF5 store"):
        read_records(path)


def test_convert_tags_untagged_structures(tmp_path):
    from mlff.cli import main

    recs = _molecules()
    src, dst = tmp_path / "a.db", tmp_path / "b.h5"
    write_records(src, recs)
    assert main(["data", "convert", str(src), str(dst), "--fidelity", "gfn2-xtb"]) == 0
    got = {r.info["k"]: r.fidelity for r in read_records(dst)}
    assert got == {0: "pbe/def2-svp", 1: "gfn1-xtb", 2: "gfn2-xtb"}  # tags already there are kept
    assert main(["data", "convert", str(src), str(tmp_path / "c.h5"), "--fidelity", " "]) == 2
