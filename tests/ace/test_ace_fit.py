"""mlff's own ACE fit (mlff.ace.fit): basis construction, fitting, .yace output.

- Basis: every B function the spec gives is rotationally invariant (random rotations,
  1e-10), and where pyace is installed the basis equals pyace's for the same spec (same
  functions, so the same count per rank).
- Fit: small bases fit EMT-labelled Cu and Cu-Ni data (generated here with ASE's EMT,
  rattled and strained cells; nothing is downloaded) to a sensible error; the written
  .yace reproduces the fit's own predictions in mlff's ASE calculator, pyace and ace-jax
  (1e-9 eV/atom); forces equal finite differences; ladder fitting; `mlff train` with
  ``model.kind: ace``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mlff.ace import _ace
from mlff.ace.fit import build_basis, evaluate, fit_ace, to_bbasis_yaml, yace_text
from mlff.ace.fit.basis import bbasis_of

import potentials


def _spec(elements, nrad, lmax, nfun=None, ndensity=2, fs=(1, 1, 1, 0.5), rcut=4.6, **bond):
    s = {
        "deltaSplineBins": 0.001,
        "elements": list(elements),
        "embeddings": {"ALL": {"npot": "FinnisSinclairShiftedScaled", "fs_parameters": list(fs), "ndensity": ndensity}},
        "bonds": {"ALL": {"radbase": "ChebExpCos", "radparameters": [5.25], "rcut": rcut, "dcut": 0.01, **bond}},
        "functions": {"ALL": {"nradmax_by_orders": list(nrad), "lmax_by_orders": list(lmax)}},
    }
    if nfun is not None:
        s["functions"]["number_of_functions_per_element"] = nfun
    return s


def _emt_data(n, seed, elements=("Cu",), rattle=0.06):
    """Rattled, strained fcc cells (32 atoms) labelled by ASE's EMT."""
    from ase.build import bulk
    from ase.calculators.emt import EMT
    from ase.calculators.singlepoint import SinglePointCalculator

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        a = bulk("Cu", "fcc", a=3.61 * rng.uniform(0.97, 1.04), cubic=True).repeat(2)
        if len(elements) > 1:
            a.set_chemical_symbols(rng.choice(list(elements), len(a)))
        a.set_cell(a.cell @ (np.eye(3) + rng.normal(0, 0.015, (3, 3))), scale_atoms=True)
        a.positions += rng.normal(0, rattle, a.positions.shape)
        a.calc = EMT()
        e, f, s = a.get_potential_energy(), a.get_forces(), a.get_stress()
        a.calc = SinglePointCalculator(a, energy=e, forces=f, stress=s)
        out.append(a)
    return out


def _rotation(rng):
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q @ np.diag(np.sign(np.diag(r)))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


# --------------------------------------------------------------------------- basis


BASIS_SPECS = {
    "cu_rank5": _spec(["Cu"], [6, 3, 2, 2, 1], [0, 3, 2, 1, 1]),
    "cuni_rank4": _spec(["Cu", "Ni"], [4, 2, 2, 1], [0, 2, 2, 1]),
    "cu_30": _spec(["Cu"], [15, 3, 2, 1], [0, 3, 2, 1], nfun=30),
    "cuni_20": _spec(["Cu", "Ni"], [6, 3, 2, 1], [0, 2, 2, 1], nfun=20),
}


@pytest.mark.parametrize("name", ["cu_rank5", "cuni_rank4"])
def test_basis_functions_rotationally_invariant(name):
    """Every B projection of every atom is unchanged by random rotations of its environment."""
    basis = build_basis(BASIS_SPECS[name])
    # random radial coefficients: invariance must not rest on the delta initialisation
    rng = np.random.default_rng(1)
    drawn = {}
    for b in basis.blocks:
        if b.crad is not None:  # A-B and B-A share one radial basis (ML-PACE's rule)
            key = tuple(sorted(b.elements))
            b.crad = drawn.setdefault(key, rng.normal(size=b.crad.shape))
    bb = bbasis_of(basis)
    proj = _ace.Projector(bb, False)
    n_atoms = 6
    species = rng.integers(0, len(bb.elements), n_atoms).astype(np.int32)
    ii, jj = np.meshgrid(np.arange(n_atoms), np.arange(n_atoms), indexing="ij")
    keep = ii != jj
    edge_index = np.stack([ii[keep], jj[keep]]).astype(np.int64)
    pos = rng.uniform(-1.6, 1.6, (n_atoms, 3))
    ref = np.asarray(proj.compute(species, n_atoms, edge_index, pos[edge_index[1]] - pos[edge_index[0]]))
    assert np.abs(ref).max() > 1e-3  # a non-trivial environment
    for _ in range(3):
        q = _rotation(rng)
        p = pos @ q.T
        got = np.asarray(proj.compute(species, n_atoms, edge_index, p[edge_index[1]] - p[edge_index[0]]))
        scale = np.maximum(1.0, np.abs(ref))
        assert np.abs((got - ref) / scale).max() < 1e-10


@pytest.mark.parametrize("name", sorted(BASIS_SPECS))
def test_basis_equals_pyace(name):
    """Same functions (elements, ns, ls, LS) as pyace for the same spec: same count per rank."""
    pyace = pytest.importorskip("pyace", reason=potentials.PYACE_REASON)
    import copy

    spec = BASIS_SPECS[name]
    ours = build_basis(copy.deepcopy(spec))
    ref = pyace.create_multispecies_basis_config(copy.deepcopy(spec))
    ref_funcs = {(tuple(f.elements), tuple(f.ns), tuple(f.ls), tuple(f.LS))
                 for blk in ref.funcspecs_blocks for f in blk.funcspecs}
    ref_count = {}
    for blk in ref.funcspecs_blocks:
        for f in blk.funcspecs:
            ref_count[len(f.ns)] = ref_count.get(len(f.ns), 0) + 1
    assert ours.count_by_rank() == dict(sorted(ref_count.items()))
    assert {f.key() for f in ours.all_functions()} == ref_funcs
    # the file reads in the core and in pyace alike
    ACEBBasisSet = pyace.ACEBBasisSet
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as fh:
        fh.write(to_bbasis_yaml(ours))
    assert ACEBBasisSet(fh.name).to_ACECTildeBasisSet() is not None
    Path(fh.name).unlink()


def test_yace_writer_matches_pyace_layout(tmp_path):
    """A .yace pyace wrote, read by the core and written back by mlff: the same layout line by
    line and the same doubles (pyace prints 17 digits, mlff the shortest round-trip form)."""
    pyace = pytest.importorskip("pyace", reason=potentials.PYACE_REASON)
    bpath = tmp_path / "b.yaml"
    bpath.write_text(to_bbasis_yaml(build_basis(BASIS_SPECS["cuni_20"])))
    ypath = tmp_path / "p.yace"
    pyace.ACEBBasisSet(str(bpath)).to_ACECTildeBasisSet().save_yaml(str(ypath))
    ours = yace_text(_ace.Model.load(str(ypath)).to_dict())
    theirs = ypath.read_text()
    assert [ln.split(":")[0] for ln in ours.splitlines()] == [ln.split(":")[0] for ln in theirs.splitlines()]
    a, b = _ace.Model.from_text(ours, "ours").to_dict(), _ace.Model.load(str(ypath)).to_dict()
    assert repr(a) == repr(b)


# --------------------------------------------------------------------------- fit


@pytest.fixture(scope="module")
def cu_fit(tmp_path_factory):
    out = tmp_path_factory.mktemp("ace_fit_cu")
    train, test = _emt_data(12, 0), _emt_data(4, 1)
    opts = {"potential": _spec(["Cu"], [8, 2, 2], [0, 2, 1], nfun=15), "maxiter": 15, "kappa": 0.3}
    torch.set_num_threads(1)
    res = fit_ace(train, opts, output_dir=out, test_structures=test)
    return res, train, test


def test_fit_cu_accuracy_and_outputs(cu_fit):
    res, train, test = cu_fit
    # EMT Cu near equilibrium: a 15-function basis gets a few meV/atom and tens of meV/Å
    assert res.metrics["train"]["energy_rmse_per_atom"] < 3e-3
    assert res.metrics["train"]["force_rmse"] < 0.03
    assert res.metrics["test"]["energy_rmse_per_atom"] < 5e-3
    assert res.metrics["test"]["force_rmse"] < 0.04
    for key in ("yaml", "yace", "asi", "metrics", "parity_train", "parity_test"):
        assert Path(res.files[key]).exists(), key
    summary = json.loads(Path(res.files["metrics"]).read_text())
    assert summary["functions"] == {"Cu": 15}
    # the active set: MaxVol over the training atoms, so their grades are <= its tolerance (1.01)
    from mlff.calculator import MLFFCalculator

    calc = MLFFCalculator(res.files["yaml"], activeset=res.files["asi"])
    for a in train[:3]:
        b = a.copy()
        b.calc = calc
        b.get_potential_energy()
        assert np.max(calc.results["extrapolation_grade"]) <= 1.01 + 1e-9
    # the B-basis file reads back with the fitted coefficients: same energies as the .yace
    b = _ace.BBasis.load(res.files["yaml"]).energy_model.to_dict()
    b["E0"] = res.model["E0"]
    ours = evaluate(res.model, test[:1])["energy"]
    assert abs(evaluate(b, test[:1])["energy"] - ours).max() / len(test[0]) < 1e-12


def test_fit_cu_yace_in_mlff_calculator(cu_fit):
    from mlff.calculator import MLFFCalculator

    res, _, test = cu_fit
    own = evaluate(res.model, test)
    calc = MLFFCalculator(res.files["yace"])
    for k, a in enumerate(test):
        b = a.copy()
        b.calc = calc
        assert abs(b.get_potential_energy() - own["energy"][k]) / len(a) < 1e-9
    n0 = len(test[0])
    b = test[0].copy()
    b.calc = calc
    assert np.abs(b.get_forces() - own["forces"][:n0]).max() < 1e-8


def test_fit_cu_yace_in_pyace(cu_fit):
    pyace = pytest.importorskip("pyace", reason=potentials.PYACE_REASON)
    res, _, test = cu_fit
    own = evaluate(res.model, test)
    calc = pyace.PyACECalculator(res.files["yace"])
    for k, a in enumerate(test):
        b = a.copy()
        b.calc = calc
        assert abs(b.get_potential_energy() - own["energy"][k]) / len(a) < 1e-9


def test_fit_cu_yace_in_ace_jax(cu_fit):
    pytest.importorskip("ace_jax", reason=potentials.ACE_JAX_REASON)
    import jax

    jax.config.update("jax_enable_x64", True)
    from ace_jax import ACECalculator

    res, _, test = cu_fit
    # ace-jax evaluates the radial formulas exactly (ML-PACE and pyace through splines, which
    # differ by up to ~1e-8 eV): compare with the fit's model evaluated the same way
    own = evaluate(res.model, test[:2], radial="analytic")
    calc = ACECalculator(res.files["yace"], spline_tol=None)
    for k, a in enumerate(test[:2]):
        b = a.copy()
        b.calc = calc
        assert abs(b.get_potential_energy() - own["energy"][k]) / len(a) < 1e-9


def test_fit_forces_equal_finite_differences(cu_fit):
    res, _, test = cu_fit
    a = test[0].copy()
    f = evaluate(res.model, [a])["forces"]
    h = 1e-5
    for i, d in ((0, 0), (5, 1), (17, 2)):
        e = []
        for x in (h, -h):
            b = a.copy()
            b.positions[i, d] += x
            e.append(evaluate(res.model, [b])["energy"][0])
        assert abs(-(e[0] - e[1]) / (2 * h) - f[i, d]) < 1e-7


def test_fit_cuni_ladder(tmp_path):
    """Two elements, ladder fitting by power order: the basis grows in steps, each warm-started
    (the loss never rises), reference energies by least squares, and the .yace reproduces the fit."""
    from mlff.calculator import MLFFCalculator

    train, test = _emt_data(12, 2, ("Cu", "Ni")), _emt_data(3, 3, ("Cu", "Ni"))
    opts = {"potential": _spec(["Cu", "Ni"], [6, 3, 2], [0, 2, 1], nfun=20, ndensity=1, fs=(1, 1), rcut=4.5),
            "maxiter": 5, "kappa": 0.3, "ladder_step": 5, "ladder_type": "power_order"}
    res = fit_ace(train, opts, output_dir=tmp_path, test_structures=test, plots=False, active_set=False)
    sizes = [h["functions"] for h in res.history]
    # 4 blocks (Cu, Ni, Cu Ni, Ni Cu) x 5 per step, up to 20 per element
    assert sizes == [20, 40]
    losses = [h["loss"] for h in res.history]
    assert all(b <= a * (1 + 1e-9) for a, b in zip(losses, losses[1:]))
    assert set(res.e0) == {"Cu", "Ni"}
    # EMT Cu-Ni random alloys, a linear 40-function basis: a few meV/atom, ~10 meV/Å
    assert res.metrics["train"]["energy_rmse_per_atom"] < 6e-3
    assert res.metrics["train"]["force_rmse"] < 0.03
    assert res.metrics["test"]["energy_rmse_per_atom"] < 6e-3
    assert res.metrics["test"]["force_rmse"] < 0.03
    own = evaluate(res.model, test)
    calcs = [MLFFCalculator(res.files["yace"])]
    try:
        import pyace

        calcs.append(pyace.PyACECalculator(res.files["yace"]))
    except ImportError:  # pyace is an optional test extra; mlff's own engine is checked regardless
        pass
    for calc in calcs:
        for k, a in enumerate(test):
            b = a.copy()
            b.calc = calc
            assert abs(b.get_potential_energy() - own["energy"][k]) / len(a) < 1e-9


def test_repulsion_auto_sets_zbl_at_min_distance(tmp_path):
    train = _emt_data(4, 4)
    opts = {"potential": _spec(["Cu"], [4, 1], [0, 0], ndensity=1, fs=(1, 1)), "maxiter": 2, "repulsion": "auto"}
    res = fit_ace(train, opts, output_dir=tmp_path, plots=False, active_set=False)
    dmin = min(a.get_all_distances(mic=True)[np.triu_indices(len(a), 1)].min() for a in train)
    bond = res.model["bonds"][(0, 0)]
    assert bond["inner_cutoff_type"] == "zbl"
    assert abs(bond["rcut_in"] - dmin) < 1e-9
    # a dimer far inside r_in is repelled by the ZBL core
    from ase import Atoms

    close = Atoms("Cu2", positions=[[0, 0, 0], [0, 0, 0.8]])
    close.calc = None
    e = evaluate(res.model, [close])["energy"][0] - sum(res.model["E0"][0] for _ in range(2))
    assert e > 10.0


def test_mlff_train_kind_ace(tmp_path):
    """`mlff train config.yaml` with model.kind: ace runs the ACE fit from the one config format."""
    from ase.io import write

    from mlff.training.config import load_config
    from mlff.training.trainer import train

    write(tmp_path / "cu.xyz", _emt_data(10, 5))
    (tmp_path / "config.yaml").write_text(
        "data: {train: cu.xyz, valid_fraction: 0.2, min_structures: 5}\n"
        "model:\n"
        "  kind: ace\n"
        "  maxiter: 5\n"
        "  kappa: 0.3\n"
        "  weighting: {DElow: 1.0, DEup: 10.0, DE: 1.0, DF: 1.0}\n"
        "  potential:\n"
        "    elements: [Cu]\n"
        "    embeddings: {ALL: {npot: FinnisSinclairShiftedScaled, fs_parameters: [1, 1], ndensity: 1}}\n"
        "    bonds: {ALL: {radbase: ChebExpCos, radparameters: [5.25], rcut: 4.5, dcut: 0.01}}\n"
        "    functions: {ALL: {nradmax_by_orders: [4, 2], lmax_by_orders: [0, 1]}}\n"
        f"run: {{output_dir: {tmp_path / 'out'}, plots: false}}\n"
    )
    cfg = load_config(tmp_path / "config.yaml")
    summary = train(cfg)
    assert summary["kind"] == "ace"
    assert (tmp_path / "out" / "output_potential.yace").exists()
    assert summary["metrics"]["test"]["n_structures"] == 2
    with pytest.raises(ValueError, match="unknown options"):
        (tmp_path / "bad.yaml").write_text(
            "data: {train: cu.xyz}\nmodel: {kind: ace, maxiterations: 5, potential: {elements: [Cu]}}\n")
        load_config(tmp_path / "bad.yaml")


def test_fit_stress_term_matches_engine(tmp_path):
    """The stress the fit's loss uses is the engine's (mlff's calculator on the written .yace)."""
    from mlff.ace.fit.fit import ACEFitModel, ACEFitOptions, Structure, _Batch, _Objective
    from mlff.calculator import MLFFCalculator

    train = _emt_data(4, 6)
    spec = _spec(["Cu"], [6, 2], [0, 1], ndensity=1, fs=(1, 1))
    res = fit_ace(train, {"potential": spec, "maxiter": 3, "stress_weight": 1.0}, output_dir=tmp_path,
                  plots=False, active_set=False)
    model = ACEFitModel(res.basis, res.e0)
    batch = _Batch([Structure.from_any(a) for a in train[:1]], 4.6)
    obj = _Objective(model, batch, batch.energy, torch.ones(1, dtype=torch.float64),
                     ACEFitOptions.from_mapping({"potential": spec}))
    stress = obj.predict(model.coeffs, model.crad, True, False, True)["stress"][0].numpy()
    a = train[0].copy()
    a.calc = MLFFCalculator(res.files["yace"])
    assert np.abs(stress - a.get_stress(voigt=False)).max() < 1e-10


def test_energy_based_structure_weights():
    """pacemaker's energy-based weighting: w = 1/(dE + DE)^2 per structure (dE per atom above the
    lowest), 0 beyond DEup, normalised; wlow fixes the share of the structures below DElow;
    force weights w_s / (|F|^2 + DF) summing to 1."""
    from mlff.ace.fit.fit import Structure, _Batch, force_weights, structure_weights

    base = _emt_data(4, 7)
    ss = [Structure.from_any(a) for a in base]
    n = len(base[0])
    for s, de in zip(ss, (0.0, 0.5, 3.0, 20.0)):  # eV/atom above the first
        s.energy = ss[0].energy + de * n if s is not ss[0] else s.energy
    batch = _Batch(ss, 4.0)
    w = structure_weights(batch, batch.energy, {"DElow": 1.0, "DEup": 10.0, "DE": 1.0}).numpy()
    assert abs(w.sum() - 1.0) < 1e-12
    raw = np.array([1.0, 1 / 1.5**2, 1 / 4.0**2, 0.0])
    assert np.allclose(w, raw / raw.sum(), rtol=1e-12, atol=0)
    w2 = structure_weights(batch, batch.energy, {"DElow": 1.0, "DEup": 10.0, "DE": 1.0, "wlow": 0.9}).numpy()
    assert abs(w2[:2].sum() - 0.9) < 1e-12 and abs(w2.sum() - 1.0) < 1e-12
    fw = force_weights(batch, torch.from_numpy(w), {"DF": 1.0}).numpy()
    assert abs(fw.sum() - 1.0) < 1e-12 and fw[3 * n:].max() == 0.0
    eq = structure_weights(batch, batch.energy, None).numpy()
    assert np.allclose(eq, 0.25)
