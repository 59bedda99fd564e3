"""Optional labels: the loss uses the labels each structure has (masked means), a label no
structure of a batch has contributes zero (not NaN), and metrics are kept per fidelity."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from training_helpers import AIMNET2_SMALL, molecule_records, write_config
from mlff.models import model_from_options
from mlff.training import Trainer, load_config
from mlff.training.batching import build_samples, collate, list_cutoffs
from mlff.training.config import LossConfig
from mlff.training.metrics import ErrorAccumulator, loss_terms, predict, weighted

WEIGHTS = LossConfig(energy_weight=1.0, forces_weight=10.0, charges_weight=3.0)


@pytest.fixture(scope="module")
def model_and_records():
    records = molecule_records(copies=1)[:6]
    for k, rec in enumerate(records):  # two levels in one batch: the loss does not care
        rec.fidelity = "hi" if k % 2 == 0 else "lo"
    torch.manual_seed(0)
    model = model_from_options("aimnet2", [1, 6, 7, 8], {k: v for k, v in AIMNET2_SMALL.items() if k != "kind"})
    return model.double(), records


def _grads(model, loss):
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.autograd.grad(loss, params, allow_unused=True)


def test_missing_forces_give_the_gradient_without_those_terms(model_and_records):
    model, records = model_and_records
    missing = {1, 4}  # structures without forces (and, for 2, without charges)
    partial = [dataclasses.replace(r, forces=None) if k in missing else r for k, r in enumerate(records)]
    partial[2] = dataclasses.replace(partial[2], charges=None)
    cutoffs = list_cutoffs(model)
    b = collate(build_samples(partial, cutoffs, torch.float64, ["hi", "lo"]), torch.device("cpu"))
    assert b.present == {"energy": "all", "forces": "some", "stress": "none", "charges": "some"}
    assert b.fidelity.tolist() == [0, 1, 0, 1, 0, 1]
    pred = predict(model, b, need_stress=False, create_graph=True)
    got = _grads(model, weighted(loss_terms(pred, b), WEIGHTS))

    # the reference: every label present, and the loss written out over the kept terms only
    full = collate(build_samples(records, cutoffs, torch.float64, ["hi", "lo"]), torch.device("cpu"))
    p = predict(model, full, need_stress=False, create_graph=True)
    structure_of_atom = full.batch.tolist()
    keep_f = torch.tensor([s not in missing for s in structure_of_atom])
    keep_q = torch.tensor([s != 2 for s in structure_of_atom])
    n = full.n_atoms.double()
    energy = (((p["energy"] - full.energy) / n) ** 2).mean()
    forces = ((p["forces"] - full.forces)[keep_f] ** 2).sum() / (3 * int(keep_f.sum()))
    charges = ((p["charges"] - full.charges)[keep_q] ** 2).sum() / int(keep_q.sum())
    want = _grads(model, energy + 10.0 * forces + 3.0 * charges)
    compared = 0
    for g, w in zip(got, want):
        if w is None:
            assert g is None or float(g.abs().max()) == 0.0
            continue
        torch.testing.assert_close(g, w, atol=1e-12, rtol=0)
        compared += 1
    assert compared > 10


def test_a_label_no_structure_has_adds_zero_not_nan(model_and_records):
    model, records = model_and_records
    energy_only = [dataclasses.replace(r, forces=None, charges=None) for r in records]
    b = collate(build_samples(energy_only, list_cutoffs(model), torch.float64, ["hi", "lo"]), torch.device("cpu"))
    assert b.present["forces"] == "none" and b.present["charges"] == "none"
    terms = loss_terms(predict(model, b, need_stress=False, create_graph=True), b)
    assert terms["forces"].item() == 0.0 and "charges" not in terms
    loss = weighted(terms, WEIGHTS)
    assert loss.item() == pytest.approx(terms["energy"].item(), rel=1e-15) and loss.item() > 0
    grads = [g for g in _grads(model, loss) if g is not None]
    assert grads and all(bool(torch.isfinite(g).all()) for g in grads)
    # a batch with no forces at all still has a graph to back-propagate when forces are all it weighs
    only_forces = weighted(terms, LossConfig(energy_weight=0.0, forces_weight=1.0))
    assert only_forces.requires_grad and only_forces.item() == 0.0


def test_metrics_per_fidelity_of_a_mixed_batch(model_and_records):
    model, records = model_and_records
    recs = [dataclasses.replace(r, forces=None) if k == 3 else r for k, r in enumerate(records)]
    samples = build_samples(recs, list_cutoffs(model), torch.float64, ["hi", "lo"])
    mixed = ErrorAccumulator(n_fidelities=2)
    b = collate(samples, torch.device("cpu"))
    mixed.add(predict(model, b, need_stress=False, create_graph=False), b)
    separate = ErrorAccumulator(n_fidelities=2)
    for f in (0, 1):
        bf = collate([s for s in samples if s.fidelity == f], torch.device("cpu"))
        assert bf.fidelities == (f,)
        separate.add(predict(model, bf, need_stress=False, create_graph=False), bf)
    np.testing.assert_allclose(mixed.sums.numpy(), separate.sums.numpy(), rtol=1e-12, atol=1e-14)
    by = separate.by_fidelity()
    assert by[0]["_structures"] == 3 and by[1]["_structures"] == 3
    assert by[1]["charge_rmse"] is not None and by[0]["force_rmse"] is not None
    overall = separate.metrics()
    f_n = separate.sums[:, 5]  # force components per fidelity
    assert f_n[1] == 3 * sum(s.n_atoms for k, s in enumerate(samples) if k in (1, 5))  # structure 3 has none
    assert overall["force_mae"] == pytest.approx(float(separate.sums[:, 3].sum() / f_n.sum()), rel=1e-14)


def test_a_charge_weight_needs_a_model_with_charges(tmp_path, cu_db):
    cfg = load_config(write_config(tmp_path / "c.yaml", cu_db, tmp_path / "run", loss={"charges_weight": 1.0}))
    with pytest.raises(ValueError, match="charges_weight is 1.0, but this painn model predicts no charges"):
        Trainer(cfg)._setup()
