"""Training end to end on real EMT data: outputs, export, schedules, param groups, errors."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from training_helpers import write_config
from mlff import MLFFCalculator
from mlff.data import DatasetError, read_records, write_records
from mlff.training import load_config, train


def test_train_exports_a_working_model(tmp_path, cu_db):
    out = tmp_path / "run"
    cfg = load_config(write_config(tmp_path / "c.yaml", cu_db, out, run={"max_steps": 40, "keep_best": 2}))
    summary = train(cfg)
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    assert [int(r["step"]) for r in rows] == [10, 20, 30, 40]
    for key in ("energy_mae_per_atom", "energy_rmse_per_atom", "force_mae", "force_rmse", "stress_rmse"):
        assert np.isfinite(float(rows[-1][key]))
    assert float(rows[-1]["force_rmse"]) < float(rows[0]["force_rmse"])  # it learns
    assert len(list((out / "checkpoints").glob("best_*.ckpt"))) == 2
    for f in ("model.pt", "learning_curve.png", "parity.png", "summary.json"):
        assert (out / f).stat().st_size > 0
    # the exported model reproduces the best checkpoint and carries provenance
    calc = MLFFCalculator(str(out / "model.pt"))
    assert calc.metadata.provenance["teacher"] == "emt"
    assert calc.metadata.provenance["n_train"] == 38
    rec = read_records(cu_db)[0]
    ref = MLFFCalculator(summary["best_checkpoint"]).evaluate_batch([rec.to_atoms()])[0]
    got = calc.evaluate_batch([rec.to_atoms()])[0]
    np.testing.assert_allclose(got["forces"], ref["forces"], atol=1e-12)
    assert json.loads((out / "summary.json").read_text())["valid"]["force_rmse"] == pytest.approx(
        summary["valid"]["force_rmse"])


def test_refuses_to_overwrite_a_run(tmp_path, cu_db):
    cfg = load_config(write_config(tmp_path / "c.yaml", cu_db, tmp_path / "run", run={"max_steps": 10, "plots": False, "export": False}))
    train(cfg)
    with pytest.raises(RuntimeError, match="already holds a training run.*--resume"):
        train(cfg)


def test_plateau_schedule_and_early_stopping(tmp_path, cu_db):
    cfg = load_config(write_config(
        tmp_path / "c.yaml", cu_db, tmp_path / "run",
        optim={"lr": 1e-9},  # nothing improves: patience runs out
        schedule={"kind": "plateau", "plateau_patience": 0, "plateau_factor": 0.5},
        run={"max_steps": 200, "valid_every": 5, "early_stopping_patience": 3, "plots": False, "export": False},
    ))
    summary = train(cfg)
    assert summary["stopped_early"] and summary["steps"] < 200
    rows = list(csv.DictReader(open(tmp_path / "run" / "metrics.csv")))
    lrs = [float(r["lr"]) for r in rows]
    assert lrs[-1] < lrs[0]  # the plateau schedule lowered the rate


def test_float32_and_param_groups(tmp_path, cu_db):
    cfg = load_config(write_config(tmp_path / "c.yaml", cu_db, tmp_path / "run",
                                   run={"max_steps": 10, "dtype": "float32", "plots": False}))
    train(cfg)
    calc = MLFFCalculator(str(tmp_path / "run" / "model.pt"))
    assert calc.metadata.dtype == "float32"
    from mlff.models import PaiNN

    m = PaiNN([29], n_features=8, num_interactions=1)
    groups = m.param_groups(0.1)
    no_decay = {id(p) for p in groups[1]["params"]}
    assert id(m.atomic_energies) in no_decay and id(m.embedding.weight) in no_decay
    assert id(m.interactions[0].U.weight) not in no_decay
    assert groups[0]["weight_decay"] == 0.1 and groups[1]["weight_decay"] == 0.0


def test_invalid_rows_are_named_by_the_trainer(tmp_path, cu_db):
    recs = read_records(cu_db)[:20]
    recs[4].forces = None
    recs[7].forces[0, 0] = float("inf")
    bad = tmp_path / "bad.db"
    write_records(bad, recs)
    cfg = load_config(write_config(tmp_path / "c.yaml", bad, tmp_path / "run"))
    with pytest.raises(DatasetError, match=r"missing forces: 1 \(rows 5\)[\s\S]*non-finite forces: 1 \(rows 8\)"):
        train(cfg)
    cfg = load_config(write_config(tmp_path / "c.yaml", bad, tmp_path / "run2", data={"on_invalid": "skip", "min_structures": 30}))
    with pytest.raises(DatasetError, match="18 valid structures, but at least 30 are needed"):
        with pytest.warns(UserWarning):
            train(cfg)
