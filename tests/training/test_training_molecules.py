"""The same pipeline on small organic molecules labelled by GFN2-xTB (tblite, optional)."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

from training_helpers import write_config

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("tblite") is None,
    reason="tblite (GFN2-xTB teacher) is an optional extra and is not installed: pip install tblite",
)


def test_gfn2_molecules_label_train_export(tmp_path):
    from mlff import MLFFCalculator
    from mlff.data import read_records
    from mlff.data.label import label, parse_structure
    from mlff.data.sampling import SamplingConfig
    from mlff.data.teachers import make_teacher
    from mlff.training import load_config, train

    bases = [m for name in ("CH4", "H2O", "NH3", "CH3OH") for m in parse_structure(name)]
    db = tmp_path / "mol.db"
    cfg = SamplingConfig(temperatures=[300.0, 600.0], md_frames=5, md_interval=4, timestep_fs=0.5,
                         rattle=6, rattle_amplitude=0.05, seed=0)
    s = label(db, bases, make_teacher("tblite"), cfg, progress=False)
    assert s.planned == 4 * (2 * 5 + 6)
    recs = read_records(db)
    assert all(r.stress is None and r.info["teacher"] == "tblite" for r in recs)

    out = tmp_path / "run"
    summary = train(load_config(write_config(
        tmp_path / "c.yaml", db, out,
        model={"cutoff": 4.0, "n_features": 16, "num_interactions": 2, "n_rbf": 8},
        loss={"stress_weight": 0.0},
        run={"max_steps": 120, "valid_every": 40, "batch_atoms": 24, "plots": False},
    )))
    v = summary["valid"]
    force_rms = float(np.sqrt(np.mean(np.concatenate([r.forces.ravel() for r in recs]) ** 2)))
    print(f"\nGFN2-xTB molecules: {len(recs)} structures, force RMS {force_rms:.3f} eV/Å; "
          f"student after {summary['steps']} steps: force RMSE {v['force_rmse']:.3f} eV/Å, "
          f"energy RMSE {1000 * v['energy_rmse_per_atom']:.1f} meV/atom")
    assert v["force_rmse"] < 0.8 * force_rms  # it learned the teacher, not the mean
    calc = MLFFCalculator(str(out / "model.pt"))
    assert calc.metadata.symbols == ["H", "C", "N", "O"]
    assert calc.metadata.provenance["teacher"] == "tblite"
    assert json.loads((out / "summary.json").read_text())["steps"] == 120
