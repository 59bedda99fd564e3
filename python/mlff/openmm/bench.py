"""OpenMM timings for `mlff bench --engines openmm-torch openmm-python`.

Seconds per VelocityVerlet step on OpenMM's CPU platform with the whole system as ML
atoms: the step, the neighbour list built inside the module, and OpenMM's own work.
"""

from __future__ import annotations

import time

from .md import _context, system_from_atoms


def _time(atoms, model_path: str, steps: int, backend: str, platform: str = "CPU", warmup: int = 3) -> float:
    import openmm

    system, pos, force = system_from_atoms(model_path, atoms, backend=backend)
    integrator = openmm.VerletIntegrator(0.001)
    ctx = _context(system, pos, platform, integrator)
    # TorchScript's profiling executor optimises the module only after a few calls
    integrator.step(warmup)
    t0 = time.perf_counter()
    integrator.step(steps)
    # the state read forces the platform to finish the queued steps
    ctx.getState(getEnergy=True)
    return (time.perf_counter() - t0) / steps


def time_torchforce(atoms, model_path: str, steps: int) -> float:
    """Seconds per MD step with the openmm-torch TorchForce backend (CPU platform)."""
    return _time(atoms, model_path, steps, "torch")


def time_pythonforce(atoms, model_path: str, steps: int) -> float:
    """Seconds per MD step with the openmm.PythonForce backend (CPU platform)."""
    return _time(atoms, model_path, steps, "python")
