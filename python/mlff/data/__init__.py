"""Labelled structures: stores (ASE SQLite, extxyz, HDF5), validation, teachers, labelling.

The canonical store is an ASE SQLite database; extxyz is the exchange format and the
HDF5 store (grouped by atom count) is for large sets. Every reader returns
:class:`Record` objects, so validation and training never care where data came from.
Records carry a fidelity tag (level of theory) and optional labels, and :mod:`.sae`
fits the self-atomic energies of each fidelity.
"""

from .errors import DatasetError, MissingPackageError
from .identity import find_duplicate_identities, refuse_duplicate_identities, sample_identity
from .records import Record
from .store import (
    convert,
    export_extxyz,
    import_extxyz,
    read_records,
    write_records,
)
from .sae import fit_sae, fit_sae_by_fidelity, read_sae_yaml, write_sae_yaml
from .validate import ValidationReport, validate_records

__all__ = [
    "Record",
    "DatasetError",
    "MissingPackageError",
    "ValidationReport",
    "read_records",
    "write_records",
    "convert",
    "import_extxyz",
    "export_extxyz",
    "validate_records",
    "sample_identity",
    "find_duplicate_identities",
    "refuse_duplicate_identities",
    "fit_sae",
    "fit_sae_by_fidelity",
    "read_sae_yaml",
    "write_sae_yaml",
]
