"""Helpers for the training tests (a unique module name: tests/ has no packages)."""

from __future__ import annotations

from pathlib import Path


def write_config(path: Path, db: Path, out: Path, **sections) -> Path:
    """A tiny but complete training config as YAML (mapping sections update the defaults)."""
    import yaml

    cfg = {
        "data": {"train": str(db), "valid_fraction": 0.2, "min_structures": 10},
        "model": {"cutoff": 3.6, "n_features": 8, "num_interactions": 1, "n_rbf": 6},
        "loss": {"energy_weight": 1.0, "forces_weight": 10.0, "stress_weight": 1.0},
        "optim": {"lr": 5e-3},
        "run": {"output_dir": str(out), "max_steps": 30, "batch_atoms": 32, "valid_every": 10,
                "dtype": "float64", "progress": False, "num_threads": 1},
    }
    for name, values in sections.items():
        if isinstance(values, dict):
            cfg.setdefault(name, {}).update(values)
        else:  # a list section (terms)
            cfg[name] = values
    path.write_text(yaml.safe_dump(cfg))
    return path
