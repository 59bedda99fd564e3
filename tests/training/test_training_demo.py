"""`make demo`'s script, shrunk with --quick: every step runs and the table is printed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_demo_quick(tmp_path):
    out = tmp_path / "demo"
    p = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "demo.py"), "--quick", "--output", str(out)],
        capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert p.returncode == 0, p.stderr[-3000:]
    for needle in ("accuracy vs teacher on held-out teacher-MD frames", "speed in ASE",
                   "cross-engine agreement", "ASE (checkpoint vs model.pt)"):
        assert needle in p.stdout
    report = json.loads((out / "report.json").read_text())
    assert [r["set"] for r in report["accuracy"]] == ["300 K", "900 K", "all"]
    assert report["engines"][0]["max_abs_dF"] < 1e-4
    assert (out / "train" / "model.pt").exists() and (out / "train.yaml").exists()
