"""The units module against the engines' own constants (independent sources)."""

from __future__ import annotations

import numpy as np
import pytest

from mlff import units


def test_openmm_conversions_agree_with_openmm_units():
    openmm_unit = pytest.importorskip("openmm.unit", reason="OpenMM provides the reference")
    ev = (1.0 * openmm_unit.elementary_charge * openmm_unit.volt * openmm_unit.AVOGADRO_CONSTANT_NA)
    # ASE's CODATA and OpenMM's differ in the 8th digit; energies must agree far better than 1e-6
    assert units.EV_IN_KJ_PER_MOL == pytest.approx(ev.value_in_unit(openmm_unit.kilojoule_per_mole), rel=1e-7)
    assert units.NM_IN_ANGSTROM == (1.0 * openmm_unit.nanometer).value_in_unit(openmm_unit.angstrom)


def test_lammps_factors_are_lammps_own():
    """metal -> real energy factor as LAMMPS defines it (utils::get_conversion_factor)."""
    assert units.lammps_energy_factor("metal") == 1.0
    assert units.lammps_energy_factor("real") == 23.060549
    assert units.EV_IN_KCAL_PER_MOL == pytest.approx(23.060549, rel=1e-6)  # CODATA, for comparison
    with pytest.raises(ValueError, match="'units metal'.*'units real'.*'lj'"):
        units.lammps_energy_factor("lj")


def test_stress_sign():
    """A compressed crystal pushes outwards: positive virial trace, negative (compressive) ASE stress."""
    from ase.build import bulk
    from ase.calculators.emt import EMT

    atoms = bulk("Cu", "fcc", a=3.3, cubic=True)
    atoms.calc = EMT()
    stress = atoms.get_stress(voigt=False)
    virial = -stress * atoms.get_volume()  # the contract's W from ASE's stress
    np.testing.assert_allclose(units.stress_from_virial(virial, atoms.get_volume()), stress, rtol=1e-14)
    assert np.trace(stress) < 0
    assert units.pressure_bar_from_stress(atoms.get_stress()) > 0
