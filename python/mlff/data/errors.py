"""The error types of the data package: both are also what the CLI reports as a plain message."""

from __future__ import annotations


class DatasetError(ValueError):
    """A dataset is missing, unreadable, invalid, too small or would be corrupted by a write."""


class MissingPackageError(ImportError, RuntimeError):
    """An optional package (a teacher's program) is not installed.

    An ImportError for Python callers; also a RuntimeError, which the CLI reports as a
    message instead of a traceback.
    """
