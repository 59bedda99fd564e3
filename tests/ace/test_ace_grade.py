"""Extrapolation grade γ of B-basis ACE potentials: mlff's native core against pyace.

What is checked (DESIGN.md, "ACE facts"):
- generalised Clebsch–Gordan coefficients and the B functions of a pacemaker .yaml, in
  ML-PACE's order (an .asi file is indexed in it), equal pyace's;
- the C-tilde expansion (the energy model) equals pyace's ``to_ACECTildeBasisSet``, and
  it evaluates to pyace's energies and forces;
- per-atom vectors (B-projections, and dF/dρ · B-projections) equal pyace's;
- γ with an active set that mlff builds (its own MaxVol) and writes equals pyace's
  ``PyACECalculator`` reading the same .asi, linear and non-linear, in the training domain
  and far outside it;
- a malformed .asi fails with a message that says what is wrong.

Potentials and structures are generated here (pyace random-coefficient B-basis configs,
ase.build); no third-party file is used. ``deltaSplineBins`` is 1e-4 so that pyace's
spline tables agree with the core's analytic radial functions to ~1e-13, far below what
is tested.
"""

from __future__ import annotations

import itertools
import os

import numpy as np
import pytest

pyace = pytest.importorskip("pyace", reason="python-ace (academic licence) is an optional test extra")

from ase import Atoms  # noqa: E402
from ase.build import bulk  # noqa: E402

from mlff.ace import activeset as AS  # noqa: E402

try:
    from mlff.ace import _ace
except ImportError as exc:  # pragma: no cover - a build without the native core
    pytest.skip(f"mlff's native ACE core is not built: {exc}", allow_module_level=True)
if not hasattr(_ace, "BBasis"):  # pragma: no cover
    pytest.skip("mlff.ace._ace was built without the extrapolation grade (bind_grade)", allow_module_level=True)


# γ is computed as max_k |Σ_j x_j (A⁻¹)_jk|; its floating-point error grows with γ (and with
# the cancellation in the sum), so the 1e-8 is absolute up to γ = 1 and relative above.
GAMMA_TOL = 1e-8


def _close_gamma(mine: np.ndarray, ref: np.ndarray) -> float:
    """Largest |mine - ref| / max(1, ref)."""
    return float(np.max(np.abs(mine - ref) / np.maximum(1.0, np.abs(ref))))


# ---------------------------------------------------------------------------------------
# Potentials and structures
# ---------------------------------------------------------------------------------------

CU_CONFIG = {
    "deltaSplineBins": 1e-4,
    "elements": ["Cu"],
    # both densities non-linear, so that dF/drho varies from atom to atom in both blocks of
    # the non-linear vector (with F linear in one density half the vector is the linear one
    # and the non-linear active set is close to singular)
    "embeddings": {"ALL": {"npot": "FinnisSinclairShiftedScaled", "fs_parameters": [1, 0.5, 1, 1.5], "ndensity": 2}},
    "bonds": {"ALL": {"radbase": "ChebExpCos", "radparameters": [5.25], "rcut": 4.6, "dcut": 0.01}},
    # ranks 1-5
    "functions": {"ALL": {"nradmax_by_orders": [6, 3, 2, 1, 1], "lmax_by_orders": [0, 3, 2, 2, 1]}},
}
NIAL_CONFIG = {
    "deltaSplineBins": 1e-4,
    "elements": ["Ni", "Al"],
    "embeddings": {"ALL": {"npot": "FinnisSinclair", "fs_parameters": [1, 1, 1, 0.5, 2, 0.75], "ndensity": 3}},
    "bonds": {
        "ALL": {"radbase": "SBessel", "radparameters": [5.25], "rcut": 4.8, "dcut": 0.01, "core-repulsion": [50.0, 5.0]}
    },
    "functions": {"ALL": {"nradmax_by_orders": [5, 2, 1, 1], "lmax_by_orders": [0, 2, 1, 1]}},
}


def _write_potential(path, config: dict, seed: int, scale: float) -> str:
    """A pyace random-coefficient B-basis potential, coefficients scaled so that the
    densities reach the non-linear part of the embedding."""
    np.random.seed(seed)  # pyace draws the random coefficients from numpy's global generator
    bc = pyace.create_multispecies_basis_config(config, func_coefs_initializer="random")
    bc.set_func_coeffs(list(np.asarray(bc.get_func_coeffs()) * scale))
    bc.save(str(path))
    return str(path)


def _cu_structures(n: int, seed: int):
    """Diverse training data (four lattices, +-15 % volume, shear, rattles up to 0.3 A): the
    more the environments differ, the better conditioned the active set, and the fewer
    digits γ loses to cancellation in x A^-1."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        kind = ("fcc", "bcc", "hcp", "sc")[k % 4]
        if kind == "hcp":
            at = bulk("Cu", "hcp", a=2.55, c=4.16).repeat((3, 3, 2))
        elif kind == "sc":
            at = bulk("Cu", "sc", a=2.4).repeat((3, 3, 3))
        else:
            at = bulk("Cu", kind, a=3.61 if kind == "fcc" else 2.87, cubic=True).repeat((2, 2, 2))
        at.set_cell(at.get_cell() * (1 + 0.3 * (rng.random() - 0.5)), scale_atoms=True)
        at.set_cell(at.get_cell() @ (np.eye(3) + 0.03 * rng.standard_normal((3, 3))), scale_atoms=True)
        at.rattle(0.3 * rng.random(), seed=int(rng.integers(1 << 30)))
        out.append(at)
    return out


def _nial_structures(n: int, seed: int):
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        if k % 3 == 0:
            at = bulk("NiAl", "cesiumchloride", a=2.88).repeat((3, 3, 3))
        else:
            at = bulk("Ni", "fcc", a=3.52, cubic=True).repeat((2, 2, 2))
            symbols = np.array(at.get_chemical_symbols())
            symbols[rng.random(len(at)) < (0.25 if k % 3 == 1 else 0.6)] = "Al"
            at.set_chemical_symbols(symbols)
        strain = np.eye(3) + 0.04 * rng.standard_normal((3, 3))
        at.set_cell(at.get_cell() @ strain, scale_atoms=True)
        at.rattle(0.05 + 0.1 * rng.random(), seed=int(rng.integers(1 << 30)))
        out.append(at)
    return out


def _extrapolating(symbols):
    """Structures far from the training data: compressed, stretched, a surface, a cluster."""
    a, b = symbols[0], symbols[-1]
    out = []
    at = bulk(a, "fcc", a=3.1, cubic=True).repeat((2, 2, 2))
    at.rattle(0.2, seed=1)
    out.append(at)
    at = bulk(a, "fcc", a=4.1, cubic=True).repeat((2, 2, 2))
    at.rattle(0.05, seed=2)
    out.append(at)
    slab = bulk(a, "fcc", a=3.6, cubic=True).repeat((2, 2, 3))
    slab.center(vacuum=6.0, axis=2)
    slab.rattle(0.05, seed=3)
    out.append(slab)
    cluster = Atoms(
        [a, b, a, b],
        positions=[[0, 0, 0], [2.3, 0, 0], [0, 2.4, 0.3], [1.1, 1.0, 2.2]],
    )
    out.append(cluster)
    return out


@pytest.fixture(scope="module")
def cu(tmp_path_factory):
    d = tmp_path_factory.mktemp("grade_cu")
    return _write_potential(d / "Cu.yaml", CU_CONFIG, seed=3, scale=3e3), d


@pytest.fixture(scope="module")
def nial(tmp_path_factory):
    d = tmp_path_factory.mktemp("grade_nial")
    return _write_potential(d / "NiAl.yaml", NIAL_CONFIG, seed=4, scale=2e3), d


# ---------------------------------------------------------------------------------------
# Couplings and the B-basis expansion
# ---------------------------------------------------------------------------------------


def test_clebsch_gordan_equal_pyace_bitwise():
    # ML-PACE keeps m-combinations whose coefficient is rounding noise and orders functions
    # by their count, so the coefficients must be the same doubles, not just close.
    from pyace import coupling

    rows = [
        (j1, m1, j2, m2, J, m1 + m2)
        for j1 in range(0, 9)
        for j2 in range(0, 9)
        for m1 in range(-j1, j1 + 1)
        for m2 in range(-j2, j2 + 1)
        for J in range(max(abs(j1 - j2), abs(m1 + m2)), j1 + j2 + 1)
    ]
    mine = np.array([_ace.clebsch_gordan(*r) for r in rows])
    ref = np.array([coupling.clebsch_gordan(*r) for r in rows])
    assert np.array_equal(mine, ref), f"{np.sum(mine != ref)} of {len(rows)} differ"


def _ls_LS_sample(seed: int, per_rank: int):
    rng = np.random.default_rng(seed)
    lmax = {1: 0, 2: 8, 3: 6, 4: 4, 5: 3, 6: 2}
    for rank, lm in lmax.items():
        all_ls = [list(x) for x in itertools.product(range(lm + 1), repeat=rank) if sum(x) % 2 == 0]
        for i in rng.permutation(len(all_ls))[:per_rank]:
            ls = all_ls[i]
            if rank <= 2:
                if pyace.is_valid_ls_LS(ls, []):
                    yield ls, []
                continue
            for LS in itertools.product(range(2 * max(ls) + 1), repeat=rank - 2):
                if pyace.is_valid_ls_LS(ls, list(LS)):
                    yield ls, list(LS)


def test_ms_combinations_equal_pyace_basis():
    from pyace import ACEBBasisFunction, BBasisFunctionSpecification

    n = 0
    for ls, LS in _ls_LS_sample(seed=7, per_rank=100):
        rank = len(ls)
        spec = BBasisFunctionSpecification(["Cu"] * (rank + 1), [1] * rank, ls, LS, [1.0])
        try:
            ref = ACEBBasisFunction(spec, True, False)  # half basis, not compressed
        except ValueError:  # pyace: no invariant for these (ls, LS)
            assert len(_ace.ms_couplings(ls, LS)[1]) == 0
            continue
        ms, coeff = _ace.ms_couplings(ls, LS)
        assert np.array_equal(ms, np.asarray(ref.ms_combs).reshape(-1, rank)), (ls, LS)
        # pyace's basis module is a separate -Ofast build: values agree to the last bit or two
        np.testing.assert_allclose(coeff, ref.gen_cgs, rtol=0, atol=1e-15)
        n += 1
    assert n > 1000


@pytest.mark.parametrize("which", ["cu", "nial"])
def test_bbasis_functions_in_pyace_order(which, request):
    path, _ = request.getfixturevalue(which)
    ref = pyace.ACEBBasisSet(path)
    mine = _ace.BBasis.load(path)
    assert mine.elements == list(ref.elements_name)
    for mu, el in enumerate(mine.elements):
        funcs = list(ref.basis_rank1[mu]) + list(ref.basis[mu])
        ours = mine.functions(el)
        assert len(ours) == len(funcs)
        for k, (p, m) in enumerate(zip(funcs, ours)):
            where = f"{el} function {k}"
            assert (m["mus"], m["ns"], m["ls"], m["LS"]) == (list(p.mus), list(p.ns), list(p.ls), list(p.LS)), where
            assert np.array_equal(m["ms_combs"], np.asarray(p.ms_combs).reshape(-1, p.rank)), where
            np.testing.assert_allclose(m["gen_cgs"], p.gen_cgs, rtol=0, atol=1e-15, err_msg=where)
            np.testing.assert_array_equal(m["coeffs"], p.coeffs, err_msg=where)


def _ctilde_table(functions, get):
    out = {}
    for f in functions:
        mus, ns, ls, rank, ms, ct = get(f)
        ms = np.asarray(ms).reshape(-1, rank)
        ct = np.asarray(ct).reshape(len(ms), -1)
        for k in range(len(ms)):
            out[(tuple(mus), tuple(ns), tuple(ls), tuple(ms[k]))] = ct[k]
    return out


@pytest.mark.parametrize("which", ["cu", "nial"])
def test_ctilde_expansion_equals_pyace(which, request):
    path, _ = request.getfixturevalue(which)
    ref = pyace.ACEBBasisSet(path).to_ACECTildeBasisSet()
    model = _ace.BBasis.load(path).energy_model.to_dict()
    for mu in range(len(model["elements"])):
        theirs = _ctilde_table(
            list(ref.basis_rank1[mu]) + list(ref.basis[mu]),
            lambda f: (f.mus, f.ns, f.ls, f.rank, f.ms_combs, f.ctildes),
        )
        ours = _ctilde_table(
            model["functions"][mu], lambda f: (f["mus"], f["ns"], f["ls"], f["rank"], f["ms_combs"], f["ctildes"])
        )
        assert set(ours) == set(theirs)
        scale = max(np.abs(v).max() for v in theirs.values())
        worst = max(np.abs(ours[k] - theirs[k]).max() for k in theirs)
        assert worst <= 1e-14 * scale, worst


def _edges(atoms, elements, cutoff):
    from mlff.neighbors import neighbor_list

    index = {e: k for k, e in enumerate(elements)}
    species = np.array([index[s] for s in atoms.get_chemical_symbols()], dtype=np.int32)
    pos = atoms.get_positions()
    cell = np.asarray(atoms.get_cell())
    ei, shifts = neighbor_list(pos, cell, atoms.get_pbc(), cutoff)
    return species, ei, pos[ei[1]] - pos[ei[0]] + shifts @ cell


def test_energy_model_evaluates_like_pyace(nial):
    path, _ = nial
    bb = _ace.BBasis.load(path)
    ev = _ace.Evaluator(bb.energy_model)
    calc = pyace.PyACECalculator(path)
    for at in _nial_structures(3, seed=11) + _extrapolating(["Ni", "Al"])[:2]:
        species, ei, vec = _edges(at, bb.elements, ev.cutoff)
        energies, grad = ev.compute(species, len(at), ei, vec)
        forces = np.zeros((len(at), 3))
        np.add.at(forces, ei[0], grad)
        np.add.at(forces, ei[1], -grad)
        ref = at.copy()
        ref.calc = calc
        assert abs(energies.sum() - ref.get_potential_energy()) <= 1e-9 * len(at)
        np.testing.assert_allclose(forces, ref.get_forces(), rtol=0, atol=1e-7)


# ---------------------------------------------------------------------------------------
# Vectors and γ against pyace
# ---------------------------------------------------------------------------------------


def _pyace_vectors(path, structures, nonlinear: bool, tmp_path=None):
    """pyace's per-atom vectors (B-projections, or dE/dc for the non-linear grade).

    pyace's B evaluator computes dE/dc only once a non-linear active set is loaded (a
    fresh one returns zeros, so pyace 0.4's ``compute_B_projections(is_full=True)`` and
    ``pace_activeset --full`` see only zeros); load an identity one of the right size.
    """
    from pyace.calculator import ACECalculator
    from pyace.evaluator import ACEBEvaluator

    basis = pyace.ACEBBasisSet(path)
    evaluator = ACEBEvaluator(basis)  # the calculator does not keep it alive
    if nonlinear:
        sizes = {
            el: (len(basis.basis_rank1[mu]) + len(basis.basis[mu])) * basis.map_embedding_specifications[mu].ndensity
            for mu, el in enumerate(basis.elements_name)
        }
        dummy = _write_npz(os.path.join(str(tmp_path), "identity.asi"), **{el: np.eye(n) for el, n in sizes.items()})
        evaluator.load_active_set(dummy)
    calc = ACECalculator(evaluator)
    out = {el: [] for el in basis.elements_name}
    for at in structures:
        ae = pyace.aseatoms_to_atomicenvironment(at, cutoff=basis.cutoffmax, elements_mapper_dict=basis.elements_to_index_map)
        calc.compute(ae, compute_projections=True)
        vec = calc.dE_dc if nonlinear else calc.projections
        for s, v in zip(at.get_chemical_symbols(), vec):
            out[s].append(np.reshape(v, -1))
    return {el: np.array(v) for el, v in out.items()}


def _pyace_gamma(path, asi):
    """pyace's γ per atom, as a function of the structure (one calculator: its spline
    tables take a while to build)."""
    calc = pyace.PyACECalculator(path)
    calc.set_active_set(str(asi))

    def gamma(atoms):
        at = atoms.copy()
        at.calc = calc
        at.get_potential_energy()
        return np.asarray(calc.results["gamma"], dtype=np.float64)

    return gamma


@pytest.mark.parametrize("nonlinear", [False, True], ids=["linear", "nonlinear"])
def test_vectors_equal_pyace(nial, nonlinear, tmp_path):
    path, _ = nial
    structures = _nial_structures(3, seed=5) + _extrapolating(["Ni", "Al"])
    ours = AS.compute_vectors(path, structures, nonlinear=nonlinear)
    theirs = _pyace_vectors(path, structures, nonlinear, tmp_path)
    for el in ours:
        assert ours[el].shape == theirs[el].shape
        scale = np.abs(theirs[el]).max(axis=0)
        scale = np.maximum(scale, 1e-12 * scale.max())  # a function that is ~0 on all these atoms
        rel = np.abs(ours[el] - theirs[el]).max(axis=0) / scale
        assert rel.max() <= 1e-10, f"{el}: {rel.max()}"


@pytest.mark.parametrize(
    "which,nonlinear",
    [("cu", False), ("cu", True), ("nial", False), ("nial", True)],
    ids=["Cu-linear", "Cu-nonlinear", "NiAl-linear", "NiAl-nonlinear"],
)
def test_gamma_equals_pyace(which, nonlinear, request):
    path, d = request.getfixturevalue(which)
    if which == "cu":
        train = _cu_structures(24, seed=21)
        symbols = ["Cu"]
    else:
        train = _nial_structures(24, seed=22)
        symbols = ["Ni", "Al"]
    asi = d / ("active.asi.nonlinear" if nonlinear else "active.asi")
    inverses = AS.active_set_from_structures(path, train, output=asi, nonlinear=nonlinear)
    bb = _ace.BBasis.load(path)
    for el, inv in inverses.items():
        nf = bb.num_functions(el)
        assert inv.shape == ((nf * (3 if which == "nial" else 2),) * 2 if nonlinear else (nf, nf))

    grader = AS.GradeCalculator(path, asi)
    assert grader.nonlinear == nonlinear
    inside = train[:4]
    outside = _extrapolating(symbols)
    # The comparison is meaningful only if γ itself is computable to well below 1e-8: its
    # rounding error is ~1e-16 x sum_j |x_j (A^-1)_jk|, so bound that sum (data diversity
    # keeps the active set well conditioned).
    x = AS.compute_vectors(path, inside + outside, nonlinear=nonlinear)
    for el, inv in inverses.items():
        cancellation = ((np.abs(x[el]) @ np.abs(inv)).max(axis=1) / np.maximum(1.0, np.abs(x[el] @ inv).max(axis=1))).max()
        assert cancellation < 1e7, f"{el}: the test's active set is too ill-conditioned ({cancellation:.1e})"
    pyace_gamma = _pyace_gamma(path, asi)
    for at in inside + outside:
        ours = grader.grades(at)
        ref = pyace_gamma(at)
        err = _close_gamma(ours, ref)
        assert err <= GAMMA_TOL, (at.get_chemical_formula(), err)
        if any(at is t for t in inside):
            # MaxVol: every training environment lies within the active set's tolerance
            assert ref.max() <= AS.GAMMA_TOLERANCE + 1e-6
    # the extrapolating structures must really extrapolate, or the test proves little
    assert max(pyace_gamma(at).max() for at in outside) > 5.0


def test_gamma_of_training_set_is_within_tolerance(cu):
    """The active set's own MaxVol property, measured by pyace on every training atom."""
    path, d = cu
    train = _cu_structures(24, seed=21)
    asi = d / "train_check.asi"
    AS.active_set_from_structures(path, train, output=asi)
    pyace_gamma = _pyace_gamma(path, asi)
    gam = np.concatenate([pyace_gamma(at) for at in train])
    assert gam.max() <= AS.GAMMA_TOLERANCE + 1e-6


# ---------------------------------------------------------------------------------------
# MaxVol and .asi files
# ---------------------------------------------------------------------------------------


def test_maxvol_reaches_tolerance_and_grows_volume():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((400, 25)) * np.logspace(0, 3, 25)
    rows, b = AS.maxvol(a, tol=1.01, max_iters=1000)
    assert len(set(rows.tolist())) == 25
    assert np.abs(b).max() <= 1.01
    np.testing.assert_allclose(b, a @ np.linalg.inv(a[rows]), atol=1e-9)
    start = AS._initial_rows(a)
    assert abs(np.linalg.det(a[rows])) >= abs(np.linalg.det(a[start]))
    with pytest.raises(AS.ActiveSetError, match="under-determined"):
        AS.maxvol(a[:10])
    with pytest.raises(AS.ActiveSetError, match="span only"):
        AS.maxvol(np.hstack([a, np.zeros((len(a), 1))]))
    # select_active_set regularises a component that never varies, as pyace does
    rows = AS.select_active_set({"X": np.hstack([a, np.zeros((len(a), 1))])})["X"]
    assert len(set(rows.tolist())) == 26


def test_asi_round_trip_and_compressed(cu, tmp_path):
    path, _ = cu
    nf = _ace.BBasis.load(path).num_functions("Cu")
    inv = np.random.default_rng(1).standard_normal((nf, nf))
    p = tmp_path / "x.asi"
    AS.save_active_set(p, {"Cu": inv})
    assert np.array_equal(AS.load_active_set(p)["Cu"], inv)
    assert np.array_equal(_ace.ActiveSet.load(p).matrix("Cu"), inv)
    # Fortran order and np.savez_compressed (deflate) are read too, or refused clearly
    q = tmp_path / "z.asi"
    with open(q, "wb") as f:
        np.savez_compressed(f, Cu=np.asfortranarray(inv))
    try:
        got = _ace.ActiveSet.load(q).matrix("Cu")
    except ValueError as exc:
        assert "np.savez" in str(exc)
    else:
        assert np.array_equal(got, inv)


def _write_npz(path, **arrays):
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    return str(path)


def test_malformed_asi_is_a_clear_error(nial, tmp_path):
    path, _ = nial
    bb = _ace.BBasis.load(path)
    n_ni, n_al = bb.num_functions("Ni"), bb.num_functions("Al")
    good = {"Ni": np.eye(n_ni), "Al": np.eye(n_al)}

    def fails(match, **arrays):
        p = _write_npz(tmp_path / "bad.asi", **arrays)
        with pytest.raises(ValueError, match=match):
            _ace.GradeEvaluator(bb, _ace.ActiveSet.load(p))

    fails("no matrix for element 'Al'", Ni=good["Ni"])
    fails("'Cu', which is not an element", Cu=np.eye(3), **good)
    fails(r"shape \(%d, %d\)" % (n_ni, n_ni + 1), Ni=np.ones((n_ni, n_ni + 1)), Al=good["Al"])
    fails(f"expected {n_al} \\(linear", Ni=good["Ni"], Al=np.eye(n_al + 1))
    fails("2-D matrix", Ni=np.ones(n_ni), Al=good["Al"])
    fails("float64", Ni=np.eye(n_ni, dtype=np.int64), Al=good["Al"])
    fails("linear grade and others the non-linear", Ni=good["Ni"], Al=np.eye(3 * n_al))
    fails("not a finite number", Ni=np.full((n_ni, n_ni), np.nan), Al=good["Al"])
    with pytest.raises(ValueError, match="the linear grade needs"):
        _ace.GradeEvaluator(bb, _ace.ActiveSet.from_bytes(AS._npz_bytes({"Ni": np.eye(3 * n_ni), "Al": np.eye(3 * n_al)})), "linear")
    # not an npz at all, and a truncated one
    junk = tmp_path / "junk.asi"
    junk.write_text("Cu: [1, 2, 3]\n")
    with pytest.raises(ValueError, match="not a readable active-set file"):
        _ace.ActiveSet.load(junk)
    with pytest.raises(AS.ActiveSetError, match="not an active-set file"):
        AS.load_active_set(junk)
    whole = AS._npz_bytes(good)
    with pytest.raises(ValueError, match="active-set file"):
        _ace.ActiveSet.from_bytes(whole[: len(whole) // 2])
    with pytest.raises(OSError):
        _ace.ActiveSet.load(tmp_path / "missing.asi")


def test_grade_of_a_yace_only_potential_is_refused_clearly(cu, tmp_path):
    """A .yace merges B functions, so it cannot give B-projections: loading it as a
    B-basis must say so, not misread it."""
    path, _ = cu
    yace = tmp_path / "Cu.yace"
    pyace.ACEBBasisSet(path).to_ACECTildeBasisSet().save_yaml(str(yace))
    assert not _ace.BBasis.is_bbasis_text(yace.read_text())
    assert _ace.BBasis.is_bbasis_text(open(path).read())
    with pytest.raises(ValueError, match="not a B-basis one"):
        _ace.BBasis.load(yace)


def test_malformed_bbasis_names_line_and_key(cu, tmp_path):
    text = open(cu[0]).read()
    lines = text.splitlines()
    k = next(i for i, line in enumerate(lines) if "lint:" in line)
    bad = lines[:k] + [lines[k].replace("lint: [", "lint: [7, ")] + lines[k + 1 :]
    p = tmp_path / "bad.yaml"
    p.write_text("\n".join(bad) + "\n")
    with pytest.raises(ValueError, match=rf":{k + 1}: species\[Cu\]\.nbody\[\d+\]: invalid B function"):
        _ace.BBasis.load(p)
    p.write_text(text.replace("nradbaseij:", "nradbase_typo:"))
    with pytest.raises(ValueError, match="nradbaseij"):
        _ace.BBasis.load(p)
