"""Shared fixtures: small exported models every engine's tests evaluate.

Untrained models are fine for cross-engine agreement and finite differences (the
contract is the same whatever the weights); dynamics tests use ``fitted_cu_model``,
a float64 student quickly fitted to EMT so atoms move in a physical potential.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(1)


def _make_model(elements, dtype, cutoff, n_features, num_interactions, seed):
    from mlff.models import PaiNN

    torch.manual_seed(seed)
    model = PaiNN(list(elements), cutoff=cutoff, n_features=n_features, num_interactions=num_interactions)
    # random but non-trivial per-element shifts so element mix-ups show in energies
    with torch.no_grad():
        model.atomic_energies.copy_(-torch.arange(1, len(model.config["elements"]) + 1, dtype=torch.float32))
    return model.to(getattr(torch, dtype)).eval()


@pytest.fixture(scope="session")
def make_model_file(tmp_path_factory):
    """Factory: export a small untrained PaiNN and return its path (cached per arguments)."""
    from mlff import export_model

    cache: dict = {}
    root = tmp_path_factory.mktemp("models")

    def make(elements=(29,), dtype="float64", cutoff=4.0, n_features=16, num_interactions=2, seed=0) -> Path:
        key = (tuple(elements), dtype, cutoff, n_features, num_interactions, seed)
        if key not in cache:
            model = _make_model(elements, dtype, cutoff, n_features, num_interactions, seed)
            path = root / f"painn_{'-'.join(map(str, elements))}_{dtype}_{len(cache)}.pt"
            export_model(model, path)
            cache[key] = path
        return cache[key]

    return make


@pytest.fixture(scope="session")
def make_model(make_model_file):
    """Factory: the in-memory model behind ``make_model_file`` (same seed, same weights)."""

    def make(elements=(29,), dtype="float64", cutoff=4.0, n_features=16, num_interactions=2, seed=0):
        return _make_model(elements, dtype, cutoff, n_features, num_interactions, seed)

    return make


def quick_fit_to_emt(n_structures: int = 24, steps: int = 150, seed: int = 0):
    """A float64 Cu PaiNN fitted for a few seconds to EMT forces on rattled/strained cells.

    Uses the trainer's own pieces (samples, prediction through the contract, loss), just
    without the data store and checkpointing around them.
    """
    from ase.build import bulk
    from ase.calculators.emt import EMT

    from mlff.data.records import Record
    from mlff.models import PaiNN
    from mlff.models.shifts import fit_atomic_energies
    from mlff.training.batching import build_samples, collate
    from mlff.training.metrics import loss_terms, predict

    rng = np.random.default_rng(seed)
    records = []
    for k in range(n_structures):
        a = bulk("Cu", "fcc", a=3.61 * (1 + rng.uniform(-0.03, 0.03)), cubic=True).repeat(2)
        a.rattle(0.03 + 0.1 * rng.random(), seed=int(rng.integers(1 << 30)))
        a.calc = EMT()
        a.get_forces()
        records.append(Record.from_atoms(a, id=str(k)))
    torch.manual_seed(seed)
    model = PaiNN([29], cutoff=4.0, n_features=16, num_interactions=2).double()
    shifts = fit_atomic_energies([29], [r.numbers for r in records], [r.energy for r in records])
    with torch.no_grad():
        model.atomic_energies.copy_(torch.as_tensor(shifts))
    batches = [collate([s], torch.device("cpu")) for s in build_samples(records, 4.0, torch.float64)]
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for step in range(steps):
        b = batches[step % len(batches)]
        terms = loss_terms(predict(model, b, need_stress=False, create_graph=True), b)
        loss = terms["forces"] + terms["energy"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


@pytest.fixture(scope="session")
def fitted_cu_model(tmp_path_factory) -> Path:
    """Exported float64 Cu student quickly fitted to EMT (for dynamics tests)."""
    from mlff import export_model

    path = tmp_path_factory.mktemp("fitted") / "cu_emt.pt"
    export_model(quick_fit_to_emt(), path, provenance={"teacher": "EMT", "purpose": "tests"})
    return path


@pytest.fixture(scope="session")
def committee_members(make_model_file):
    """Three untrained Cu PaiNN students of different cutoffs and depths (float64)."""
    return [
        make_model_file(elements=(29,), cutoff=4.0, num_interactions=2, seed=11),
        make_model_file(elements=(29,), cutoff=4.5, num_interactions=1, seed=12),
        make_model_file(elements=(29,), cutoff=4.0, num_interactions=3, seed=13),
    ]


@pytest.fixture(scope="session")
def committee_file(committee_members, tmp_path_factory):
    """Their committee (``mlff ensemble``): lists 4 and 4.5 Å, interaction range 12 Å."""
    from mlff.uncertainty import build_committee

    path = tmp_path_factory.mktemp("committee") / "committee.pt"
    build_committee(committee_members, path)
    return path


@pytest.fixture(scope="session")
def light_committee_file(make_model_file, tmp_path_factory):
    """A committee of two one-hop members (4 and 4.5 Å): a thin ghost shell, for MD tests."""
    from mlff.uncertainty import build_committee

    members = [make_model_file(elements=(29,), cutoff=4.0, num_interactions=1, seed=21),
               make_model_file(elements=(29,), cutoff=4.5, num_interactions=1, seed=22)]
    path = tmp_path_factory.mktemp("committee") / "light_committee.pt"
    build_committee(members, path)
    return path
