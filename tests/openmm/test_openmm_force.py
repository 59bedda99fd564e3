"""MLFFForce agrees with the ASE calculator (the reference engine) on OpenMM's Reference
and CPU platforms, for both backends, molecules, periodic and triclinic boxes."""

from __future__ import annotations

import numpy as np
import pytest

from mlff.contract import MLFFModelError
from mlff.openmm import MLFFForce, backend_of

from omm_helpers import (
    ase_reference,
    energy_forces,
    molecule_atoms,
    openmm_system,
    periodic_atoms,
    triclinic_atoms,
)

HCNO = (1, 6, 7, 8)
STRUCTURES = {"molecule": molecule_atoms, "periodic": periodic_atoms, "triclinic": triclinic_atoms}


def assert_close(e, f, e_ref, f_ref, rtol=1e-6):
    assert abs(e - e_ref) <= rtol * abs(e_ref)
    scale = np.abs(f_ref).max()
    assert np.abs(f - f_ref).max() <= rtol * scale


@pytest.mark.parametrize("platform", ["Reference", "CPU"])
@pytest.mark.parametrize("structure", sorted(STRUCTURES))
def test_torchforce_matches_ase(make_model_file, structure, platform):
    model = make_model_file(elements=HCNO)
    atoms = STRUCTURES[structure]()
    force = MLFFForce(model, atoms, backend="torch")
    assert force.mlff_backend == "openmm-torch" and backend_of(force) == "openmm-torch"
    e, f = energy_forces(openmm_system(atoms, force), atoms.positions * 0.1, platform)
    e_ref, f_ref = ase_reference(model, atoms)
    assert_close(e, f, e_ref, f_ref)


@pytest.mark.parametrize("structure", sorted(STRUCTURES))
def test_pythonforce_matches_torchforce(make_model_file, structure):
    model = make_model_file(elements=HCNO)
    atoms = STRUCTURES[structure]()
    results = {}
    for backend in ("torch", "python"):
        force = MLFFForce(model, atoms, backend=backend)
        results[force.mlff_backend] = energy_forces(openmm_system(atoms, force), atoms.positions * 0.1, "CPU")
    (e_t, f_t), (e_p, f_p) = results["openmm-torch"], results["openmm-python"]
    assert abs(e_t - e_p) <= 1e-10 * abs(e_t)
    np.testing.assert_allclose(f_p, f_t, rtol=0, atol=1e-10 * np.abs(f_t).max())
    e_ref, f_ref = ase_reference(model, atoms)
    assert_close(e_p, f_p, e_ref, f_ref)


@pytest.mark.parametrize("backend", ["torch", "python"])
def test_static_shapes_match_dynamic(make_model_file, backend):
    """The fixed-shape neighbour list (the CUDA-graph mode) gives the same numbers."""
    model = make_model_file(elements=HCNO)
    for atoms in (periodic_atoms(), molecule_atoms()):
        ref = energy_forces(openmm_system(atoms, MLFFForce(model, atoms, backend=backend)), atoms.positions * 0.1, "CPU")
        box = np.asarray(atoms.cell) * 0.1 if atoms.pbc.all() else None
        force = MLFFForce(model, atoms, backend=backend, static_shapes=True, positions=atoms.positions * 0.1, box_vectors=box)
        e, f = energy_forces(openmm_system(atoms, force), atoms.positions * 0.1, "CPU")
        assert abs(e - ref[0]) <= 1e-10 * abs(ref[0])
        np.testing.assert_allclose(f, ref[1], rtol=0, atol=1e-10 * np.abs(ref[1]).max())


def test_static_shapes_overflow_is_an_error(make_model_file):
    model = make_model_file(elements=HCNO)
    atoms = periodic_atoms()
    force = MLFFForce(model, atoms, backend="python", static_shapes=True, positions=atoms.positions * 0.1,
                      box_vectors=np.asarray(atoms.cell) * 0.1, static_capacity_factor=1.0)
    # every atom crowded into a corner: far more pairs than the capacity sized above
    squeezed = 0.4 * atoms.get_positions(wrap=True)
    with pytest.raises(Exception, match="static neighbour list overflowed"):
        energy_forces(openmm_system(atoms, force), squeezed * 0.1, "Reference")


@pytest.mark.parametrize("backend", ["torch", "python"])
def test_atoms_subset(make_model_file, backend):
    """atoms= puts the ML force on a subset; other particles feel nothing and move nothing."""
    model = make_model_file(elements=HCNO)
    mol = molecule_atoms()
    n_other = 5
    rng = np.random.default_rng(0)
    others = rng.uniform(0, 6, (n_other, 3))
    # ML atoms scattered among the particles, in a different order than in the System
    order = [6, 0, 8, 2, 4, 1, 9, 3, 5, 7, 10, 11, 12, 13, 14][: len(mol) + n_other]
    n_total = len(mol) + n_other
    positions = np.zeros((n_total, 3))
    ml_indices = [i for i in order if i < n_total][: len(mol)]
    other_indices = [i for i in range(n_total) if i not in ml_indices]
    positions[ml_indices] = mol.positions
    positions[other_indices] = others
    numbers = np.full(n_total, 8)
    numbers[ml_indices] = mol.numbers

    force = MLFFForce(model, numbers, atoms=ml_indices, backend=backend, periodic=False)
    system = openmm_system(mol, force, extra_particles=n_other)
    e, f = energy_forces(system, positions * 0.1, "CPU")
    e_ref, f_ref = ase_reference(model, mol)
    assert_close(e, f[ml_indices], e_ref, f_ref)
    assert np.all(f[other_indices] == 0.0)

    # atomic_numbers= of the ML atoms only is the other way to say the same
    force2 = MLFFForce(model, atoms=ml_indices, atomic_numbers=mol.numbers, backend=backend, periodic=False)
    e2, _ = energy_forces(openmm_system(mol, force2, extra_particles=n_other), positions * 0.1, "CPU")
    assert e2 == pytest.approx(e, rel=1e-12)


def test_single_element_model_needs_no_topology(fitted_cu_model):
    from ase.build import bulk

    atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat(2)
    atoms.rattle(0.02, seed=0)
    force = MLFFForce(fitted_cu_model, atoms=range(len(atoms)), periodic=True)
    e, f = energy_forces(openmm_system(atoms, force), atoms.positions * 0.1, "Reference")
    e_ref, f_ref = ase_reference(fitted_cu_model, atoms)
    assert_close(e, f, e_ref, f_ref)


# --------------------------------------------------------------------------- errors


def test_unknown_element_is_named(make_model_file):
    model = make_model_file(elements=(1, 6, 8))
    atoms = molecule_atoms()  # has nitrogen
    with pytest.raises(MLFFModelError, match=r"\['N'\].*trained on \['H', 'C', 'O'\]"):
        MLFFForce(model, atoms)


def test_missing_model_file(tmp_path):
    with pytest.raises(MLFFModelError, match="does not exist"):
        MLFFForce(tmp_path / "nope.pt", [1, 1], periodic=False)


def test_corrupt_model_file(tmp_path, make_model_file):
    bad = tmp_path / "corrupt.pt"
    bad.write_bytes(make_model_file(elements=HCNO).read_bytes()[:2000])
    with pytest.raises(MLFFModelError, match="corrupt"):
        MLFFForce(bad, [1, 6], periodic=False)


def test_elements_are_required_for_multi_element_models(make_model_file):
    with pytest.raises(ValueError, match="needs the elements"):
        MLFFForce(make_model_file(elements=HCNO), atoms=[0, 1])


def test_bad_backend_and_indices(make_model_file):
    model = make_model_file(elements=HCNO)
    with pytest.raises(ValueError, match="backend"):
        MLFFForce(model, [1, 1], backend="gpu", periodic=False)
    with pytest.raises(ValueError, match="outside"):
        MLFFForce(model, [1, 1], atoms=[0, 5], periodic=False)
    with pytest.raises(ValueError, match="duplicate"):
        MLFFForce(model, [1, 1, 1], atoms=[0, 0], periodic=False)


def test_saved_module_loads_as_a_torchforce_file(make_model_file, tmp_path):
    """The file written for Python-free OpenMM applications gives the same numbers."""
    import openmmtorch

    from mlff.contract import read_metadata
    from mlff.openmm import save_torchforce_module

    model = make_model_file(elements=HCNO)
    atoms = triclinic_atoms()
    path = tmp_path / "mlff_openmm.pt"
    save_torchforce_module(path, model, atoms)
    assert read_metadata(path).elements == list(HCNO)
    force = openmmtorch.TorchForce(str(path))
    force.setOutputsForces(True)
    force.setUsesPeriodicBoundaryConditions(True)
    e, f = energy_forces(openmm_system(atoms, force), atoms.positions * 0.1, "CPU")
    e_ref, f_ref = ase_reference(model, atoms)
    assert_close(e, f, e_ref, f_ref)


@pytest.mark.parametrize("backend", ["torch", "python"])
def test_static_shapes_with_atoms_subset(make_model_file, backend):
    model = make_model_file(elements=HCNO)
    mol = molecule_atoms()
    positions = np.vstack([np.full((3, 3), 30.0) + np.arange(9).reshape(3, 3), mol.positions])
    numbers = np.concatenate([[8, 8, 8], mol.numbers])
    ml = list(range(3, 3 + len(mol)))
    force = MLFFForce(model, numbers, atoms=ml, backend=backend, static_shapes=True, positions=positions * 0.1,
                      periodic=False)
    e, f = energy_forces(openmm_system(mol, force, extra_particles=3), positions * 0.1, "CPU")
    e_ref, f_ref = ase_reference(model, mol)
    assert_close(e, f[ml], e_ref, f_ref)


def test_pythonforce_system_survives_serialisation(make_model_file):
    """The PythonForce callback pickles (XmlSerializer, copy.deepcopy of a System)."""
    import copy

    model = make_model_file(elements=HCNO)
    atoms = periodic_atoms()
    system = openmm_system(atoms, MLFFForce(model, atoms, backend="python"))
    e, f = energy_forces(copy.deepcopy(system), atoms.positions * 0.1, "Reference")
    e_ref, f_ref = ase_reference(model, atoms)
    assert_close(e, f, e_ref, f_ref)


@pytest.mark.parametrize("backend", ["torch", "python"])
def test_cuda_graph_mode_marks_overflow_with_nan(make_model_file, backend):
    """With cuda_graphs=True nothing may be read back, so an overflow poisons the energy."""
    model = make_model_file(elements=HCNO)
    atoms = periodic_atoms()
    kw = dict(positions=atoms.positions * 0.1, box_vectors=np.asarray(atoms.cell) * 0.1, static_capacity_factor=1.0)
    force = MLFFForce(model, atoms, backend=backend, cuda_graphs=True, **kw)
    if backend == "torch":
        assert force.getProperties()["useCUDAGraphs"] == "true"
    e, _ = energy_forces(openmm_system(atoms, force), atoms.positions * 0.1, "Reference")
    e_ref, _ = ase_reference(model, atoms)
    assert e == pytest.approx(e_ref, rel=1e-6)
    force = MLFFForce(model, atoms, backend=backend, cuda_graphs=True, **kw)
    e_bad, _ = energy_forces(openmm_system(atoms, force), 0.4 * atoms.get_positions(wrap=True) * 0.1, "Reference")
    assert np.isnan(e_bad)
