"""Fixtures of the pacemaker tests (helpers in pacemaker_helpers.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pacemaker_helpers import PYACE_REASON, cu_records, pacemaker_installed, write_store


@pytest.fixture(scope="session")
def need_pacemaker() -> None:
    pytest.importorskip("pyace", reason=PYACE_REASON)
    if not pacemaker_installed():
        pytest.skip(PYACE_REASON + " (no pacemaker / pace_yaml2yace executables)")


@pytest.fixture(scope="session")
def cu_db(tmp_path_factory) -> Path:
    return write_store(tmp_path_factory.mktemp("cu") / "cu.db", cu_records(48))
