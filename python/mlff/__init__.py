"""mlff: machine-learned interatomic potentials from Python training to LAMMPS, OpenMM and ASE."""

__version__ = "0.1.0"

from .contract import (  # noqa: E402
    CONTRACT_VERSION,
    LoadedModel,
    MLFFModelError,
    ModelMetadata,
    evaluate,
    export_model,
    load_model,
    read_metadata,
)
from .calculator import MLFFCalculator  # noqa: E402

__all__ = [
    "__version__",
    "CONTRACT_VERSION",
    "LoadedModel",
    "MLFFCalculator",
    "MLFFModelError",
    "ModelMetadata",
    "evaluate",
    "export_model",
    "load_model",
    "read_metadata",
]
