"""Run-time fidelity in exported files: a D3 term for the DFT fidelity only, and
single-fidelity exports (``mlff export --fidelity``) that equal the full file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import mlff
from test_models_aimnet2 import FIDELITIES, charged_molecules, small_model

pytest.importorskip("tad_dftd3", reason="tad-dftd3 provides the D3 reference data (pip install tad-dftd3)")

KEYS = ("energy", "energies", "forces", "charges")


def _ase(path, atoms, **kw):
    atoms = atoms.copy()
    atoms.calc = mlff.MLFFCalculator(path, **kw)
    return {k: atoms.calc.get_property(k, atoms) for k in KEYS}


def _close(a, b, keys=KEYS, tol=1e-10):
    for key in keys:
        np.testing.assert_allclose(np.asarray(a[key]), np.asarray(b[key]), rtol=0, atol=tol, err_msg=key)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The network alone, network + D3 for the DFT fidelity, and its checkpoint."""
    from mlff.checkpoint import save_checkpoint, with_terms
    from mlff.physics.terms import build_term

    root = tmp_path_factory.mktemp("fidelity")
    net = small_model("simple").double()
    spec = {"kind": "d3bj", "functional": "pbe", "cutoff": 8.0, "cn_cutoff": 6.0, "fidelities": [FIDELITIES[0]]}
    d3 = build_term(spec, net.config["elements"], fidelities=FIDELITIES)
    d3_alone = build_term({k: v for k, v in spec.items() if k != "fidelities"}, net.config["elements"]).double()
    mlff.export_model(net, root / "net.pt")
    mlff.export_model(with_terms(net, [d3.double()]), root / "net_d3.pt")
    mlff.export_model(d3_alone, root / "d3.pt")
    save_checkpoint(root / "net.ckpt", net)
    return root


def test_dispersion_applies_to_its_fidelity_only(files):
    atoms = charged_molecules()[0]
    for k, name in enumerate(FIDELITIES):
        net = _ase(files / "net.pt", atoms, fidelity=name)
        both = _ase(files / "net_d3.pt", atoms, fidelity=name)
        if k == 0:
            d3 = atoms.copy()  # the D3 term alone (it has no charges output)
            d3.calc = mlff.MLFFCalculator(files / "d3.pt")
            assert both["energy"] == pytest.approx(net["energy"] + d3.get_potential_energy(), abs=1e-10)
            np.testing.assert_allclose(both["forces"], net["forces"] + d3.get_forces(), atol=1e-10)
            _close(net, both, ("charges",), tol=0)
        else:
            _close(net, both, tol=0)  # exactly nothing added, not even rounding
    meta = mlff.read_metadata(files / "net_d3.pt")
    assert meta.fidelities == FIDELITIES and meta.global_sums == 2


@pytest.mark.parametrize("fidelity", FIDELITIES[1:])
def test_single_fidelity_export_equals_the_full_file(files, tmp_path, fidelity):
    out = tmp_path / f"m_{fidelity}.pt"
    mlff_cli = str(Path(sys.executable).with_name("mlff"))
    proc = subprocess.run([mlff_cli, "export", str(files / "net.ckpt"), "-o", str(out), "--fidelity", fidelity],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    meta = mlff.read_metadata(out)
    assert meta.fidelities == [fidelity] and meta.global_sums == 2
    atoms = charged_molecules()[1]
    ref = _ase(files / "net.pt", atoms, fidelity=fidelity)
    _close(ref, _ase(out, atoms))
    with pytest.raises(ValueError, match="out of range"):
        mlff.MLFFCalculator(out, fidelity=1)
    from mlff.lammps import evaluate

    got = evaluate(out, [atoms], nprocs=2, charge=1)[0]
    _close(ref, got, tol=1e-9)


def test_export_refuses_unknown_fidelities(files, tmp_path):
    mlff_cli = str(Path(sys.executable).with_name("mlff"))
    for extra, message in ((["--fidelity", "ccsd"], "unknown fidelity 'ccsd'"),
                           (["--dispersion", "d3bj", "--dispersion-fidelities", "ccsd"], "fidelities ['ccsd']")):
        proc = subprocess.run([mlff_cli, "export", str(files / "net.ckpt"), "-o", str(tmp_path / "x.pt"), *extra],
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode != 0 and message in proc.stderr, proc.stderr
        assert not (tmp_path / "x.pt").exists()
