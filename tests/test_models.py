"""Student model details: shifts fit, cutoff smoothness, configuration, dtypes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms

import mlff
from mlff.checkpoint import load_checkpoint, save_checkpoint
from mlff.models import PaiNN, build_model
from mlff.models.shifts import fit_atomic_energies


def test_least_squares_shifts_recover_reference_energies():
    rng = np.random.default_rng(0)
    true = {1: -13.6, 8: -432.1, 29: -1640.0}
    numbers_list, energies = [], []
    for _ in range(30):
        numbers = rng.choice([1, 8, 29], size=rng.integers(2, 12))
        numbers_list.append(numbers)
        energies.append(sum(true[z] for z in numbers) + rng.normal(0, 1e-3))
    fitted = fit_atomic_energies([1, 8, 29], numbers_list, energies)
    np.testing.assert_allclose(fitted, [true[1], true[8], true[29]], atol=5e-3)


@pytest.mark.parametrize("cutoff_fn", ["cosine", "polynomial"])
def test_energy_and_force_vanish_smoothly_at_the_cutoff(cutoff_fn):
    torch.manual_seed(0)
    model = PaiNN([29], cutoff=4.0, n_features=8, num_interactions=2, cutoff_fn=cutoff_fn).double()
    calc = mlff.MLFFCalculator(model)

    def dimer(r):
        a = Atoms("Cu2", positions=[[0, 0, 0], [r, 0, 0]])
        a.calc = calc
        return a.get_potential_energy(), a.get_forces()[1, 0]

    e_far, _ = dimer(4.5)
    e_in, f_in = dimer(4.0 - 1e-6)
    e_out, f_out = dimer(4.0 + 1e-6)
    assert e_out == e_far  # nothing beyond the cutoff
    assert abs(e_in - e_out) < 1e-9
    assert abs(f_in) < 1e-5 and f_out == 0.0


def test_configuration_round_trip(tmp_path):
    model = PaiNN([1, 6], cutoff=3.5, n_features=8, num_interactions=1, n_rbf=6, cutoff_fn="cosine")
    again = build_model("painn", **model.config)
    assert again.config == model.config
    save_checkpoint(tmp_path / "c.ckpt", model.double())
    restored = load_checkpoint(tmp_path / "c.ckpt")
    assert next(restored.parameters()).dtype == torch.float64
    for (k, v), (k2, v2) in zip(model.state_dict().items(), restored.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)


def test_bad_configuration_is_refused():
    with pytest.raises(ValueError, match="distinct atomic numbers"):
        PaiNN([29, 29])
    with pytest.raises(ValueError, match="cutoff_fn"):
        PaiNN([29], cutoff_fn="step")
    with pytest.raises(ValueError, match="unknown model kind 'mace'"):
        build_model("mace", elements=[1])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_both_dtypes_export(dtype, tmp_path):
    torch.manual_seed(1)
    model = PaiNN([8, 1], cutoff=3.0, n_features=8, num_interactions=2).to(dtype)
    meta = mlff.export_model(model, tmp_path / "m.pt")
    assert meta.dtype == str(dtype).replace("torch.", "")
    assert meta.elements == [1, 8]
    loaded = mlff.load_model(tmp_path / "m.pt")
    assert next(loaded.module.parameters()).dtype == dtype


# --------------------------------------------------------------------------- the model interface


def test_registered_models_implement_the_interface():
    from torch import nn

    from mlff.models import MODEL_REGISTRY
    from mlff.models.base import MLFFModel, ModelOptions, check_model_class

    assert MODEL_REGISTRY["painn"] is PaiNN

    class Half(MLFFModel, nn.Module):
        kind = "half"
        Options = ModelOptions

        def forward(self, atomic_numbers, edge_indices, edge_vectors, n_local, system):
            return {}

    with pytest.raises(TypeError, match=r"Half does not implement .*initialize_from_data.*contract_info"):
        check_model_class(Half)


def test_painn_from_config_validates_its_own_options():
    m = PaiNN.from_config([8, 1], cutoff=3.0, n_features=8)
    assert m.config == dict(elements=[1, 8], cutoff=3.0, n_features=8, num_interactions=3, n_rbf=20,
                            cutoff_fn="polynomial")
    with pytest.raises(ValueError, match=r"model\.n_feature: unknown option for a painn model"):
        PaiNN.from_config([1], n_feature=8)
    with pytest.raises(ValueError, match=r"model\.cutoff_fn: .*'cosine' or 'polynomial'"):
        PaiNN.from_config([1], cutoff_fn="step")


def test_painn_initialize_from_data_and_param_groups():
    from mlff.data.records import Record

    rng = np.random.default_rng(1)
    records = []
    for k in range(6):
        numbers = np.array([1] * (k + 1) + [8] * 2)
        forces = rng.normal(0, 0.5, (len(numbers), 3))
        records.append(Record(str(k), numbers, rng.normal(size=(len(numbers), 3)), np.zeros((3, 3)),
                              np.zeros(3, bool), energy=-13.6 * (k + 1) - 2 * 432.1, forces=forces))
    m = PaiNN([1, 8], n_features=8, num_interactions=1)
    m.initialize_from_data(records)
    np.testing.assert_allclose(m.atomic_energies.detach().numpy(), [-13.6, -432.1], rtol=1e-6)
    rms = np.sqrt(np.mean(np.concatenate([r.forces.ravel() for r in records]) ** 2))
    assert float(m.scale) == pytest.approx(rms, rel=1e-6)
    m.shift_energies(0.5)
    np.testing.assert_allclose(m.atomic_energies.detach().numpy(), [-13.1, -431.6], rtol=1e-6)
    exempt = m.no_decay_parameters()
    assert {"atomic_energies", "embedding.weight", "readout.0.bias"} <= exempt
    assert "interactions.0.U.weight" not in exempt


def test_min_distance_reaches_metadata_and_checkpoints(tmp_path):
    from mlff.contract import metadata_for
    from mlff.models.composite import AdditiveModel
    from mlff.physics.zbl import ZBL

    m = PaiNN([29], cutoff=3.0, n_features=8, num_interactions=1)
    assert metadata_for(m).min_distance is None
    m.min_distance = 2.05
    assert metadata_for(m).min_distance == 2.05
    assert metadata_for(AdditiveModel(m, [ZBL([29])])).min_distance == 2.05
    save_checkpoint(tmp_path / "c.ckpt", m)
    assert load_checkpoint(tmp_path / "c.ckpt").min_distance == 2.05
    meta = mlff.export_model(m, tmp_path / "m.pt")
    assert meta.min_distance == 2.05 and mlff.load_model(tmp_path / "m.pt").metadata.min_distance == 2.05
