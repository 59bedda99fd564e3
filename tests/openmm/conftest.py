"""OpenMM tests run on the real OpenMM (Reference and CPU platforms); helpers live in
``omm_helpers.py`` (not a package: a ``tests/openmm/__init__.py`` would shadow ``openmm``)."""

import pytest

pytest.importorskip("openmm")
