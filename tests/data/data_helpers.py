from __future__ import annotations

import numpy as np
from pytest import approx
from ase.build import bulk
from ase.calculators.emt import EMT

from mlff.data import Record


def emt_records(n: int = 6, repeat=(1, 1, 1), seed: int = 0):
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        a = bulk("Cu", cubic=True).repeat(repeat)
        a.positions += rng.normal(0, 0.05, a.positions.shape)
        a.calc = EMT()
        a.get_potential_energy(), a.get_forces(), a.get_stress()
        out.append(Record.from_atoms(a, id=str(k), info={"teacher": "emt", "k": k}))
    return out




def cli_command(*args: str) -> list:
    """The installed ``mlff`` console script (what users run), else ``python -m mlff.cli``."""
    import sys
    from pathlib import Path

    script = Path(sys.executable).with_name("mlff")
    base = [str(script)] if script.exists() else [sys.executable, "-m", "mlff.cli"]
    return base + [str(a) for a in args]


def cli_env() -> dict:
    """A clean environment: only what Python needs, one thread, and the mlff under test first on the path."""
    import os
    from pathlib import Path

    import mlff

    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),
        "OMP_NUM_THREADS": "1",
        # the same package this test process imported (a checkout may be tested without installing it)
        "PYTHONPATH": str(Path(mlff.__file__).resolve().parents[1]),
    }


def run_cli(*args: str, cwd=None, timeout: float = 300):
    """Run the real CLI in a fresh process; returns the CompletedProcess (text output)."""
    import subprocess

    return subprocess.run(cli_command(*args), cwd=cwd, env=cli_env(), capture_output=True, text=True, timeout=timeout)


def assert_same_records(expected, got, atol: float = 0.0, info: bool = True) -> None:
    """Same structures, labels (to ``atol``; None stays None) and, with ``info``, info values and types."""
    assert len(got) == len(expected)
    for a, b in zip(expected, got):
        np.testing.assert_array_equal(a.numbers, b.numbers)
        np.testing.assert_allclose(b.positions, a.positions, atol=atol, rtol=0)
        np.testing.assert_allclose(b.cell, a.cell, atol=atol, rtol=0)
        np.testing.assert_array_equal(a.pbc, b.pbc)
        assert (b.energy is None) == (a.energy is None)
        if a.energy is not None:
            assert b.energy == approx(a.energy, abs=atol)
        for name in ("forces", "stress", "charges"):
            if getattr(a, name) is None:
                assert getattr(b, name) is None, name
            else:
                np.testing.assert_allclose(getattr(b, name), getattr(a, name), atol=atol, rtol=0, err_msg=name)
        for name in ("charge", "mult", "fidelity"):
            assert getattr(b, name) == getattr(a, name) and type(getattr(b, name)) is type(getattr(a, name)), name
        if not info:
            continue
        assert sorted(b.info) == sorted(a.info)
        for key, value in a.info.items():
            if isinstance(value, np.ndarray):
                np.testing.assert_array_equal(b.info[key], value)
            else:
                assert b.info[key] == value and type(b.info[key]) is type(value), key
