"""Real processes: SIGKILL mid-epoch then --resume; data-parallel training under torchrun (gloo)."""

from __future__ import annotations

import csv
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from training_helpers import write_config, write_mf_config, write_mf_stores

MLFF = [sys.executable, "-m", "mlff.cli"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _rows(path: Path, last: str = "stress_rmse"):
    if not path.exists():
        return []
    with open(path, newline="") as fh:
        return [r for r in csv.DictReader(fh) if r.get(last) is not None]


def _kill_after_rows(cfg: Path, metrics: Path, rows: int, last: str = "stress_rmse") -> None:
    """Start `mlff train cfg`, SIGKILL it once ``metrics`` has ``rows`` complete rows."""
    proc = subprocess.Popen([*MLFF, "train", str(cfg)], env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while len(_rows(metrics, last)) < rows and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, "training ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


def test_sigkill_then_resume_matches_uninterrupted(tmp_path, cu_db):
    from mlff.checkpoint import read_checkpoint

    run = {"max_steps": 240, "valid_every": 40, "checkpoint_every": 10, "batch_atoms": 16, "plots": False}
    ref_cfg = write_config(tmp_path / "ref.yaml", cu_db, tmp_path / "ref", run=run)
    cfg = write_config(tmp_path / "run.yaml", cu_db, tmp_path / "run", run=run)
    subprocess.run([*MLFF, "train", str(ref_cfg)], check=True, env=ENV, capture_output=True)

    metrics = tmp_path / "run" / "metrics.csv"
    _kill_after_rows(cfg, metrics, 2)
    # the checkpoint on disk is whole (atomic writes), and it is mid-epoch
    state = read_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")["trainer_state"]
    killed_at = state["step"]
    assert 60 <= killed_at < 240
    # 38 structures of 8 atoms, 16 atoms a batch: 19 steps an epoch, so the kill lands mid-epoch
    assert (state["epoch"], state["batch_pos"]) == divmod(killed_at, 19)

    out = subprocess.run([*MLFF, "train", str(cfg), "--resume"], check=True, env=ENV, capture_output=True, text=True)
    assert f"at step {killed_at} " in out.stdout  # lost only the steps after the last checkpoint
    assert not list((tmp_path / "run" / "checkpoints").glob(".*.tmp"))  # leftovers of the kill removed
    ref, got = _rows(tmp_path / "ref" / "metrics.csv"), _rows(metrics)
    assert [r["step"] for r in got] == [r["step"] for r in ref] == [str(s) for s in range(40, 241, 40)]
    for a, b in zip(ref, got):
        for key in ("val_loss", "force_rmse", "energy_rmse_per_atom", "stress_rmse"):
            assert float(b[key]) == pytest.approx(float(a[key]), rel=1e-6), (a["step"], key)


def test_two_fidelity_aimnet2_resume_matches_uninterrupted(tmp_path):
    """The fidelity-weighted draws are a function of (seed, epoch): a killed run resumes exactly."""
    from mlff.checkpoint import read_checkpoint

    hi, lo = write_mf_stores(tmp_path)
    sections = dict(data={"fidelity_weights": {"lo": 2.0}},
                    run={"max_steps": 200, "valid_every": 20, "checkpoint_every": 10, "batch_atoms": 16})
    ref_cfg = write_mf_config(tmp_path / "ref.yaml", hi, lo, tmp_path / "ref", **sections)
    cfg = write_mf_config(tmp_path / "run.yaml", hi, lo, tmp_path / "run", **sections)
    subprocess.run([*MLFF, "train", str(ref_cfg)], check=True, env=ENV, capture_output=True)
    last = "val_lo_charge_rmse"  # the last column: a row cut by the kill lacks it
    metrics = tmp_path / "run" / "metrics.csv"
    _kill_after_rows(cfg, metrics, 2, last)
    killed_at = read_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")["trainer_state"]["step"]
    assert 20 <= killed_at < 200

    out = subprocess.run([*MLFF, "train", str(cfg), "--resume"], check=True, env=ENV, capture_output=True, text=True)
    assert f"at step {killed_at} " in out.stdout
    ref, got = _rows(tmp_path / "ref" / "metrics.csv", last), _rows(metrics, last)
    assert [r["step"] for r in got] == [r["step"] for r in ref] == [str(s) for s in range(20, 201, 20)]
    for a, b in zip(ref, got):
        for key in ("val_loss", "train_loss", "val_hi_force_rmse", "val_hi_charge_rmse", "val_lo_energy_rmse_per_atom"):
            assert float(b[key]) == pytest.approx(float(a[key]), rel=1e-9, abs=0), (a["step"], key)


@pytest.mark.skipif(shutil.which("torchrun", path=os.path.dirname(sys.executable)) is None, reason="torchrun not found")
def test_torchrun_two_processes_gloo(tmp_path, cu_db):
    cfg = write_config(tmp_path / "ddp.yaml", cu_db, tmp_path / "ddp",
                       run={"max_steps": 20, "valid_every": 10, "batch_atoms": 16, "plots": False})
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    p = subprocess.run(
        [torchrun, "--standalone", "--nproc_per_node=2", "-m", "mlff.cli", "train", str(cfg)],
        env=ENV, capture_output=True, text=True, timeout=300,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    assert "2 processes" in p.stdout
    assert "2 data-parallel replicas hold identical weights" in p.stdout
    assert (tmp_path / "ddp" / "model.pt").exists()
    assert [r["step"] for r in _rows(tmp_path / "ddp" / "metrics.csv")] == ["10", "20"]
