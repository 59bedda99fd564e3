"""Helpers for the OpenMM tests: systems built from ase.Atoms and the ASE reference."""

from __future__ import annotations

import numpy as np
from ase import Atoms, units

#: kJ/mol per eV, the factor MLFFForce uses (ASE's constants)
KJ_PER_EV = 1.0 / (units.kJ / units.mol)


def ase_reference(model_path, atoms: Atoms):
    """Energy (kJ/mol) and forces (kJ/mol/nm) from the ASE calculator, the reference engine."""
    from mlff import MLFFCalculator

    a = atoms.copy()
    a.calc = MLFFCalculator(model_path)
    return a.get_potential_energy() * KJ_PER_EV, a.get_forces() * KJ_PER_EV * 10.0


def openmm_system(atoms: Atoms, force, extra_particles: int = 0):
    """A System with one particle per atom (plus ``extra_particles`` of mass 1) and ``force``."""
    import openmm

    system = openmm.System()
    for m in atoms.get_masses():
        system.addParticle(float(m))
    for _ in range(extra_particles):
        system.addParticle(1.0)
    if atoms.pbc.all():
        system.setDefaultPeriodicBoxVectors(*[openmm.Vec3(*(v * 0.1)) for v in np.asarray(atoms.cell)])
    system.addForce(force)
    return system


def energy_forces(system, positions_nm, platform: str, box=None, groups=None):
    """(energy kJ/mol, forces kJ/mol/nm) of ``system`` at ``positions_nm``."""
    import openmm
    from openmm import unit

    ctx = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName(platform))
    if box is not None:
        ctx.setPeriodicBoxVectors(*[openmm.Vec3(*v) for v in box])
    ctx.setPositions(positions_nm)
    kw = {} if groups is None else {"groups": groups}
    st = ctx.getState(getEnergy=True, getForces=True, **kw)
    return (
        st.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole),
        np.asarray(st.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer)),
    )


def molecule_atoms() -> Atoms:
    from ase.build import molecule

    a = molecule("CH3CONH2")  # acetamide: H, C, N, O
    a.rattle(0.05, seed=3)
    a.positions += 2.0
    return a


def periodic_atoms() -> Atoms:
    """A small H/C/N/O liquid-like box (random positions, no overlaps)."""
    rng = np.random.default_rng(7)
    cell = np.eye(3) * 9.0
    pos = _spread(rng, 36, lambda n: rng.uniform(0, 9.0, (n, 3)), cell)
    z = rng.choice([1, 6, 7, 8], size=len(pos))
    # unwrapped coordinates, as OpenMM gives them after a while
    pos[::5] += np.array([9.0, -18.0, 27.0])
    return Atoms(numbers=z, positions=pos, cell=cell, pbc=True)


def triclinic_atoms() -> Atoms:
    """A triclinic box in OpenMM's reduced form, smaller than twice the cutoff along c."""
    rng = np.random.default_rng(11)
    cell = np.array([[9.0, 0.0, 0.0], [3.0, 8.5, 0.0], [-2.5, 3.0, 7.5]])
    pos = _spread(rng, 30, lambda n: rng.uniform(0, 1, (n, 3)) @ cell, cell)
    z = rng.choice([1, 6, 7, 8], size=len(pos))
    return Atoms(numbers=z, positions=pos, cell=cell, pbc=True)


def _spread(rng, n, draw, cell, min_dist=0.9):
    """``n`` random points with no two (or periodic images) closer than ``min_dist`` Å."""
    from mlff.neighbors import neighbor_list

    pos = draw(n)
    for _ in range(200):
        ei, _ = neighbor_list(pos, cell, True, min_dist)
        if ei.shape[1] == 0:
            return pos
        bad = np.unique(ei[0])
        pos[bad] = draw(len(bad))
    raise RuntimeError("could not place the atoms")
