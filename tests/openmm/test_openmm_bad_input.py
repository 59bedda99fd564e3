"""What the OpenMM force refuses, and what it returns for nonsense positions.

One table of bad constructor inputs (exception type, message fragments); NaN/inf
positions give NaN energies and forces on every backend and platform, never a plausible
number (OpenMM itself reports NaN as an error in its integrators).
"""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk

from omm_helpers import energy_forces, openmm_system

from mlff.contract import MLFFModelError, MLFFModelNotFoundError
from mlff.openmm import MLFFForce, evaluate_atoms


def _cu():
    a = bulk("Cu", "fcc", a=3.6, cubic=True).repeat(2)
    a.rattle(0.02, seed=1)
    return a


CASES = {
    "element not in model": (lambda p, tmp: MLFFForce(p, [29, 8], periodic=False), MLFFModelError,
                             ["['O']", "not known to the model"]),
    "unknown fidelity": (lambda p, tmp: MLFFForce(p, [29], periodic=False, fidelity="dft"), ValueError,
                         ["unknown fidelity 'dft'"]),
    "fidelity out of range": (lambda p, tmp: MLFFForce(p, [29], periodic=False, fidelity=1), ValueError,
                              ["fidelity index 1 is out of range"]),
    "charge without charge input": (lambda p, tmp: MLFFForce(p, [29], periodic=False, charge=2), ValueError,
                                    ["no charge input"]),
    "missing model": (lambda p, tmp: MLFFForce(tmp / "x.pt", [29], periodic=False), MLFFModelNotFoundError,
                      ["does not exist"]),
    "directory as model": (lambda p, tmp: MLFFForce(tmp, [29], periodic=False), MLFFModelError, ["is a directory"]),
    "bad backend": (lambda p, tmp: MLFFForce(p, [29], periodic=False, backend="gpu"), ValueError,
                    ["backend must be"]),
    "duplicate atoms": (lambda p, tmp: MLFFForce(p, [29, 29, 29], atoms=[0, 0], periodic=False), ValueError,
                        ["duplicate"]),
    "NaN positions in evaluate_atoms": (
        lambda p, tmp: evaluate_atoms(p, Atoms("Cu2", positions=[[0, 0, 0], [np.nan, 0, 0]])), ValueError,
        ["non-finite"]),
    "mixed boundaries": (lambda p, tmp: evaluate_atoms(p, Atoms("Cu", cell=[3, 3, 3], pbc=[1, 1, 0])),
                         ValueError, ["all three directions or none"]),
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


@pytest.mark.parametrize("backend", ["torch", "python"])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_positions_give_nan_not_a_number(cu_file, backend, bad):
    atoms = _cu()
    force = MLFFForce(cu_file, atoms, backend=backend)
    system = openmm_system(atoms, force)
    pos = atoms.positions * 0.1
    pos[3, 1] = bad
    try:
        energy, forces = energy_forces(system, pos, "Reference")
    except Exception as exc:  # an error naming the problem is as good as NaN
        assert "nan" in str(exc).lower() or "finite" in str(exc).lower(), exc
        return
    assert np.isnan(energy)
    assert np.isnan(forces[:len(atoms)]).all()


def test_periodicity_that_cannot_be_read_is_a_visible_warning(cu_file):
    """A plain list of atomic numbers says nothing about the box: never silently open."""
    with pytest.warns(UserWarning, match="periodic= was not given"):
        MLFFForce(cu_file, [29, 29])
    force = MLFFForce(cu_file, _cu())  # an ase.Atoms knows its pbc: no warning needed
    assert force.usesPeriodicBoundaryConditions()


def test_close_contact_warns(tmp_path):
    import mlff
    from mlff.models import PaiNN

    model = PaiNN([29], cutoff=4.0, n_features=8, num_interactions=2).double()
    model.min_distance = 2.2
    path = tmp_path / "md.pt"
    mlff.export_model(model, path)
    with pytest.warns(UserWarning, match="far closer than the shortest distance"):
        evaluate_atoms(path, Atoms("Cu2", positions=[[0, 0, 0], [1.2, 0, 0]]), backend="python")
