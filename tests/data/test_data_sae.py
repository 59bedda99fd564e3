"""Self-atomic energies: exact recovery despite outliers, refusal of what cannot be fitted, YAML, CLI."""

from __future__ import annotations

import numpy as np
import pytest
from ase.data import atomic_numbers

from mlff.cli import main
from mlff.data import (
    DatasetError, Record, fit_sae, fit_sae_by_fidelity, read_sae_yaml, write_records, write_sae_yaml,
)
from mlff.data.sae import fit_sae_report, sae_energy

TRUE = {"H": -13.6, "C": -1029.5, "N": -1484.9, "O": -2041.3}


def _synthetic(n=400, outlier_fraction=0.05, noise=0.0, seed=0, sae=TRUE):
    """Random CHNO compositions with exactly per-element energies, a fraction of them +50 eV off."""
    rng = np.random.default_rng(seed)
    symbols = list(sae)
    numbers_list, energies = [], []
    for _ in range(n):
        counts = rng.integers(0, 8, size=len(symbols))
        counts[0] += 1
        numbers = np.repeat([atomic_numbers[s] for s in symbols], counts)
        numbers_list.append(numbers)
        energies.append(float(counts @ np.array([sae[s] for s in symbols])) + rng.normal(0, noise))
    bad = rng.choice(n, size=int(round(outlier_fraction * n)), replace=False)
    for k in bad:
        energies[k] += 50.0  # a failed SCF, a wrong reference: far off, all on one side
    return numbers_list, energies, sorted(int(k) for k in bad)


def _records(numbers_list, energies, fidelity=None):
    out = []
    for k, (z, e) in enumerate(zip(numbers_list, energies)):
        out.append(Record(id=str(k), numbers=np.asarray(z), positions=np.arange(3 * len(z), dtype=float).reshape(-1, 3),
                          cell=np.zeros((3, 3)), pbc=np.zeros(3, bool), energy=e, fidelity=fidelity))
    return out


def test_recovers_energies_despite_outliers():
    numbers_list, energies, bad = _synthetic()
    plain = np.linalg.lstsq(
        np.array([[np.sum(z == atomic_numbers[s]) for s in TRUE] for z in numbers_list]), energies, rcond=None
    )[0]
    assert np.abs(plain - list(TRUE.values())).max() > 0.1  # what plain least squares gives
    fit = fit_sae_report((numbers_list, energies))
    assert set(bad) <= {int(i) for i in fit.dropped}  # every outlier is left out
    assert len(fit.dropped) < 0.1 * len(energies)
    for el, e in TRUE.items():
        assert fit.energies[el] == pytest.approx(e, abs=1e-6)
    # records give the same answer, keyed by symbol, in the order of atomic number
    sae = fit_sae(_records(numbers_list, energies))
    assert list(sae) == ["H", "C", "N", "O"] and sae == pytest.approx(fit.energies, abs=1e-9)


def test_noisy_energies():
    numbers_list, energies, _ = _synthetic(n=1000, noise=0.05, seed=1)
    sae = fit_sae((numbers_list, energies))
    for el, e in TRUE.items():
        assert sae[el] == pytest.approx(e, abs=0.02)


def test_refuses_what_cannot_be_fitted():
    water = [np.array([8, 1, 1]), np.array([8, 8, 1, 1, 1, 1]), np.array([1, 8, 1])]
    with pytest.raises(DatasetError, match="energies of H, O cannot be told apart"):
        fit_sae((water, [-2082.5, -4165.0, -2082.4]))
    # a third element that varies freely is fitted; the two locked together are still named
    mixed = [np.concatenate([w, [6] * k]) for k, w in enumerate(water)]
    with pytest.raises(DatasetError, match="energies of H, O cannot"):
        fit_sae((mixed, [-2082.5, -5194.5, -4141.4]))
    numbers_list, energies, _ = _synthetic(n=30, outlier_fraction=0)
    with pytest.raises(DatasetError, match="no structure contains F, so its self-atomic energy"):
        fit_sae((numbers_list, energies), elements=["H", "C", "N", "O", "F"])
    with pytest.raises(DatasetError, match="contain N, O, which are not among the elements H, C"):
        fit_sae((numbers_list, energies), elements=["H", "C"])
    energies[3] = float("nan")
    with pytest.raises(DatasetError, match="1 structures have a non-finite energy .rows 3."):
        fit_sae((numbers_list, energies))


def test_by_fidelity_and_yaml_round_trip(tmp_path):
    cheap = {k: v * 0.9 for k, v in TRUE.items()}
    n1, e1, _ = _synthetic(n=60, seed=2, outlier_fraction=0)
    n2, e2, _ = _synthetic(n=60, seed=3, sae=cheap, outlier_fraction=0)
    recs = _records(n1, e1, "pbe/def2-svp") + _records(n2, e2, "gfn1-xtb")
    sae = fit_sae_by_fidelity(recs)
    assert sae["gfn1-xtb"] == pytest.approx(cheap, abs=1e-6) and sae["pbe/def2-svp"] == pytest.approx(TRUE, abs=1e-6)
    untagged = _records(n1, e1)
    with pytest.raises(DatasetError, match="60 structures carry no fidelity tag"):
        fit_sae_by_fidelity(untagged)
    assert fit_sae_by_fidelity(untagged, default_fidelity="dft")["dft"] == pytest.approx(TRUE, abs=1e-6)

    path = tmp_path / "sae.yaml"
    write_sae_yaml(path, sae, notes=["made by a test"])
    text = path.read_text()
    assert text.startswith("# Self-atomic energies (eV) per fidelity")
    assert "2nd-98th percentile" in text and "# made by a test" in text
    assert read_sae_yaml(path) == sae  # bit for bit
    assert sae_energy([8, 1, 1], sae["pbe/def2-svp"]) == pytest.approx(2 * TRUE["H"] + TRUE["O"])

    path.write_text("dft:\n  H: -13.6\n  Xx: 1.0\n")
    with pytest.raises(DatasetError, match="'Xx' is not an element symbol"):
        read_sae_yaml(path)
    path.write_text("dft:\n  H: .nan\n")
    with pytest.raises(DatasetError, match="not a finite energy"):
        read_sae_yaml(path)


def test_cli(tmp_path, capsys):
    n1, e1, _ = _synthetic(n=60, seed=4)
    n2, e2, _ = _synthetic(n=40, seed=5, outlier_fraction=0)
    write_records(tmp_path / "a.h5", _records(n1, e1, "gfn2-xtb"))
    write_records(tmp_path / "b.db", _records(n2, e2))
    out = tmp_path / "sae.yaml"
    assert main(["sae", str(tmp_path / "a.h5"), str(tmp_path / "b.db"), "-o", str(out)]) == 2
    assert "40 structures carry no fidelity tag" in capsys.readouterr().err
    assert main(["sae", str(tmp_path / "a.h5"), str(tmp_path / "b.db"), "-o", str(out), "--fidelity", "gfn1-xtb"]) == 0
    printed = capsys.readouterr().out
    assert "gfn2-xtb: 60 structures" in printed and f"wrote {out}" in printed
    sae = read_sae_yaml(out)
    assert list(sae) == ["gfn2-xtb", "gfn1-xtb"]
    for table in sae.values():
        assert table == pytest.approx(TRUE, abs=1e-6)
    assert "# gfn2-xtb: 60 structures, " in out.read_text()
