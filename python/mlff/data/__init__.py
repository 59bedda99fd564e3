"""Labelled structures: stores (ASE SQLite, extxyz, HDF5), validation, teachers, labelling.

The canonical store is an ASE SQLite database; extxyz is the exchange format and the
HDF5 store (grouped by atom count) is for large sets. Every reader returns
:class:`Record` objects, so validation and training never care where data came from.
"""

from .records import Record
from .store import (
    DatasetError,
    export_extxyz,
    import_extxyz,
    read_records,
    write_records,
)
from .validate import ValidationReport, validate_records

__all__ = [
    "Record",
    "DatasetError",
    "ValidationReport",
    "read_records",
    "write_records",
    "import_extxyz",
    "export_extxyz",
    "validate_records",
]
