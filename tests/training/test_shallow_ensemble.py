"""Shallow ensembles of the student (``PaiNN(n_heads=M)``): M readout heads on one
backbone, trained together, with the contract's member outputs (issue 13)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from ase.build import bulk

import mlff
from mlff import MLFFCalculator
from mlff.contract import derive_from_energies, make_system, member_deviation
from mlff.models import PaiNN
from mlff.neighbors import graph_from_atoms
from mlff.uncertainty import uncertainty_output_specs

from training_helpers import write_config

SMALL = dict(cutoff=3.6, n_features=8, num_interactions=2, n_rbf=6)


def _cu(seed: int = 0):
    atoms = bulk("Cu", cubic=True).repeat((2, 2, 1))
    atoms.rattle(0.08, seed=seed)
    return atoms


def _graph(atoms, cutoff):
    g = graph_from_atoms(atoms, cutoff, torch.float64)
    evs = [ev.detach().requires_grad_(True) for ev in g.edge_vectors()]
    return g, evs


def _shallow(n_heads: int = 4, seed: int = 0) -> PaiNN:
    torch.manual_seed(seed)
    model = PaiNN([29], n_heads=n_heads, **SMALL).double().eval()
    with torch.no_grad():
        model.atomic_energies.fill_(-3.5)
        model.scale.fill_(0.7)
    return model


def test_single_head_is_the_plain_model():
    torch.manual_seed(1)
    plain = PaiNN([8, 29], **SMALL)
    torch.manual_seed(1)
    one = PaiNN.from_config([8, 29], **SMALL, n_heads=1)
    assert one.config == plain.config and "n_heads" not in one.config
    a, b = plain.state_dict(), one.state_dict()
    assert list(a) == list(b)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert one.contract_info() == plain.contract_info()
    assert "outputs" not in one.contract_info()
    atoms = _cu()
    atoms.numbers[:3] = 8
    g, evs = _graph(atoms, SMALL["cutoff"])
    args = (g.atomic_numbers, g.edge_indices, [ev.float() for ev in evs], g.n_atoms, make_system())
    assert torch.equal(plain(*args)["energies"], one(*args)["energies"])


def test_options_and_metadata():
    assert "n_heads" not in PaiNN.validate_options({"n_heads": 1})  # the plain model's config
    assert PaiNN.validate_options({"n_heads": 2})["n_heads"] == 2
    with pytest.raises(ValueError, match="model.n_heads"):
        PaiNN.validate_options({"n_heads": 0})
    model = _shallow(3)
    assert model.config["n_heads"] == 3
    rebuilt = PaiNN(**model.config)
    assert rebuilt.n_heads == 3 and list(rebuilt.state_dict()) == list(model.state_dict())
    names = [o.name for o in model.contract_info()["outputs"]]
    assert names == [o.name for o in uncertainty_output_specs(3)]
    # the heads are the readout: fine-tuning's "@readout" role still finds them
    roles = PaiNN.parameter_roles()["readout"]
    import re

    heads = [n for n, _ in model.named_parameters() if any(re.search(p, n) for p in roles)]
    assert {"readout.hidden.weight", "readout.weight", "readout.bias", "atomic_energies"} <= set(heads)
    # each head its own random init
    w = model.readout.weight.detach()
    assert all(not torch.allclose(w[0], w[k]) for k in range(1, 3))


def test_exported_members_are_the_heads(tmp_path):
    model = _shallow(4)
    meta = mlff.export_model(model, tmp_path / "shallow.pt")
    assert [o.name for o in meta.derived_outputs] == ["forces_uncertainty", "energy_uncertainty"]
    loaded = mlff.load_model(tmp_path / "shallow.pt")
    atoms = _cu(3)
    g, evs = _graph(atoms, SMALL["cutoff"])
    out = mlff.contract.evaluate(loaded.module, g.atomic_numbers, g.edge_indices, evs, g.n_atoms, make_system())

    # each head separately, in the eager model, by the contract's rule
    g2, evs2 = _graph(atoms, SMALL["cutoff"])
    heads = model.head_energies(g2.atomic_numbers, g2.edge_indices[0], evs2[0])
    per_head = [derive_from_energies(heads[:, k], g2.edge_indices, evs2, g2.n_atoms, False, True)
                for k in range(4)]
    head_forces = torch.stack([h["forces"] for h in per_head], dim=1)  # [N, M, 3]
    head_totals = torch.stack([h["energy"] for h in per_head])
    torch.testing.assert_close(out["energies"], heads.mean(1).detach(), atol=1e-12, rtol=0)
    torch.testing.assert_close(out["member_energies"], head_totals.detach(), atol=1e-10, rtol=0)
    torch.testing.assert_close(out["member_forces"], head_forces.detach(), atol=1e-10, rtol=0)
    # the mean energy's forces are the heads' mean forces
    torch.testing.assert_close(out["forces"], head_forces.mean(1).detach(), atol=1e-10, rtol=0)
    assert float(member_deviation(out["member_forces"], True).max()) > 1e-4

    # finite differences of one head's energy, on one coordinate
    k, atom, axis, h = 2, 5, 1, 1e-5

    def head_energy(shift: float) -> float:
        moved = atoms.copy()
        moved.positions[atom, axis] += shift
        gm = graph_from_atoms(moved, SMALL["cutoff"], torch.float64)
        with torch.no_grad():
            return float(model.head_energies(gm.atomic_numbers, gm.edge_indices[0], gm.edge_vectors()[0])[:, k].sum())

    fd = -(head_energy(h) - head_energy(-h)) / (2 * h)
    assert float(out["member_forces"][atom, k, axis]) == pytest.approx(fd, abs=1e-7)

    # energies only (system["outputs"] = 0): no member outputs, the same energy
    skip = make_system()
    skip["outputs"] = torch.tensor(0)
    g3, evs3 = _graph(atoms, SMALL["cutoff"])
    quiet = loaded.module(g3.atomic_numbers, g3.edge_indices, evs3, g3.n_atoms, skip)
    assert set(quiet) == {"energies"}
    assert torch.equal(quiet["energies"].detach(), out["energies"].detach())


def test_ase_uncertainty_is_the_member_deviation(tmp_path):
    mlff.export_model(_shallow(4, seed=2), tmp_path / "shallow.pt")
    atoms = _cu(4)
    atoms.calc = MLFFCalculator(str(tmp_path / "shallow.pt"))
    forces = atoms.get_forces()
    r = atoms.calc.results
    mf = np.asarray(r["member_forces"])
    assert mf.shape == (len(atoms), 4, 3)
    expected = np.sqrt(np.mean(np.sum((mf - mf.mean(axis=1, keepdims=True)) ** 2, axis=2), axis=1))
    np.testing.assert_allclose(r["forces_uncertainty"], expected, rtol=1e-12, atol=1e-14)
    assert r["forces_uncertainty_max"] == pytest.approx(expected.max(), rel=1e-12)
    assert r["forces_uncertainty_mean"] == pytest.approx(expected.mean(), rel=1e-12)
    me = np.asarray(r["member_energies"])
    assert r["energy_uncertainty"] == pytest.approx(np.std(me), rel=1e-10, abs=1e-14)
    np.testing.assert_allclose(mf.mean(axis=1), forces, atol=1e-10)


def test_composed_with_a_term_members_include_it(tmp_path):
    """A physics term is part of every member: member forces average to the forces."""
    from mlff.checkpoint import with_terms
    from mlff.physics.terms import build_term

    term = build_term({"kind": "zbl"}, [29])
    model = with_terms(_shallow(3), [term])
    mlff.export_model(model, tmp_path / "composite.pt")
    atoms = _cu(5)
    atoms.positions[0] = atoms.positions[1] + [0.0, 0.0, 1.3]  # close: the repulsion matters
    atoms.calc = MLFFCalculator(str(tmp_path / "composite.pt"))
    forces = atoms.get_forces()
    r = atoms.calc.results
    np.testing.assert_allclose(np.asarray(r["member_forces"]).mean(axis=1), forces, atol=1e-9)
    assert np.mean(r["member_energies"]) == pytest.approx(atoms.get_potential_energy(), abs=1e-9)
    # the deviation of the network alone: the common term cancels
    alone = _cu(5)
    alone.positions[0] = alone.positions[1] + [0.0, 0.0, 1.3]
    mlff.export_model(_shallow(3), tmp_path / "net.pt")
    alone.calc = MLFFCalculator(str(tmp_path / "net.pt"))
    alone.get_forces()
    np.testing.assert_allclose(r["forces_uncertainty"], alone.calc.results["forces_uncertainty"], atol=1e-9)


def test_each_head_is_trained_on_its_own_loss(cu_db):
    """The loss is the heads' mean loss, the metrics those of the mean prediction."""
    from mlff.data import read_records
    from mlff.training.batching import build_samples, collate
    from mlff.training.metrics import loss_terms, predict

    model = _shallow(3).train()
    samples = build_samples(read_records(cu_db)[:4], SMALL["cutoff"], torch.float64)
    b = collate(samples, torch.device("cpu"))
    pred = predict(model, b, need_stress=True, create_graph=True)
    heads = pred["heads"]
    assert heads["forces"].shape == (3, b.numbers.shape[0], 3)
    torch.testing.assert_close(pred["forces"], heads["forces"].mean(0))
    n = b.n_atoms.double()
    expected = np.mean([float((((heads["energy"][k].detach() - b.energy) / n) ** 2).mean()) for k in range(3)])
    terms = loss_terms(pred, b)
    assert float(terms["energy"].detach()) == pytest.approx(expected, rel=1e-12)
    mean_only = float((((pred["energy"].detach() - b.energy) / n) ** 2).mean())
    assert float(terms["energy"].detach()) > mean_only  # the heads' spread is penalised too
    terms["forces"].backward()  # create_graph: the heads' forces train the parameters
    assert model.readout.weight.grad is not None and float(model.readout.weight.grad.abs().sum()) > 0
    # in eval mode (validation), no heads and no member outputs
    model.eval()
    pred_eval = predict(model, b, need_stress=False, create_graph=False)
    assert "heads" not in pred_eval
    torch.testing.assert_close(pred_eval["forces"], pred["forces"].detach(), atol=1e-10, rtol=0)


def test_mlff_train_shallow_ensemble(tmp_path, cu_db):
    from mlff.cli import main

    cfg = write_config(tmp_path / "c.yaml", cu_db, tmp_path / "run",
                       model={"kind": "painn", "n_heads": 3, "num_interactions": 1},
                       run={"max_steps": 40, "valid_every": 20})
    assert main(["train", str(cfg)]) == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["valid"]["force_rmse"] is not None
    meta = mlff.read_metadata(tmp_path / "run" / "model.pt")
    assert meta.hyperparameters["n_heads"] == 3
    assert "forces_uncertainty" in meta.output_names
    atoms = _cu(7)
    atoms.calc = MLFFCalculator(str(tmp_path / "run" / "model.pt"))
    atoms.get_forces()
    r = atoms.calc.results
    assert r["forces_uncertainty_max"] > 1e-4  # the heads disagree
    assert r["energy_uncertainty"] > 0
