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


def test_stress_sign(make_model):
    """The contract virial (edge gradients) through ``units.stress_from_virial`` equals
    the finite-difference strain derivative of the energy: the sign is written once and
    is right."""
    from ase.build import bulk
    from ase.calculators.fd import calculate_numerical_stress
    from ase.stress import full_3x3_to_voigt_6_stress

    import mlff
    from mlff.contract import evaluate
    from mlff.neighbors import graph_from_atoms

    model = make_model(elements=(29,))
    atoms = bulk("Cu", "fcc", a=3.3, cubic=True).repeat(2)  # compressed
    atoms.rattle(0.02, seed=1)
    g = graph_from_atoms(atoms, 4.0)
    evs = [ev.detach().requires_grad_(True) for ev in g.edge_vectors()]
    virial = evaluate(model, g.atomic_numbers, g.edge_indices, evs, g.n_atoms)["virial"].detach().numpy()
    stress = full_3x3_to_voigt_6_stress(units.stress_from_virial(virial, atoms.get_volume()))
    atoms.calc = mlff.MLFFCalculator(model)
    numeric = calculate_numerical_stress(atoms, eps=1e-6)
    assert np.abs(numeric).max() > 1e-4
    np.testing.assert_allclose(stress, numeric, atol=1e-7)
    assert units.pressure_bar_from_stress(stress) == pytest.approx(-numeric[:3].mean() * units.EV_PER_A3_IN_BAR)
