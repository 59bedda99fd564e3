"""`mlff train` on two levels of theory with an AIMNet2 model: fidelity indices from
data.fidelities, several stores, per-fidelity validation, the weighted validation loss,
self-atomic energies subtracted in training and added back by the export."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from training_helpers import LO_OFFSETS, write_config, write_mf_config, write_mf_stores
from mlff import MLFFCalculator
from mlff.checkpoint import load_network, read_checkpoint
from mlff.data import DatasetError, read_records, read_sae_yaml, write_records, write_sae_yaml
from mlff.data.sae import fit_sae_by_fidelity, sae_energy
from mlff.training import Trainer, load_config, train

WEIGHTS = {"hi": 1.0, "lo": 2.0}


@pytest.fixture(scope="module")
def mf_stores(tmp_path_factory):
    return write_mf_stores(tmp_path_factory.mktemp("mf"))


@pytest.fixture(scope="module")
def mf_run(tmp_path_factory, mf_stores):
    """A 20-step two-fidelity run with ``sae: fit`` and the lo level drawn twice as often."""
    folder = tmp_path_factory.mktemp("mf_run")
    cfg = load_config(write_mf_config(folder / "c.yaml", *mf_stores, folder / "run",
                                      data={"fidelity_weights": {"lo": WEIGHTS["lo"]}}))
    return cfg, train(cfg)


def test_each_level_is_validated_and_the_loss_is_their_weighted_sum(mf_run):
    cfg, summary = mf_run
    out = cfg.run.output_dir
    rows = list(csv.DictReader(open(f"{out}/metrics.csv")))
    assert [r["step"] for r in rows] == ["10", "20"]
    for row in rows:
        for name in ("val_hi_force_rmse", "val_hi_energy_mae_per_atom", "val_hi_charge_rmse",
                     "val_lo_energy_rmse_per_atom"):
            assert np.isfinite(float(row[name])), name
        assert row["val_lo_force_rmse"] == "" and row["val_lo_charge_rmse"] == ""  # lo has energies only
        weighted = sum(WEIGHTS[f] * float(row[f"val_{f}_loss"]) for f in WEIGHTS)
        assert float(row["val_loss"]) == pytest.approx(weighted, rel=1e-12)
    by = summary["valid_by_fidelity"]
    assert set(by) == {"hi", "lo"} and by["lo"]["force_rmse"] is None and by["hi"]["charge_mae"] > 0
    assert json.loads(open(f"{out}/summary.json").read())["valid_by_fidelity"]["hi"]["force_rmse"] == pytest.approx(
        by["hi"]["force_rmse"])
    meta = MLFFCalculator(summary["model"]).metadata
    assert meta.kind == "aimnet2+sae" and meta.fidelities == ["hi", "lo"]
    assert meta.provenance["fidelities"] == ["hi", "lo"] and meta.provenance["teacher"] == "emt+emt-scaled"


def test_export_is_network_plus_sae_exactly(mf_run, mf_stores):
    cfg, summary = mf_run
    tables = read_sae_yaml(f"{cfg.run.output_dir}/sae.yaml")
    assert tables["lo"]["O"] == pytest.approx(LO_OFFSETS[8], abs=5.0)  # the lo level's offsets are in its SAE
    network = load_network(read_checkpoint(summary["best_checkpoint"]))
    atoms = [r.to_atoms() for r in read_records(mf_stores[1])[:4]]
    for k, fidelity in enumerate(("hi", "lo")):
        got = MLFFCalculator(summary["model"], fidelity=fidelity).evaluate_batch(atoms)
        net = MLFFCalculator(network, fidelity=k).evaluate_batch(atoms)
        for a, g, n in zip(atoms, got, net):
            assert g["energy"] == pytest.approx(n["energy"] + sae_energy(a.numbers, tables[fidelity]), abs=1e-10, rel=0)
            np.testing.assert_allclose(g["forces"], n["forces"], atol=1e-10, rtol=0)  # the baseline has no forces


def test_residual_targets_are_labels_minus_sae(tmp_path, mf_stores):
    cfg = load_config(write_mf_config(tmp_path / "c.yaml", *mf_stores, tmp_path / "run"))
    trainer = Trainer(cfg)
    trainer._setup()
    tables = read_sae_yaml(tmp_path / "run" / "sae.yaml")
    # the fitted tables are what fit_sae_by_fidelity gives on the training records
    train_ids = {(s.fidelity, s.record_id) for s in trainer.train_set}
    by_key = {}
    for path, fid in zip(mf_stores, ("hi", "lo")):
        for rec in read_records(path):
            rec.fidelity = fid
            by_key[(("hi", "lo").index(fid), rec.id)] = rec
    train_recs = [by_key[key] for key in sorted(train_ids)]
    refit = fit_sae_by_fidelity(train_recs, [1, 6, 7, 8])  # in another order: equal to rounding
    assert refit.keys() == tables.keys()
    for f in refit:
        assert refit[f] == pytest.approx(tables[f], abs=1e-9, rel=0)
    checked = {0: 0, 1: 0}
    for sample in trainer.train_set + trainer.valid_set:
        rec = by_key[(sample.fidelity, sample.record_id)]
        baseline = sae_energy(rec.numbers, tables[rec.fidelity])
        assert sample.energy == pytest.approx(rec.energy - baseline, abs=1e-10, rel=0)
        if rec.forces is None:
            assert sample.forces is None
        else:
            np.testing.assert_allclose(sample.forces.numpy(), rec.forces, atol=1e-12, rtol=0)
            np.testing.assert_allclose(sample.charges.numpy(), rec.charges, atol=1e-12, rtol=0)
        checked[sample.fidelity] += 1
    assert checked[0] == 30 and checked[1] == 30


def test_sae_from_a_file(tmp_path, mf_stores):
    sae = tmp_path / "sae.yaml"
    write_sae_yaml(sae, {"hi": {"H": -1.0, "C": -2.0, "N": -3.0, "O": -4.0}})
    cfg = load_config(write_mf_config(tmp_path / "c.yaml", *mf_stores, tmp_path / "run", sae=str(sae)))
    with pytest.raises(DatasetError, match=r"has no table for \['lo'\] \(it has \['hi'\]\)"):
        Trainer(cfg)._setup()
    tables = {"hi": {"H": -1.0, "C": -2.0, "N": -3.0, "O": -4.0},
              "lo": {"H": -13.0, "C": -1020.0, "N": -1480.0, "O": -2040.0}, "other": {"H": 0.0}}
    write_sae_yaml(sae, tables)
    trainer = Trainer(cfg)
    trainer._setup()
    term = trainer.terms[0]
    assert term.contract_info()["kind"] == "sae" and term.fidelities == ["hi", "lo"]
    assert term.table.tolist() == [[-1.0, -2.0, -3.0, -4.0], [-13.0, -1020.0, -1480.0, -2040.0]]
    assert not (tmp_path / "run" / "sae.yaml").exists()  # a given file is not copied over


def test_fidelity_lists_must_agree(tmp_path, mf_stores):
    p = write_mf_config(tmp_path / "c.yaml", *mf_stores, tmp_path / "run", data={"fidelities": ["lo", "hi"]})
    with pytest.raises(ValueError, match=r"data.fidelities \['lo', 'hi'\] and model.fidelities \['hi', 'lo'\] differ"):
        load_config(p)
    p = write_mf_config(tmp_path / "c.yaml", *mf_stores, tmp_path / "run", data={"fidelity_weights": {"mp2": 2}})
    with pytest.raises(ValueError, match=r"fidelity_weights names \['mp2'\]"):
        load_config(p)


def test_records_of_other_levels_are_refused_by_name(tmp_path, mf_stores, cu_db):
    hi, lo = mf_stores
    recs = read_records(lo)
    for rec in recs[:2]:
        rec.fidelity = "mp2"
    tagged = tmp_path / "lo_tagged.db"
    write_records(tagged, recs)
    cfg = load_config(write_mf_config(tmp_path / "c.yaml", hi, tagged, tmp_path / "run"))
    with pytest.raises(DatasetError, match=r"lo_tagged.db: structures of levels of theory[\s\S]*"
                                           r"fidelity 'mp2': 2 \(rows 1, 2\)"):
        Trainer(cfg)._setup()
    # untagged structures of a store without a fidelity are refused in a multi-fidelity run
    cfg = load_config(write_mf_config(tmp_path / "c.yaml", hi, lo, tmp_path / "run",
                                      data={"train": [str(hi), str(lo)]}))
    with pytest.raises(DatasetError, match=r"no fidelity tag: 30 \(rows 1, 2, 3"):
        Trainer(cfg)._setup()
    # a single-head model does not mix levels silently
    cfg = load_config(write_config(tmp_path / "p.yaml", hi, tmp_path / "run2",
                                   data={"train": [str(hi), {"path": str(lo), "fidelity": "lo"}],
                                         "require_forces": False}))
    with pytest.raises(DatasetError, match=r"2 levels of theory \['hi', 'lo'\], but the model has one energy head"):
        Trainer(cfg)._setup()


def test_energy_only_structures_need_require_forces_false(tmp_path, mf_stores):
    cfg = load_config(write_mf_config(tmp_path / "c.yaml", *mf_stores, tmp_path / "run",
                                      data={"require_forces": True}))
    with pytest.raises(DatasetError, match=r"lo.db: 30 of 30 structures are invalid[\s\S]*missing forces"):
        Trainer(cfg)._setup()
