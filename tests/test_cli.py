"""The `mlff` command line, run as a user would run it (a subprocess of the venv's script)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mlff.checkpoint import save_checkpoint

MLFF = [str(Path(sys.executable).with_name("mlff"))]


def run(*args, check=True):
    proc = subprocess.run(MLFF + list(map(str, args)), capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"mlff {' '.join(map(str, args))} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def test_info(make_model_file):
    out = run("info", make_model_file(elements=(1, 8))).stdout
    assert "painn" in out and "H O" in out and "interaction range: 8.0" in out
    meta = json.loads(run("info", make_model_file(elements=(1, 8)), "--json").stdout)
    assert meta["elements"] == [1, 8]


def test_info_on_a_bad_file(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\0" * 100)
    proc = run("info", bad, check=False)
    assert proc.returncode == 2
    assert "truncated or corrupt" in proc.stderr and "Traceback" not in proc.stderr


def test_export_from_checkpoint(make_model, tmp_path):
    ckpt = tmp_path / "m.ckpt"
    save_checkpoint(ckpt, make_model(elements=(29,)))
    out = tmp_path / "exported.pt"
    proc = run("export", ckpt, "-o", out, "--dtype", "float32")
    assert "float32" in proc.stdout
    meta = json.loads(run("info", out, "--json").stdout)
    assert meta["dtype"] == "float32" and meta["elements"] == [29]


def test_export_of_a_missing_checkpoint(tmp_path):
    proc = run("export", tmp_path / "nope.ckpt", check=False)
    assert proc.returncode == 2 and "does not exist" in proc.stderr


@pytest.mark.parametrize("engines", [[], ["ase"]])
def test_bench_runs(make_model_file, tmp_path, engines):
    js = tmp_path / "b.json"
    args = ["bench", "--model", make_model_file(), "--sizes", "32", "108", "--steps", "2", "--json", js]
    if engines:
        args += ["--engines", *engines]
    out = run(*args).stdout
    assert "raw_us_per_atom_step" in out
    rows = json.loads(js.read_text())
    assert [r["atoms"] for r in rows] == [32, 108]
    assert all(r["raw_ms_per_step"] > 0 for r in rows)
    for e in engines:
        assert all(f"{e}_overhead_pct" in r for r in rows)
