"""The small API for scripts and the demo: evaluate_atoms and run_md (eV, Å)."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms

from mlff import MLFFCalculator
from mlff.openmm import evaluate_atoms, run_md

from omm_helpers import molecule_atoms

HCNO = (1, 6, 7, 8)


def _ase(model, atoms):
    a = atoms.copy()
    a.calc = MLFFCalculator(model)
    return a.get_potential_energy(), a.get_forces()


@pytest.mark.parametrize("kind", ["molecule", "general-cell"])
def test_evaluate_atoms_matches_ase(make_model_file, kind):
    model = make_model_file(elements=HCNO)
    if kind == "molecule":
        atoms = molecule_atoms()
    else:
        # not in OpenMM's reduced form: rotated and lattice-reduced on the way in, forces rotated back
        rng = np.random.default_rng(5)
        cell = np.array([[7.5, 0.5, 0.2], [2.0, 7.0, 0.3], [-1.5, 2.5, 7.2]])
        atoms = Atoms(numbers=rng.choice(HCNO, 12), positions=rng.uniform(0, 1, (12, 3)) @ cell, cell=cell, pbc=True)
    res = evaluate_atoms(model, atoms)
    e_ref, f_ref = _ase(model, atoms)
    assert res["backend"] == "openmm-torch"
    assert res["energy"] == pytest.approx(e_ref, rel=1e-9)
    np.testing.assert_allclose(res["forces"], f_ref, rtol=0, atol=1e-9 * np.abs(f_ref).max())


def test_run_md_langevin(fitted_cu_model):
    from ase.build import bulk

    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(2)
    result = run_md(fitted_cu_model, atoms, steps=20, temperature=300.0, report_interval=10, backend="python")
    assert result.backend == "openmm-python"
    assert result.potential_energy.shape == (3,) and np.allclose(result.time_ps, [0.0, 0.01, 0.02])
    assert result.kinetic_energy[-1] > 0 and result.seconds_per_step > 0
    assert not np.allclose(result.atoms.positions, atoms.positions)
    with pytest.raises(ValueError, match="periodic in all three"):
        run_md(fitted_cu_model, Atoms("Cu2", positions=[[0, 0, 0], [2.5, 0, 0]], cell=[5, 5, 5], pbc=[1, 1, 0]), 1)
