"""mlff: machine-learned interatomic potentials from Python training to LAMMPS, OpenMM and ASE.

Names are resolved on first use so that importing a light subpackage (the openmm-ml
registration, the LAMMPS entry point helpers) does not import torch.
"""

__version__ = "0.1.0"

from ._lazy import lazy_getattr  # noqa: E402

_EXPORTS = {
    "CONTRACT_VERSION": "contract",
    "LoadedModel": "contract",
    "MLFFModelError": "contract",
    "ModelMetadata": "contract",
    "evaluate": "contract",
    "export_model": "contract",
    "load_model": "contract",
    "read_metadata": "contract",
    "MLFFCalculator": "calculator",
}

__all__ = ["__version__", *sorted(_EXPORTS)]

__getattr__ = lazy_getattr(__name__, _EXPORTS)
