"""Reliability of `mlff train`: readable config errors, resume after a changed model,
no swallowed errors, the smooth cutoff envelope by default, repeated structures refused."""

from __future__ import annotations

import pytest

from training_helpers import write_config
from mlff.cli import main
from mlff.data import DatasetError, read_records, write_records
from mlff.training import load_config, train

QUICK = {"max_steps": 2, "valid_every": 2, "plots": False, "export": False, "tensorboard": False}


def test_malformed_yaml_names_file_line_and_problem(tmp_path, capsys):
    p = tmp_path / "broken.yaml"
    p.write_text("data:\n  train: x.db\nmodel:\n  cutoff: 3.6\n   n_features: 8\n")
    assert main(["train", str(p)]) == 2
    err = capsys.readouterr().err
    assert "broken.yaml" in err and "line 5" in err and "column" in err
    assert "mapping values are not allowed here" in err
    assert "Traceback" not in err


def test_repeated_yaml_keys_are_refused(tmp_path):
    # PyYAML keeps the last of two equal keys silently: a setting would vanish unnoticed
    p = tmp_path / "twice.yaml"
    p.write_text("data: {train: x.db}\nmodel:\n  cutoff: 3.6\n  cutoff: 5.0\n")
    with pytest.raises(ValueError, match=r"twice\.yaml.*line 4.*'cutoff' is given twice \(first on line 3\)"):
        load_config(p)


def test_resume_after_a_model_change_names_the_setting(tmp_path, cu_db):
    out = tmp_path / "run"
    train(load_config(write_config(tmp_path / "a.yaml", cu_db, out, run=QUICK)))
    changed = write_config(tmp_path / "b.yaml", cu_db, out, model={"n_features": 12, "cutoff_fn": "cosine"},
                           run={**QUICK, "max_steps": 4})
    with pytest.raises(RuntimeError) as info:
        train(load_config(changed), resume=True)
    msg = str(info.value)
    assert "model.n_features: 8 in the checkpoint, 12 now" in msg
    assert "model.cutoff_fn: 'polynomial' in the checkpoint, 'cosine' now" in msg
    assert "--resume" in msg and "size mismatch" not in msg


def test_store_metadata_errors_are_not_swallowed(tmp_path, cu_db):
    import h5py

    store = tmp_path / "cu.h5"
    write_records(store, read_records(cu_db), {"teacher": "emt"})
    with h5py.File(store, "r+") as fh:
        fh.attrs["metadata"] = '{"teacher": "emt", '  # cut short: unreadable, the records are intact
    assert len(read_records(store)) == 48
    cfg = load_config(write_config(tmp_path / "c.yaml", store, tmp_path / "run", run=QUICK))
    with pytest.raises(DatasetError, match="cu.h5"):
        train(cfg)


def test_the_default_envelope_is_the_smooth_polynomial(tmp_path, cu_db):
    from mlff.checkpoint import read_checkpoint

    out = tmp_path / "run"
    cfg = load_config(write_config(tmp_path / "c.yaml", cu_db, out, run=QUICK))  # no cutoff_fn given
    train(cfg)
    payload = read_checkpoint(out / "checkpoints" / "last.ckpt")
    assert payload["config"]["cutoff_fn"] == "polynomial"


def test_a_repeated_structure_is_refused_with_its_rows(tmp_path, cu_db):
    import shutil

    import ase.db

    store = tmp_path / "twice.db"
    shutil.copy(cu_db, store)
    with ase.db.connect(store) as db:
        row = db.get(id=3)
        # the same labelled structure again (row 49), as a second import of one file would add it
        db.write(row.toatoms(), key_value_pairs=row.key_value_pairs, data=row.get("data", {}))
    cfg = load_config(write_config(tmp_path / "c.yaml", store, tmp_path / "run", run=QUICK))
    with pytest.raises(DatasetError, match=r"repeated sample identity: 1 \(rows 49\)[\s\S]*in rows 3, 49"):
        train(cfg)


def test_a_structure_in_both_train_and_valid_files_is_refused(tmp_path, cu_db):
    recs = read_records(cu_db)
    valid = tmp_path / "valid.db"
    write_records(valid, recs[40:])
    cfg = load_config(write_config(tmp_path / "c.yaml", cu_db, tmp_path / "run",
                                   data={"valid": str(valid)}, run=QUICK))
    with pytest.raises(DatasetError, match=r"8 structures occur in more than one of the sets[\s\S]*"
                                           r"cu\.db row 41 = .*valid\.db row 1\b"):
        train(cfg)


def test_the_shortest_training_distance_is_recorded(tmp_path, cu_db):
    from ase.neighborlist import neighbor_list

    from mlff.training import Trainer

    trainer = Trainer(load_config(write_config(tmp_path / "c.yaml", cu_db, tmp_path / "run", run=QUICK)))
    trainer._setup()
    ids = {s.record_id for s in trainer.train_set}
    expected = min(float(neighbor_list("d", r.to_atoms(), 3.0).min()) for r in read_records(cu_db) if r.id in ids)
    assert 1.5 < expected < 2.5
    assert trainer.model.min_distance == pytest.approx(expected, abs=1e-12)
    assert trainer.model.contract_info()["min_distance"] == trainer.model.min_distance
