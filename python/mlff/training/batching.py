"""Structures as pre-built graphs, and atom-count batching.

Neighbour lists are built once per structure (positions do not move during
training); a batch is a disjoint union of graphs holding at most ``batch_atoms``
atoms (at least one structure), which keeps memory and step time even when
structure sizes vary.

Every label is optional per structure (a cheap level of theory may have energies
only): a batch carries each label with a mask of the structures (atoms) that have
it, and the loss and metrics use only those (:mod:`mlff.training.metrics`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Dict, List, Literal, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from ..data.records import Record
from ..neighbors import graph_from_atoms


@dataclass
class Sample:
    numbers: torch.Tensor  # [n]
    edge_indices: List[torch.Tensor]  # per neighbour list [2, E_k]
    edge_vectors: List[torch.Tensor]  # per neighbour list [E_k, 3]
    energy: Optional[float]
    forces: Optional[torch.Tensor]  # [n, 3]
    stress: Optional[torch.Tensor]  # [3, 3], ASE sign, or None
    volume: float
    record_id: str
    charge: float = 0.0  # total charge (a system input, not a label)
    charges: Optional[torch.Tensor] = None  # [n] teacher partial charges
    fidelity: int = 0  # index into the run's fidelities (a system input)
    # periodic structures: positions wrapped into the cell [n, 3] and the cell [3, 3] (the
    # contract's geometry inputs, for models with an Ewald sum); None for open ones
    positions: Optional[torch.Tensor] = None
    cell: Optional[torch.Tensor] = None

    @property
    def n_atoms(self) -> int:
        return int(self.numbers.shape[0])


def _labels(rec: Record, dtype: torch.dtype) -> Dict[str, Any]:
    """A record's labels as sample fields (None where absent; stress only for periodic structures)."""
    from ase.stress import voigt_6_to_full_3x3_stress

    stress = None
    if rec.stress is not None and rec.periodic:
        stress = torch.as_tensor(voigt_6_to_full_3x3_stress(np.asarray(rec.stress)), dtype=dtype)
    return dict(
        energy=None if rec.energy is None else float(rec.energy),
        forces=None if rec.forces is None else torch.tensor(np.array(rec.forces), dtype=dtype),
        stress=stress,
        charges=None if rec.charges is None else torch.tensor(np.array(rec.charges), dtype=dtype),
    )


def fidelity_index(rec: Record, fidelities: Sequence[str]) -> int:
    """The model's index of ``rec``'s level of theory: its position in ``fidelities``
    (0 for every record of a run without named fidelities)."""
    if not fidelities:
        return 0
    if rec.fidelity not in fidelities:
        raise ValueError(f"structure {rec.id}: fidelity {rec.fidelity!r} is not one of {list(fidelities)}")
    return list(fidelities).index(rec.fidelity)


def list_cutoffs(model: torch.nn.Module) -> List[float]:
    """The cutoff of every neighbour list ``model`` declares, in its order."""
    from ..contract import NeighborListSpec

    return [NeighborListSpec.of(item).cutoff for item in model.neighbor_lists()]


def build_samples(
    records: Sequence[Record],
    cutoffs: Union[float, Sequence[float]],
    dtype: torch.dtype,
    fidelities: Sequence[str] = (),
) -> List[Sample]:
    """One pre-built graph per record, one edge set per neighbour-list cutoff of the model.

    ``fidelities``: the run's level names in model order (see :func:`fidelity_index`).
    """
    from ..contract import wrapped_positions

    samples = []
    for rec in records:
        atoms = rec.to_atoms()
        g = graph_from_atoms(atoms, cutoffs, dtype)
        geometry = {}
        if rec.periodic:
            geometry = dict(
                positions=torch.as_tensor(wrapped_positions(atoms.positions, atoms.cell[:]), dtype=dtype),
                cell=torch.as_tensor(np.asarray(atoms.cell[:], dtype=np.float64), dtype=dtype),
            )
        samples.append(
            Sample(
                numbers=g.atomic_numbers,
                edge_indices=g.edge_indices,
                edge_vectors=[ev.detach() for ev in g.edge_vectors()],
                volume=float(atoms.get_volume()) if rec.periodic else 0.0,
                record_id=rec.id,
                charge=0.0 if rec.charge is None else float(rec.charge),  # unstated: neutral
                fidelity=fidelity_index(rec, fidelities),
                **geometry,
                **_labels(rec, dtype),
            )
        )
    return samples


def relabel(sample: Sample, rec: Record, lists: Optional[Sequence[int]] = None) -> Sample:
    """``sample`` with the labels of ``rec`` (same structure) and only the neighbour lists ``lists``."""
    dtype = sample.edge_vectors[0].dtype
    if lists is not None:
        sample = replace(
            sample,
            edge_indices=[sample.edge_indices[m] for m in lists],
            edge_vectors=[sample.edge_vectors[m] for m in lists],
        )
    return replace(sample, **_labels(rec, dtype))


def shortest_distance(samples: Sequence[Sample]) -> Optional[float]:
    """The shortest edge of any list of any sample (Å); None if no sample has an edge."""
    best = None
    for s in samples:
        for ev in s.edge_vectors:
            if ev.shape[0]:
                r = float(torch.linalg.norm(ev.double(), dim=1).min())
                best = r if best is None else min(best, r)
    return best


def pack(order: Sequence[int], sizes: Sequence[int], batch_atoms: int) -> List[List[int]]:
    """Greedy packing of structures (in ``order``) into batches of <= batch_atoms atoms."""
    batches: List[List[int]] = []
    current: List[int] = []
    count = 0
    for k in order:
        n = sizes[k]
        if current and count + n > batch_atoms:
            batches.append(current)
            current, count = [], 0
        current.append(int(k))
        count += n
    if current:
        batches.append(current)
    return batches


def pack_by_fidelity(samples: Sequence[Sample], batch_atoms: int) -> List[List[int]]:
    """Batches of ``samples`` in their order, each of one fidelity (fidelity 0's first).

    With one fidelity this is :func:`pack` of all samples: an evaluation batch of one
    level keeps per-fidelity metrics exact sums of whole batches.
    """
    groups: Dict[int, List[int]] = {}
    for k, s in enumerate(samples):
        groups.setdefault(s.fidelity, []).append(k)
    sizes = [s.n_atoms for s in samples]
    return [b for f in sorted(groups) for b in pack(groups[f], sizes, batch_atoms)]


#: how much of a batch has a label: every structure, some, or none (decided on the CPU,
#: so the loss picks its formula without reading back from the device)
Presence = Literal["all", "some", "none"]


def presence(flags: Sequence[bool]) -> Presence:
    n = sum(bool(f) for f in flags)
    return "all" if n == len(flags) else ("none" if n == 0 else "some")


@dataclass
class Batch:
    numbers: torch.Tensor
    edge_indices: List[torch.Tensor]
    edge_vectors: List[torch.Tensor]
    batch: torch.Tensor  # [N] structure index per atom
    charge: torch.Tensor  # [B] float64 total charges
    n_atoms: torch.Tensor  # [B]
    energy: torch.Tensor  # [B] (zeros where absent)
    forces: torch.Tensor  # [N, 3] (zeros where absent)
    stress: torch.Tensor  # [B, 3, 3] (zeros where absent)
    has_stress: torch.Tensor  # [B] bool
    volume: torch.Tensor  # [B]
    fidelity: Optional[torch.Tensor] = None  # [B] int64 (None: all fidelity 0)
    has_energy: Optional[torch.Tensor] = None  # [B] bool
    has_forces: Optional[torch.Tensor] = None  # [N] bool, per atom
    charges: Optional[torch.Tensor] = None  # [N] teacher partial charges (zeros where absent)
    has_charges: Optional[torch.Tensor] = None  # [N] bool, per atom
    #: label -> "all" | "some" | "none" of the structures carry it
    present: Dict[str, Presence] = field(default_factory=dict)
    #: the distinct fidelity indices of the batch's structures, ascending
    fidelities: Tuple[int, ...] = (0,)
    #: geometry inputs when every structure is periodic: positions [N, 3], cells [B, 3, 3]
    positions: Optional[torch.Tensor] = None
    cell: Optional[torch.Tensor] = None

    @property
    def n_structures(self) -> int:
        return int(self.n_atoms.shape[0])

    def system(self) -> Dict[str, torch.Tensor]:
        """The contract's system inputs for a batch: per-structure values plus ``batch``, and
        ``positions``/``cell`` when every structure is periodic (models without geometry
        inputs ignore them; :func:`mlff.training.metrics.predict` makes them grad leaves)."""
        system = {
            "charge": self.charge,
            "fidelity": self.fidelity if self.fidelity is not None else torch.zeros_like(self.n_atoms),
            "batch": self.batch,
        }
        if self.positions is not None and self.cell is not None:
            system["positions"] = self.positions
            system["cell"] = self.cell
        return system


def collate(samples: Sequence[Sample], device: torch.device) -> Batch:
    offset = 0
    n_lists = len(samples[0].edge_indices)
    edge_indices: List[List[torch.Tensor]] = [[] for _ in range(n_lists)]
    batch = []
    for k, s in enumerate(samples):
        for m in range(n_lists):
            edge_indices[m].append(s.edge_indices[m] + offset)
        batch.append(torch.full((s.n_atoms,), k, dtype=torch.long))
        offset += s.n_atoms
    dtype = samples[0].edge_vectors[0].dtype

    def per_atom(s: Sample, value: Optional[torch.Tensor], shape: Tuple[int, ...]) -> torch.Tensor:
        return value if value is not None else torch.zeros((s.n_atoms, *shape), dtype=dtype)

    def atom_mask(flags: Sequence[bool]) -> torch.Tensor:
        return torch.cat([torch.full((s.n_atoms,), bool(f)) for s, f in zip(samples, flags)]).to(device)

    stress = torch.stack([s.stress if s.stress is not None else torch.zeros(3, 3, dtype=dtype) for s in samples])
    has = {name: [getattr(s, name) is not None for s in samples] for name in ("energy", "forces", "stress", "charges")}
    return Batch(
        numbers=torch.cat([s.numbers for s in samples]).to(device),
        edge_indices=[torch.cat(e, dim=1).to(device) for e in edge_indices],
        edge_vectors=[torch.cat([s.edge_vectors[m] for s in samples]).to(device) for m in range(n_lists)],
        batch=torch.cat(batch).to(device),
        charge=torch.tensor([s.charge for s in samples], dtype=torch.float64, device=device),
        n_atoms=torch.tensor([s.n_atoms for s in samples], device=device),
        energy=torch.tensor([s.energy if s.energy is not None else 0.0 for s in samples], dtype=dtype, device=device),
        forces=torch.cat([per_atom(s, s.forces, (3,)) for s in samples]).to(device),
        stress=stress.to(device),
        has_stress=torch.tensor(has["stress"], device=device),
        volume=torch.tensor([s.volume if s.volume > 0 else 1.0 for s in samples], dtype=dtype, device=device),
        fidelity=torch.tensor([s.fidelity for s in samples], dtype=torch.long, device=device),
        has_energy=torch.tensor(has["energy"], device=device),
        has_forces=atom_mask(has["forces"]),
        charges=torch.cat([per_atom(s, s.charges, ()) for s in samples]).to(device),
        has_charges=atom_mask(has["charges"]),
        present={name: presence(flags) for name, flags in has.items()},
        fidelities=tuple(sorted({s.fidelity for s in samples})),
        **_geometry(samples, device),
    )


def _geometry(samples: Sequence[Sample], device: torch.device) -> Dict[str, torch.Tensor]:
    """The batch's positions and cells, if every structure has them (is periodic)."""
    if not samples or any(s.positions is None or s.cell is None for s in samples):
        return {}
    return {
        "positions": torch.cat([s.positions for s in samples]).to(device),
        "cell": torch.stack([s.cell for s in samples]).to(device),
    }
