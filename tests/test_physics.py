"""Forces and stress are exact derivatives; energies are extensive and invariant; NVE conserves."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms, units
from ase.build import bulk, molecule
from ase.calculators.fd import calculate_numerical_forces, calculate_numerical_stress
from ase.md.velocitydistribution import Stationary, thermalize_momenta
from ase.md.verlet import VelocityVerlet
from scipy.spatial.transform import Rotation

from mlff import MLFFCalculator


def _molecule():
    a = molecule("CH3CH2OH")
    a.rattle(0.02, seed=0)
    return a


def _cubic():
    a = bulk("Cu", "fcc", a=3.6, cubic=True).repeat(2)
    a.symbols[[0, 9]] = "O"
    a.rattle(0.05, seed=1)
    return a


def _triclinic():
    a = Atoms(
        "Cu6O2",
        scaled_positions=np.random.default_rng(2).random((8, 3)),
        cell=[[5.6, 0.0, 0.0], [1.3, 5.9, 0.0], [-0.8, 1.1, 6.2]],
        pbc=True,
    )
    return a


def _small_cell():
    """A 4-atom cell much smaller than 2 x cutoff: many images of each atom."""
    a = bulk("Cu", "fcc", a=3.6, cubic=True)
    a.symbols[1] = "O"
    a.rattle(0.05, seed=4)
    return a


STRUCTURES = {"molecule": _molecule, "cubic": _cubic, "triclinic": _triclinic, "small_cell": _small_cell}


@pytest.fixture(scope="module")
def calc(make_model_file):
    return MLFFCalculator(make_model_file(elements=(1, 6, 8, 29), cutoff=4.0, num_interactions=2))


@pytest.mark.parametrize("name", list(STRUCTURES))
def test_forces_are_energy_gradient(calc, name):
    atoms = STRUCTURES[name]()
    atoms.calc = calc
    forces = atoms.get_forces()
    numeric = calculate_numerical_forces(atoms, eps=1e-4)
    assert np.abs(forces).max() > 1e-3  # not trivially zero
    np.testing.assert_allclose(forces, numeric, atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", ["cubic", "triclinic", "small_cell"])
def test_stress_is_strain_derivative(calc, name):
    atoms = STRUCTURES[name]()
    atoms.calc = calc
    stress = atoms.get_stress()
    numeric = calculate_numerical_stress(atoms, eps=1e-5)
    assert np.abs(stress).max() > 1e-5
    np.testing.assert_allclose(stress, numeric, atol=1e-7, rtol=0)


def test_per_atom_energies_and_stresses_sum(calc):
    """Per-atom stresses add up to the strain derivative of the energy (finite differences),
    an independent quantity, not the total they were summed into."""
    atoms = _triclinic()
    atoms.calc = calc
    assert atoms.get_potential_energies().sum() == pytest.approx(atoms.get_potential_energy(), abs=1e-10)
    numeric = calculate_numerical_stress(atoms, eps=1e-5)
    assert np.abs(numeric).max() > 1e-5
    np.testing.assert_allclose(atoms.get_stresses().sum(0), numeric, atol=1e-7, rtol=0)


def test_molecule_has_no_stress(calc):
    from ase.calculators.calculator import PropertyNotImplementedError

    atoms = _molecule()
    atoms.calc = calc
    with pytest.raises(PropertyNotImplementedError, match="periodic"):
        atoms.get_stress()


@pytest.mark.parametrize("name", ["cubic", "triclinic", "small_cell"])
def test_supercell_energy_per_atom(calc, name):
    atoms = STRUCTURES[name]()
    big = atoms.repeat((2, 2, 2))
    atoms.calc = calc
    big.calc = calc
    e1 = atoms.get_potential_energy() / len(atoms)
    e2 = big.get_potential_energy() / len(big)
    assert abs(e1 - e2) < 1e-10
    np.testing.assert_allclose(atoms.get_stress(), big.get_stress(), atol=1e-10)
    np.testing.assert_allclose(np.tile(atoms.get_forces(), (8, 1)), big.get_forces(), atol=1e-10)


@pytest.mark.parametrize("name", list(STRUCTURES))
def test_rotation_translation_permutation_invariance(calc, name):
    atoms = STRUCTURES[name]()
    atoms.calc = calc
    e0 = atoms.get_potential_energy()
    f0 = atoms.get_forces()

    rot = Rotation.from_euler("xyz", [0.3, -1.1, 2.0]).as_matrix()
    moved = atoms.copy()
    moved.positions = atoms.positions @ rot.T + np.array([1.3, -0.4, 2.2])
    moved.cell = atoms.cell[:] @ rot.T
    moved.calc = calc
    assert moved.get_potential_energy() == pytest.approx(e0, abs=1e-9)
    np.testing.assert_allclose(moved.get_forces(), f0 @ rot.T, atol=1e-9)
    if atoms.pbc.all():
        s0 = atoms.get_stress(voigt=False)
        np.testing.assert_allclose(moved.get_stress(voigt=False), rot @ s0 @ rot.T, atol=1e-10)

    perm = np.random.default_rng(7).permutation(len(atoms))
    shuffled = atoms[perm]
    shuffled.calc = calc
    assert shuffled.get_potential_energy() == pytest.approx(e0, abs=1e-9)
    np.testing.assert_allclose(shuffled.get_forces(), f0[perm], atol=1e-10)


def test_nve_energy_conservation(fitted_cu_model):
    """VelocityVerlet, 1 fs, 1000 steps, float64: drift of the total energy < 1e-4 eV/atom."""
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(2)
    atoms.calc = MLFFCalculator(fitted_cu_model)
    thermalize_momenta(atoms, temperature_K=600, rng=np.random.default_rng(0))
    Stationary(atoms)
    dyn = VelocityVerlet(atoms, 1.0 * units.fs)
    etot = []
    dyn.attach(lambda: etot.append(atoms.get_total_energy()), interval=10)
    dyn.run(1000)
    etot = np.array(etot) / len(atoms)
    temperature = atoms.get_temperature()
    assert 100 < temperature < 1500, f"unphysical dynamics: T = {temperature:.0f} K"
    drift = abs(etot[-1] - etot[0])
    assert drift < 1e-4, f"total-energy drift {drift:.2e} eV/atom"
    assert np.ptp(etot) < 1e-3
