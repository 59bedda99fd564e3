"""Coulomb on charges: agreement with LAMMPS' ``coul/dsf`` and ``coul/cut``; exact forces and
stress when the charges depend on positions (through the contract's gradient rule); the
cutoff and short-range switches; contract behaviour (long edges, TorchScript, export)."""

from __future__ import annotations

import math
from typing import Dict, List

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk, molecule
from torch import nn

from physics_helpers import energy_finite_differences, lammps_job, run_lammps, water_box

from mlff.contract import derive_from_energies, evaluate
from mlff.neighbors import neighbor_list
from mlff.physics.coulomb import (
    COULOMB_CONSTANT,
    FixedChargeCoulomb,
    coulomb_dsf,
    coulomb_simple,
    edge_lengths,
    short_range_switch,
)
from mlff.physics.d3 import smooth_cutoff

#: LAMMPS ``units metal`` qqr2e (the oracle's k_e; ours is CODATA 2014, 3e-8 relative above).
LAMMPS_QQR2E = 14.399645
SPCE = {"O": -0.8476, "H": 0.4238}
NACL = {"Na": 1.0, "Cl": -1.0}


# ----------------------------------------------------------------------------- helpers


def topology(atoms: Atoms, cutoff: float):
    """A full list within ``cutoff`` (edge_index, integer shifts) built once."""
    ei, shifts = neighbor_list(atoms.positions, atoms.cell[:], atoms.pbc, cutoff)
    return torch.as_tensor(ei), torch.as_tensor(shifts, dtype=torch.float64)


def run(model, atoms: Atoms, cutoffs, skin: float = 0.5, topo=None, dtype=torch.float64):
    """Energies, forces and ASE stress of a contract-v2 model through ``mlff.contract.evaluate``.

    One list at the largest cutoff + ``skin``; every model list gets the edges within its
    own cutoff + ``skin`` (longer than declared, as LAMMPS passes them).
    """
    ei, shifts = topology(atoms, max(cutoffs) + skin) if topo is None else topo
    pos = torch.tensor(atoms.positions, dtype=torch.float64)
    cell = torch.tensor(np.asarray(atoms.cell[:]), dtype=torch.float64)
    vec = pos[ei[1]] - pos[ei[0]] + shifts @ cell
    r = vec.norm(dim=1)
    eis, evs = [], []
    for c in cutoffs:
        keep = r < c + skin
        eis.append(ei[:, keep])
        evs.append(vec[keep].to(dtype).requires_grad_(True))
    out = evaluate(model, torch.as_tensor(atoms.numbers), eis, evs, len(atoms))
    stress = -out["virial"].detach().double().numpy() / atoms.get_volume() if atoms.pbc.all() else None
    return out["energies"].detach().double().numpy(), out["forces"].detach().double().numpy(), stress


def finite_differences(model, atoms: Atoms, cutoffs, atoms_to_move, h: float = 1e-5):
    """Central differences of the energy: forces of ``atoms_to_move`` and, if periodic, the stress.

    The topology is fixed (built with a skin), so only the geometry changes.
    """
    topo = topology(atoms, max(cutoffs) + 1.0)

    def energy(a):
        return run(model, a, cutoffs, skin=1.0, topo=topo)[0].sum()

    return energy_finite_differences(energy, atoms, atoms_to_move, h)


def evaluate_forces(energies: torch.Tensor, ei: torch.Tensor, vec: torch.Tensor, n: int) -> np.ndarray:
    """Forces by the contract's gradient rule from per-atom energies of one list."""
    return derive_from_energies(energies, [ei], [vec], n, compute_virial=False)["forces"].detach().numpy()


def charges_of(atoms: Atoms, table) -> np.ndarray:
    return np.array([table[s] for s in atoms.get_chemical_symbols()])


def nacl(repeat: int = 2, seed: int = 1) -> Atoms:
    a = bulk("NaCl", "rocksalt", a=5.64, cubic=True).repeat(repeat)
    a.rattle(0.08, seed=seed)
    a.wrap()
    return a


def open_cluster(seed: int = 0) -> Atoms:
    rng = np.random.default_rng(seed)
    return Atoms("Na3Cl3OH2", positions=rng.uniform(0.0, 6.0, size=(9, 3)))


def dimer_energy(module, r: float, z=(11, 17)):
    """Energy and dE/dr of one pair along x (pair term plus any self terms)."""
    v = torch.tensor([[r, 0.0, 0.0], [-r, 0.0, 0.0]], dtype=torch.float64, requires_grad=True)
    e = module(torch.tensor(z), [torch.tensor([[0, 1], [1, 0]])], [v], 2, {})["energies"].sum()
    (g,) = torch.autograd.grad(e, [v])
    return float(e.detach()), float(g[0, 0] - g[1, 0])


# ----------------------------------------------------------------------------- vs LAMMPS


def test_dsf_matches_lammps_coul_dsf(tmp_path):
    systems = [(nacl(), NACL), (water_box(3, seed=4), SPCE)]
    jobs = []
    for atoms, table in systems:
        symbols = sorted(set(atoms.get_chemical_symbols()))
        jobs.append(lammps_job(atoms, ["pair_style coul/dsf 0.2 12.0", "pair_coeff * *"], symbols,
                               charges=charges_of(atoms, table)))
    results = run_lammps(jobs, tmp_path)
    for (atoms, table), res in zip(systems, results):
        module = FixedChargeCoulomb(atoms.numbers, table, method="dsf", alpha=0.2, cutoff=12.0, sr_cutoff=0.0)
        e, f, _ = run(module, atoms, [12.0])
        # LAMMPS evaluates erfc(a r) with Abramowitz-Stegun 7.1.26 (|error| < 1.5e-7) and uses
        # k_e = 14.399645; measured: energy 5e-7 (NaCl) and 3e-8 (water) relative, per-atom
        # 5e-7 of the largest, forces 1.7e-7 eV/Å (NaCl, |F| <= 0.7) and 1.0e-6 eV/Å (water,
        # |F| <= 6.8). With the same erfc approximation and k_e, the energies agree to 3e-15.
        f_ref = np.asarray(res["forces"])
        assert abs(e.sum() - res["energy"]) < 1e-6 * abs(res["energy"])
        assert np.abs(e - res["energies"]).max() < 1e-6 * np.abs(res["energies"]).max()
        assert np.abs(f - f_ref).max() < 1e-6 * max(1.0, np.abs(f_ref).max())
        assert np.abs(f).max() > 0.1  # the rattled structures have real forces


def test_simple_matches_lammps_coul_cut(tmp_path):
    atoms = open_cluster(0)
    q = np.array([0.9, 0.8, 1.1, -1.0, -0.7, -1.2, -0.8, 0.4, 0.5])
    symbols = sorted(set(atoms.get_chemical_symbols()))
    res = run_lammps([lammps_job(atoms, ["pair_style coul/cut 15.0", "pair_coeff * *"], symbols, charges=q)],
                     tmp_path)[0]
    assert np.linalg.norm(atoms.positions[:, None] - atoms.positions[None], axis=-1).max() < 13.0
    pos = torch.tensor(atoms.positions)
    ei, _ = topology(atoms, 16.0)
    vec = (pos[ei[1]] - pos[ei[0]]).requires_grad_(True)
    energies = coulomb_simple(torch.tensor(q), ei, vec, cutoff=15.0, sr_cutoff=0.0, switch_width=2.0)
    forces = evaluate_forces(energies, ei, vec, len(atoms))
    e = energies.detach().numpy()
    assert abs(e.sum() - res["energy"]) < 1e-7 * abs(res["energy"])  # k_e: 3e-8 relative
    assert np.abs(e - res["energies"]).max() < 1e-7 * np.abs(res["energies"]).max()
    assert np.abs(forces - np.asarray(res["forces"])).max() < 1e-6
    # with LAMMPS' own constant the agreement is to rounding
    e_lmp = coulomb_simple(torch.tensor(q), ei, vec.detach(), 15.0, 0.0, 2.0, None, LAMMPS_QQR2E).numpy()
    assert abs(e_lmp.sum() - res["energy"]) < 1e-12 * abs(res["energy"])


# ----------------------------------------------------------------------------- position-dependent charges


class EnvironmentCharges(nn.Module):
    """A toy charge model: q_i = q0(Z_i) + 0.1 sum_j exp(-r_ij) fc(r_ij) over a short list,
    then Coulomb on a second, longer list (what the multi-fidelity model does)."""

    def __init__(self, method: str, short: float = 4.0, cutoff: float = 8.0, sr_cutoff: float = 3.0):
        super().__init__()
        self.use_dsf = method == "dsf"
        self.short = short
        self.cutoff = cutoff
        self.sr_cutoff = sr_cutoff
        q0 = torch.zeros(119, dtype=torch.float64)
        q0[1], q0[8], q0[11], q0[17] = 0.4238, -0.8476, 1.0, -1.0
        self.register_buffer("q0", q0)

    def forward(self, atomic_numbers: torch.Tensor, edge_indices: List[torch.Tensor],
                edge_vectors: List[torch.Tensor], n_local: int, system: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        ei, vec = edge_indices[0], edge_vectors[0]
        r, _ = edge_lengths(vec)
        env = torch.exp(-r) * smooth_cutoff(r, self.short, 1.0)
        env = torch.where(r < self.short, env, torch.zeros_like(env))
        q = self.q0[atomic_numbers] + 0.1 * torch.zeros_like(self.q0[atomic_numbers]).index_add(0, ei[0], env)
        if self.use_dsf:
            e = coulomb_dsf(q, edge_indices[1], edge_vectors[1], 0.2, self.cutoff, self.sr_cutoff, 1.5)
        else:
            e = coulomb_simple(q, edge_indices[1], edge_vectors[1], self.cutoff, self.sr_cutoff, 2.0, 1.5)
        return {"energies": e, "charges": q}


@pytest.mark.parametrize("method", ["dsf", "simple"])
def test_forces_and_stress_with_position_dependent_charges(method):
    model = torch.jit.script(EnvironmentCharges(method))
    cutoffs = [4.0, 8.0]
    crystal = nacl(1, seed=3)
    cluster = open_cluster(1)
    for atoms in (crystal, cluster):
        e, f, stress = run(model, atoms, cutoffs)
        f_num, s_num = finite_differences(model, atoms, cutoffs, range(len(atoms)))
        assert np.abs(f - f_num).max() < 1e-6
        if stress is not None:
            assert np.abs(stress - s_num).max() < 1e-6
    # the charges' own gradient matters here: forces with frozen charges differ
    frozen = FixedChargeCoulomb([11, 17], NACL, method=method, cutoff=8.0, sr_cutoff=3.0, sr_width=1.5)
    e_fixed, f_fixed, _ = run(frozen, crystal, [8.0])
    f_env = run(model, crystal, cutoffs)[1]
    assert np.abs(f_env - f_fixed).max() > 1e-3


# ----------------------------------------------------------------------------- switches and cutoffs


@pytest.mark.parametrize("method", ["dsf", "simple"])
def test_energy_and_force_vanish_continuously_at_the_cutoff(method):
    rc = 10.0
    module = FixedChargeCoulomb([11, 17], NACL, method=method, cutoff=rc, sr_cutoff=4.6)
    e_far, de_far = dimer_energy(module, rc + 0.5)  # only DSF self terms remain
    e_at, de_at = dimer_energy(module, rc)
    assert e_at == e_far and de_at == 0.0 and de_far == 0.0
    d1, d2 = (dimer_energy(module, rc - d) for d in (1e-3, 2e-3))
    pair1, pair2 = d1[0] - e_far, d2[0] - e_far
    if method == "dsf":  # shifted force: E ~ (rc - r)^2, F ~ (rc - r)
        assert 3.9 < pair2 / pair1 < 4.1 and 1.9 < d2[1] / d1[1] < 2.1
    else:  # C2 switch: E ~ (rc - r)^3, F ~ (rc - r)^2
        assert 7.9 < pair2 / pair1 < 8.1 and 3.9 < d2[1] / d1[1] < 4.1
    assert abs(pair1) < 1e-5 and abs(d1[1]) < 1e-2


def test_short_range_switch_is_c2_and_removes_what_it_documents():
    sr, w = 4.6, 1.5
    r = torch.linspace(2.0, 5.5, 701, dtype=torch.float64).requires_grad_(True)
    s = short_range_switch(r, sr, w)
    (ds,) = torch.autograd.grad(s.sum(), [r], create_graph=True)
    (d2s,) = torch.autograd.grad(ds.sum(), [r])
    x = ((r.detach() - (sr - w)) / w).clamp(0.0, 1.0)
    assert torch.allclose(s.detach(), 10 * x**3 - 15 * x**4 + 6 * x**5, rtol=0, atol=1e-14)
    inside, outside = r.detach() <= sr - w, r.detach() >= sr
    assert torch.all(s[inside] == 0.0) and torch.all(s[outside] == 1.0)
    flat = (r.detach() < sr - w) | (r.detach() > sr)  # the ends themselves: zero up to rounding
    assert torch.all(ds[flat] == 0.0) and torch.all(d2s[flat] == 0.0)
    # value, slope and curvature tend to zero at both ends of the ramp (C2)
    for end in (sr - w, sr):
        near = (r.detach() - end).abs() < 0.011
        assert ds[near].abs().max() < 0.01 and d2s[near].abs().max() < 0.3
    # default width: the whole short range
    assert torch.equal(short_range_switch(r.detach(), sr), short_range_switch(r.detach(), sr, sr))
    assert torch.all(short_range_switch(r.detach(), 0.0) == 1.0)
    # the simple term is exactly k q q / r * s_sr(r) well inside the outer switch
    module = FixedChargeCoulomb([11, 17], NACL, method="simple", cutoff=15.0, sr_cutoff=sr, sr_width=w)
    for dist in (2.0, 3.5, 4.0, 4.59, 6.0):
        expected = -COULOMB_CONSTANT / dist * float(short_range_switch(torch.tensor([dist], dtype=torch.float64), sr, w))
        assert dimer_energy(module, dist)[0] == pytest.approx(expected, rel=1e-14, abs=0.0)
    # and the DSF pair term is removed below sr - w: only the self terms remain
    dsf = FixedChargeCoulomb([11, 17], NACL, method="dsf", cutoff=15.0, sr_cutoff=sr, sr_width=w)
    assert dimer_energy(dsf, 2.0) == dimer_energy(dsf, 20.0)


@pytest.mark.parametrize("method", ["dsf", "simple"])
def test_long_edges_have_zero_gradient(method):
    atoms = nacl(1, seed=5)
    module = FixedChargeCoulomb(atoms.numbers, NACL, method=method, cutoff=6.0, sr_cutoff=2.0)
    ei, shifts = topology(atoms, 9.0)
    pos = torch.tensor(atoms.positions)
    vec = (pos[ei[1]] - pos[ei[0]] + shifts @ torch.tensor(atoms.cell[:])).requires_grad_(True)
    q = torch.tensor(charges_of(atoms, NACL), requires_grad=True)
    fn = coulomb_dsf if method == "dsf" else coulomb_simple
    e = fn(q, ei, vec, cutoff=6.0, sr_cutoff=2.0)
    gv, gq = torch.autograd.grad(e.sum(), [vec, q])
    long = vec.detach().norm(dim=1) >= 6.0
    assert int(long.sum()) > 100 and torch.all(gv[long] == 0.0)
    # dropping the long edges changes nothing, to the bit (they add exact zeros)
    short = ~long
    e_short = fn(q, ei[:, short], vec[short], cutoff=6.0, sr_cutoff=2.0)
    assert torch.equal(e, e_short)
    gq_short = torch.autograd.grad(e_short.sum(), [q])[0]
    assert torch.allclose(gq, gq_short, rtol=1e-14, atol=1e-14)
    # zero-length edges (an atom and itself in a degenerate list) are ignored, finite gradient
    ei0 = torch.cat([ei, torch.tensor([[0], [0]])], dim=1)
    vec0 = torch.cat([vec.detach(), torch.zeros(1, 3, dtype=torch.float64)]).requires_grad_(True)
    e0 = fn(q.detach(), ei0, vec0, cutoff=6.0, sr_cutoff=2.0)
    (g0,) = torch.autograd.grad(e0.sum(), [vec0])
    assert torch.equal(e0, e.detach()) and torch.all(torch.isfinite(g0)) and torch.all(g0[-1] == 0.0)


# ----------------------------------------------------------------------------- contract behaviour


@pytest.mark.parametrize("method", ["dsf", "simple"])
def test_torchscript_is_bit_identical(method):
    atoms = water_box(2, seed=1)
    module = FixedChargeCoulomb([1, 8], SPCE, method=method, cutoff=9.0, sr_cutoff=4.6)
    scripted = torch.jit.script(module)
    e_e, f_e, s_e = run(module, atoms, [9.0])
    e_s, f_s, s_s = run(scripted, atoms, [9.0])
    assert np.array_equal(e_e, e_s) and np.array_equal(f_e, f_s) and np.array_equal(s_e, s_s)
    # the free functions script on their own as well
    pos = torch.tensor(atoms.positions)
    ei, shifts = topology(atoms, 9.0)
    vec = pos[ei[1]] - pos[ei[0]] + shifts @ torch.tensor(atoms.cell[:])
    q = torch.tensor(charges_of(atoms, SPCE))
    for fn in (coulomb_dsf, coulomb_simple):
        assert torch.equal(torch.jit.script(fn)(q, ei, vec), fn(q, ei, vec))
    # float32: same numbers to single precision
    e32 = run(torch.jit.script(FixedChargeCoulomb([1, 8], SPCE, method=method, cutoff=9.0).float()), atoms, [9.0],
              dtype=torch.float32)[0]
    assert np.abs(e32 - e_e).max() < 1e-5 * max(1.0, np.abs(e_e).max())


def test_export_and_ase_calculator(tmp_path):
    from mlff import MLFFCalculator, export_model

    module = FixedChargeCoulomb([1, 8], SPCE, method="dsf")
    path = tmp_path / "coulomb.pt"
    meta = export_model(module, path)
    assert meta.kind == "coulomb" and meta.locality == "local"
    assert [(nl.name, nl.cutoff, nl.reach) for nl in meta.neighbor_lists] == [("coulomb", 15.0, 0.0)]
    for atoms in (water_box(2, seed=2), molecule("H2O")):
        e, f, s = run(module, atoms, [15.0])
        atoms.calc = MLFFCalculator(path)
        assert abs(atoms.get_potential_energy() - e.sum()) < 1e-10 * max(1.0, abs(e.sum()))
        assert np.abs(atoms.get_potential_energies() - e).max() < 1e-10
        assert np.abs(atoms.get_forces() - f).max() < 1e-10
        if s is not None:
            assert np.abs(atoms.get_stress(voigt=False) - s).max() < 1e-10


def test_contract_info_rebuild_and_refusals():
    module = FixedChargeCoulomb([17, 11], {"Na": 0.9, 17: -0.9}, method="simple", cutoff=12.0, sr_cutoff=4.0,
                                sr_width=1.0, switch_width=1.5)
    info = module.contract_info()
    assert info["kind"] == "coulomb" and info["elements"] == [11, 17] and info["locality"] == "local"
    assert info["neighbor_lists"] == [("coulomb", 12.0, 0.0)] and info["interaction_range"] == 12.0
    assert info["hyperparameters"]["charges_by_element"] == {"Na": 0.9, "Cl": -0.9}
    rebuilt = FixedChargeCoulomb(**info["hyperparameters"])
    atoms = nacl(1)
    assert np.array_equal(run(module, atoms, [12.0])[0], run(rebuilt, atoms, [12.0])[0])
    # JSON turns atomic-number keys into strings: those are accepted too
    assert float(FixedChargeCoulomb([11], {"11": 1.0}).element_charges[0]) == 1.0
    with pytest.raises(ValueError, match="no charge"):
        FixedChargeCoulomb([11, 17], {"Na": 1.0})
    with pytest.raises(ValueError, match="unknown Coulomb method"):
        FixedChargeCoulomb([11], {"Na": 1.0}, method="pppm")
    with pytest.raises(ValueError, match="sr_width"):
        FixedChargeCoulomb([11], {"Na": 1.0}, sr_cutoff=4.0, sr_width=5.0)
    with pytest.raises(ValueError, match="unknown element"):
        FixedChargeCoulomb([11], {"Xx": 1.0})
    with pytest.raises(RuntimeError, match="8"):
        run(module, Atoms("NaO", positions=[[0, 0, 0], [2.0, 0, 0]]), [12.0])
    assert math.isclose(COULOMB_CONSTANT, LAMMPS_QQR2E, rel_tol=3e-8)
