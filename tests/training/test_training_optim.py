"""Optimizer options of the multi-fidelity recipe: parameter groups by regex, cosine
warm-up, gradient clipping by value, frozen parameters, and transfer learning
(``model.init_from``, new fidelity heads copied from fidelity 0)."""

from __future__ import annotations

import math

import pytest
import torch

from training_helpers import AIMNET2_SMALL, write_config
from mlff.checkpoint import read_checkpoint, save_checkpoint
from mlff.models import model_from_options
from mlff.training import Trainer, load_config, train
from mlff.training.config import OptimConfig, TrainConfig
from mlff.training.optim import Schedule, clip_gradients, param_groups, set_learning_rate
from mlff.training.transfer import load_matching_weights

QUICK = {"max_steps": 4, "valid_every": 4, "plots": False, "export": False, "tensorboard": False}


def _painn():
    torch.manual_seed(0)
    return model_from_options("painn", [29], {"cutoff": 3.6, "n_features": 8, "num_interactions": 2, "n_rbf": 6})


def test_param_groups_by_regex_first_match_wins():
    model = _painn()
    o = OptimConfig(weight_decay=0.01, param_groups=[
        {"pattern": "embedding", "lr_scale": 0.1},
        {"pattern": "atomic_energies|embedding", "weight_decay": 0.0, "lr_scale": 5.0},  # embedding taken above
        {"pattern": r"interactions\.1\.", "weight_decay": 0.5},
    ])
    groups = param_groups(model, o)
    names = {id(p): n for n, p in model.named_parameters()}
    by_name = {names[id(p)]: g for g in groups for p in g["params"]}
    assert set(by_name) == set(names.values())  # every parameter once
    emb = by_name["embedding.weight"]
    assert emb["lr_scale"] == 0.1 and emb["weight_decay"] == 0.0  # the model's exemption stays the default
    assert by_name["atomic_energies"]["lr_scale"] == 5.0
    second = [n for n in by_name if n.startswith("interactions.1.")]
    assert second and all(by_name[n]["weight_decay"] == 0.5 for n in second)
    assert by_name["readout.0.weight"]["weight_decay"] == 0.01 and by_name["readout.0.bias"]["weight_decay"] == 0.0
    opt = torch.optim.AdamW(groups, lr=1.0)
    set_learning_rate(opt, 2e-3)
    assert sorted({g["lr"] for g in opt.param_groups}) == pytest.approx([2e-4, 2e-3, 1e-2])
    with pytest.raises(ValueError, match=r"optim.param_groups\[0\].pattern 'embeding' matches no parameter"):
        param_groups(model, OptimConfig(param_groups=[{"pattern": "embeding"}]))
    # without rules: the model's own two groups, in its order
    plain = param_groups(model, OptimConfig(weight_decay=0.01))
    assert [len(g["params"]) for g in plain] == [len(g["params"]) for g in model.param_groups(0.01)]


def test_cosine_and_linear_warmup_per_step():
    def lrs(warmup):
        cfg = TrainConfig(data={"train": "x.db"}, optim={"lr": 1.0},
                          schedule={"kind": "constant", "warmup_steps": 4, "warmup": warmup})
        s = Schedule(cfg)
        return [s.lr(k) for k in range(6)]

    assert lrs("linear") == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0, 1.0])
    assert lrs("cosine") == pytest.approx([0.5 * (1 - math.cos(math.pi * t / 4)) for t in (1, 2, 3, 4)] + [1.0, 1.0])


def test_gradient_clipping_by_value_then_norm():
    p = torch.nn.Parameter(torch.zeros(4))
    p.grad = torch.tensor([3.0, -0.5, 0.2, -7.0])
    clip_gradients([p], OptimConfig(grad_clip_value=1.0, grad_clip=None))
    assert p.grad.tolist() == pytest.approx([1.0, -0.5, 0.2, -1.0])
    clip_gradients([p], OptimConfig(grad_clip_value=1.0, grad_clip=0.1))
    assert float(p.grad.norm()) == pytest.approx(0.1, rel=1e-5)


def test_frozen_parameters_do_not_move(tmp_path, cu_db):
    cfg = load_config(write_config(tmp_path / "c.yaml", cu_db, tmp_path / "run", run=QUICK,
                                   optim={"freeze": ["^readout\\.", "embedding"], "weight_decay": 0.1}))
    start = Trainer(cfg)
    start._setup()
    initial = {k: v.clone() for k, v in start.model.state_dict().items()}
    assert {id(p) for p in start.params}.isdisjoint({id(start.model.embedding.weight)})
    train(cfg)
    final = read_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")["state_dict"]
    for name, _ in start.model.named_parameters():
        frozen = name.startswith("readout.") or name.startswith("embedding")
        assert torch.equal(final[name], initial[name]) == frozen, name
    bad = load_config(write_config(tmp_path / "b.yaml", cu_db, tmp_path / "run2", run=QUICK,
                                   optim={"freeze": ["heads"]}))
    with pytest.raises(ValueError, match="optim.freeze pattern 'heads' matches no parameter"):
        Trainer(bad)._setup()


def test_init_from_loads_matching_weights_and_reports_the_rest(tmp_path, cu_db):
    first = load_config(write_config(tmp_path / "a.yaml", cu_db, tmp_path / "a", run=QUICK))
    train(first)
    ckpt = tmp_path / "a" / "checkpoints" / "last.ckpt"
    trained = read_checkpoint(ckpt)["state_dict"]
    # another radial basis: the filters change shape, everything else transfers
    cfg = load_config(write_config(tmp_path / "b.yaml", cu_db, tmp_path / "b", run=QUICK,
                                   model={"n_rbf": 7, "init_from": str(ckpt)}))
    trainer = Trainer(cfg)
    trainer._setup()
    report = trainer.transfer
    assert report.not_loaded and all("shape" in why for why in report.not_loaded.values())
    assert any("filter" in name or "rbf" in name for name in report.not_loaded)
    state = trainer.model.state_dict()
    for name in report.loaded:
        assert torch.equal(state[name], trained[name].to(state[name].dtype)), name
    assert "init_from" in report.describe() and len(report.loaded) > 5
    summary = train(cfg)
    assert summary["init_from"]["not_loaded"] == report.not_loaded


def _aimnet2(fidelities, seed):
    torch.manual_seed(seed)
    options = {k: v for k, v in AIMNET2_SMALL.items() if k != "kind"}
    options["fidelities"] = list(fidelities)
    return model_from_options("aimnet2", [1, 6, 7, 8], options).double()


def test_a_new_fidelity_starts_from_fidelity_zero(tmp_path):
    old = _aimnet2(["hi", "lo"], seed=1)
    with torch.no_grad():
        old.atomic_energies.copy_(torch.tensor([[1.0, 2, 3, 4], [5, 6, 7, 8]]))
    ckpt = tmp_path / "old.ckpt"
    save_checkpoint(ckpt, old)
    new = _aimnet2(["lo", "mp2", "hi"], seed=2)  # reordered, and one level more
    report = load_matching_weights(new, str(ckpt))
    assert report.new_fidelities == {"mp2": "hi"} and not report.not_loaded and not report.unused
    n_el = 4
    old_emb = old.embedding.weight.view(2, n_el, -1)
    new_emb = new.embedding.weight.view(3, n_el, -1)
    for k_new, k_old in ((0, 1), (1, 0), (2, 0)):
        assert torch.equal(new_emb[k_new], old_emb[k_old])
        assert torch.equal(new.atomic_energies[k_new], old.atomic_energies[k_old])
        for p_new, p_old in zip(new.heads[k_new].parameters(), old.heads[k_old].parameters()):
            assert torch.equal(p_new, p_old)
    # the shared backbone is loaded too
    assert torch.equal(new.first.conv.filter.weight, old.first.conv.filter.weight)


def test_init_from_in_a_run_adds_the_new_level(tmp_path):
    from training_helpers import write_mf_config, write_mf_stores

    ckpt = tmp_path / "hi_only.ckpt"
    save_checkpoint(ckpt, _aimnet2(["hi"], seed=3))
    cfg = load_config(write_mf_config(tmp_path / "c.yaml", *write_mf_stores(tmp_path), tmp_path / "run",
                                      model={"init_from": str(ckpt)}))
    trainer = Trainer(cfg)
    trainer._setup()
    assert trainer.transfer.new_fidelities == {"lo": "hi"} and not trainer.transfer.not_loaded
    heads = trainer.model.heads
    assert all(torch.equal(a, b) for a, b in zip(heads[0].parameters(), heads[1].parameters()))



def test_resume_with_other_groups_names_the_setting(tmp_path, cu_db):
    out = tmp_path / "run"
    train(load_config(write_config(tmp_path / "a.yaml", cu_db, out, run=QUICK)))
    changed = write_config(tmp_path / "b.yaml", cu_db, out, run={**QUICK, "max_steps": 6},
                           optim={"freeze": ["^readout\\."]})
    with pytest.raises(RuntimeError, match=r"optim.freeze: \[\] in the checkpoint, \['\^readout\\\\.'\] now"):
        train(load_config(changed), resume=True)
