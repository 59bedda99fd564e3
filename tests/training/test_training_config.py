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


def test_model_block_is_validated_by_the_kind(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("data: {train: x.db}\nmodel: {kind: painn, elements: [Cu, O], cutoff: 4.0, n_feature: 8}\n")
    with pytest.raises(ValueError, match=r"model\.n_feature: unknown option for a painn model"):
        load_config(p)
    p.write_text("data: {train: x.db}\nmodel: {kind: mace}\n")
    with pytest.raises(ValueError, match=r"unknown model kind 'mace'; known kinds: \['painn'\]"):
        load_config(p)
    p.write_text("data: {train: x.db}\nmodel: {kind: painn, elements: [Cu, O], cutoff: 4.0}\n")
    m = load_config(p).model
    assert m.kind == "painn" and m.elements == ["Cu", "O"]
    # the stored config says what is built: the kind's defaults are filled in
    assert m.options == dict(cutoff=4.0, n_features=64, num_interactions=3, n_rbf=20, cutoff_fn="polynomial")
    assert TrainConfig(data={"train": "x.db"}).model.options["cutoff_fn"] == "polynomial"
