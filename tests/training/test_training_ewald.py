"""Training an AIMNet2 model with ``coulomb: ewald``: the trainer's batches carry the
geometry inputs (wrapped positions, one cell per structure), so batched predictions of
energies, forces and stress equal what the engines compute on each structure alone; a run
trains and exports a model that declares its geometry inputs; open structures are refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml
from ase import Atoms
from ase.build import molecule

from mlff import MLFFCalculator
from mlff.contract import read_metadata
from mlff.models.aimnet2 import AIMNet2
from mlff.training import load_config, train
from mlff.training.batching import build_samples, collate, list_cutoffs
from mlff.training.metrics import predict

SMALL = dict(cutoff=3.0, n_features=8, n_passes=2, n_gaussians=6, coulomb="ewald", coulomb_cutoff=6.0, sr_cutoff=2.5)


def water_boxes(n: int = 6, seed: int = 0):
    """Periodic boxes of 8 rattled water molecules (some sheared), labelled by EMT, neutral."""
    from ase.calculators.emt import EMT

    from mlff.data import Record

    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        base = molecule("H2O")
        atoms = Atoms(cell=np.eye(3) * 6.4, pbc=True)
        for idx in np.ndindex(2, 2, 2):
            w = base.copy()
            w.rotate(rng.uniform(0, 360), rng.normal(size=3), center=(0, 0, 0))
            w.positions += (np.array(idx) + 0.5) * 3.2 + rng.normal(scale=0.1, size=3)
            atoms += w
        if k % 2:
            atoms.set_cell(atoms.cell[:] @ (np.eye(3) + 0.04 * rng.normal(size=(3, 3))), scale_atoms=True)
        atoms.calc = EMT()
        rec = Record.from_atoms(atoms, id=f"box-{k}")
        rec.energy, rec.forces = float(atoms.get_potential_energy()), atoms.get_forces()
        rec.stress = atoms.get_stress()
        rec.charge = 0.0
        out.append(rec)
    return out


def test_batch_predictions_equal_the_engine():
    torch.manual_seed(0)
    model = AIMNet2([1, 8], **SMALL).double().eval()
    records = water_boxes(3)
    samples = build_samples(records, list_cutoffs(model), torch.float64)
    assert all(s.positions is not None and s.cell is not None for s in samples)
    b = collate(samples, torch.device("cpu"))
    assert b.positions.shape == (sum(s.n_atoms for s in samples), 3) and b.cell.shape == (3, 3, 3)
    pred = predict(model, b, need_stress=True, create_graph=False)
    start = 0
    for k, rec in enumerate(records):
        atoms = rec.to_atoms()
        atoms.calc = MLFFCalculator(model)
        sl = slice(start, start + len(atoms))
        start += len(atoms)
        assert float(pred["energy"][k].detach()) == pytest.approx(atoms.get_potential_energy(), abs=1e-10)
        np.testing.assert_allclose(pred["forces"][sl].detach().numpy(), atoms.get_forces(), rtol=0, atol=1e-10)
        np.testing.assert_allclose(pred["stress"][k].detach().numpy(), atoms.get_stress(voigt=False), rtol=0,
                                   atol=1e-12)
    # open structures carry no geometry, and a batch holding one has none either
    open_sample = build_samples(water_boxes(1)[:0] + [_open_record()], list_cutoffs(model), torch.float64)[0]
    assert open_sample.positions is None and collate(samples + [open_sample], torch.device("cpu")).positions is None


def _open_record():
    from mlff.data import Record

    a = molecule("H2O")
    rec = Record.from_atoms(a, id="h2o")
    rec.energy, rec.forces, rec.charge = -1.0, np.zeros((3, 3)), 0.0
    return rec


def _config(tmp_path, db, out):
    cfg = {
        "data": {"train": str(db), "valid_fraction": 0.34, "min_structures": 3},
        "model": {"kind": "aimnet2", **SMALL},
        "loss": {"energy_weight": 1.0, "forces_weight": 10.0, "stress_weight": 1.0},
        "optim": {"lr": 5e-3},
        "run": {"output_dir": str(out), "max_steps": 4, "batch_atoms": 48, "valid_every": 2, "dtype": "float64",
                "progress": False, "num_threads": 1, "plots": False, "tensorboard": False},
    }
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return load_config(path)


def test_training_runs_exports_and_refuses_open_structures(tmp_path):
    from mlff.data import write_records

    db = tmp_path / "boxes.db"
    write_records(db, water_boxes(6), {"teacher": "emt"})
    summary = train(_config(tmp_path, db, tmp_path / "run"))
    exported = [p for p in (tmp_path / "run").rglob("*.pt")]
    assert exported, summary
    meta = read_metadata(exported[0])
    assert meta.geometry_inputs == ["positions", "cell"] and meta.hyperparameters["coulomb"] == "ewald"
    box = water_boxes(1, seed=5)[0].to_atoms()
    box.calc = MLFFCalculator(exported[0])
    assert np.isfinite(box.get_potential_energy()) and np.isfinite(box.get_stress()).all()

    mixed = tmp_path / "mixed.db"
    write_records(mixed, water_boxes(5) + [_open_record()], {"teacher": "emt"})
    with pytest.raises(ValueError, match=r"Ewald.*periodic in x, y and z, but 1 structure\(s\) are not"):
        train(_config(tmp_path, mixed, tmp_path / "run2"))
