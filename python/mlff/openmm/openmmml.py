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
    ``device``, ``cuda_graphs``, ``static_shapes``, ``positions``, ``box_vectors``, and
    the model's system inputs ``charge`` (total charge of the ML atoms) and ``fidelity``.
    The model's metadata is checked when the potential is created, so a missing or
    corrupt file is reported at once, and the topology's elements when the System is.
    """

    _FORCE_KEYWORDS = ("backend", "device", "cuda_graphs", "static_shapes", "positions", "box_vectors",
                       "static_capacity_factor", "charge", "fidelity")

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
        if self.metadata is not None:
            # an unknown fidelity or a charge the model cannot take is refused now, not at createSystem
            self.metadata.fidelity_index(self.options.get("fidelity"))
            self.metadata.check_charge(self.options.get("charge", 0.0), "MLPotential('mlff'): ")

    def getMLLongRange(self) -> bool:
        return False  # message passing within the cutoff * layers range

    def getSupportedEmbeddings(self) -> list:
        # claimed only to see `interpolate` before delegating to openmm-ml's own embedding
        return ["mechanical"]

    def createMixedSystem(self, topology, system, atoms, forceGroup, interpolate, embedding, returnInfo=False, **args):
        """openmm-ml's mechanical embedding, with one adjustment for ``interpolate=True``.

        Interpolation deep-copies the ML forces into a CustomCVForce; copying a
        TorchForce goes through XML, and reading a TorchForce back from XML segfaults
        with openmm 8.6.x. The PythonForce backend copies safely (its callback pickles),
        so it is used there, with a warning, unless the caller chose a backend.
        """
        import logging

        from openmmml.mlpotential import MLPotential

        if interpolate and "backend" not in args and "backend" not in self.options:
            logging.getLogger("mlff.openmm").warning(
                "mlff: interpolate=True copies the ML force, which crashes for TorchForce with "
                "openmm 8.6.x; using the PythonForce backend for this System"
            )
            args = {**args, "backend": "python"}
        generic = MLPotential._embeddingFactories[embedding].createEmbedding(embedding)
        return generic.createMixedSystem(
            self, topology, system, atoms, forceGroup, interpolate, returnInfo=returnInfo, **args
        )

    def addForces(
        self,
        topology: openmm.app.Topology,
        system: openmm.System,
        atoms: Optional[Iterable[int]],
        forceGroup: int,
        **args,
    ):
        from .force import MLFFForce

        # createMixedSystem passes every keyword of the embedding here too: keep only ours
        options = {**self.options, **{k: v for k, v in args.items() if k in self._FORCE_KEYWORDS}}
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
