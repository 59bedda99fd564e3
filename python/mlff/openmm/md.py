"""Small entry points for scripts and the demo: ase.Atoms in, OpenMM numbers out (eV, Å).

- :func:`system_from_atoms`: an OpenMM System + positions for an ``ase.Atoms``;
- :func:`evaluate_atoms`: energy and forces of one structure through OpenMM;
- :func:`run_md`: a short NVE (or Langevin) run with per-step energies and timing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple

import numpy as np

from ..loading import ModelSpec

def _ev_per_kj_mol() -> float:
    from ..units import EV_IN_KJ_PER_MOL

    return 1.0 / EV_IN_KJ_PER_MOL


def system_from_atoms(
    model: ModelSpec,
    atoms,
    backend: str = "auto",
    **force_options: Any,
):
    """``(system, positions_nm, force)`` for an ``ase.Atoms`` modelled entirely by ``model``.

    Periodic in all three directions or none (OpenMM has no mixed boundaries). OpenMM
    wants its box in reduced form (a along x, b in the xy plane); a cell that is not is
    rotated into it, and positions with it (energies are unchanged, force vectors
    rotate: :func:`evaluate_atoms` rotates them back).
    """
    import openmm

    from .force import MLFFForce

    if not np.isfinite(atoms.positions).all() or not np.isfinite(np.asarray(atoms.cell)).all():
        raise ValueError("the structure has non-finite positions or cell vectors")
    pbc = atoms.get_pbc()
    if pbc.any() and not pbc.all():
        raise ValueError(f"OpenMM boxes are periodic in all three directions or none; got pbc={pbc.tolist()}")
    positions = atoms.get_positions()
    rotation = np.eye(3)
    system = openmm.System()
    for mass in atoms.get_masses():
        system.addParticle(float(mass))
    if pbc.all():
        cell, rotation = _reduced_cell(np.asarray(atoms.get_cell()))
        positions = positions @ rotation.T
        system.setDefaultPeriodicBoxVectors(*[openmm.Vec3(*(v * 0.1)) for v in cell])
    force = MLFFForce(
        model, atoms.get_atomic_numbers(), periodic=bool(pbc.all()), backend=backend, **force_options
    )
    system.addForce(force)
    system.mlff_rotation = rotation
    return system, positions * 0.1, force


def _reduced_cell(cell: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """OpenMM's reduced box (a along x, b in xy, c with positive z) and the rotation to it.

    Only rotates: the lattice is the same, so no image or energy changes. A cell that
    is already in OpenMM's form comes back unchanged (rotation = identity).
    """
    a, b, c = cell
    ax = np.linalg.norm(a)
    e1 = a / ax
    b_perp = b - np.dot(b, e1) * e1
    e2 = b_perp / np.linalg.norm(b_perp)
    e3 = np.cross(e1, e2)
    rotation = np.stack([e1, e2, e3])  # rows: new axes in old coordinates
    new = cell @ rotation.T
    if new[2, 2] < 0:
        raise ValueError("the cell is left-handed; OpenMM needs a right-handed box")
    # OpenMM also wants |b_x| <= a_x/2 etc.; adding lattice vectors keeps the same lattice
    new[2] -= np.round(new[2, 1] / new[1, 1]) * new[1]
    new[2] -= np.round(new[2, 0] / new[0, 0]) * new[0]
    new[1] -= np.round(new[1, 0] / new[0, 0]) * new[0]
    new[np.abs(new) < 1e-12] = 0.0
    return new, rotation


def _context(system, positions_nm, platform: str, integrator=None, threads: Optional[int] = None):
    import openmm

    integrator = integrator or openmm.VerletIntegrator(0.001)
    plat = openmm.Platform.getPlatformByName(platform)
    properties = {}
    if threads is not None and platform == "CPU":
        properties["Threads"] = str(threads)
    ctx = openmm.Context(system, integrator, plat, properties)
    ctx.setPositions(positions_nm)
    return ctx


def evaluate_atoms(
    model: ModelSpec,
    atoms,
    backend: str = "auto",
    platform: str = "Reference",
    **force_options: Any,
) -> Dict[str, Any]:
    """Energy (eV) and forces (eV/Å) of ``atoms`` computed by OpenMM with ``MLFFForce``.

    Also ``energies`` (eV per atom) and the model's named outputs (e.g. ``charges``),
    evaluated by the force's own module on the positions and box the OpenMM Context holds.
    ``force_options`` go to :func:`MLFFForce` (``charge=``, ``fidelity=``, ...).
    """
    import torch
    from openmm import unit

    system, pos, force = system_from_atoms(model, atoms, backend=backend, **force_options)
    ctx = _context(system, pos, platform)
    state = ctx.getState(getEnergy=True, getForces=True, getPositions=True)
    k = _ev_per_kj_mol()
    energy = state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole) * k
    forces = np.asarray(state.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer))
    forces = forces * k / 10.0 @ system.mlff_rotation
    result: Dict[str, Any] = {"energy": energy, "forces": forces, "backend": force.mlff_backend, "platform": platform}
    positions = torch.from_numpy(np.asarray(state.getPositions(asNumpy=True).value_in_unit(unit.nanometer)))
    box = None
    if atoms.get_pbc().all():
        box = torch.from_numpy(np.asarray(state.getPeriodicBoxVectors(asNumpy=True).value_in_unit(unit.nanometer)))
    with torch.enable_grad():
        outputs = force.mlff_module.to("cpu").outputs(positions, box)
    for key, value in outputs.items():
        result[key] = value.numpy()
    if "member_forces" in result:
        # vectors, like the forces: back from OpenMM's rotated frame ([N, M, 3] @ R)
        result["member_forces"] = result["member_forces"] @ system.mlff_rotation
    return result


@dataclass
class MDResult:
    """Per-reported-step energies (eV), times (ps) and wall time of an OpenMM run."""

    backend: str
    platform: str
    steps: int
    timestep_fs: float
    time_ps: np.ndarray
    potential_energy: np.ndarray
    kinetic_energy: np.ndarray
    seconds_per_step: float
    atoms: Any = None
    extra: Dict[str, Any] = field(default_factory=dict)

    @property
    def total_energy(self) -> np.ndarray:
        return self.potential_energy + self.kinetic_energy


def run_md(
    model: ModelSpec,
    atoms,
    steps: int,
    timestep_fs: float = 1.0,
    temperature: Optional[float] = None,
    friction_per_ps: float = 1.0,
    report_interval: int = 1,
    backend: str = "auto",
    platform: str = "CPU",
    seed: int = 0,
    threads: Optional[int] = None,
) -> MDResult:
    """Run ``steps`` of MD on ``atoms`` in OpenMM with ``MLFFForce``.

    ``temperature=None``: NVE (VerletIntegrator), starting from the velocities of
    ``atoms``. With a temperature: Langevin (LangevinMiddleIntegrator), velocities
    drawn at that temperature. Energies are reported every ``report_interval`` steps
    (step 0 included); ``seconds_per_step`` is the wall time of the stepping alone.
    ``result.atoms`` holds the final positions (and cell) in the frame of ``atoms``.
    """
    import openmm
    from openmm import unit

    from ..units import NM_IN_ANGSTROM, PS_IN_ASE_TIME

    if steps < 0 or report_interval < 1:
        raise ValueError("steps must be >= 0 and report_interval >= 1")
    system, pos, force = system_from_atoms(model, atoms, backend=backend)
    dt_ps = timestep_fs * 1e-3
    if temperature is None:
        integrator = openmm.VerletIntegrator(dt_ps)
    else:
        integrator = openmm.LangevinMiddleIntegrator(temperature, friction_per_ps, dt_ps)
        integrator.setRandomNumberSeed(seed)
    ctx = _context(system, pos, platform, integrator, threads)
    rotation = system.mlff_rotation
    if temperature is None:
        # ASE velocities are in Å per ASE time unit; OpenMM wants nm/ps
        v = atoms.get_velocities() @ rotation.T * PS_IN_ASE_TIME / NM_IN_ANGSTROM
        ctx.setVelocities(v)
    else:
        ctx.setVelocitiesToTemperature(temperature, seed)

    k = _ev_per_kj_mol()
    times, pot, kin = [], [], []
    wall = 0.0

    def report(step: int) -> None:
        st = ctx.getState(getEnergy=True)
        times.append(step * dt_ps)
        pot.append(st.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole) * k)
        kin.append(st.getKineticEnergy().value_in_unit(unit.kilojoule_per_mole) * k)

    report(0)
    done = 0
    while done < steps:
        n = min(report_interval, steps - done)
        t0 = time.perf_counter()
        integrator.step(n)
        wall += time.perf_counter() - t0
        done += n
        report(done)

    st = ctx.getState(getPositions=True, getVelocities=True)
    final = atoms.copy()
    final.set_positions(np.asarray(st.getPositions(asNumpy=True).value_in_unit(unit.angstrom)) @ rotation)
    vel = np.asarray(st.getVelocities(asNumpy=True).value_in_unit(unit.nanometer / unit.picosecond))
    final.set_velocities(vel @ rotation / PS_IN_ASE_TIME * NM_IN_ANGSTROM)
    return MDResult(
        backend=force.mlff_backend,
        platform=platform,
        steps=steps,
        timestep_fs=timestep_fs,
        time_ps=np.asarray(times),
        potential_energy=np.asarray(pot),
        kinetic_energy=np.asarray(kin),
        seconds_per_step=wall / max(steps, 1),
        atoms=final,
    )
