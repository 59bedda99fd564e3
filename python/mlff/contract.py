"""The exported-model contract: the only module that knows how engines talk to models.

Inputs a model receives (engines build them; the model never sees positions or cells):

- ``atomic_numbers``  ``[N]`` int64
- ``edge_index``      ``[2, E]`` int64, row 0 the centre atom i, row 1 the neighbour j
- ``edge_vectors``    ``[E, 3]`` r_j - r_i including periodic images, model dtype, Å
- ``n_local``         int: atoms ``>= n_local`` are ghosts and contribute no energy

Edges may be longer than the cutoff (LAMMPS passes its list with the skin); a model
must give them exactly zero weight.

The model returns ``Dict[str, Tensor]`` with at least ``"energies"`` ``[N]`` in eV.
Everything else follows from the gradient with respect to the edge vectors
(``g = dE/dr_ij``): ``F_i += g``, ``F_j -= g``, ``W = -sum r_ij (x) g``. That single
rule gives forces on ghosts and images, the stress and the per-atom virial, and it is
implemented once here, in :func:`evaluate`, which is TorchScript-compatible so the
OpenMM module can call it too. The LAMMPS plugin applies the same rule in C++.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any, Dict, Iterable, List, Literal, Optional, Tuple

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from . import __version__
from .atomic import atomic_write

CONTRACT_VERSION = 1
#: Name of the metadata entry inside a TorchScript archive (``_extra_files``).
METADATA_ENTRY = "mlff_metadata.json"
ENERGY_KEY = "energies"
SUPPORTED_DTYPES = ("float32", "float64")


class MLFFModelError(RuntimeError):
    """A model file is missing, corrupt, foreign or incompatible."""


class ModelMetadata(BaseModel):
    """Metadata that travels inside every exported model file."""

    model_config = ConfigDict(extra="forbid")

    contract_version: int = CONTRACT_VERSION
    kind: str
    elements: List[int]
    cutoff: float = Field(gt=0)
    num_interactions: int = Field(ge=1, description="message-passing layers (1 for local models)")
    interaction_range: float = Field(gt=0, description="cutoff * num_interactions: the ghost shell for exact MPI")
    dtype: Literal["float32", "float64"]
    outputs: List[str] = Field(default_factory=lambda: [ENERGY_KEY])
    fidelities: List[str] = Field(default_factory=list)
    hyperparameters: Dict[str, Any] = Field(default_factory=dict)
    provenance: Dict[str, Any] = Field(default_factory=dict)
    mlff_version: str = __version__
    torch_version: str = torch.__version__.split("+")[0]

    @field_validator("elements")
    @classmethod
    def _valid_elements(cls, v: List[int]) -> List[int]:
        if not v:
            raise ValueError("a model must know at least one element")
        if any(z < 1 or z > 118 for z in v):
            raise ValueError(f"atomic numbers must be in 1..118, got {v}")
        if len(set(v)) != len(v):
            raise ValueError(f"duplicate elements in {v}")
        return sorted(v)

    @model_validator(mode="after")
    def _consistent(self) -> "ModelMetadata":
        if self.contract_version != CONTRACT_VERSION:
            raise ValueError(
                f"contract version {self.contract_version} is not supported by this mlff "
                f"(reads version {CONTRACT_VERSION})"
            )
        if ENERGY_KEY not in self.outputs:
            raise ValueError(f"outputs must include {ENERGY_KEY!r}")
        if self.interaction_range + 1e-12 < self.cutoff * self.num_interactions:
            raise ValueError(
                f"interaction_range {self.interaction_range} is smaller than "
                f"cutoff*num_interactions = {self.cutoff * self.num_interactions}"
            )
        return self

    @property
    def torch_dtype(self) -> torch.dtype:
        return getattr(torch, self.dtype)

    @property
    def symbols(self) -> List[str]:
        from ase.data import chemical_symbols

        return [chemical_symbols[z] for z in self.elements]

    def check_elements(self, numbers: Iterable[int], where: str = "the structure") -> None:
        """Refuse elements the model was not trained on, naming them and the model's own.

        Every engine calls this at set-up, so the model's own (device-side) check is only
        a last line of defence.
        """
        unknown = sorted(set(int(z) for z in numbers) - set(self.elements))
        if unknown:
            from ase.data import chemical_symbols

            raise MLFFModelError(
                f"{where}: elements {[chemical_symbols[z] for z in unknown]} (Z = {unknown}) are "
                f"not known to the model; it was trained on {self.symbols} (Z = {self.elements})"
            )

    def to_json(self) -> str:
        return json.dumps(self.model_dump(), indent=1, sort_keys=True)


def model_dtype(model: torch.nn.Module) -> torch.dtype:
    for p in model.parameters():
        if p.is_floating_point():
            return p.dtype
    for b in model.buffers():
        if b.is_floating_point():
            return b.dtype
    return torch.get_default_dtype()


def metadata_for(model: torch.nn.Module, provenance: Optional[Dict[str, Any]] = None) -> ModelMetadata:
    """Build the metadata of an in-memory mlff model (it must offer ``contract_info()``)."""
    if not hasattr(model, "contract_info"):
        raise TypeError(
            f"{type(model).__name__} has no contract_info(); mlff models describe their "
            "kind, elements, cutoff and number of interactions through it"
        )
    info = dict(model.contract_info())
    info.setdefault("interaction_range", info["cutoff"] * info["num_interactions"])
    info["dtype"] = str(model_dtype(model)).replace("torch.", "")
    provenance = {**getattr(model, "provenance", {}), **(provenance or {})}
    if provenance:
        info["provenance"] = {**info.get("provenance", {}), **provenance}
    return ModelMetadata(**info)


# --------------------------------------------------------------------------- evaluation


def evaluate(
    model: torch.nn.Module,
    atomic_numbers: torch.Tensor,
    edge_index: torch.Tensor,
    edge_vectors: torch.Tensor,
    n_local: int,
    compute_virial: bool = True,
    create_graph: bool = False,
) -> Dict[str, torch.Tensor]:
    """Run a contract model and derive forces and virials from the edge gradient.

    ``edge_vectors`` must require grad (a leaf, or derived from positions that do;
    ``create_graph`` keeps the graph for training on forces). See
    :func:`derive_from_energies` for what is returned.
    """
    out = model(atomic_numbers, edge_index, edge_vectors, n_local)
    result = derive_from_energies(
        out["energies"], edge_index, edge_vectors, n_local, compute_virial, create_graph
    )
    for key, value in out.items():
        if key != ENERGY_KEY:
            result[key] = value
    return result


def derive_from_energies(
    energies_all: torch.Tensor,
    edge_index: torch.Tensor,
    edge_vectors: torch.Tensor,
    n_local: int,
    compute_virial: bool = True,
    create_graph: bool = False,
) -> Dict[str, torch.Tensor]:
    """The contract's gradient rule (TorchScript-compatible, used by every Python engine).

    Returns ``energy`` (scalar, local atoms), ``energies`` ``[N]`` (ghosts zeroed),
    ``forces`` ``[N, 3]`` (including ghosts: engines with ghosts reverse-communicate
    them), and with ``compute_virial`` the global ``virial`` ``[3, 3]`` and the per-atom
    ``atom_virial`` ``[N, 3, 3]`` (each edge's term split half to i, half to j).
    Virial sign: ``W = -sum r_ij (x) dE/dr_ij``; the stress is ``-W / V``.
    """
    n_atoms = energies_all.shape[0]
    local = torch.arange(n_atoms, device=energies_all.device) < n_local
    energies = torch.where(local, energies_all, torch.zeros_like(energies_all))
    energy = energies.sum()
    grads = torch.autograd.grad([energy], [edge_vectors], create_graph=create_graph, allow_unused=True)
    g = grads[0]
    if g is None:
        g = torch.zeros_like(edge_vectors)
    i = edge_index[0]
    j = edge_index[1]
    forces = torch.zeros((n_atoms, 3), dtype=g.dtype, device=g.device)
    forces = forces.index_add(0, i, g).index_add(0, j, -g)
    result: Dict[str, torch.Tensor] = {"energy": energy, "energies": energies, "forces": forces}
    if compute_virial:
        w_edge = -edge_vectors.unsqueeze(2) * g.unsqueeze(1)  # [E, 3, 3]
        result["virial"] = w_edge.sum(0)
        half = 0.5 * w_edge
        atom_virial = torch.zeros((n_atoms, 3, 3), dtype=g.dtype, device=g.device)
        result["atom_virial"] = atom_virial.index_add(0, i, half).index_add(0, j, half)
    return result


# --------------------------------------------------------------------------- files


def _probe_model(module: torch.nn.Module, meta: ModelMetadata) -> Dict[str, torch.Tensor]:
    """A tiny two-atom system every valid model must evaluate."""
    z = torch.tensor([meta.elements[0], meta.elements[-1]], dtype=torch.long)
    edge_index = torch.tensor([[0, 1], [1, 0]], dtype=torch.long)
    d = 0.5 * meta.cutoff
    edge_vectors = torch.tensor([[d, 0.1, 0.0], [-d, -0.1, 0.0]], dtype=meta.torch_dtype)
    edge_vectors.requires_grad_(True)
    return evaluate(module, z, edge_index, edge_vectors, 2)


def export_model(
    model: torch.nn.Module,
    path: str | os.PathLike,
    provenance: Optional[Dict[str, Any]] = None,
) -> ModelMetadata:
    """Script ``model`` and write it as TorchScript with its metadata inside the file.

    The scripted module is checked against the eager one on a probe system before
    anything is written, and the file is written atomically.
    """
    path = Path(path)
    if path.suffix != ".pt":
        raise ValueError(f"TorchScript exports use the .pt extension, got {path.name!r}")
    meta = metadata_for(model, provenance)
    was_training = model.training
    model.eval()
    try:
        scripted = torch.jit.script(model)
    except Exception as exc:  # torch raises many types here
        raise MLFFModelError(f"{type(model).__name__} cannot be compiled to TorchScript: {exc}") from exc
    finally:
        model.train(was_training)
    eager_out = _probe_model(model, meta)
    script_out = _probe_model(scripted, meta)
    if not torch.allclose(eager_out["forces"], script_out["forces"], rtol=1e-5, atol=1e-6):
        raise MLFFModelError("the scripted model disagrees with the eager model on a probe system")
    extra = {METADATA_ENTRY: meta.to_json()}
    atomic_write(path, lambda tmp: torch.jit.save(scripted, tmp, _extra_files=extra))
    return meta


class LoadedModel:
    """An exported model and its validated metadata."""

    def __init__(self, module: torch.jit.ScriptModule, metadata: ModelMetadata, path: Path):
        self.module = module
        self.metadata = metadata
        self.path = path

    def __repr__(self) -> str:
        m = self.metadata
        return f"LoadedModel({self.path.name}, kind={m.kind}, elements={m.symbols}, cutoff={m.cutoff})"


def read_metadata(path: str | os.PathLike) -> ModelMetadata:
    """Read and validate only the metadata of an exported ``.pt`` file (no torch load)."""
    path = Path(path)
    if not path.exists():
        raise MLFFModelError(f"model file {str(path)!r} does not exist")
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            entry = next((n for n in names if n.endswith("/extra/" + METADATA_ENTRY)), None)
            if entry is None:
                if any(n.endswith("/constants.pkl") or "/code/" in n for n in names):
                    raise MLFFModelError(
                        f"{path} is a TorchScript file but not an mlff model (it has no "
                        f"{METADATA_ENTRY}); export models with mlff.export_model or `mlff export`"
                    )
                raise MLFFModelError(
                    f"{path} is not an exported mlff model (a torch.save file or checkpoint?); "
                    "use `mlff export CHECKPOINT -o model.pt`"
                )
            raw = zf.read(entry).decode()
            # torch's reader does not check CRCs: a flipped byte in the weights would
            # load silently and give wrong numbers, so verify every entry here
            bad = zf.testzip()
            if bad is not None:
                raise MLFFModelError(
                    f"{path} is corrupt (checksum mismatch in {bad}); re-export or re-copy it"
                )
    except zipfile.BadZipFile as exc:
        raise MLFFModelError(
            f"{path} is not a readable model archive ({exc}); the file is truncated or corrupt: "
            "re-export or re-copy it"
        ) from exc
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise MLFFModelError(f"{path}: metadata is not valid JSON ({exc})") from exc
    version = data.get("contract_version")
    if version != CONTRACT_VERSION:
        raise MLFFModelError(
            f"{path} was written for mlff contract version {version}; this mlff "
            f"({__version__}) reads version {CONTRACT_VERSION}. Re-export the model with this "
            "mlff (`mlff export CHECKPOINT`) or install the mlff version that wrote it "
            f"({data.get('mlff_version', 'unknown')})"
        )
    try:
        return ModelMetadata(**data)
    except ValidationError as exc:
        raise MLFFModelError(f"{path}: invalid mlff metadata: {exc}") from exc


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> LoadedModel:
    """Load an exported ``.pt`` model, validating file, metadata and module."""
    path = Path(path)
    meta = read_metadata(path)
    extra = {METADATA_ENTRY: ""}
    try:
        module = torch.jit.load(str(path), map_location=device, _extra_files=extra)
    except Exception as exc:
        raise MLFFModelError(
            f"{path} could not be loaded by torch {torch.__version__} ({exc}); the file is corrupt "
            f"or was written by an incompatible torch (it says {meta.torch_version})"
        ) from exc
    dtype = model_dtype(module)
    if dtype != meta.torch_dtype:
        raise MLFFModelError(f"{path}: metadata says {meta.dtype} but the parameters are {dtype}")
    module.eval()
    return LoadedModel(module, meta, path)


def graph_from_positions(
    positions: torch.Tensor, edge_index: torch.Tensor, offsets: torch.Tensor
) -> torch.Tensor:
    """Edge vectors r_j - r_i + offset (offset = integer image shift @ cell)."""
    return positions[edge_index[1]] - positions[edge_index[0]] + offsets


def stress_from_virial(virial: torch.Tensor, volume: float) -> torch.Tensor:
    """Cauchy stress (eV/Å^3, ASE sign: positive = tensile) from the contract virial."""
    return -virial / volume


__all__: Tuple[str, ...] = (
    "CONTRACT_VERSION",
    "METADATA_ENTRY",
    "ModelMetadata",
    "MLFFModelError",
    "LoadedModel",
    "evaluate",
    "derive_from_energies",
    "export_model",
    "load_model",
    "read_metadata",
    "metadata_for",
    "graph_from_positions",
    "stress_from_virial",
)
