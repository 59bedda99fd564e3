"""`mlff learn` on EMT Cu with a real trainer, real teacher processes and a real Dask cluster.

Tiny settings (32 Cu atoms, 2 PaiNN members with 8 features and 1 interaction, 50
training steps, 40 MD steps per temperature) keep the whole file around a minute on one
core. The CLI runs as a subprocess (a fresh interpreter) so the kill tests can SIGKILL
it, its teacher processes included, at a chosen stage.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest
import yaml

from mlff.data.identity import find_duplicate_identities
from mlff.data.store import read_records

N_INITIAL = 16  # rattle 12 + strain 4
PER_ITERATION = 4  # select.max_per_iteration
ITERATIONS = 2

INITIAL_SAMPLING = {"rattle": 12, "strain": 4, "md_frames": 0, "rattle_amplitude": 0.1, "seed": 0}

SLOW_TEACHER = textwrap.dedent('''
    """EMT that takes its time: the kill test needs labelling to last long enough to interrupt."""
    import time

    from ase.calculators.emt import EMT


    class SlowEMT(EMT):
        def __init__(self, delay):
            super().__init__()
            self.delay = delay

        def calculate(self, *args, **kwargs):
            time.sleep(self.delay)
            super().calculate(*args, **kwargs)


    def make(delay=0.0):
        return SlowEMT(delay)
''')


def write_config(folder: Path, **changes) -> Path:
    cfg = {
        "teacher": {"name": "emt"},
        "initial_sampling": dict(INITIAL_SAMPLING),
        "structures": ["Cu"],
        "repeat": [2, 2, 2],
        "model": {
            "data": {"valid_fraction": 0.2, "min_structures": 5},
            "model": {"kind": "painn", "cutoff": 3.6, "n_features": 8, "num_interactions": 1, "n_rbf": 6},
            "run": {"max_steps": 50, "valid_every": 25, "batch_atoms": 64, "dtype": "float64", "plots": False,
                    "tensorboard": False, "num_threads": 1},
        },
        "members": 2,
        "explore": {"temperatures": [600, 1200], "steps": 40, "interval": 4, "timestep_fs": 2},
        "select": {"lo": 0.05, "hi": 1.0, "max_per_iteration": PER_ITERATION},
        "label": {"workers": 1},
        "stop": {"max_iterations": ITERATIONS, "uncertain_fraction": 0.0},
        "output_dir": "out",
    }
    for key, value in changes.items():
        if value is None:
            cfg.pop(key, None)
        elif isinstance(value, dict) and isinstance(cfg.get(key), dict):
            cfg[key] = {**cfg[key], **value}
        else:
            cfg[key] = value
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "learn.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def cli(folder: Path, *extra: str) -> List[str]:
    # `python -m`: the run folder is on sys.path, so a 'module:factory' teacher there imports
    return [sys.executable, "-m", "mlff.cli", "learn", "learn.yaml", *extra]


def env() -> Dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def run_learn(folder: Path, *extra: str) -> str:
    proc = subprocess.run(cli(folder, *extra), cwd=folder, env=env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def start_learn(folder: Path) -> subprocess.Popen:
    # its own process group: the kill reaches the driver and its teacher processes
    return subprocess.Popen(cli(folder), cwd=folder, env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)


def kill(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


def wait_for(condition, proc: subprocess.Popen, timeout: float = 300.0) -> None:
    t0 = time.monotonic()
    while not condition():
        if proc.poll() is not None:
            out = proc.stdout.read().decode() if proc.stdout else ""
            raise AssertionError(f"mlff learn exited ({proc.returncode}) before the kill point:\n{out[-3000:]}")
        if time.monotonic() - t0 > timeout:
            kill(proc)
            raise AssertionError("the kill point was never reached")
        time.sleep(0.01)


def row_count(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as con:
            return int(con.execute("select count(*) from systems").fetchone()[0])
    except sqlite3.Error:
        return 0


def state(folder: Path) -> dict:
    return json.loads((folder / "out" / "state.json").read_text())


def dataset(folder: Path):
    return read_records(folder / "out" / "dataset.db")


def assert_clean(records) -> None:
    ids = [r.info.get("sample_id") for r in records]
    assert len(ids) == len(set(ids)), "a sample id is stored twice"
    assert not find_duplicate_identities(records)


def assert_same_dataset(a, b, labels: bool = True) -> None:
    assert [r.info["sample_id"] for r in a] == [r.info["sample_id"] for r in b]
    for x, y in zip(a, b):
        assert np.array_equal(x.numbers, y.numbers)
        np.testing.assert_allclose(x.positions, y.positions, rtol=0, atol=1e-12, err_msg=x.info["sample_id"])
        np.testing.assert_allclose(x.cell, y.cell, rtol=0, atol=1e-12)
        if labels:
            assert x.energy == pytest.approx(y.energy, abs=1e-10)
            np.testing.assert_allclose(x.forces, y.forces, rtol=0, atol=1e-10)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """An uninterrupted two-iteration run with local teacher processes."""
    folder = tmp_path_factory.mktemp("reference")
    write_config(folder)
    run_learn(folder)
    return folder


def test_two_iterations_end_to_end(reference: Path) -> None:
    out = reference / "out"
    report = (out / "report.csv").read_text().strip().splitlines()
    assert len(report) == 1 + ITERATIONS
    header = report[0].split(",")
    rows = [dict(zip(header, line.split(","))) for line in report[1:]]
    assert [int(r["iteration"]) for r in rows] == [1, 2]
    assert (out / "report.png").stat().st_size > 0
    st = state(reference)
    assert st["finished"]["reason"] == "iteration budget"
    assert st["finished"]["model"] == str(out / "it2" / "committee.pt")

    records = dataset(reference)
    assert_clean(records)
    assert len(records) == N_INITIAL + ITERATIONS * PER_ITERATION
    initial = read_records(out / "initial.db")
    assert_same_dataset(records[:N_INITIAL], initial)
    for k in (1, 2):
        sel = json.loads((out / f"it{k}" / "selection.json").read_text())
        assert sel["n_candidates"] > PER_ITERATION  # the cap and farthest-point sampling were used
        stored = [r.info["sample_id"] for r in records if r.info["sample_id"].startswith(f"it{k}-")]
        assert stored == [f"it{k}-{fid}" for fid in sel["selected_ids"]]
        assert int(rows[k - 1]["n_selected"]) == int(rows[k - 1]["n_labelled"]) == PER_ITERATION
        assert int(rows[k - 1]["n_data"]) == N_INITIAL + k * PER_ITERATION
        assert float(rows[k - 1]["force_rmse_new"]) > 0
    # the second iteration's members started from the first's checkpoints, with their own seeds
    members = st["iterations"]["1"]["trained"]["members"]
    assert all("it1/member" in members[m]["warm_start"] for m in ("0", "1"))

    # a finished run run again does nothing and changes nothing
    before = (out / "dataset.db").stat().st_mtime_ns
    text = run_learn(reference)
    assert "iteration budget after 2 iteration(s)" in text
    assert (out / "dataset.db").stat().st_mtime_ns == before


def test_sigkill_mid_labelling_resumes_without_loss_or_duplicates(reference: Path, tmp_path: Path) -> None:
    from mlff.data.label import label, parse_structure
    from mlff.data.sampling import SamplingConfig
    from mlff.data.teachers import make_teacher

    (tmp_path / "slow_emt.py").write_text(SLOW_TEACHER)
    sys.path.insert(0, str(tmp_path))
    try:
        # the initial labels from the same teacher without the delay (its name is what the store records)
        label(tmp_path / "initial.db", parse_structure("Cu", [2, 2, 2]), make_teacher("slow_emt:make"),
              SamplingConfig(**INITIAL_SAMPLING), progress=False)
    finally:
        sys.path.remove(str(tmp_path))
    write_config(tmp_path, teacher={"name": "slow_emt:make", "settings": {"delay": 0.4}},
                 initial_sampling=None, initial_data="initial.db")
    db = tmp_path / "out" / "dataset.db"
    proc = start_learn(tmp_path)
    wait_for(lambda: N_INITIAL < row_count(db) < N_INITIAL + PER_ITERATION, proc)
    kill(proc)
    n_killed = row_count(db)
    assert N_INITIAL < n_killed < N_INITIAL + PER_ITERATION
    st = state(tmp_path)
    assert "selected" in st["iterations"]["1"] and "labelled" not in st["iterations"]["1"]

    text = run_learn(tmp_path)
    assert f"({n_killed - N_INITIAL} already stored)" in text
    records = dataset(tmp_path)
    assert_clean(records)
    # the same structures as the uninterrupted run: same ids, order and positions (and EMT labels)
    assert_same_dataset(records, dataset(reference))


def test_sigkill_mid_training_resumes(reference: Path, tmp_path: Path) -> None:
    # checkpoints every 10 steps: the kill lands inside a member's training with one on disk
    cfg = yaml.safe_load(write_config(tmp_path).read_text())
    cfg["model"]["run"]["checkpoint_every"] = 10
    (tmp_path / "learn.yaml").write_text(yaml.safe_dump(cfg))
    ckpt = tmp_path / "out" / "it1" / "member0" / "checkpoints" / "last.ckpt"
    proc = start_learn(tmp_path)
    wait_for(ckpt.exists, proc)
    kill(proc)
    st = state(tmp_path)
    assert "labelled" in st["iterations"]["1"] and "trained" not in st["iterations"]["1"]
    n_before = row_count(tmp_path / "out" / "dataset.db")
    assert n_before == N_INITIAL + PER_ITERATION

    text = run_learn(tmp_path)
    assert "resumed from" in text and "resumed from its checkpoint" in text
    records = dataset(tmp_path)
    assert_clean(records)
    assert len(records) == N_INITIAL + ITERATIONS * PER_ITERATION
    ref = dataset(reference)
    # what was labelled before the kill is kept as it was (later frames follow the resumed models)
    assert_same_dataset(records[:n_before], ref[:n_before])
    assert sum(r.info["sample_id"].startswith("it2-") for r in records) == PER_ITERATION
    assert len((tmp_path / "out" / "report.csv").read_text().strip().splitlines()) == 1 + ITERATIONS


def test_dask_local_cluster_gives_the_same_dataset(reference: Path, tmp_path: Path) -> None:
    distributed = pytest.importorskip("distributed")

    write_config(tmp_path)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None,
                                  env={"OMP_NUM_THREADS": "1"}) as cluster:
        text = run_learn(tmp_path, "--scheduler", cluster.scheduler_address)
    assert "on the Dask cluster at" in text
    assert_same_dataset(dataset(tmp_path), dataset(reference))


# ---------------------------------------------------------------------- pieces


def test_selection_window_cap_and_farthest_point() -> None:
    from ase.build import bulk

    from mlff.learn.config import SelectConfig
    from mlff.learn.explore import Frames
    from mlff.learn.select import select_frames

    base = bulk("Cu", cubic=True).repeat((2, 2, 2))
    frames = Frames()
    rng = np.random.default_rng(0)
    deviations = [0.01, 0.1, 0.1, 0.2, 0.3, 0.6, 0.02, 0.15]
    for k, dev in enumerate(deviations):
        a = base.copy()
        if k == 2:  # frames 1 and 2 are one geometry: de-duplication must not pick both
            a.positions[:] = frames.positions[1]
        else:
            a.positions += 0.05 * (1 + k % 3) * rng.normal(size=a.positions.shape)
        frames.ids.append(f"f{k}")
        frames.structure.append(0)
        frames.temperature.append(300.0)
        frames.pressure.append(float("nan"))
        frames.step.append(k)
        frames.deviation.append(dev)
        frames.deviation_mean.append(dev / 2)
        frames.numbers.append(a.numbers.copy())
        frames.positions.append(a.positions.copy())
        frames.cells.append(a.cell.array.copy())
        frames.pbc.append(a.pbc.copy())
        frames.forces.append(np.zeros((len(a), 3)))
        frames.info.append({})
    sel = select_frames(frames, SelectConfig(lo=0.05, hi=0.5, max_per_iteration=3), cutoff=3.6)
    assert (sel.n_accurate, sel.n_candidates, sel.n_failed) == (2, 5, 1)
    assert sel.uncertain_fraction == pytest.approx(6 / 8)
    assert len(sel.selected) == 3 and sel.selected == sorted(sel.selected)
    assert 4 in sel.selected  # the most uncertain candidate starts the farthest-point sampling
    assert not {1, 2} <= set(sel.selected)
    assert all(0.05 <= deviations[k] < 0.5 for k in sel.selected)
    again = select_frames(frames, SelectConfig(lo=0.05, hi=0.5, max_per_iteration=3), cutoff=3.6)
    assert again.selected == sel.selected
    top = select_frames(frames, SelectConfig(lo=0.05, hi=0.5, max_per_iteration=2, dedup="none"))
    assert top.selected == [3, 4]


def test_config_refuses_unknown_keys_and_bad_windows(tmp_path: Path) -> None:
    from mlff.learn.config import load_learn_config

    path = write_config(tmp_path, select={"lo": 0.05, "hi": 0.5, "trust": 1})
    with pytest.raises(ValueError, match="trust"):
        load_learn_config(path)
    path = write_config(tmp_path, select={"lo": 0.5, "hi": 0.1})
    with pytest.raises(ValueError, match="empty"):
        load_learn_config(path)
    path = write_config(tmp_path, initial_data="x.db")
    with pytest.raises(ValueError, match="exactly one"):
        load_learn_config(path)
    cfg = load_learn_config(write_config(tmp_path), scheduler="tcp://127.0.0.1:1")
    assert cfg.label.executor == "dask" and cfg.label.scheduler == "tcp://127.0.0.1:1"
    assert cfg.fingerprint() == load_learn_config(write_config(tmp_path, stop={"max_iterations": 9})).fingerprint()


def test_state_marks_stages_in_order(tmp_path: Path) -> None:
    from mlff.learn.state import LearnState

    st = LearnState.open(tmp_path / "state.json", "abc")
    with pytest.raises(RuntimeError, match="before"):
        st.mark(1, "labelled")
    st.mark(1, "explored", {"n": 3})
    again = LearnState.open(tmp_path / "state.json", "abc")
    assert again.done(1, "explored") and again.result(1, "explored") == {"n": 3}
    with pytest.raises(RuntimeError, match="other settings"):
        LearnState.open(tmp_path / "state.json", "other")


def test_ace_loop_selects_by_extrapolation_grade(tmp_path: Path) -> None:
    """model.kind ace: one member, frames chosen by the largest extrapolation grade (active set)."""
    ace_model = {
        "data": {"valid_fraction": 0.2, "min_structures": 5},
        "model": {
            "kind": "ace", "maxiter": 5, "kappa": 0.3,
            "weighting": {"DElow": 1.0, "DEup": 10.0, "DE": 1.0, "DF": 1.0},
            "potential": {
                "elements": ["Cu"],
                "embeddings": {"ALL": {"npot": "FinnisSinclairShiftedScaled", "fs_parameters": [1, 1],
                                       "ndensity": 1}},
                "bonds": {"ALL": {"radbase": "ChebExpCos", "radparameters": [5.25], "rcut": 4.5, "dcut": 0.01}},
                "functions": {"ALL": {"nradmax_by_orders": [4, 2], "lmax_by_orders": [0, 1]}},
            },
        },
        "run": {"plots": False},
    }
    from mlff.learn.config import check_consistent, load_learn_config

    bad = write_config(tmp_path, model=ace_model, members=1, select={"gamma_lo": 0.5, "gamma_hi": 50})
    with pytest.raises(ValueError, match="do not apply to an ACE loop"):
        check_consistent(load_learn_config(bad))
    write_config(tmp_path, model=ace_model, members=1, stop={"max_iterations": 1},
                 explore={"temperatures": [600, 1200], "steps": 20, "interval": 4},
                 select={"lo": None, "hi": None, "gamma_lo": 0.5, "gamma_hi": 50, "max_per_iteration": 3})
    run_learn(tmp_path)
    out = tmp_path / "out"
    sel = json.loads((out / "it1" / "selection.json").read_text())
    assert sel["measure"] == "extrapolation_grade" and len(sel["selected"]) == 3
    assert (out / "it1" / "member0" / "output_potential.asi").exists()
    records = dataset(tmp_path)
    assert_clean(records)
    assert len(records) == N_INITIAL + 3
