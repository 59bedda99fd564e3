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
    with pytest.raises(ValueError, match=r"unknown model kind 'mace'; known kinds: \['aimnet2', 'painn'\]"):
        load_config(p)
    p.write_text("data: {train: x.db}\nmodel: {kind: painn, elements: [Cu, O], cutoff: 4.0}\n")
    m = load_config(p).model
    assert m.kind == "painn" and m.elements == ["Cu", "O"]
    # the stored config says what is built: the kind's defaults are filled in
    assert m.options == dict(cutoff=4.0, n_features=64, num_interactions=3, n_rbf=20, cutoff_fn="polynomial")
    assert TrainConfig(data={"train": "x.db"}).model.options["cutoff_fn"] == "polynomial"


def test_the_readme_multifidelity_example_is_a_valid_config(tmp_path):
    """The 3-fidelity aimnet2 example of README.md, section Training, loads as written."""
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    block = text.split("### Several levels of theory")[1].split("```yaml\n")[1].split("```")[0]
    p = tmp_path / "mf.yaml"
    p.write_text(block)
    cfg = load_config(p)
    assert cfg.fidelity_names == ["pbe-def2svp", "gfn2", "gfn1"] == cfg.model.options["fidelities"]
    assert [s.path for s in cfg.data.train_stores] == [str(tmp_path / n) for n in ("dft.h5", "gfn2.db", "gfn1.db")]
    assert [s.fidelity for s in cfg.data.train_stores] == [None, "gfn2", "gfn1"]
    assert cfg.sae == "fit" and cfg.optim.param_groups[0].lr_scale == 0.1 and cfg.schedule.warmup == "cosine"


def test_multifidelity_paths_resolve_and_patterns_are_checked(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("data: {train: [a.db, {path: b.db, fidelity: x}], valid: v.db}\nsae: s.yaml\n"
                 "model: {init_from: prev/last.ckpt}\n")
    cfg = load_config(p)
    assert [s.path for s in cfg.data.train_stores] == [str(tmp_path / "a.db"), str(tmp_path / "b.db")]
    assert cfg.data.valid == str(tmp_path / "v.db") and cfg.sae == str(tmp_path / "s.yaml")
    assert cfg.model.init_from == str(tmp_path / "prev" / "last.ckpt")
    with pytest.raises(ValueError, match="is not a regular expression"):
        TrainConfig(data={"train": "x.db"}, optim={"freeze": ["heads[0"]})
    with pytest.raises(ValueError, match="one energy head"):
        TrainConfig(data={"train": "x.db", "fidelities": ["a", "b"]})
