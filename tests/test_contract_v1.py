"""Contract version 1 files keep loading and give their numbers bit for bit.

``fixtures/painn_v1_cu_o.pt`` was exported by mlff at contract v1 (commit dfdbe9f, see
``fixtures/make_v1_fixture.py``), and the JSON beside it holds what that mlff's ASE
calculator returned for one structure.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms

import mlff
from mlff.contract import V1Adapter, read_metadata

FIXTURES = Path(__file__).parent / "fixtures"
V1_MODEL = FIXTURES / "painn_v1_cu_o.pt"


def _reference():
    ref = json.loads((FIXTURES / "painn_v1_cu_o.json").read_text())
    atoms = Atoms(numbers=ref["numbers"], positions=ref["positions"], cell=ref["cell"], pbc=True)
    return atoms, ref


def test_v1_metadata_reads_as_one_list():
    meta = read_metadata(V1_MODEL)
    assert meta.contract_version == 1
    assert [(nl.name, nl.cutoff) for nl in meta.neighbor_lists] == [("default", 3.5)]
    assert meta.cutoff == 3.5 and meta.num_interactions == 2 and meta.interaction_range == 7.0
    assert meta.output_names == ["energies"]
    assert meta.fidelities == [] and not meta.uses_charge and meta.locality == "local"


def test_v1_file_reproduces_its_numbers_bit_for_bit():
    atoms, ref = _reference()
    loaded = mlff.load_model(V1_MODEL)
    assert isinstance(loaded.module, V1Adapter)
    atoms.calc = mlff.MLFFCalculator(V1_MODEL)
    assert atoms.get_potential_energy() == ref["energy"]
    assert np.array_equal(atoms.get_potential_energies(), np.array(ref["energies"]))
    assert np.array_equal(atoms.get_forces(), np.array(ref["forces"]))
    assert np.array_equal(atoms.get_stress(), np.array(ref["stress"]))


def test_v1_file_refuses_system_inputs_it_does_not_have():
    with pytest.raises(ValueError, match="no charge input"):
        mlff.MLFFCalculator(V1_MODEL, charge=1)
    with pytest.raises(ValueError, match="out of range"):
        mlff.MLFFCalculator(V1_MODEL, fidelity=1)
    with pytest.raises(ValueError, match="unknown fidelity 'dft'"):
        mlff.MLFFCalculator(V1_MODEL, fidelity="dft")
