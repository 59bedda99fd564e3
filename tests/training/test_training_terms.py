"""Physics terms in training and export: the network learns labels minus the terms, the
exported file adds them back; `mlff export --dispersion` adds D3 to any checkpoint."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from training_helpers import write_config
from mlff import MLFFCalculator
from mlff.checkpoint import load_checkpoint, load_network, read_checkpoint, save_checkpoint
from mlff.cli import main
from mlff.data import read_records, write_records
from mlff.models import PaiNN
from mlff.models.composite import AdditiveModel
from mlff.physics.terms import build_term, term_spec, validate_term_spec
from mlff.training import Trainer, load_config, train

pytest.importorskip("tad_dftd3", reason="tad-dftd3 provides the D3 reference data (pip install tad-dftd3)")

# short cutoffs keep the 8-atom cells' dispersion lists small; the physics does not matter here
D3 = {"kind": "d3bj", "functional": "pbe", "cutoff": 8.0, "cn_cutoff": 6.0, "switch_width": 1.0}


def d3_results(atoms_list, elements=(29,)):
    """Energy, forces and stress of the D3 term alone, through the ASE calculator (float64)."""
    calc = MLFFCalculator(build_term(D3, list(elements)), dtype="float64")
    return calc.evaluate_batch(atoms_list)


@pytest.fixture(scope="module")
def cu_d3_db(tmp_path_factory, cu_db):
    """The EMT Cu set with D3(BJ) added to every label: a teacher 'EMT + D3'."""
    recs = read_records(cu_db)
    extra = d3_results([r.to_atoms() for r in recs])
    from ase.stress import full_3x3_to_voigt_6_stress

    for rec, d in zip(recs, extra):
        rec.energy = rec.energy + d["energy"]
        rec.forces = rec.forces + d["forces"]
        stress = np.asarray(d["stress"])
        rec.stress = rec.stress + (full_3x3_to_voigt_6_stress(stress) if stress.shape == (3, 3) else stress)
    db = tmp_path_factory.mktemp("d3") / "cu_d3.db"
    write_records(db, recs, {"teacher": "emt+d3"})
    return db


def test_residual_targets_are_labels_minus_the_term(tmp_path, cu_d3_db):
    cfg = load_config(write_config(tmp_path / "c.yaml", cu_d3_db, tmp_path / "run", dispersion=D3))
    trainer = Trainer(cfg)
    trainer._setup()
    assert [t.kind for t in trainer.terms] == ["d3bj"]
    by_id = {r.id: r for r in read_records(cu_d3_db)}
    sample = trainer.train_set[3]
    rec = by_id[sample.record_id]
    d = d3_results([rec.to_atoms()])[0]
    assert abs(d["energy"]) > 1.0  # the term is not negligible: the check below means something
    assert sample.energy == pytest.approx(rec.energy - d["energy"], abs=1e-10, rel=0)
    np.testing.assert_allclose(sample.forces.numpy(), rec.forces - d["forces"], atol=1e-10, rtol=0)
    from ase.stress import voigt_6_to_full_3x3_stress

    stress_d3 = d["stress"] if np.shape(d["stress"]) == (3, 3) else voigt_6_to_full_3x3_stress(d["stress"])
    np.testing.assert_allclose(sample.stress.numpy(), voigt_6_to_full_3x3_stress(rec.stress) - stress_d3,
                               atol=1e-10, rtol=0)
    # the samples keep only the network's list: the 8 Å dispersion list is not batched every step
    assert len(sample.edge_indices) == 1
    assert float(torch.linalg.norm(sample.edge_vectors[0], dim=1).max()) < 3.6


def test_trained_with_d3_exports_network_plus_d3(tmp_path, cu_d3_db):
    out = tmp_path / "run"
    cfg = load_config(write_config(tmp_path / "c.yaml", cu_d3_db, out, dispersion=D3,
                                   run={"max_steps": 10, "valid_every": 5, "plots": False}))
    summary = train(cfg)
    payload = read_checkpoint(summary["best_checkpoint"])
    spec = payload["terms"][0]
    assert {k: spec[k] for k in D3} == D3 and spec["a1"] == pytest.approx(0.4289)  # resolved parameters stored

    network = load_network(payload)
    in_memory = AdditiveModel(network, [build_term(D3, [29])])
    exported = MLFFCalculator(str(out / "model.pt"))
    assert exported.metadata.kind == "painn+d3bj"
    assert [nl.name for nl in exported.metadata.neighbor_lists] == ["local", "d3"]
    atoms = [r.to_atoms() for r in read_records(cu_d3_db)[:3]]
    got = exported.evaluate_batch(atoms)
    ref = MLFFCalculator(in_memory).evaluate_batch(atoms)
    net = MLFFCalculator(network).evaluate_batch(atoms)
    d3 = d3_results(atoms)
    for g, r, n, d in zip(got, ref, net, d3):
        assert g["energy"] == pytest.approx(r["energy"], abs=1e-10, rel=0)
        assert g["energy"] == pytest.approx(n["energy"] + d["energy"], abs=1e-10, rel=0)
        np.testing.assert_allclose(g["forces"], n["forces"] + d["forces"], atol=1e-10, rtol=0)
    # a checkpoint loads as what it models: network + its terms
    from_ckpt = MLFFCalculator(summary["best_checkpoint"]).evaluate_batch(atoms)
    assert from_ckpt[0]["energy"] == pytest.approx(got[0]["energy"], abs=1e-10, rel=0)


def test_export_adds_exactly_the_d3_energy(tmp_path, cu_db):
    torch.manual_seed(0)
    ckpt = tmp_path / "m.ckpt"
    save_checkpoint(ckpt, PaiNN([29], cutoff=3.6, n_features=8, num_interactions=1).double(),
                    provenance={"teacher": "emt"})
    assert main(["export", str(ckpt), "-o", str(tmp_path / "plain.pt")]) == 0
    assert main(["export", str(ckpt), "-o", str(tmp_path / "d3.pt"), "--dispersion", "d3bj", "--functional", "pbe",
                 "--dispersion-cutoff", "8", "--cn-cutoff", "6", "--switch-width", "1"]) == 0
    atoms = [r.to_atoms() for r in read_records(cu_db)[:2]]
    plain = MLFFCalculator(str(tmp_path / "plain.pt")).evaluate_batch(atoms)
    with_d3 = MLFFCalculator(str(tmp_path / "d3.pt"))
    assert with_d3.metadata.hyperparameters["terms"][0]["cutoff"] == 8.0
    for p, w, d in zip(plain, with_d3.evaluate_batch(atoms), d3_results(atoms)):
        assert w["energy"] - p["energy"] == pytest.approx(d["energy"], abs=1e-10, rel=0)
        np.testing.assert_allclose(w["forces"] - p["forces"], d["forces"], atol=1e-10, rtol=0)


def test_export_refuses_double_dispersion(tmp_path, capsys):
    ckpt = tmp_path / "m.ckpt"
    net = PaiNN([1, 6], cutoff=3.0, n_features=8, num_interactions=1)
    save_checkpoint(ckpt, net, provenance={"teacher": "tblite", "teacher_settings": {"method": "GFN2-xTB"}})
    assert main(["export", str(ckpt), "-o", str(tmp_path / "x.pt"), "--dispersion", "d3bj"]) == 2
    assert "already include dispersion" in capsys.readouterr().err
    ckpt2 = tmp_path / "t.ckpt"
    save_checkpoint(ckpt2, net, terms=[build_term(D3, [1, 6])])
    assert main(["export", str(ckpt2), "-o", str(tmp_path / "y.pt"), "--dispersion", "d3bj"]) == 2
    assert "trained with a d3bj term" in capsys.readouterr().err
    assert main(["export", str(ckpt2), "-o", str(tmp_path / "z.pt"), "--functional", "pbe"]) == 2
    assert "need --dispersion" in capsys.readouterr().err
    # the stored term comes back with the checkpoint, and the export adds it
    model = load_checkpoint(ckpt2)
    assert isinstance(model, AdditiveModel) and term_spec(model.parts[1])["cutoff"] == 8.0
    assert main(["export", str(ckpt2), "-o", str(tmp_path / "w.pt"), "--dtype", "float32"]) == 0
    meta = MLFFCalculator(str(tmp_path / "w.pt")).metadata
    assert meta.kind == "painn+d3bj" and meta.dtype == "float32"


def test_term_specs_are_checked():
    with pytest.raises(ValueError, match="unknown physics term kind 'lj'.*d3bj.*zbl"):
        validate_term_spec({"kind": "lj"})
    with pytest.raises(ValueError, match="unknown option 'cutof' for a d3bj term; it accepts functional"):
        validate_term_spec({"kind": "d3bj", "cutof": 3})
    with pytest.raises(ValueError, match="terms\\[0\\] \\(zbl\\): ZBL needs 0 < inner < outer"):
        build_term({"kind": "zbl", "inner": 2.0, "outer": 1.0}, [29], where="terms[0]")
    zbl = build_term({"kind": "zbl", "inner": 1.0, "outer": 1.8}, [1, 29])
    assert [nl[:2] for nl in zbl.neighbor_lists()] == [("zbl", 1.8)] and term_spec(zbl)["outer"] == 1.8


def test_config_takes_dispersion_and_terms(tmp_path, cu_db):
    cfg = load_config(write_config(tmp_path / "c.yaml", cu_db, tmp_path / "run",
                                   dispersion={"functional": "pbe"}, terms=[{"kind": "zbl", "inner": 1.0, "outer": 1.8}]))
    assert cfg.term_specs == [{"kind": "zbl", "inner": 1.0, "outer": 1.8}, {"functional": "pbe", "kind": "d3bj"}]
    p = write_config(tmp_path / "bad.yaml", cu_db, tmp_path / "run", dispersion={"kind": "zbl"})
    with pytest.raises(ValueError, match="kind 'zbl' is not a dispersion correction"):
        load_config(p)
