"""The training config: validated, unknown keys refused with their names."""

from __future__ import annotations

import pytest

from mlff.training.config import TrainConfig, load_config


def test_unknown_keys_are_refused(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("data: {train: x.db}\nrun: {max_step: 10}\n")
    with pytest.raises(ValueError, match=r"run\.max_step[\s\S]*Extra inputs are not permitted"):
        load_config(p)
    p.write_text("data: {train: x.db}\noptimiser: {}\n")
    with pytest.raises(ValueError, match="optimiser"):
        load_config(p)


def test_values_are_checked(tmp_path):
    with pytest.raises(ValueError, match="valid_fraction"):
        TrainConfig(data={"train": "x.db", "valid_fraction": 0.0})
    with pytest.raises(ValueError, match="dtype"):
        TrainConfig(data={"train": "x.db"}, run={"dtype": "float16"})
    with pytest.raises(ValueError, match="kind"):
        TrainConfig(data={"train": "x.db"}, schedule={"kind": "step"})


def test_paths_relative_to_the_config(tmp_path):
    (tmp_path / "sub").mkdir()
    p = tmp_path / "sub" / "c.yaml"
    p.write_text("data: {train: data/x.db}\nrun: {output_dir: out}\n")
    cfg = load_config(p)
    assert cfg.data.train == str(tmp_path / "sub" / "data" / "x.db")
    assert cfg.run.output_dir == str(tmp_path / "sub" / "out")
    assert cfg.model.kind == "painn" and cfg.optim.weight_decay > 0
