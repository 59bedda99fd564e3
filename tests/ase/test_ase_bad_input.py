"""What the ASE calculator and the model loader refuse, and the message they give.

One table of bad inputs: add a case here when a new one turns up. Each case names the
exception type and fragments of the message (what is wrong and how to fix it).
"""

from __future__ import annotations

import json
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk, molecule
from ase.calculators.calculator import PropertyNotImplementedError

import mlff
from mlff.contract import METADATA_ENTRY, MLFFModelError, MLFFModelNotFoundError


def _cu(n=2):
    a = bulk("Cu", "fcc", a=3.6, cubic=True).repeat(n)
    a.rattle(0.02, seed=0)
    return a


def _rewrite_metadata(src: Path, dst: Path, change) -> Path:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename.endswith("/extra/" + METADATA_ENTRY):
                meta = json.loads(data)
                change(meta)
                data = json.dumps(meta).encode()
            zout.writestr(item, data)
    return dst


def _calc(path, atoms, **kw):
    atoms = atoms.copy()
    atoms.calc = mlff.MLFFCalculator(path, **kw)
    return atoms


def _set_cutoff(meta):
    meta["cutoff"] = 3.0
    meta["neighbor_lists"][0]["cutoff"] = 3.0


# name -> (how to provoke it, exception type, message fragments)
CASES = {
    "float16 dtype": (lambda p, tmp: mlff.MLFFCalculator(p, dtype="float16"), ValueError,
                      ["dtype 'float16' is not supported", "float32 or float64"]),
    "bfloat16 dtype": (lambda p, tmp: mlff.MLFFCalculator(p, dtype=torch.bfloat16), ValueError,
                       ["not supported"]),
    "int32 dtype": (lambda p, tmp: mlff.MLFFCalculator(p, dtype="int32"), ValueError, ["not supported"]),
    "unknown dtype": (lambda p, tmp: mlff.MLFFCalculator(p, dtype="double-ish"), ValueError, ["not supported"]),
    "atomic number 300": (
        lambda p, tmp: _calc(p, Atoms(numbers=[29, 300], positions=[[0, 0, 0], [2, 0, 0]])).get_potential_energy(),
        MLFFModelError, ["Z=300", "not known to the model", "trained on ['Cu']"]),
    "element not in model": (
        lambda p, tmp: _calc(p, molecule("H2O")).get_potential_energy(), MLFFModelError,
        ["['H', 'O']", "not known to the model"]),
    "NaN position": (
        lambda p, tmp: (lambda a: (a.positions.__setitem__((0, 0), np.nan), a.get_potential_energy()))(_calc(p, _cu())),
        ValueError, ["non-finite positions"]),
    "infinite cell": (
        lambda p, tmp: (lambda a: (a.cell.__setitem__((0, 0), np.inf), a.get_potential_energy()))(_calc(p, _cu())),
        ValueError, ["non-finite"]),
    "stress of a molecule": (
        lambda p, tmp: _calc(p, Atoms("Cu2", positions=[[0, 0, 0], [2.3, 0, 0]])).get_stress(),
        PropertyNotImplementedError, ["periodic in all three directions"]),
    "charges from a model without them": (
        lambda p, tmp: _calc(p, _cu()).get_charges(), PropertyNotImplementedError,
        ["predicts no charges", "['energies']"]),
    "charge for a model without charge input": (
        lambda p, tmp: mlff.MLFFCalculator(p, charge=1), ValueError, ["no charge input", "leave the charge at 0"]),
    "charge in atoms.info for a model without charge input": (
        lambda p, tmp: (lambda a: (a.info.__setitem__("charge", -1), a.get_potential_energy()))(_calc(p, _cu())),
        ValueError, ["atoms.info['charge']", "no charge input"]),
    "NaN charge": (lambda p, tmp: mlff.MLFFCalculator(p, charge=float("nan")), ValueError, ["must be finite"]),
    "text charge": (lambda p, tmp: mlff.MLFFCalculator(p, charge="plus one"), ValueError, ["must be a number"]),
    "unknown fidelity name": (lambda p, tmp: mlff.MLFFCalculator(p, fidelity="ccsd"), ValueError,
                              ["unknown fidelity 'ccsd'", "0 (the only one)"]),
    "fidelity index out of range": (lambda p, tmp: mlff.MLFFCalculator(p, fidelity=3), ValueError,
                                    ["fidelity index 3 is out of range"]),
    "missing file": (lambda p, tmp: mlff.MLFFCalculator(tmp / "nope.pt"), MLFFModelNotFoundError,
                     ["does not exist"]),
    "directory instead of a file": (lambda p, tmp: mlff.MLFFCalculator(tmp), MLFFModelError, ["is a directory"]),
    "metadata cutoff edited": (
        lambda p, tmp: mlff.MLFFCalculator(_rewrite_metadata(p, tmp / "edited.pt", _set_cutoff)),
        MLFFModelError, ["metadata does not match the model", "Re-export"]),
    "metadata elements edited": (
        lambda p, tmp: mlff.MLFFCalculator(
            _rewrite_metadata(p, tmp / "el.pt", lambda m: m.update(elements=[28, 29]))),
        MLFFModelError, ["metadata does not match the model"]),
    "probe energy edited": (
        lambda p, tmp: mlff.MLFFCalculator(
            _rewrite_metadata(p, tmp / "probe.pt", lambda m: m.update(probe_energy=m["probe_energy"] + 0.1))),
        MLFFModelError, ["on the probe system", "inconsistent"]),
    "contract version 4": (
        lambda p, tmp: mlff.MLFFCalculator(_rewrite_metadata(p, tmp / "v4.pt", lambda m: m.update(contract_version=4))),
        MLFFModelError, ["contract version 4", "reads versions 1, 2, 3"]),
    "yace file": (lambda p, tmp: mlff.MLFFCalculator((tmp / "Cu.yace").write_text("x") and tmp / "Cu.yace"),
                  MLFFModelError, [".yace"]),
}


@pytest.fixture(scope="module")
def cu_file(make_model_file):
    return make_model_file(elements=(29,))


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_is_refused_with_a_clear_message(name, cu_file, tmp_path):
    provoke, exc_type, fragments = CASES[name]
    with pytest.raises(exc_type) as info:
        provoke(cu_file, tmp_path)
    for fragment in fragments:
        assert fragment in str(info.value), f"{name}: {fragment!r} not in {info.value}"


def test_missing_file_is_one_exception_type_everywhere(tmp_path):
    """The loader, the calculator and the OpenMM force raise the same type."""
    from mlff.openmm import MLFFForce

    for load in (mlff.load_model, mlff.MLFFCalculator, lambda p: MLFFForce(p, [29], periodic=False)):
        with pytest.raises(MLFFModelNotFoundError):
            load(tmp_path / "missing.pt")
    assert issubclass(MLFFModelNotFoundError, FileNotFoundError)


def test_in_memory_model_is_not_changed(make_model):
    """Evaluating a model in the middle of training must not freeze or cast it."""
    model = make_model(elements=(29,)).train()
    calc = mlff.MLFFCalculator(model, dtype="float32")
    atoms = _cu()
    atoms.calc = calc
    atoms.get_potential_energy()
    assert model.training
    assert all(p.requires_grad and p.dtype == torch.float64 for p in model.parameters())


def test_close_contact_warns_once(tmp_path):
    from mlff.models import PaiNN

    model = PaiNN([29], cutoff=4.0, n_features=8, num_interactions=2).double()
    model.min_distance = 2.2
    path = tmp_path / "md.pt"
    mlff.export_model(model, path)
    assert mlff.load_model(path).metadata.min_distance == 2.2
    pair = Atoms("Cu2", positions=[[0, 0, 0], [1.2, 0, 0]])
    pair.calc = mlff.MLFFCalculator(path)
    with pytest.warns(UserWarning, match=r"1\.200 Å apart.*\(2\.200 Å\).*ZBL"):
        pair.get_potential_energy()
    pair.positions[1, 0] = 1.1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pair.get_potential_energy()  # once per calculator
