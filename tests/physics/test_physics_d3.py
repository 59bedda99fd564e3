"""D3(BJ) term: agreement with simple-dftd3 (dftd3), tad-dftd3 and LAMMPS' dispersion/d3;
exact derivatives with the switch on; contract behaviour (long edges, ghosts, TorchScript).

Forces and stress are obtained as the engines do: autograd of the summed local energies
with respect to edge vectors built from positions (and a strain) that require grad.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk, molecule
from ase.units import Bohr, Hartree

from physics_helpers import lammps_job, run_lammps, water_box

from mlff.neighbors import neighbor_list
from mlff.physics import D3BJ

pytest.importorskip("tad_dftd3", reason="tad-dftd3 provides the D3 reference data (pip install tad-dftd3)")

FUNCTIONALS = ["pbe", "pbe0", "b3lyp", "tpss", "wb97m", "wb97x"]


# ----------------------------------------------------------------------------- helpers


def evaluate(module, atoms: Atoms, dtype=torch.float64, skin: float = 0.5, n_local=None):
    """Per-atom energies, forces and stress (eV/Å^3, ASE sign) of ``module`` on ``atoms``.

    The list is built ``skin`` beyond the declared cutoff, as LAMMPS passes it.
    """
    cutoff = max(module.neighbor_lists()[0][1], 1e-3) + skin
    pbc = np.asarray(atoms.pbc)
    ei, shifts = neighbor_list(atoms.positions, atoms.cell[:], pbc, cutoff)
    pos = torch.tensor(atoms.positions, dtype=torch.float64, requires_grad=True)
    cell = torch.tensor(np.asarray(atoms.cell[:]), dtype=torch.float64)
    eps = torch.zeros(3, 3, dtype=torch.float64, requires_grad=True)
    deform = torch.eye(3, dtype=torch.float64) + eps
    p, c = pos @ deform, cell @ deform
    ei_t = torch.as_tensor(ei)
    vec = (p[ei_t[1]] - p[ei_t[0]] + torch.as_tensor(shifts, dtype=torch.float64) @ c).to(dtype)
    z = torch.as_tensor(atoms.numbers, dtype=torch.long)
    n = len(atoms) if n_local is None else n_local
    energies = module(z, [ei_t], [vec], n, {})["energies"]
    grads = torch.autograd.grad(energies[:n].sum(), [pos, eps])
    stress = grads[1].numpy() / atoms.get_volume() if pbc.all() else None
    return energies.detach().double().numpy(), -grads[0].numpy(), stress


def dftd3_reference(atoms: Atoms, module: D3BJ, method=None):
    """simple-dftd3 two-body (s9 = 0) with the module's hard cutoffs: E/atom, F, stress."""
    from dftd3.interface import DispersionModel, RationalDampingParam

    periodic = bool(atoms.pbc.any())
    model = DispersionModel(
        atoms.numbers,
        atoms.positions / Bohr,
        np.asarray(atoms.cell[:]) / Bohr if periodic else None,
        np.asarray(atoms.pbc) if periodic else None,
    )
    model.set_realspace_cutoff(module.cutoff / Bohr, module.cutoff / Bohr, module.cn_cutoff / Bohr)
    if method is None:
        param = RationalDampingParam(s6=module.s6, s8=module.s8, a1=module.a1, a2=module.a2, s9=0.0)
    else:
        param = RationalDampingParam(method=method, atm=False)
    res = model.get_dispersion(param, grad=True)
    pair = model.get_pairwise_dispersion(param)["additive pairwise energy"]
    energies = 0.5 * (pair.sum(axis=0) + pair.sum(axis=1)) * Hartree
    assert abs(energies.sum() - res["energy"] * Hartree) < 1e-10
    forces = -res["gradient"] * Hartree / Bohr
    stress = res["virial"] * Hartree / atoms.get_volume() if atoms.pbc.all() else None
    return energies, forces, stress


def cu_cubic() -> Atoms:
    a = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(2)
    a.rattle(0.05, seed=2)
    a.wrap()
    return a


def cu_primitive() -> Atoms:
    """One atom per cell: every neighbour is a periodic image of the atom itself."""
    a = bulk("Cu", "fcc", a=3.58)
    a.set_cell(a.cell[:] + np.array([[0.0, 0.05, 0.0], [0.02, 0.0, 0.0], [0.0, 0.0, 0.03]]), scale_atoms=True)
    return a


def s22(name: str) -> Atoms:
    from ase.collections import s22 as coll

    return coll[name]


# ----------------------------------------------------------------------------- vs simple-dftd3


@pytest.fixture(scope="module")
def dftd3_api():
    return pytest.importorskip("dftd3.interface", reason="the dftd3 package (simple-dftd3) is the oracle")


@pytest.mark.parametrize(
    "name", ["Water_dimer", "Methane_dimer", "Benzene-water_complex", "Adenine-thymine_Watson-Crick_complex"]
)
def test_s22_dimers_match_dftd3(dftd3_api, name):
    atoms = s22(name)
    module = D3BJ(atoms.numbers, "pbe", cutoff=15.0, cn_cutoff=10.0, switch_width=0.0)
    e, f, _ = evaluate(module, atoms)
    e_ref, f_ref, _ = dftd3_reference(atoms, module)
    assert np.abs(e - e_ref).max() < 1e-7
    assert np.abs(f - f_ref).max() < 1e-6


@pytest.mark.parametrize(
    "builder,cutoff,cn_cutoff",
    [(water_box, 12.0, 8.0), (cu_cubic, 12.0, 8.0), (cu_primitive, 15.0, 10.0)],
    ids=["water_box", "cu_cubic", "cu_primitive"],
)
def test_periodic_matches_dftd3(dftd3_api, builder, cutoff, cn_cutoff):
    atoms = builder()
    module = D3BJ(atoms.numbers, "pbe", cutoff=cutoff, cn_cutoff=cn_cutoff, switch_width=0.0)
    e, f, s = evaluate(module, atoms)
    e_ref, f_ref, s_ref = dftd3_reference(atoms, module)
    assert np.abs(e - e_ref).max() < 1e-7
    assert np.abs(f - f_ref).max() < 1e-6
    assert np.abs(s - s_ref).max() < 1e-7


@pytest.mark.parametrize("functional", FUNCTIONALS)
def test_named_functionals_match_dftd3(dftd3_api, functional):
    """Parameters by name agree with the Fortran library's own table (through the ASE calculator)."""
    from dftd3.ase import DFTD3

    atoms = molecule("CH3CH2OH")
    atoms.rattle(0.03, seed=1)
    module = D3BJ(atoms.numbers, functional, cutoff=12.0, cn_cutoff=9.0, switch_width=0.0)
    calc = DFTD3(
        method=functional, damping="d3bj",
        realspace_cutoff={"disp2": module.cutoff, "disp3": module.cutoff, "cn": module.cn_cutoff},
    )
    ref = atoms.copy()
    ref.calc = calc
    e, f, _ = evaluate(module, atoms)
    assert abs(e.sum() - ref.get_potential_energy()) / len(atoms) < 1e-7
    assert np.abs(f - ref.get_forces()).max() < 1e-6
    e_api, _, _ = dftd3_reference(atoms, module, method=functional)
    assert np.abs(e - e_api).max() < 1e-7


def test_builtin_parameter_table_matches_dftd3(dftd3_api):
    pytest.importorskip("tomli", reason="dftd3's parameter table needs tomli")
    from dftd3.parameters import get_damping_param

    from mlff.physics._d3_reference import BJ_PARAMETERS

    for name, p in BJ_PARAMETERS.items():
        ref = get_damping_param(name, defaults=["bj"])
        for key in ("s6", "s8", "a1", "a2"):
            assert p[key] == pytest.approx(ref[key], abs=1e-12), (name, key)
    wb97m = D3BJ([1, 8], "ωB97M")
    assert (wb97m.a1, wb97m.s8, wb97m.a2) == (0.5660, 0.3908, 3.1280)
    assert D3BJ([1], "wb97x").s8 == 0.2641


def test_weight_underflow_matches_dftd3(dftd3_api):
    """Very high CN (all Gaussian weights underflow): the largest reference takes the weight."""
    atoms = bulk("H", "sc", a=0.5) * (2, 1, 1)
    atoms.rattle(0.01, seed=3)
    module = D3BJ([1], "pbe", cutoff=8.0, cn_cutoff=8.0, switch_width=0.0)
    cn = module.coordination_numbers(*_species_edges_r(module, atoms))
    assert float(cn.min()) > 0.9118 + 14.0  # exp(-4 dCN^2) == 0 in float64
    e, f, s = evaluate(module, atoms)
    e_ref, f_ref, s_ref = dftd3_reference(atoms, module)
    assert np.isfinite(f).all() and np.isfinite(s).all()
    assert np.abs(e - e_ref).max() < 1e-7
    assert np.abs(f - f_ref).max() < 1e-6
    assert np.abs(s - s_ref).max() < 1e-6


def _species_edges_r(module, atoms):
    ei, shifts = neighbor_list(atoms.positions, atoms.cell[:], atoms.pbc, module.neighbor_lists()[0][1])
    vec = atoms.positions[ei[1]] - atoms.positions[ei[0]] + shifts @ atoms.cell[:]
    r = torch.as_tensor(np.linalg.norm(vec, axis=1))
    species = module.z_to_index[torch.as_tensor(atoms.numbers)]
    return species, torch.as_tensor(ei), r, r > 0


def test_matches_tad_dftd3():
    """The module reproduces the package it takes its reference data from."""
    import tad_dftd3
    from tad_dftd3.cutoff import Cutoff

    atoms = s22("Benzene-methane_complex")
    module = D3BJ(atoms.numbers, "b3lyp", cutoff=15.0, cn_cutoff=10.0, switch_width=0.0)
    numbers = torch.as_tensor(atoms.numbers)
    positions = torch.as_tensor(atoms.positions / Bohr, dtype=torch.float64)
    param = {k: torch.tensor(getattr(module, k), dtype=torch.float64) for k in ("s6", "s8", "a1", "a2")}
    param["s9"] = torch.tensor(0.0, dtype=torch.float64)
    cut = Cutoff(cn=module.cn_cutoff / Bohr, disp2=module.cutoff / Bohr, disp3=module.cutoff / Bohr)
    e_tad = tad_dftd3.dftd3(numbers, positions, param, cutoff=cut).numpy() * Hartree
    e, _, _ = evaluate(module, atoms)
    assert np.abs(e - e_tad).max() < 1e-9


# ----------------------------------------------------------------------------- vs LAMMPS

def test_matches_lammps_dispersion_d3(tmp_path):
    """LAMMPS' own D3 (pbe, bj) with the same hard cutoffs: 1 µeV/atom, 1e-6 eV/Å.

    LAMMPS converts with its own constants (Bohr 0.52917725 Å, Hartree 27.21140795 eV, vs
    ASE's 0.52917721 / 27.21138602), so energies agree to ~1e-6 relative, not exactly.
    """
    cutoff, cn_cutoff = 12.0, 8.0
    systems = [water_box(), cu_cubic(), s22("Benzene-water_complex")]
    jobs, modules = [], []
    for atoms in systems:
        symbols = sorted(set(atoms.get_chemical_symbols()))
        pair = [f"pair_style dispersion/d3 bj pbe {cutoff} {cn_cutoff}", "pair_coeff * * " + " ".join(symbols)]
        jobs.append(lammps_job(atoms, pair, symbols))
        modules.append(D3BJ(atoms.numbers, "pbe", cutoff=cutoff, cn_cutoff=cn_cutoff, switch_width=0.0))
    results = run_lammps(jobs, tmp_path)
    for atoms, module, res in zip(systems, modules, results):
        e, f, _ = evaluate(module, atoms)
        tol_e = 1e-6 * (1.0 + np.abs(e).max())
        assert abs(e.sum() - res["energy"]) / len(atoms) < tol_e
        assert np.abs(e - np.asarray(res["energies"])).max() < tol_e
        assert np.abs(f - np.asarray(res["forces"])).max() < 1e-6


# ----------------------------------------------------------------------------- switch on: exact derivatives


def _small_switched(dtype=torch.float64):
    return D3BJ([1, 8], "pbe", cutoff=6.0, cn_cutoff=5.0, switch_width=1.5).to(dtype)


def test_forces_and_stress_are_derivatives_with_switch():
    """Central differences of the energy (float64) against the autograd forces and stress."""
    module = _small_switched()
    atoms = water_box()
    e, f, s = evaluate(module, atoms)
    h = 1e-4
    subset = [0, 1, 5, 13, 22]
    f_num = np.zeros((len(subset), 3))
    for k, i in enumerate(subset):
        for c in range(3):
            vals = []
            for sign in (1, -1):
                a = atoms.copy()
                a.positions[i, c] += sign * h
                vals.append(evaluate(module, a)[0].sum())
            f_num[k, c] = -(vals[0] - vals[1]) / (2 * h)
    assert np.abs(f[subset] - f_num).max() < 1e-6
    s_num = np.zeros((3, 3))
    cell0 = atoms.cell[:].copy()
    for a_ in range(3):
        for b_ in range(3):
            vals = []
            for sign in (1, -1):
                strain = np.eye(3)
                strain[a_, b_] += sign * h
                a = atoms.copy()
                a.set_cell(cell0 @ strain, scale_atoms=True)
                vals.append(evaluate(module, a)[0].sum())
            s_num[a_, b_] = (vals[0] - vals[1]) / (2 * h) / atoms.get_volume()
    assert np.abs(s - s_num).max() < 1e-6


def _dimer_energy_force(module, r: float):
    atoms = Atoms("OH", positions=[[0, 0, 0], [r, 0, 0]])
    e, f, _ = evaluate(module, atoms)
    return float(e.sum()), f


def test_energy_and_force_vanish_continuously_at_cutoff():
    module = _small_switched()
    rc = module.cutoff
    e_at, f_at = _dimer_energy_force(module, rc)
    e_out, f_out = _dimer_energy_force(module, rc + 1e-3)
    assert e_at == 0.0 and np.all(f_at == 0.0)
    assert e_out == 0.0 and np.all(f_out == 0.0)
    # C2 switch: E ~ (rc - r)^3 and F ~ (rc - r)^2 just inside the cutoff
    e1, f1 = _dimer_energy_force(module, rc - 1e-3)
    e2, f2 = _dimer_energy_force(module, rc - 2e-3)
    assert 0.0 < -e1 < 1e-12 and 0.0 < np.abs(f1).max() < 1e-8
    assert 7.5 < e2 / e1 < 8.5
    assert 3.8 < np.abs(f2).max() / np.abs(f1).max() < 4.2
    # the counting function is switched too: CN of a dimer at cn_cutoff is exactly zero
    species = module.z_to_index[torch.tensor([8, 1])]
    ei = torch.tensor([[0, 1], [1, 0]])
    r = torch.full((2,), module.cn_cutoff, dtype=torch.float64)
    assert torch.all(module.coordination_numbers(species, ei, r, r > 0) == 0)


def test_long_edges_get_exactly_zero_weight_and_gradient():
    module = _small_switched()
    atoms = water_box()
    ei, shifts = neighbor_list(atoms.positions, atoms.cell[:], atoms.pbc, module.cutoff + 2.5)
    vec = torch.as_tensor(atoms.positions[ei[1]] - atoms.positions[ei[0]] + shifts @ atoms.cell[:])
    vec.requires_grad_(True)
    z = torch.as_tensor(atoms.numbers)
    e_skin = module(z, [torch.as_tensor(ei)], [vec], len(atoms), {})["energies"]
    (grad,) = torch.autograd.grad(e_skin.sum(), [vec])
    long = vec.detach().norm(dim=1) > module.cutoff
    assert int(long.sum()) > 100
    assert torch.all(grad[long] == 0.0)
    e_exact, _, _ = evaluate(module, atoms)
    assert np.abs(e_skin.detach().numpy() - e_exact).max() < 1e-13


def test_ghost_nodes_reproduce_the_periodic_result():
    """LAMMPS-style input: owned atoms + ghost copies out to interaction_range, open boundaries.

    Every node's CN is computed from its own edges, so the owned atoms' energies and the
    forces folded back onto their owners equal the periodic calculation.
    """
    module = D3BJ([29], "pbe", cutoff=7.0, cn_cutoff=5.0, switch_width=1.0)
    atoms = cu_cubic()
    n = len(atoms)
    reach = module.contract_info()["interaction_range"]
    cell = atoms.cell[:]
    ghosts, owner = [], []
    m = int(np.ceil(reach / min(np.diag(cell)))) + 1
    for s in np.ndindex(2 * m + 1, 2 * m + 1, 2 * m + 1):
        shift = np.array(s) - m
        if not shift.any():
            continue
        p = atoms.positions + shift @ cell
        # keep copies within `reach` of the cell box (an MPI rank's ghost shell)
        frac = np.linalg.solve(cell.T, p.T).T
        dist = np.linalg.norm((np.clip(frac, 0, 1) - frac) @ cell, axis=1)
        keep = dist <= reach
        ghosts.append(p[keep])
        owner.extend(np.nonzero(keep)[0])
    pos_all = np.vstack([atoms.positions, *ghosts])
    owner = np.concatenate([np.arange(n), np.asarray(owner)])
    cluster = Atoms(numbers=atoms.numbers[owner], positions=pos_all)
    e_c, f_c, _ = evaluate(module, cluster, n_local=n)
    e_p, f_p, _ = evaluate(module, atoms)
    assert np.abs(e_c[:n] - e_p).max() < 1e-12
    f_fold = np.zeros((n, 3))
    np.add.at(f_fold, owner, f_c)
    assert np.abs(f_fold - f_p).max() < 1e-10


def test_torchscript_matches_eager_and_float32():
    module = _small_switched()
    scripted = torch.jit.script(module)
    atoms = water_box()
    e, f, s = evaluate(module, atoms)
    e_s, f_s, s_s = evaluate(scripted, atoms)
    assert np.array_equal(e, e_s) and np.array_equal(f, f_s) and np.array_equal(s, s_s)
    m32 = _small_switched(torch.float32)
    assert m32.ref_c6.dtype == torch.float32
    e32, f32, _ = evaluate(torch.jit.script(m32), atoms, dtype=torch.float32)
    assert np.abs(e32 - e).max() < 1e-6 and np.abs(f32 - f).max() < 1e-5


def test_contract_info_rebuilds_and_refuses_unknown_elements():
    module = D3BJ([8, 1], "b3lyp", cutoff=14.0, cn_cutoff=9.0, switch_width=1.0)
    info = module.contract_info()
    assert info["kind"] == "d3bj" and info["elements"] == [1, 8] and info["locality"] == "local"
    assert info["neighbor_lists"] == [("d3", 14.0, module.cutoff)] and info["interaction_range"] == 23.0
    rebuilt = D3BJ(**info["hyperparameters"])
    atoms = molecule("H2O")
    assert np.array_equal(evaluate(module, atoms)[0], evaluate(rebuilt, atoms)[0])
    explicit = D3BJ([1, 8], None, s8=1.9889, a1=0.3981, a2=4.4211, cutoff=14.0, cn_cutoff=9.0, switch_width=1.0)
    assert np.abs(evaluate(explicit, atoms)[0] - evaluate(module, atoms)[0]).max() < 1e-15
    with pytest.raises(ValueError, match="no reference data"):
        D3BJ([1, 110])
    with pytest.raises(ValueError, match="no D3\\(BJ\\) parameters"):
        D3BJ([1], "not-a-functional")
    with pytest.raises(RuntimeError, match="29"):
        evaluate(module, Atoms("CuH", positions=[[0, 0, 0], [1.5, 0, 0]]))


def test_exported_term_runs_in_the_ase_calculator(dftd3_api, tmp_path):
    """The term exported on its own is a complete contract model (self-contained, small)."""
    from dftd3.ase import DFTD3

    from mlff import MLFFCalculator, export_model

    module = D3BJ([1, 6, 8], "pbe", switch_width=0.0)
    path = tmp_path / "d3.pt"
    export_model(module, path)
    assert path.stat().st_size < 200_000
    atoms = molecule("CH3CH2OH")
    atoms.calc = MLFFCalculator(path)
    ref = atoms.copy()
    ref.calc = DFTD3(method="pbe", damping="d3bj",
                     realspace_cutoff={"disp2": module.cutoff, "disp3": module.cutoff, "cn": module.cn_cutoff})
    assert abs(atoms.get_potential_energy() - ref.get_potential_energy()) / len(atoms) < 1e-7
    assert np.abs(atoms.get_forces() - ref.get_forces()).max() < 1e-6
