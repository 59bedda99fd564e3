"""ZBL term: agreement with LAMMPS' ``pair_style zbl inner outer``; exact derivatives;
continuity at the outer cutoff; contract behaviour (long edges, TorchScript)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms

from physics_helpers import lammps_job, run_lammps

from mlff.neighbors import neighbor_list
from mlff.physics import ZBL
from mlff.physics.zbl import zbl_pair

INNER, OUTER = 1.2, 2.4


def evaluate(module, atoms: Atoms, skin: float = 0.7, dtype=torch.float64):
    """Per-atom energies and forces (autograd through the edge vectors), list with a skin."""
    ei, shifts = neighbor_list(atoms.positions, atoms.cell[:], atoms.pbc, module.neighbor_lists()[0][1] + skin)
    pos = torch.tensor(atoms.positions, dtype=torch.float64, requires_grad=True)
    ei_t = torch.as_tensor(ei)
    vec = pos[ei_t[1]] - pos[ei_t[0]] + torch.as_tensor(shifts @ atoms.cell[:], dtype=torch.float64)
    e = module(torch.as_tensor(atoms.numbers), [ei_t], [vec.to(dtype)], len(atoms), {})["energies"]
    (g,) = torch.autograd.grad(e.sum(), [pos])
    return e.detach().double().numpy(), -g.numpy()


def close_pairs():
    """Dimers inside the inner radius, in the switching shell and beyond the cutoff."""
    out = []
    for pair in ("HH", "OCu", "CuCu", "HO"):
        for r in (0.35, 0.8, 1.1, 1.5, 2.0, 2.35, 2.6):
            out.append(Atoms(pair, positions=[[0.0, 0.0, 0.0], [r * 0.6, r * 0.48, r * 0.64]]))
    return out


def random_cluster(seed: int = 0) -> Atoms:
    rng = np.random.default_rng(seed)
    atoms = Atoms("H3O3Cu2", positions=rng.uniform(0.0, 3.2, size=(8, 3)))
    return atoms


# ----------------------------------------------------------------------------- vs LAMMPS

def zbl_job(atoms: Atoms, inner: float, outer: float):
    zs = sorted(set(int(z) for z in atoms.numbers))
    pair = [f"pair_style zbl {inner} {outer}"]
    for a, za in enumerate(zs):
        for b, zb in enumerate(zs):
            if b >= a:
                pair.append(f"pair_coeff {a + 1} {b + 1} {za:.1f} {zb:.1f}")
    symbols = [Atoms(numbers=[zz]).get_chemical_symbols()[0] for zz in zs]
    return lammps_job(atoms, pair, symbols)


def test_matches_lammps_pair_zbl(tmp_path):
    systems = close_pairs() + [random_cluster(0), random_cluster(1)]
    results = run_lammps([zbl_job(a, INNER, OUTER) for a in systems], tmp_path)
    worst_e = worst_f = 0.0
    for atoms, res in zip(systems, results):
        module = ZBL(atoms.numbers, inner=INNER, outer=OUTER)
        e, f = evaluate(module, atoms)
        worst_e = max(worst_e, abs(e.sum() - res["energy"]), np.abs(e - res["energies"]).max())
        worst_f = max(worst_f, np.abs(f - np.asarray(res["forces"])).max())
    assert worst_e < 1e-8
    assert worst_f < 1e-7
    assert any(abs(r["energy"]) > 100.0 for r in results)  # the close pairs are really repulsive


# ----------------------------------------------------------------------------- own properties


def test_forces_are_derivatives():
    atoms = random_cluster(2)
    module = ZBL(atoms.numbers, inner=INNER, outer=OUTER)
    _, f = evaluate(module, atoms)
    h = 1e-5
    f_num = np.zeros_like(f)
    for i in range(len(atoms)):
        for c in range(3):
            vals = []
            for sign in (1, -1):
                a = atoms.copy()
                a.positions[i, c] += sign * h
                vals.append(evaluate(module, a)[0].sum())
            f_num[i, c] = -(vals[0] - vals[1]) / (2 * h)
    assert np.abs(f - f_num).max() < 1e-6 * max(1.0, np.abs(f).max())


def test_switch_zeroes_energy_force_and_curvature_at_outer():
    module = ZBL([8, 29], inner=INNER, outer=OUTER)

    def pair(r):
        v = torch.tensor([[r, 0.0, 0.0], [-r, 0.0, 0.0]], dtype=torch.float64, requires_grad=True)
        e = module(torch.tensor([8, 29]), [torch.tensor([[0, 1], [1, 0]])], [v], 2, {})["energies"].sum()
        (g,) = torch.autograd.grad(e, [v])
        return e.detach(), g[0, 0] - g[1, 0]  # each directed edge carries half of dE/dr

    e, de = pair(OUTER)
    assert float(e) == 0.0 and float(de) == 0.0
    e1, de1 = pair(OUTER - 1e-3)
    e2, de2 = pair(OUTER - 2e-3)
    assert 0.0 < float(e1) < 1e-7 * zbl_pair(OUTER, 8.0, 29.0)[0]
    assert 7.5 < float(e2) / float(e1) < 8.5  # E ~ (outer - r)^3
    assert 3.8 < float(de2) / float(de1) < 4.2  # F ~ (outer - r)^2
    # below the inner radius the switch is the constant C: force is the bare ZBL force
    _, de_in = pair(0.9)
    assert float(de_in) == pytest.approx(zbl_pair(0.9, 8.0, 29.0)[1], rel=1e-12)
    e_far, de_far = pair(OUTER + 0.3)
    assert float(e_far) == 0.0 and float(de_far) == 0.0


def test_long_edges_zero_gradient_and_torchscript():
    atoms = random_cluster(3)
    module = ZBL(atoms.numbers, inner=INNER, outer=OUTER)
    ei, _ = neighbor_list(atoms.positions, np.zeros((3, 3)), False, 8.0)
    vec = torch.as_tensor(atoms.positions[ei[1]] - atoms.positions[ei[0]]).requires_grad_(True)
    z = torch.as_tensor(atoms.numbers)
    e = module(z, [torch.as_tensor(ei)], [vec], len(atoms), {})["energies"]
    (g,) = torch.autograd.grad(e.sum(), [vec])
    long = vec.detach().norm(dim=1) >= OUTER
    assert int(long.sum()) > 10 and torch.all(g[long] == 0.0)
    scripted = torch.jit.script(module)
    e_s, f_s = evaluate(scripted, atoms)
    e_e, f_e = evaluate(module, atoms)
    assert np.array_equal(e_s, e_e) and np.array_equal(f_s, f_e)
    e32, f32 = evaluate(torch.jit.script(ZBL(atoms.numbers, INNER, OUTER).float()), atoms, dtype=torch.float32)
    assert np.abs(e32 - e_e).max() < 1e-5 * max(1.0, np.abs(e_e).max())


def test_contract_info_and_rebuild():
    module = ZBL([29, 1], inner=1.0, outer=2.0)
    info = module.contract_info()
    assert info["kind"] == "zbl" and info["elements"] == [1, 29]
    assert info["neighbor_lists"] == [("zbl", 2.0, 0.0)] and info["interaction_range"] == 2.0
    assert info["locality"] == "local"
    rebuilt = ZBL(**info["hyperparameters"])
    atoms = Atoms("CuH", positions=[[0, 0, 0], [1.3, 0.2, 0]])
    assert np.array_equal(evaluate(module, atoms)[0], evaluate(rebuilt, atoms)[0])
    with pytest.raises(ValueError, match="inner < outer"):
        ZBL([1], inner=2.0, outer=1.0)
    with pytest.raises(RuntimeError, match="8"):
        evaluate(module, Atoms("OH", positions=[[0, 0, 0], [1.0, 0, 0]]))
