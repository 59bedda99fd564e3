"""`mlff tune`: real Optuna on a real SQLite storage, real (tiny) trainings on EMT Cu."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

optuna = pytest.importorskip("optuna")
from optuna.trial import TrialState  # noqa: E402

from mlff.training.config import load_config  # noqa: E402
from mlff.training.tune import prepare, tune  # noqa: E402
from training_helpers import write_config  # noqa: E402

#: the quickest training that still validates a few times: 4 reports per trial
TINY_RUN = {"max_steps": 20, "valid_every": 5, "plots": False, "tensorboard": False, "export": False}
SPACE = {
    "optim.lr": {"type": "float", "low": 1.0e-3, "high": 2.0e-2, "log": True},
    "loss.forces_weight": {"type": "float", "low": 1.0, "high": 100.0, "log": True},
    "model.n_features": {"type": "categorical", "choices": [4, 8]},
}


def write_tune(folder: Path, db: Path, space=None, **study) -> Path:
    """train.yaml (the shared tiny config) and tune.yaml next to it, paths relative to the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    write_config(folder / "train.yaml", db, Path("unused"), run=TINY_RUN)
    cfg = {
        "base": "train.yaml",
        "study": {"name": "cu", "storage": "sqlite:///study.db", "n_trials": 4, "pruner": "none", **study},
        "space": space or SPACE,
        "output_dir": "tune_output",
    }
    path = folder / "tune.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def load(folder: Path, name: str = "cu"):
    return optuna.load_study(study_name=name, storage=f"sqlite:///{folder / 'study.db'}")


def test_search_writes_trials_best_config_and_plot(cu_db, tmp_path, capsys):
    path = write_tune(tmp_path / "t", cu_db)
    study = tune(path)
    out = tmp_path / "t" / "tune_output"
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 4
    assert len({t.params["optim.lr"] for t in study.trials}) == 4
    rows = list(csv.DictReader(open(out / "trials.csv")))
    assert [int(r["number"]) for r in rows] == [0, 1, 2, 3]
    assert {r["state"] for r in rows} == {"COMPLETE"} and all(float(r["value"]) > 0 for r in rows)
    assert (out / "tune.png").stat().st_size > 1000
    assert all((out / f"trial_{k}" / "metrics.csv").exists() for k in range(4))

    best = study.best_trial
    cfg = load_config(out / "best_config.yaml")
    assert cfg.optim.lr == best.params["optim.lr"]
    assert cfg.loss.forces_weight == best.params["loss.forces_weight"]
    assert cfg.model.options["n_features"] == best.params["model.n_features"]
    assert cfg.run.max_steps == 20 and Path(cfg.run.output_dir) == (out / "best_run").resolve()
    # the value is the default metric (val_loss) of the trial's best validation
    logged = [float(r["val_loss"]) for r in csv.DictReader(open(out / f"trial_{best.number}" / "metrics.csv"))]
    assert best.value == pytest.approx(min(logged))
    assert sorted(best.intermediate_values) == [5, 10, 15, 20]
    table = capsys.readouterr().out
    assert f"{best.number}*" in table and "val_loss" in table

    # re-running a finished study runs nothing
    again = tune(path)
    assert len(again.trials) == 4


def _mlff_tune(path: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "mlff.cli", "tune", str(path)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_killed_search_resumes_without_repeating_trials(cu_db, tmp_path):
    folder = tmp_path / "k"
    path = write_tune(folder, cu_db, heartbeat_interval=1, grace_period=2)
    proc = _mlff_tune(path)
    deadline = time.monotonic() + 120
    try:
        while True:  # kill in trial 1's training: trial 0 finished, trial 1 RUNNING with its parameters
            assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read() if proc.stdout else ""
            try:
                trials = load(folder).trials
            except Exception:  # the study (or its tables) may not exist yet, or be locked
                trials = []
            done = [t for t in trials if t.state == TrialState.COMPLETE]
            # a trial is RUNNING from its creation, before the sampler has drawn all its
            # parameters: kill only once it has them all (then it is training)
            if done and any(t.state == TrialState.RUNNING and len(t.params) == len(done[0].params) for t in trials):
                break
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    before = {t.number: t for t in load(folder).trials}
    finished = {n: t for n, t in before.items() if t.state == TrialState.COMPLETE}
    running = [n for n, t in before.items() if t.state == TrialState.RUNNING]
    assert finished and len(running) == 1

    time.sleep(2.5)  # the killed worker's heartbeat is now older than grace_period
    proc = _mlff_tune(path)
    log, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, log

    after = {t.number: t for t in load(folder).trials}
    counted = [t for t in after.values() if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(counted) == 4
    for n, t in finished.items():  # kept as they were, and not run again
        assert after[n].state == TrialState.COMPLETE and after[n].value == t.value
        assert sum(u.params == t.params for u in counted) == 1
    # the trial the kill left RUNNING is FAIL, and its parameters ran again as a new trial
    dead = after[running[0]]
    assert dead.state == TrialState.FAIL
    retries = [t for t in after.values() if t.system_attrs.get("failed_trial") == dead.number]
    assert len(retries) == 1 and retries[0].params == dead.params and retries[0].state == TrialState.COMPLETE
    rows = list(csv.DictReader(open(folder / "tune_output" / "trials.csv")))
    assert {r["state"] for r in rows} == {"COMPLETE", "FAIL"} and len(rows) == 5
    assert load_config(folder / "tune_output" / "best_config.yaml").optim.lr > 0


def test_validation_losses_reach_the_pruner(cu_db, tmp_path):
    # one good and one hopeless learning rate: a trial with the bad one is worse than the
    # median from its first report on and is stopped there
    space = {"optim.lr": {"type": "categorical", "choices": [1.0e-2, 1.0e-6]}}
    path = write_tune(tmp_path / "p", cu_db, space=space, sampler="random", seed=2, pruner="median",
                      n_startup_trials=1, n_warmup_steps=0, metric="force_rmse")
    study = tune(path)
    assert all(t.intermediate_values for t in study.trials)
    assert all(min(t.intermediate_values) == 5 for t in study.trials)
    pruned = [t for t in study.get_trials(states=(TrialState.PRUNED,))]
    for t in pruned:  # stopped at the validation that pruned it
        assert max(t.intermediate_values) < 20 and t.params["optim.lr"] == 1.0e-6
    assert pruned, [(t.params, t.state, t.intermediate_values) for t in study.trials]


@pytest.mark.parametrize("space, words", [
    ({"model.n_featurez": {"type": "int", "low": 4, "high": 8}}, ["space.model.n_featurez", "n_features"]),
    ({"optim.learning_rate": {"type": "float", "low": 1e-3, "high": 1e-2}}, ["optim.learning_rate", "lr"]),
    ({"optim": {"type": "float", "low": 1e-3, "high": 1e-2}}, ["space.optim", "is a section"]),
    ({"optim.lr": {"type": "gaussian", "low": 1e-3, "high": 1e-2}}, ["space.optim.lr", "gaussian", "float"]),
    ({"optim.lr": {"type": "float", "low": 1e-2, "high": 1e-3}}, ["optim.lr", "low", "greater than high"]),
    ({"optim.lr": {"type": "float", "low": 0.0, "high": 1e-3, "log": True}}, ["optim.lr", "log"]),
    ({"optim.lr": {"type": "float", "low": 1e-3, "high": 1e-2, "sigma": 1}}, ["optim.lr", "sigma", "unknown key"]),
    ({"model.n_features": {"type": "int", "low": 1, "high": 8}}, ["space.model.n_features", "1", "narrow"]),
    ({"run.output_dir": {"type": "categorical", "choices": ["a"]}}, ["run.output_dir", "cannot be tuned"]),
])
def test_bad_config_is_refused_before_any_trial(tmp_path, space, words):
    path = write_tune(tmp_path, tmp_path / "no-data-needed.db", space=space)
    with pytest.raises(ValueError) as err:
        prepare(path)
    for word in words:
        assert word in str(err.value), str(err.value)
    assert not (tmp_path / "study.db").exists()


def test_bad_study_settings_are_named(tmp_path):
    path = write_tune(tmp_path, tmp_path / "x.db", metric="valid_forces_rmse")
    with pytest.raises(ValueError, match="study.metric.*force_rmse"):
        prepare(path)
    path = write_tune(tmp_path, tmp_path / "x.db", n_trails=3)
    with pytest.raises(ValueError, match="study.n_trails: unknown key"):
        prepare(path)
