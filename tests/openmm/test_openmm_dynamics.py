"""Dynamics through OpenMM: NVE conserves energy, the minimizer lowers it."""

from __future__ import annotations

import numpy as np
from ase.build import bulk

from mlff.openmm import MLFFForce, run_md


def _cu(reps=3, rattle=0.05, seed=0):
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(reps)
    atoms.rattle(rattle, seed=seed)
    return atoms


def test_nve_conserves_energy(fitted_cu_model):
    from ase.md.velocitydistribution import thermalize_momenta

    atoms = _cu()
    thermalize_momenta(atoms, temperature_K=300, rng=np.random.default_rng(1))
    result = run_md(fitted_cu_model, atoms, steps=200, timestep_fs=1.0, report_interval=10, platform="CPU")
    assert result.backend == "openmm-torch"
    total = result.total_energy
    kinetic_swing = np.ptp(result.kinetic_energy)
    assert kinetic_swing > 0.05  # the atoms really move and exchange energy
    drift = np.abs(total - total[0]).max()
    print(f"NVE: drift {drift:.2e} eV, kinetic swing {kinetic_swing:.2e} eV")
    assert drift < 0.02 * kinetic_swing, (drift, kinetic_swing)
    assert result.atoms.get_positions().shape == atoms.positions.shape


def test_minimizer_lowers_energy(fitted_cu_model):
    import openmm
    from openmm import unit

    atoms = _cu(reps=2, rattle=0.15, seed=3)
    system = openmm.System()
    for m in atoms.get_masses():
        system.addParticle(float(m))
    system.setDefaultPeriodicBoxVectors(*[openmm.Vec3(*(v * 0.1)) for v in np.asarray(atoms.cell)])
    system.addForce(MLFFForce(fitted_cu_model, atoms))
    ctx = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    ctx.setPositions(atoms.positions * 0.1)
    e0 = ctx.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
    openmm.LocalEnergyMinimizer.minimize(ctx, 1.0, 200)
    state = ctx.getState(getEnergy=True, getForces=True)
    e1 = state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
    assert e1 < e0 - 1.0
    fmax = np.abs(state.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer)).max()
    assert fmax < 50.0
