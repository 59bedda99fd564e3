"""openmm-ml registration: ``MLPotential("mlff", modelPath="model.pt")``.

openmm-ml imports this module (through the ``openmmml.potentials`` entry point) every
time ``openmmml`` is imported, whether or not mlff is used, so it imports nothing heavy
at module level: torch and the model are loaded only when a System is created.
"""

from __future__ import annotations

from typing import Iterable, Optional

import openmm
import openmm.app
from openmmml.mlpotential import MLPotentialImpl, MLPotentialImplFactory


class MLFFPotentialImplFactory(MLPotentialImplFactory):
    """Creates :class:`MLFFPotentialImpl` for ``MLPotential("mlff", modelPath=...)``."""

    def createImpl(self, name: str, modelPath: Optional[str] = None, **args) -> MLPotentialImpl:
        if modelPath is None:
            raise ValueError(
                'MLPotential("mlff") needs the exported model: MLPotential("mlff", modelPath="model.pt")'
            )
        return MLFFPotentialImpl(name, modelPath, **args)


class MLFFPotentialImpl(MLPotentialImpl):
    """Adds an :func:`mlff.openmm.MLFFForce` for the ML atoms.

    Constructor keywords (given to ``MLPotential``) and ``createSystem`` /
    ``createMixedSystem`` keywords are both passed on to ``MLFFForce``: ``backend``,
    ``device``, ``cuda_graphs``, ``static_shapes``, ``positions``, ``box_vectors``.
    The model's metadata is checked when the potential is created, so a missing or
    corrupt file is reported at once, and the topology's elements when the System is.
    """

    _FORCE_KEYWORDS = ("backend", "device", "cuda_graphs", "static_shapes", "positions", "box_vectors",
                       "static_capacity_factor")

    def __init__(self, name: str, modelPath: str, **args):
        from ..contract import read_metadata
        from ..loading import _is_torchscript_export

        self.name = name
        self.modelPath = str(modelPath)
        unknown = sorted(set(args) - set(self._FORCE_KEYWORDS))
        if unknown:
            raise ValueError(f"MLPotential('mlff') does not accept {unknown}; it accepts {list(self._FORCE_KEYWORDS)}")
        self.options = dict(args)
        from pathlib import Path

        path = Path(self.modelPath)
        # exported files are validated now; checkpoints are checked when loaded
        self.metadata = read_metadata(path) if (not path.exists() or path.suffix == ".pt" or _is_torchscript_export(path)) else None

    def getMLLongRange(self) -> bool:
        return False  # message passing within the cutoff * layers range

    def addForces(
        self,
        topology: openmm.app.Topology,
        system: openmm.System,
        atoms: Optional[Iterable[int]],
        forceGroup: int,
        **args,
    ):
        from .force import MLFFForce

        unknown = sorted(set(args) - set(self._FORCE_KEYWORDS))
        if unknown:
            raise ValueError(f"mlff: unknown keyword arguments {unknown}; accepted: {list(self._FORCE_KEYWORDS)}")
        options = {**self.options, **args}
        atom_list = None if atoms is None else [int(a) for a in atoms]
        force = MLFFForce(
            self.modelPath,
            topology,
            atoms=atom_list,
            periodic=topology.getPeriodicBoxVectors() is not None,
            force_group=forceGroup,
            **options,
        )
        system.addForce(force)
