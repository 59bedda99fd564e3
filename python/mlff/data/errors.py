"""The one error type of the data package (a ``ValueError``, so the CLI reports it as a usage error)."""

from __future__ import annotations


class DatasetError(ValueError):
    """A dataset is missing, unreadable, invalid, too small or would be corrupted by a write."""
