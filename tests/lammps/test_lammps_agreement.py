"""LAMMPS (`pair_style mlff`) equals the ASE calculator, the reference engine, to 1e-9.

Energy, forces, global virial/stress, per-atom energies and per-atom virials for a
molecule in a big box, a cubic cell, a triclinic cell, a cell smaller than twice the
cutoff and two elements; on one rank (periodic graph), on one rank with the multi-rank
graph construction (ghost atoms as nodes), and on two MPI ranks.
"""

from __future__ import annotations

import numpy as np
import pytest
from ase.stress import full_3x3_to_voigt_6_stress
from lmp_helpers import cluster_in_periodic_box, cubic_cuo, molecule_big_box, small_cell, triclinic_cuo

from mlff import MLFFCalculator
from mlff.lammps import evaluate

STRUCTURES = {
    "molecule": molecule_big_box,
    "cubic": cubic_cuo,
    "triclinic": triclinic_cuo,
    "small-cell": small_cell,
    "empty-subdomain": cluster_in_periodic_box,
}
TOL = 1e-9


@pytest.fixture(scope="module")
def structures():
    return {k: f() for k, f in STRUCTURES.items()}


@pytest.fixture(scope="module")
def reference(structures, cuo_model):
    out = {}
    for name, atoms in structures.items():
        a = atoms.copy()
        a.calc = MLFFCalculator(cuo_model)
        props = ["energy", "forces", "energies"] + (["stress", "stresses"] if a.pbc.all() else [])
        a.calc.calculate(a, props)
        out[name] = dict(a.calc.results)
    return out


CONFIGS = {"np1": dict(nprocs=1), "np1-ghosts": dict(nprocs=1, graph="ghosts"), "np2": dict(nprocs=2)}


@pytest.fixture(scope="module", params=list(CONFIGS))
def lammps_results(request, structures, cuo_model):
    names = list(structures)
    res = evaluate(cuo_model, [structures[n] for n in names], **CONFIGS[request.param])
    return dict(zip(names, res))


@pytest.mark.parametrize("name", list(STRUCTURES))
def test_matches_ase(name, structures, reference, lammps_results):
    ref, got, atoms = reference[name], lammps_results[name], structures[name]
    assert got["energy"] == pytest.approx(ref["energy"], abs=TOL * max(1.0, abs(ref["energy"])))
    np.testing.assert_allclose(got["forces"], ref["forces"], atol=TOL, rtol=0)
    np.testing.assert_allclose(got["energies"], ref["energies"], atol=TOL, rtol=0)
    assert abs(got["forces"]).max() > 1e-3  # the test is not trivially passing
    # per-atom virials sum to the global one (also for the molecule)
    np.testing.assert_allclose(got["atom_virial"].sum(0), got["virial"], atol=TOL, rtol=0)
    # stress/atom holds the xx yy zz xy xz yz entries of centroid/stress/atom (comparable
    # entry by entry where the LAMMPS frame is the ASE frame; the trace always)
    sym = got["atom_virial_sym"]
    full = got["atom_virial"]
    np.testing.assert_allclose(np.trace(sym, axis1=1, axis2=2), np.trace(full, axis1=1, axis2=2), atol=TOL)
    if name != "triclinic":
        for a, b in [(0, 0), (1, 1), (2, 2), (0, 1), (0, 2), (1, 2)]:
            np.testing.assert_allclose(sym[:, a, b], full[:, a, b], atol=TOL, rtol=0)
    if atoms.pbc.all():
        np.testing.assert_allclose(got["stress"], ref["stress"], atol=TOL, rtol=0)
        vol = atoms.get_volume()
        per_atom = np.array([full_3x3_to_voigt_6_stress(-w / vol) for w in full])
        np.testing.assert_allclose(per_atom, ref["stresses"], atol=TOL, rtol=0)


def test_float32_model(make_model_file):
    """A float32 model: same numbers as ASE to float32 precision (forces summed in double)."""
    model = make_model_file(elements=(8, 29), dtype="float32")
    atoms = triclinic_cuo()
    got = evaluate(model, [atoms], nprocs=1)[0]
    a = atoms.copy()
    a.calc = MLFFCalculator(model)
    assert got["energy"] == pytest.approx(a.get_potential_energy(), rel=1e-6)
    np.testing.assert_allclose(got["forces"], a.get_forces(), atol=1e-5, rtol=0)
    np.testing.assert_allclose(got["stress"], a.get_stress(), atol=1e-6, rtol=0)
