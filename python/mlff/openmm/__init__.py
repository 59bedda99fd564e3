"""OpenMM integration: ``MLFFForce`` (openmm-torch TorchForce, PythonForce fallback),
openmm-ml registration (``MLPotential("mlff", modelPath=...)``) and small helpers.

Importing this package is cheap: OpenMM, openmm-torch and TorchScript compilation are
only touched when a force is built (openmm-ml imports the registration module of every
installed potential whenever ``openmmml`` is imported).
"""

from __future__ import annotations

from .._lazy import lazy_getattr

_EXPORTS = {
    "MLFFForce": "force",
    "available_backend": "force",
    "backend_of": "force",
    "check_elements": "force",
    "save_torchforce_module": "force",
    "TORCH_BACKEND": "force",
    "PYTHON_BACKEND": "force",
    "MLFFOpenMMModule": "module",
    "run_md": "md",
    "evaluate_atoms": "md",
    "system_from_atoms": "md",
    "MDResult": "md",
    "ExtrapolationGradeReporter": "grade",
    "ExtrapolationError": "grade",
    "UncertaintyReporter": "grade",
}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_getattr(__name__, _EXPORTS)
