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


def _place(a, b, c, bond, angle_deg, torsion_deg):
    """Position of atom d with |cd| = bond, angle bcd, torsion abcd (natural extension of reference frame)."""
    angle, torsion = np.radians(angle_deg), np.radians(torsion_deg)
    bc = c - b
    bc /= np.linalg.norm(bc)
    n = np.cross(b - a, bc)
    n /= np.linalg.norm(n)
    m = np.cross(n, bc)
    d_local = bond * np.array([-np.cos(angle), np.sin(angle) * np.cos(torsion), np.sin(angle) * np.sin(torsion)])
    return c + d_local[0] * bc + d_local[1] * m + d_local[2] * n


def alanine_dipeptide_pdb(path) -> None:
    """Write heavy atoms of ACE-ALA-NME (standard bond geometry, PPII backbone) as PDB.

    Hydrogens are added by openmm.app.Modeller from amber14's templates.
    """
    ch3 = np.array([0.0, 0.0, 0.0])
    c0 = np.array([1.51, 0.0, 0.0])
    n1 = c0 + 1.33 * np.array([-np.cos(np.radians(116)), np.sin(np.radians(116)), 0.0])
    ca1 = _place(ch3, c0, n1, 1.46, 122, 180)
    c1 = _place(c0, n1, ca1, 1.52, 111, -75)
    n2 = _place(n1, ca1, c1, 1.33, 116, 145)
    c2 = _place(ca1, c1, n2, 1.45, 122, 180)
    o0 = _place(ca1, n1, c0, 1.23, 123, 0)
    o1 = _place(c2, n2, c1, 1.23, 123, 0)
    cb = _place(c1, n1, ca1, 1.53, 110, 122.5)
    atoms = [
        ("CH3", "ACE", 1, "C", ch3), ("C", "ACE", 1, "C", c0), ("O", "ACE", 1, "O", o0),
        ("N", "ALA", 2, "N", n1), ("CA", "ALA", 2, "C", ca1), ("C", "ALA", 2, "C", c1),
        ("O", "ALA", 2, "O", o1), ("CB", "ALA", 2, "C", cb),
        ("N", "NME", 3, "N", n2), ("C", "NME", 3, "C", c2),
    ]
    lines = []
    for k, (name, res, resid, element, xyz) in enumerate(atoms, start=1):
        lines.append(
            f"ATOM  {k:5d} {name:<4s} {res:3s} A{resid:4d}    {xyz[0]:8.3f}{xyz[1]:8.3f}{xyz[2]:8.3f}"
            f"  1.00  0.00          {element:>2s}"
        )
    lines += ["TER", "END"]
    with open(path, "w") as fh:
        fh.write("\n".join(lines) + "\n")
