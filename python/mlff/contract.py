"""The exported-model contract: the only module that knows how engines talk to models.

Contract version 2 (version 1 files keep loading, see :class:`V1Adapter`), with the
version-3 layer-exchange extension below (files without it are written as version 2).

Inputs a model receives (engines build them; the model sees no positions or cells unless
it declares geometry inputs, below):

- ``atomic_numbers``  ``[N]`` int64
- ``edge_indices``    one ``[2, E_k]`` int64 per neighbour list the model declares
  (``metadata.neighbor_lists``, in that order); row 0 the centre atom i, row 1 the
  neighbour j. Full lists: both (i, j) and (j, i); periodic images are separate edges.
- ``edge_vectors``    one ``[E_k, 3]`` per list: r_j - r_i including periodic images,
  model dtype, Å
- ``n_local``         int: atoms ``>= n_local`` are ghosts and contribute no energy
- ``system``          ``Dict[str, Tensor]``: ``"charge"`` (0-d float64, total charge in e)
  and ``"fidelity"`` (0-d int64, index into ``metadata.fidelities``), fixed for a run.
  Trainers batch several structures: then ``"batch"`` ([N] structure index per atom)
  is present and ``"charge"``/``"fidelity"`` are ``[B]``.

Whole-system terms (``locality: "global"``, e.g. charges normalised to the total charge)
reduce over all atoms. A model that declares ``global_sums: K`` exposes
``global_sums(atomic_numbers, edge_indices, edge_vectors, n_local, system) -> [K]``, its
partial sums over the atoms ``< n_local``, and takes the complete sums from
``system["global_sums"]`` when that key is present (otherwise it computes them itself,
as every single-process engine leaves it to). LAMMPS on several ranks all-reduces the
partial sums, evaluates the model with them, then all-reduces dE/d(sums) and adds its
back-propagation through each rank's partial sums to the edge gradients: exact.
A global model without ``global_sums`` is refused on several ranks.

Geometry inputs (an additive extension of version 2; files without it are unchanged):
a model whose energy depends on absolute positions and the periodic cell (an Ewald
sum's reciprocal part) declares ``geometry_inputs: ["positions", "cell"]`` in its
metadata (default ``[]``, which every older file satisfies, so the contract version stays
2; an engine that predates it is refused by the model itself). Engines then also pass

- ``system["positions"]`` ``[N, 3]``: the Cartesian positions of the graph's nodes, Å,
  model dtype, consistent with the edge vectors (any periodic image of an atom will do:
  such a model is invariant under lattice translations of single atoms),
- ``system["cell"]`` ``[3, 3]``: the lattice vectors as rows, Å, model dtype
  (``[B, 3, 3]`` in a trainer's batch),

both as leaves that require grad, and refuse structures that are not periodic in all
three directions (:meth:`ModelMetadata.check_periodic`). Their gradients join the edge
rule (same function, :func:`derive_from_energies`), with p_i = dE/dpos_i and
c_k = dE/dh_k (h_k the k-th lattice vector, a row of ``cell``)::

    F_i -= p_i
    W   -= sum_i pos_i (x) p_i + sum_k h_k (x) c_k      (W_ab -= pos_i,a p_i,b + h_k,a c_k,b)

which is minus the derivative of E under a homogeneous strain that maps every edge
vector, position and lattice vector x to x (1 + eps). Per atom, atom i gets
-pos_i (x) p_i and each local atom an equal share of the cell term (the split of a
whole-system term is a convention; the sum is exact). LAMMPS passes them on one rank
only (every atom local) and refuses several ranks at ``init``.

Member outputs (an additive extension of version 2, for committees and shallow
ensembles; files without them are unchanged). An output spec may carry

- ``shape``: trailing dimensions (a per-atom output is ``[N, *shape]``, a global one
  ``[*shape]``; default ``[]``),
- ``partial: true``: the value is a sum of contributions, as forces are. A per-atom
  partial output has values on every node, ghosts included, and a ghost's value belongs
  to its owner (LAMMPS reverse-communicates it like forces); a global partial output
  covers the atoms ``< n_local`` (LAMMPS all-reduces it over ranks),
- ``derived_from: NAME``: not returned by the model; engines compute it, after the
  reduction, from the partial output ``NAME`` whose first trailing axis indexes M
  committee members, with one rule (:func:`member_deviation`, and its C++ twin in the
  LAMMPS plugin)::

      x_bar = mean_m x_m;   value = sqrt(mean_m |x_m - x_bar|^2)

  (|.|: the norm over the remaining trailing axes). With ``member_forces`` [N, M, 3]
  this is DeePMD's per-atom force deviation; with ``member_energies`` [M] the
  population standard deviation of the members' total energies.

An engine that needs the energies alone on a step (LAMMPS between output steps, OpenMM
dynamics) passes ``system["outputs"]`` = 0 (0-d int64); a model may then skip its named
outputs (a committee's member forces cost M extra backward passes). Absent or non-zero:
compute them.

Layer exchange (contract version 3; a file that declares it is written with
``contract_version: 3``, so engines that predate it refuse it with their version message;
files without it stay version 2). A message-passing model with one neighbour list, local,
without geometry inputs or named outputs may declare ``message_passing: {"layers": L,
"width": W}`` and export, besides ``forward`` (unchanged; every other engine calls it):

- ``embed(atomic_numbers) -> x0 [N, W]``: the initial node state, flattened,
- ``edge_features(edge_vectors [E, 3]) -> e [E, D]``: what the layers need of each edge
  (radial basis, cutoff weight, direction), computed once for all layers,
- ``layer(k: int, x [N, W], edge_index [2, E], e [E, D], n_local: int) -> x' [n_local, W]``:
  message and update block k (0 <= k < L) over the first list; the new states of the
  first ``n_local`` nodes, every edge being centred on one of them; a node's new row
  depends only on its own row, the rows of its neighbours and its edges (so edges
  centred on ghosts are not needed, and ghosts are not updated),
- ``readout_energies(x [n, W], atomic_numbers [n]) -> energies [n]``,

with ``forward(...)["energies"] == readout_energies(layer(L-1, ... layer(0, embed(z), ...,
N)...), z)`` (:func:`evaluate_layers`; checked at export). LAMMPS on several ranks then
keeps a ghost shell of one cutoff (not L cutoffs): it passes edges centred on owned atoms
only (nodes [0, n_local) are the owned atoms, the rest ghosts), after each layer but the
last completes the owned rows with the ghosts' rows from their owners (forward
communication), and in the backward pass sends the gradients of the ghosts' rows to their
owners (reverse communication) before each layer's vector-Jacobian product. The gradients
of ``e`` from all layers go back through ``edge_features`` once, and the edge gradients
then through the edge rule below: exact, like the deep shell.

Edges of list k may be longer than that list's cutoff (LAMMPS passes its list with the
skin, and one list at the largest cutoff); a model must give them exactly zero weight.

The model returns ``Dict[str, Tensor]`` with at least ``"energies"`` ``[N]`` in eV, plus
the named outputs its metadata declares (per-atom ``[N]`` or global ``[]``).
Everything else follows from the gradient with respect to the edge vectors of every
list (``g = dE/dr_ij``): ``F_i += g``, ``F_j -= g``, ``W = -sum r_ij (x) g``, summed over
the lists. That single rule gives forces on ghosts and images, the stress and the
per-atom virial; it is implemented once here, in :func:`derive_from_energies`, which is
TorchScript-compatible so the OpenMM module can call it too. The LAMMPS plugin applies
the same rule in C++.
"""

from __future__ import annotations

import json
import math
import os
import warnings
import zipfile
from pathlib import Path
from typing import Any, Dict, Iterable, List, Literal, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from . import __version__
from .atomic import atomic_write
from .units import stress_from_virial

CONTRACT_VERSION = 3
#: The version of files without the version-3 extension (``message_passing``): they stay
#: readable by every engine that reads version 2.
BASE_CONTRACT_VERSION = 2
#: The version a file that declares ``message_passing`` (layer exchange) is written with.
LAYER_EXCHANGE_VERSION = 3
#: Contract versions this mlff reads (1: single list, ``forward(z, edge_index, edge_vectors, n_local)``).
READABLE_VERSIONS = (1, 2, 3)
#: Name of the metadata entry inside a TorchScript archive (``_extra_files``).
METADATA_ENTRY = "mlff_metadata.json"
#: Attribute of an exported module that repeats the geometry-relevant metadata, so that
#: an archive whose metadata was edited (a cutoff changed by hand) is refused at load.
CONTRACT_KEY_ATTR = "mlff_contract_key"
ENERGY_KEY = "energies"
SUPPORTED_DTYPES = ("float32", "float64")
#: The name of the single list of a version-1 model.
V1_LIST_NAME = "default"
#: Engines warn when atoms come closer than this fraction of the shortest training distance.
CLOSE_CONTACT_FRACTION = 0.75


class MLFFModelError(RuntimeError):
    """A model file is missing, corrupt, foreign or incompatible."""


class MLFFModelNotFoundError(MLFFModelError, FileNotFoundError):
    """The model file does not exist (catchable as either parent)."""


class NeighborListSpec(BaseModel):
    """One neighbour list a model asks the engine for.

    ``reach``: edges of this list are needed only for centre atoms within ``reach`` Å of
    an atom whose energy counts (``None``: within the interaction range). Engines with
    ghost atoms (LAMMPS under MPI) pass no edges centred farther away; e.g. a pair term
    has reach 0, a message-passing network (layers - 1) x cutoff, D3 its pair cutoff
    (the coordination numbers of the partners).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    cutoff: float = Field(gt=0)
    reach: Optional[float] = Field(default=None, ge=0)

    @staticmethod
    def of(item: Any) -> "NeighborListSpec":
        """From a spec, a dict, or a ``(name, cutoff[, reach])`` tuple."""
        if isinstance(item, NeighborListSpec):
            return item
        if isinstance(item, dict):
            return NeighborListSpec(**item)
        name, cutoff, *rest = item
        return NeighborListSpec(name=name, cutoff=float(cutoff), reach=None if not rest or rest[0] is None else float(rest[0]))


class OutputSpec(BaseModel):
    """A named model output besides the per-atom energies."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    per_atom: bool = True
    unit: str = ""
    description: str = ""
    shape: List[int] = Field(default_factory=list, description="trailing dimensions ([N, *shape] or [*shape])")
    partial: bool = Field(False, description="a sum of contributions: ghosts' values go to their owners, ranks' add")
    derived_from: Optional[str] = Field(
        None, description="computed by the engine from this partial member output (member_deviation)"
    )

    @field_validator("shape")
    @classmethod
    def _positive(cls, v: List[int]) -> List[int]:
        if any(int(d) < 1 for d in v):
            raise ValueError(f"output dimensions must be positive, got {v}")
        return [int(d) for d in v]

    @property
    def width(self) -> int:
        """Numbers per atom (per-atom outputs) or in all (global ones)."""
        return int(np.prod(self.shape)) if self.shape else 1


ENERGIES_OUTPUT = OutputSpec(name=ENERGY_KEY, per_atom=True, unit="eV", description="per-atom energies")


class MessagePassingSpec(BaseModel):
    """The layers a message-passing model exposes to engines (contract version 3).

    ``layers`` message/update blocks over the first neighbour list, each acting on a node
    state of ``width`` numbers per atom (see the module docstring: embed, edge_features, layer,
    readout_energies).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    layers: int = Field(ge=1)
    width: int = Field(ge=1)


class ModelMetadata(BaseModel):
    """Metadata that travels inside every exported model file.

    ``contract_version`` is the version the *file* was written with: engines call a
    version-1 module with the version-1 signature (Python engines wrap it in
    :class:`V1Adapter`, LAMMPS branches on it).
    """

    model_config = ConfigDict(extra="forbid")

    contract_version: int = BASE_CONTRACT_VERSION
    kind: str
    elements: List[int]
    neighbor_lists: List[NeighborListSpec]
    cutoff: float = Field(gt=0, description="the largest neighbour-list cutoff")
    num_interactions: int = Field(ge=1, description="message-passing hops over the first list (1 for local models)")
    interaction_range: float = Field(gt=0, description="how far an atom's energy reaches: the LAMMPS ghost shell")
    dtype: Literal["float32", "float64"]
    outputs: List[OutputSpec] = Field(default_factory=lambda: [ENERGIES_OUTPUT])
    fidelities: List[str] = Field(default_factory=list)
    uses_charge: bool = False
    locality: Literal["local", "global"] = "local"
    global_sums: int = Field(default=0, ge=0, description="whole-system sums the model reduces (global_sums method)")
    geometry_inputs: List[Literal["positions", "cell"]] = Field(
        default_factory=list,
        description="geometry the model needs besides the edges (Ewald): node positions and the periodic cell",
    )
    message_passing: Optional[MessagePassingSpec] = Field(
        default=None,
        description="layers exposed for engines that exchange node states between ranks (contract v3)",
    )
    min_distance: Optional[float] = Field(default=None, description="shortest distance in the training data, Å")
    probe_energy: Optional[float] = Field(default=None, description="energy of the probe system at export (load check)")
    hyperparameters: Dict[str, Any] = Field(default_factory=dict)
    provenance: Dict[str, Any] = Field(default_factory=dict)
    compiled: Optional[Dict[str, Any]] = Field(
        default=None, description="a .pt2 package: devices, CPU ISA, torch version, fallback .pt (mlff.compiled)"
    )
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

    @model_validator(mode="before")
    @classmethod
    def _derived(cls, data: Any) -> Any:
        # the largest list cutoff is stored for readers that need only one number
        if isinstance(data, dict) and "cutoff" not in data and data.get("neighbor_lists"):
            lists = data["neighbor_lists"]
            data = dict(data)
            data["cutoff"] = max(
                float(nl["cutoff"] if isinstance(nl, dict) else nl.cutoff) for nl in lists
            )
        return data

    @model_validator(mode="after")
    def _consistent(self) -> "ModelMetadata":
        if self.contract_version not in READABLE_VERSIONS:
            raise ValueError(
                f"contract version {self.contract_version} is not supported by this mlff "
                f"(reads versions {list(READABLE_VERSIONS)})"
            )
        if not self.neighbor_lists:
            raise ValueError("a model must declare at least one neighbour list")
        names = [nl.name for nl in self.neighbor_lists]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate neighbour-list names {names}")
        if abs(self.cutoff - max(nl.cutoff for nl in self.neighbor_lists)) > 1e-12:
            raise ValueError(
                f"cutoff {self.cutoff} is not the largest neighbour-list cutoff "
                f"{max(nl.cutoff for nl in self.neighbor_lists)}"
            )
        out_names = [o.name for o in self.outputs]
        if ENERGY_KEY not in out_names:
            raise ValueError(f"outputs must include {ENERGY_KEY!r}")
        if len(set(out_names)) != len(out_names):
            raise ValueError(f"duplicate output names {out_names}")
        for o in self.outputs:
            if o.derived_from is None:
                continue
            source = next((x for x in self.outputs if x.name == o.derived_from), None)
            if source is None or not source.partial or not source.shape or source.derived_from is not None:
                raise ValueError(
                    f"output {o.name!r} is derived from {o.derived_from!r}, which must be a partial "
                    "output with a member axis (shape [M, ...]) of this model"
                )
            if o.per_atom != source.per_atom or o.shape:
                raise ValueError(f"output {o.name!r} must be a scalar per atom / global like {source.name!r}")
        first = self.neighbor_lists[0].cutoff
        if self.interaction_range + 1e-12 < max(first * self.num_interactions, self.cutoff):
            raise ValueError(
                f"interaction_range {self.interaction_range} is smaller than what the neighbour "
                f"lists reach (max of cutoff*num_interactions = {first * self.num_interactions} "
                f"and the largest cutoff {self.cutoff})"
            )
        if self.global_sums and self.locality != "global":
            raise ValueError("a model with global_sums must declare locality 'global'")
        if len(set(self.geometry_inputs)) != len(self.geometry_inputs):
            raise ValueError(f"duplicate geometry inputs {self.geometry_inputs}")
        if self.geometry_inputs and self.locality != "global":
            raise ValueError("a model that needs positions or the cell (geometry_inputs) must declare locality 'global'")
        if len(set(self.fidelities)) != len(self.fidelities):
            raise ValueError(f"duplicate fidelity names {self.fidelities}")
        mp = self.message_passing
        if mp is not None:
            if self.contract_version < LAYER_EXCHANGE_VERSION:
                raise ValueError(
                    f"message_passing is a contract version {LAYER_EXCHANGE_VERSION} extension; this "
                    f"metadata says version {self.contract_version}"
                )
            if mp.layers != self.num_interactions:
                raise ValueError(f"message_passing has {mp.layers} layers, num_interactions is {self.num_interactions}")
            if (len(self.neighbor_lists) != 1 or self.locality != "local" or self.geometry_inputs
                    or self.returned_outputs or self.derived_outputs):
                raise ValueError(
                    "message_passing (layer exchange) is for local models with one neighbour list, "
                    "no geometry inputs and no named outputs"
                )
        return self

    # ------------------------------------------------------------------ reading
    @property
    def torch_dtype(self) -> torch.dtype:
        return getattr(torch, self.dtype)

    @property
    def symbols(self) -> List[str]:
        from ase.data import chemical_symbols

        return [chemical_symbols[z] for z in self.elements]

    @property
    def list_cutoffs(self) -> List[float]:
        return [nl.cutoff for nl in self.neighbor_lists]

    @property
    def output_names(self) -> List[str]:
        return [o.name for o in self.outputs]

    @property
    def returned_outputs(self) -> List[OutputSpec]:
        """The named outputs the model itself returns (not energies, not derived ones)."""
        return [o for o in self.outputs if o.name != ENERGY_KEY and o.derived_from is None]

    @property
    def derived_outputs(self) -> List[OutputSpec]:
        """The outputs engines compute from partial member outputs (:func:`member_deviation`)."""
        return [o for o in self.outputs if o.derived_from is not None]

    def complete_outputs(self, out: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """``out`` (a single-process evaluation: no ghosts, so partial outputs are complete)
        plus the derived outputs, by :func:`member_deviation`. Missing sources (the model
        skipped them, ``system["outputs"]`` = 0) leave the derived output out."""
        result = dict(out)
        for o in self.derived_outputs:
            if o.derived_from in out:
                result[o.name] = member_deviation(out[o.derived_from], o.per_atom)
        return result

    def output(self, name: str) -> OutputSpec:
        for o in self.outputs:
            if o.name == name:
                return o
        raise KeyError(
            f"the model has no output {name!r}; it provides {self.output_names}"
        )

    def check_elements(self, numbers: Iterable[int], where: str = "the structure") -> None:
        """Refuse elements the model was not trained on, naming them and the model's own.

        Every engine calls this at set-up, so the model's own (device-side) check is only
        a last line of defence.
        """
        from ase.data import chemical_symbols

        unknown = sorted(set(int(z) for z in numbers) - set(self.elements))
        if unknown:
            names = [chemical_symbols[z] if 0 < z < len(chemical_symbols) else f"Z={z}" for z in unknown]
            raise MLFFModelError(
                f"{where}: elements {names} (Z = {unknown}) are not known to the model; it was "
                f"trained on {self.symbols} (Z = {self.elements})"
            )

    # ------------------------------------------------------------------ system inputs
    def fidelity_index(self, fidelity: Union[int, str, None]) -> int:
        """The index of ``fidelity`` (a name or an index); ``None`` is the first one.

        Refuses unknown names and out-of-range indices, listing the valid choices.
        """
        valid = ", ".join(f"{k} ({name!r})" for k, name in enumerate(self.fidelities)) or "0 (the only one)"
        if fidelity is None:
            return 0
        if isinstance(fidelity, str) and not fidelity.strip().lstrip("-").isdigit():
            if fidelity in self.fidelities:
                return self.fidelities.index(fidelity)
            raise ValueError(f"unknown fidelity {fidelity!r}; this model has: {valid}")
        try:
            index = int(fidelity)
        except (TypeError, ValueError):
            raise ValueError(f"fidelity must be a name or an index, got {fidelity!r}; valid: {valid}") from None
        n = max(1, len(self.fidelities))
        if not 0 <= index < n:
            raise ValueError(f"fidelity index {index} is out of range; this model has: {valid}")
        return index

    def check_charge(self, charge: float, where: str = "") -> float:
        """A finite total charge; a non-zero one only for models that take it."""
        try:
            q = float(charge)
        except (TypeError, ValueError):
            raise ValueError(f"{where}total charge must be a number, got {charge!r}") from None
        if not math.isfinite(q):
            raise ValueError(f"{where}total charge must be finite, got {charge!r}")
        if q != 0.0 and not self.uses_charge:
            raise ValueError(
                f"{where}total charge {q:g} was given, but this {self.kind} model has no charge "
                "input (it was trained on neutral systems only and would ignore it); use a model "
                "trained with total charges, or leave the charge at 0"
            )
        return q

    def system_inputs(
        self, charge: float = 0.0, fidelity: Union[int, str, None] = None, device: Any = "cpu"
    ) -> Dict[str, torch.Tensor]:
        """Validated ``system`` tensors for a run."""
        return make_system(self.check_charge(charge), self.fidelity_index(fidelity), device)

    @property
    def needs_geometry(self) -> bool:
        """Whether engines must pass ``system["positions"]`` and ``system["cell"]``."""
        return bool(self.geometry_inputs)

    def check_periodic(self, pbc: Sequence[bool], where: str = "the structure") -> None:
        """Refuse a model that needs the cell (Ewald) on a structure not periodic in all
        three directions, naming the fix; models without geometry inputs pass."""
        if not self.needs_geometry:
            return
        flags = [bool(p) for p in pbc]
        if len(flags) != 3 or not all(flags):
            raise MLFFModelError(
                f"{where} is not periodic in all three directions (pbc={flags}), but this {self.kind} "
                "model sums its Coulomb energy with Ewald, which needs a periodic cell. Use a cell "
                "periodic in x, y and z, or a model with coulomb 'dsf' (condensed phases, slabs) or "
                "'simple' (molecules)"
            )

    def geometry_system(
        self, positions: torch.Tensor, cell: torch.Tensor, dtype: torch.dtype
    ) -> Dict[str, torch.Tensor]:
        """``{"positions", "cell"}`` as leaves that require grad, for models that need them
        (empty otherwise): what the engines add to ``system``."""
        if not self.needs_geometry:
            return {}
        return {
            "positions": positions.detach().to(dtype).requires_grad_(True),
            "cell": cell.detach().to(dtype).requires_grad_(True),
        }

    def close_contact_limit(self) -> Optional[float]:
        """Distance (Å) below which a structure is far outside the training data.

        ``CLOSE_CONTACT_FRACTION`` of the shortest distance seen in training; engines warn
        (once) below it, because models usually attract where they should repel there.
        The LAMMPS plugin uses the same fraction.
        """
        return None if self.min_distance is None else CLOSE_CONTACT_FRACTION * self.min_distance

    def close_contact_message(self, distance: float) -> str:
        return (
            f"two atoms are {distance:.3f} Å apart, far closer than the shortest distance in the "
            f"model's training data ({self.min_distance:.3f} Å): the {self.kind} model extrapolates "
            "there and may attract instead of repel. Add a core repulsion: a ZBL term "
            "(mlff export --zbl, or pair_style hybrid/overlay mlff ... zbl in LAMMPS)"
        )

    def contract_key(self) -> str:
        """The geometry-relevant metadata in one canonical string (also written by C++)."""
        return contract_key(self.elements, [(nl.name, nl.cutoff, nl.reach) for nl in self.neighbor_lists],
                            self.interaction_range, self.dtype)

    def to_json(self) -> str:
        return json.dumps(self.model_dump(), indent=1, sort_keys=True)


def contract_key(elements: Sequence[int], lists: Sequence[Tuple[str, float]], interaction_range: float, dtype: str) -> str:
    """``elements=1,8;lists=local:5,d3:15;range=15;dtype=float64`` with %.17g numbers.

    The LAMMPS plugin builds the same string from the metadata with ``%.17g`` and
    compares it with the module's own copy.
    """
    el = ",".join(str(int(z)) for z in sorted(elements))
    ls = ",".join(
        f"{item[0]}:{float(item[1]):.17g}" + (f"@{float(item[2]):.17g}" if len(item) > 2 and item[2] is not None else "")
        for item in lists
    )
    return f"elements={el};lists={ls};range={float(interaction_range):.17g};dtype={dtype}"


def make_system(charge: float = 0.0, fidelity: int = 0, device: Any = "cpu") -> Dict[str, torch.Tensor]:
    """The ``system`` argument of a contract-v2 model (no validation; see ModelMetadata)."""
    return {
        "charge": torch.tensor(float(charge), dtype=torch.float64, device=device),
        "fidelity": torch.tensor(int(fidelity), dtype=torch.long, device=device),
    }


def member_deviation(x: torch.Tensor, per_atom: bool) -> torch.Tensor:
    """The contract's committee deviation (see the module docstring), TorchScript-compatible.

    ``x``: ``[N, M, ...]`` (``per_atom``) or ``[M, ...]``, the members' values after the
    reduction. Returns ``sqrt(mean_m |x_m - mean_m x|^2)``, ``[N]`` or ``[]``.
    """
    axis = 1 if per_atom else 0
    dev = x - x.mean(dim=axis, keepdim=True)
    sq = dev * dev
    if sq.dim() > axis + 1:
        sq = sq.flatten(axis + 1).sum(dim=axis + 1)
    return torch.sqrt(sq.mean(dim=axis))


def wants_outputs(system: Dict[str, torch.Tensor]) -> bool:
    """Whether the engine asks for the named outputs this call (``system["outputs"]``)."""
    flag = system.get("outputs")
    if flag is None:
        return True
    return bool(flag != 0)


def _metadata_from_v1(data: Dict[str, Any]) -> Dict[str, Any]:
    """A version-1 metadata dict in the version-2 schema (the file keeps version 1)."""
    data = dict(data)
    cutoff = data.get("cutoff")
    data["neighbor_lists"] = [{"name": V1_LIST_NAME, "cutoff": cutoff}]
    data["outputs"] = [
        ENERGIES_OUTPUT.model_dump() if o == ENERGY_KEY else {"name": o} for o in data.get("outputs", [ENERGY_KEY])
    ]
    return data


def model_dtype(model: torch.nn.Module) -> torch.dtype:
    for p in model.parameters():
        if p.is_floating_point():
            return p.dtype
    for b in model.buffers():
        if b.is_floating_point():
            return b.dtype
    return torch.get_default_dtype()


def metadata_for(
    model: torch.nn.Module, provenance: Optional[Dict[str, Any]] = None, layer_exchange: bool = True
) -> ModelMetadata:
    """Build the metadata of an in-memory mlff model (it must offer ``contract_info()``).

    ``contract_info()`` gives ``kind``, ``elements``, ``neighbor_lists`` (a list of
    ``(name, cutoff)``), and optionally ``num_interactions``, ``interaction_range``,
    ``outputs``, ``fidelities``, ``uses_charge``, ``locality``, ``hyperparameters``.

    A model whose ``layer_exchange_info()`` returns ``{"layers", "width"}`` (it exports
    ``embed``, ``edge_features``, ``layer`` and ``readout_energies``) is described with
    ``message_passing`` and contract version 3, unless ``layer_exchange`` is False (a version-2 file, for engines
    that predate version 3). The method is separate from ``contract_info`` so that
    wrappers that reuse a network's ``contract_info`` (a network plus physics terms) do
    not claim layers they do not export.
    """
    if not hasattr(model, "contract_info"):
        raise TypeError(
            f"{type(model).__name__} has no contract_info(); mlff models describe their "
            "kind, elements, neighbour lists and interaction range through it"
        )
    info = dict(model.contract_info())
    lists = [NeighborListSpec.of(nl) for nl in info.pop("neighbor_lists")]
    info["neighbor_lists"] = lists
    info.setdefault("num_interactions", 1)
    first = lists[0].cutoff
    largest = max(nl.cutoff for nl in lists)
    info.setdefault("interaction_range", max(first * info["num_interactions"], largest))
    outputs = [ENERGIES_OUTPUT] + [
        o if isinstance(o, OutputSpec) else OutputSpec(**o) for o in info.pop("outputs", []) if
        (o.name if isinstance(o, OutputSpec) else o["name"]) != ENERGY_KEY
    ]
    info["outputs"] = outputs
    info["dtype"] = str(model_dtype(model)).replace("torch.", "")
    exchange = getattr(model, "layer_exchange_info", None)
    mp = exchange() if (layer_exchange and callable(exchange)) else None
    if mp is not None:
        info["message_passing"] = MessagePassingSpec(**mp)
        info["contract_version"] = LAYER_EXCHANGE_VERSION
    provenance = {**getattr(model, "provenance", {}), **(provenance or {})}
    if provenance:
        info["provenance"] = {**info.get("provenance", {}), **provenance}
    return ModelMetadata(**info)


# --------------------------------------------------------------------------- evaluation


class V1Adapter(torch.nn.Module):
    """Presents a version-1 module (one list, no system inputs) with the version-2 signature.

    It calls the wrapped module exactly as version-1 engines did, so the numbers stay
    bit for bit those of the file.
    """

    def __init__(self, module: torch.nn.Module):
        super().__init__()
        self.module = module

    def forward(
        self,
        atomic_numbers: torch.Tensor,
        edge_indices: List[torch.Tensor],
        edge_vectors: List[torch.Tensor],
        n_local: int,
        system: Dict[str, torch.Tensor],
    ) -> Dict[str, torch.Tensor]:
        return self.module(atomic_numbers, edge_indices[0], edge_vectors[0], n_local)


def evaluate(
    model: torch.nn.Module,
    atomic_numbers: torch.Tensor,
    edge_indices: List[torch.Tensor],
    edge_vectors: List[torch.Tensor],
    n_local: int,
    system: Optional[Dict[str, torch.Tensor]] = None,
    compute_virial: bool = True,
    create_graph: bool = False,
) -> Dict[str, torch.Tensor]:
    """Run a contract-v2 model and derive forces and virials from the edge gradients.

    Every tensor of ``edge_vectors`` must require grad (a leaf, or derived from
    positions that do; ``create_graph`` keeps the graph for training on forces). See
    :func:`derive_from_energies` for what is returned; the model's named outputs are
    passed through. ``system["positions"]`` and ``system["cell"]`` (models with geometry
    inputs) must require grad too; their gradients are added by the same rule.
    """
    if system is None:
        system = make_system(device=atomic_numbers.device)
    out = model(atomic_numbers, edge_indices, edge_vectors, n_local, system)
    result = derive_from_energies(
        out[ENERGY_KEY], edge_indices, edge_vectors, n_local, compute_virial, create_graph,
        system.get("positions"), system.get("cell"), system.get("batch"),
    )
    for key, value in out.items():
        if key != ENERGY_KEY:
            result[key] = value
    return result


def derive_from_energies(
    energies_all: torch.Tensor,
    edge_indices: List[torch.Tensor],
    edge_vectors: List[torch.Tensor],
    n_local: int,
    compute_virial: bool = True,
    create_graph: bool = False,
    positions: Optional[torch.Tensor] = None,
    cell: Optional[torch.Tensor] = None,
    batch: Optional[torch.Tensor] = None,
    retain_graph: bool = False,
) -> Dict[str, torch.Tensor]:
    """The contract's gradient rule (TorchScript-compatible, used by every Python engine).

    ``retain_graph`` keeps the autograd graph for a later differentiation of the same
    model (a committee's member forces, taken before the engine's own).

    Returns ``energy`` (scalar, local atoms), ``energies`` ``[N]`` (ghosts zeroed),
    ``forces`` ``[N, 3]`` (including ghosts: engines with ghosts reverse-communicate
    them), and with ``compute_virial`` the global ``virial`` ``[3, 3]`` and the per-atom
    ``atom_virial`` ``[N, 3, 3]`` (each edge's term split half to i, half to j), all
    summed over the neighbour lists.
    Virial sign: ``W = -sum r_ij (x) dE/dr_ij``; the stress is ``-W / V``.

    ``positions`` ``[N, 3]`` and ``cell`` ``[3, 3]`` (``[B, 3, 3]`` with ``batch``): the
    geometry inputs of a model that declares them, leaves that require grad. Their
    gradients p_i = dE/dpos_i and c_k = dE/dh_k add ``F_i -= p_i`` and
    ``W -= sum_i pos_i (x) p_i + sum_k h_k (x) c_k`` (see the module docstring); per atom,
    -pos_i (x) p_i to atom i and the cell term in equal shares to the local atoms (of
    each structure, with ``batch``).
    """
    n_atoms = energies_all.shape[0]
    local = torch.arange(n_atoms, device=energies_all.device) < n_local
    energies = torch.where(local, energies_all, torch.zeros_like(energies_all))
    energy = energies.sum()
    inputs: List[torch.Tensor] = []
    for ev in edge_vectors:
        inputs.append(ev)
    n_lists = len(edge_vectors)
    with_positions = positions is not None and positions.requires_grad
    with_cell = cell is not None and cell.requires_grad and compute_virial  # the cell matters for W only
    if positions is not None and with_positions:
        inputs.append(positions)
    if cell is not None and with_cell:
        inputs.append(cell)
    grads = torch.autograd.grad([energy], inputs, retain_graph=retain_graph or create_graph,
                                create_graph=create_graph, allow_unused=True)
    forces = torch.zeros((n_atoms, 3), dtype=energies_all.dtype, device=energies_all.device)
    virial = torch.zeros((3, 3), dtype=energies_all.dtype, device=energies_all.device)
    atom_virial = torch.zeros((n_atoms, 3, 3), dtype=energies_all.dtype, device=energies_all.device)
    for k in range(n_lists):
        g = grads[k]
        if g is not None:  # None: the energy does not depend on this list
            i = edge_indices[k][0]
            j = edge_indices[k][1]
            forces = forces.index_add(0, i, g).index_add(0, j, -g)
            if compute_virial:
                w_edge = -edge_vectors[k].unsqueeze(2) * g.unsqueeze(1)  # [E, 3, 3]
                virial = virial + w_edge.sum(0)
                half = 0.5 * w_edge
                atom_virial = atom_virial.index_add(0, i, half).index_add(0, j, half)
    slot = n_lists
    if positions is not None and with_positions:
        p = grads[slot]
        slot += 1
        if p is not None:
            forces = forces - p
            if compute_virial:
                w_atom = -positions.unsqueeze(2) * p.unsqueeze(1)  # [N, 3, 3]: -pos_a p_b
                virial = virial + w_atom.sum(0)
                atom_virial = atom_virial + w_atom
    if cell is not None and with_cell:
        c = grads[slot]
        if c is not None and compute_virial:
            # -sum_k h_k,a c_k,b; a whole-system term, shared equally by the local atoms
            w_cell = -torch.matmul(cell.transpose(-1, -2), c)  # [3, 3] or [B, 3, 3]
            if batch is None or w_cell.dim() == 2:
                virial = virial + w_cell
                count = max(min(n_local, n_atoms), 1)
                share = (w_cell / float(count)).unsqueeze(0).expand(n_atoms, 3, 3)
                atom_virial = atom_virial + torch.where(local.view(-1, 1, 1), share, torch.zeros_like(share))
            else:
                virial = virial + w_cell.sum(0)
                counts = torch.zeros(w_cell.shape[0], dtype=w_cell.dtype, device=w_cell.device).index_add(
                    0, batch[:n_local], torch.ones(n_local, dtype=w_cell.dtype, device=w_cell.device)
                )
                share = (w_cell / counts.clamp(min=1.0).view(-1, 1, 1))[batch]
                atom_virial = atom_virial + torch.where(local.view(-1, 1, 1), share, torch.zeros_like(share))
    result: Dict[str, torch.Tensor] = {"energy": energy, "energies": energies, "forces": forces}
    if compute_virial:
        result["virial"] = virial
        result["atom_virial"] = atom_virial
    return result


def edges_within(
    edge_index: torch.Tensor, edge_vectors: torch.Tensor, cutoff: float
) -> Tuple[torch.Tensor, torch.Tensor]:
    """The edges of a longer list that lie within ``cutoff`` (engines build one list, filter per model list)."""
    keep = (edge_vectors * edge_vectors).sum(1) < cutoff * cutoff
    return edge_index[:, keep], edge_vectors[keep]


# --------------------------------------------------------------------------- files


def _probe_positions(meta: ModelMetadata) -> torch.Tensor:
    """The probe cluster: 6 atoms spread along x over 1.2 x the largest cutoff."""
    gen = torch.Generator().manual_seed(12345)
    n = 6
    rmax = 1.2 * meta.cutoff
    pos = torch.rand((n, 3), generator=gen, dtype=torch.float64) * rmax
    pos[:, 1:] *= 0.4
    pos[:, 0] = torch.linspace(0.0, rmax, n, dtype=torch.float64)
    return pos


def _probe_graph(meta: ModelMetadata) -> Tuple[torch.Tensor, List[torch.Tensor], List[torch.Tensor]]:
    """A small open cluster whose pair distances span every list's cutoff.

    Built with the metadata's cutoffs, so an archive whose metadata no longer matches
    the module (a cutoff edited by hand) gives a different probe energy.
    """
    pos = _probe_positions(meta)
    n = pos.shape[0]
    z = torch.tensor([meta.elements[k % len(meta.elements)] for k in range(n)], dtype=torch.long)
    ii, jj = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    mask = ii != jj
    ii, jj = ii[mask], jj[mask]
    vec = pos[jj] - pos[ii]
    r = torch.linalg.norm(vec, dim=1)
    eis, evs = [], []
    for c in meta.list_cutoffs:
        keep = r < c
        eis.append(torch.stack([ii[keep], jj[keep]]))
        evs.append(vec[keep].to(meta.torch_dtype).requires_grad_(True))
    return z, eis, evs


def _probe_geometry(meta: ModelMetadata) -> Dict[str, torch.Tensor]:
    """Positions and a cell for the probe of a model with geometry inputs (empty otherwise).

    The probe cluster in a cubic cell of 2.5 x its extent: no periodic image comes within
    a cutoff (every image is >= 1.5 x 1.2 cutoffs away), so the open cluster's edges are
    the periodic structure's edges.
    """
    if not meta.needs_geometry:
        return {}
    cell = torch.eye(3, dtype=torch.float64) * (2.5 * 1.2 * meta.cutoff)
    return meta.geometry_system(_probe_positions(meta), cell, meta.torch_dtype)


def _probe(module: torch.nn.Module, meta: ModelMetadata) -> Dict[str, torch.Tensor]:
    z, eis, evs = _probe_graph(meta)
    system = {**make_system(), **_probe_geometry(meta)}
    with torch.jit.optimized_execution(False):
        return evaluate(module, z, eis, evs, z.shape[0], system, compute_virial=False)


def export_model(
    model: torch.nn.Module,
    path: str | os.PathLike,
    provenance: Optional[Dict[str, Any]] = None,
    layer_exchange: bool = True,
) -> ModelMetadata:
    """Script ``model`` and write it as TorchScript with its metadata inside the file.

    The scripted module is checked against the eager one on a probe system (energies
    and forces) before anything is written, the probe energy is stored in the
    metadata for the load-time check, and the file is written atomically with the
    permissions of any new file (the umask decides, as for ``open``).
    """
    path = Path(path)
    if path.suffix != ".pt":
        raise ValueError(f"TorchScript exports use the .pt extension, got {path.name!r}")
    meta = metadata_for(model, provenance, layer_exchange)
    was_training = model.training
    model.eval()
    try:
        scripted = torch.jit.script(model)
    except Exception as exc:  # torch raises many types here
        raise MLFFModelError(f"{type(model).__name__} cannot be compiled to TorchScript: {exc}") from exc
    finally:
        model.train(was_training)
    scripted.eval()
    eager_out = _probe(model, meta)
    script_out = _probe(scripted, meta)
    tol = dict(rtol=1e-5, atol=1e-6) if meta.dtype == "float32" else dict(rtol=1e-10, atol=1e-10)
    for key in ("energies", "forces"):
        if not torch.allclose(eager_out[key], script_out[key], **tol):
            raise MLFFModelError(f"the scripted model disagrees with the eager model on a probe system ({key})")
    if not bool(torch.isfinite(script_out["energies"]).all()):
        raise MLFFModelError("the model gives non-finite energies on a probe system")
    if meta.message_passing is not None:
        _check_layers(scripted, meta, script_out["energies"])
    meta = meta.model_copy(update={"probe_energy": float(script_out["energy"].detach())})
    # the module carries its own copy of the geometry-relevant metadata (checked at load)
    scripted._c._register_attribute(CONTRACT_KEY_ATTR, torch._C.StringType.get(), meta.contract_key())
    extra = {METADATA_ENTRY: meta.to_json()}
    atomic_write(path, lambda tmp: torch.jit.save(scripted, tmp, _extra_files=extra))
    return meta


def evaluate_layers(
    module: torch.nn.Module, atomic_numbers: torch.Tensor, edge_index: torch.Tensor, edge_vectors: torch.Tensor
) -> torch.Tensor:
    """Per-atom energies ``[N]`` composed from a version-3 model's exposed layers, every
    node owned: ``readout_energies(layer(L-1, ... layer(0, embed(z), edges, e, N) ...), z)``
    with ``e = edge_features(edge_vectors)`` (what forward returns)."""
    n_layers = int(module.num_interactions)
    x = module.embed(atomic_numbers)
    e = module.edge_features(edge_vectors)
    for k in range(n_layers):
        x = module.layer(k, x, edge_index, e, int(atomic_numbers.shape[0]))
    return module.readout_energies(x, atomic_numbers)


def _check_layers(module: torch.nn.Module, meta: ModelMetadata, energies: torch.Tensor) -> None:
    """The exposed layers compose to forward on the probe system (export of a v3 file)."""
    z, eis, evs = _probe_graph(meta)
    mp = meta.message_passing
    with torch.jit.optimized_execution(False):
        x = module.embed(z)
        if tuple(x.shape) != (z.shape[0], mp.width):
            raise MLFFModelError(f"embed returned shape {tuple(x.shape)}, the metadata declares width {mp.width}")
        got = evaluate_layers(module, z, eis[0], evs[0].detach())
        tol = dict(rtol=1e-5, atol=1e-6) if meta.dtype == "float32" else dict(rtol=1e-10, atol=1e-10)
        if not torch.allclose(got.detach(), energies.detach(), **tol):
            raise MLFFModelError(
                "the model's layers (embed, edge_features, layer, readout_energies) do not compose to its forward"
            )
        # what LAMMPS relies on: with the first m nodes owned and the edges centred on them,
        # layer(..., m) gives the first m rows of layer(..., N) (ghosts are not updated)
        n = int(z.shape[0])
        m = max(1, n // 2)
        keep = eis[0][0] < m
        ei, e = eis[0][:, keep], module.edge_features(evs[0].detach()[keep])
        for k in range(mp.layers):
            full = module.layer(k, x, ei, e, n)
            owned = module.layer(k, x, ei, e, m)
            if tuple(owned.shape) != (m, mp.width) or not torch.allclose(owned.detach(), full[:m].detach(), **tol):
                raise MLFFModelError(
                    f"the model's layer({k}, x, edges, e, n_local) does not return the first n_local rows of "
                    "layer(..., N) (shape [n_local, width]); engines that exchange ghost states rely on it"
                )
            x = full


class LoadedModel:
    """An exported model and its validated metadata.

    ``module`` has the contract-v2 signature whatever version the file was written with.
    """

    def __init__(self, module: torch.nn.Module, metadata: ModelMetadata, path: Path):
        self.module = module
        self.metadata = metadata
        self.path = path

    def __repr__(self) -> str:
        m = self.metadata
        return f"LoadedModel({self.path.name}, kind={m.kind}, elements={m.symbols}, cutoff={m.cutoff})"


def _check_exists(path: Path) -> None:
    if not path.exists():
        raise MLFFModelNotFoundError(f"model file {str(path)!r} does not exist")
    if path.is_dir():
        raise MLFFModelError(f"{str(path)!r} is a directory, not a model file")


def read_metadata(path: str | os.PathLike) -> ModelMetadata:
    """Read and validate only the metadata of an exported ``.pt`` file (no torch load)."""
    path = Path(path)
    _check_exists(path)
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
    if not isinstance(data, dict):
        raise MLFFModelError(f"{path}: metadata is not a JSON object")
    version = data.get("contract_version")
    if version not in READABLE_VERSIONS:
        raise MLFFModelError(
            f"{path} was written for mlff contract version {version}; this mlff "
            f"({__version__}) reads versions {', '.join(map(str, READABLE_VERSIONS))}. Re-export the "
            "model with this mlff (`mlff export CHECKPOINT`) or install the mlff version that wrote it "
            f"({data.get('mlff_version', 'unknown')})"
        )
    if version == 1:
        data = _metadata_from_v1(data)
    try:
        return ModelMetadata(**data)
    except (ValidationError, TypeError) as exc:
        raise MLFFModelError(f"{path}: invalid mlff metadata: {exc}") from exc


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> LoadedModel:
    """Load an exported ``.pt`` model, validating file, metadata and module.

    The module must agree with its metadata: dtype, the geometry key it carries
    (elements, neighbour lists, interaction range) and, for files that store one, the
    probe energy recomputed with the metadata's cutoffs.
    """
    path = Path(path)
    meta = read_metadata(path)
    extra = {METADATA_ENTRY: ""}
    try:
        module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    except Exception as exc:
        raise MLFFModelError(
            f"{path} could not be loaded by torch {torch.__version__} ({exc}); the file is corrupt "
            f"or was written by an incompatible torch (it says {meta.torch_version})"
        ) from exc
    dtype = model_dtype(module)
    if dtype != meta.torch_dtype:
        raise MLFFModelError(f"{path}: metadata says {meta.dtype} but the parameters are {dtype}")
    module.eval()
    if meta.contract_version == 1:
        return LoadedModel(V1Adapter(module.to(device)).eval(), meta, path)
    key = getattr(module, CONTRACT_KEY_ATTR, None)
    if key != meta.contract_key():
        raise MLFFModelError(
            f"{path}: the metadata does not match the model inside the file (metadata: "
            f"{meta.contract_key()}; model: {key}); the metadata was edited or the file was "
            "assembled by hand. Re-export the model with `mlff export`"
        )
    if meta.probe_energy is not None:
        got = float(_probe(module, meta)["energy"].detach())
        expected = meta.probe_energy
        rel = 1e-4 if meta.dtype == "float32" else 1e-9
        if not abs(got - expected) <= rel * max(1.0, abs(expected)):
            raise MLFFModelError(
                f"{path}: the model gives {got!r} eV on the probe system, its metadata records "
                f"{expected!r} eV; the file is inconsistent. Re-export the model with `mlff export`"
            )
    return LoadedModel(module.to(device), meta, path)


def wrapped_positions(positions: np.ndarray, cell: np.ndarray) -> np.ndarray:
    """Positions ``[N, 3]`` (Å) moved into the cell (rows = lattice vectors) by lattice translations.

    What engines pass as ``system["positions"]`` to a model with geometry inputs: the
    energy is the same for any image, but the per-atom virial -pos_i (x) dE/dpos_i of
    unwrapped coordinates (after a long run) would cancel to lose digits.
    """
    pos = np.asarray(positions, dtype=np.float64)
    h = np.asarray(cell, dtype=np.float64)
    frac = pos @ np.linalg.inv(h)
    return pos - np.floor(frac) @ h


def graph_from_positions(
    positions: torch.Tensor, edge_index: torch.Tensor, offsets: torch.Tensor
) -> torch.Tensor:
    """Edge vectors r_j - r_i + offset (offset = integer image shift @ cell)."""
    return positions[edge_index[1]] - positions[edge_index[0]] + offsets


__all__: Tuple[str, ...] = (
    "CONTRACT_VERSION",
    "BASE_CONTRACT_VERSION",
    "LAYER_EXCHANGE_VERSION",
    "READABLE_VERSIONS",
    "MessagePassingSpec",
    "evaluate_layers",
    "METADATA_ENTRY",
    "ModelMetadata",
    "NeighborListSpec",
    "OutputSpec",
    "MLFFModelError",
    "MLFFModelNotFoundError",
    "LoadedModel",
    "V1Adapter",
    "evaluate",
    "derive_from_energies",
    "edges_within",
    "export_model",
    "load_model",
    "read_metadata",
    "metadata_for",
    "make_system",
    "member_deviation",
    "wants_outputs",
    "contract_key",
    "graph_from_positions",
    "stress_from_virial",
    "wrapped_positions",
)
