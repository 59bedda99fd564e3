from __future__ import annotations

import pytest

from data_helpers import emt_records


@pytest.fixture
def records():
    return emt_records()
