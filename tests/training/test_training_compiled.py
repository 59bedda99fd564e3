"""`run.export_compiled: true`: training writes model.pt2 (AOTInductor) beside model.pt."""

from __future__ import annotations

import numpy as np
import pytest
from ase.io import read
from training_helpers import write_config

from mlff.calculator import MLFFCalculator
from mlff.training.config import load_config
from mlff.training.trainer import train


def test_training_writes_a_compiled_model_that_equals_the_torchscript_one(cu_db, tmp_path):
    out = tmp_path / "run"
    cfg = load_config(write_config(tmp_path / "c.yaml", cu_db, out,
                                   run={"max_steps": 5, "plots": False, "export_compiled": True}))
    summary = train(cfg)
    assert summary["compiled_model"] == str(out / "model.pt2") and (out / "model.pt").exists()
    atoms = read(cu_db, index=0)
    a, b = atoms.copy(), atoms.copy()
    a.calc, b.calc = MLFFCalculator(str(out / "model.pt")), MLFFCalculator(str(out / "model.pt2"))
    assert b.get_potential_energy() == pytest.approx(a.get_potential_energy(), abs=1e-9)
    np.testing.assert_allclose(b.get_forces(), a.get_forces(), rtol=0, atol=1e-9)
