"""Structures as pre-built graphs, and atom-count batching.

Neighbour lists are built once per structure (positions do not move during
training); a batch is a disjoint union of graphs holding at most ``batch_atoms``
atoms (at least one structure), which keeps memory and step time even when
structure sizes vary.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np
import torch

from ..data.records import Record
from ..neighbors import graph_from_atoms


@dataclass
class Sample:
    numbers: torch.Tensor  # [n]
    edge_indices: List[torch.Tensor]  # per neighbour list [2, E_k]
    edge_vectors: List[torch.Tensor]  # per neighbour list [E_k, 3]
    energy: float
    forces: torch.Tensor  # [n, 3]
    stress: Optional[torch.Tensor]  # [3, 3], ASE sign, or None
    volume: float
    record_id: str
    charge: float = 0.0

    @property
    def n_atoms(self) -> int:
        return int(self.numbers.shape[0])


def _labels(rec: Record, dtype: torch.dtype) -> Dict[str, Any]:
    """A record's labels as sample fields (stress only for periodic structures)."""
    from ase.stress import voigt_6_to_full_3x3_stress

    stress = None
    if rec.stress is not None and rec.periodic:
        stress = torch.as_tensor(voigt_6_to_full_3x3_stress(np.asarray(rec.stress)), dtype=dtype)
    return dict(energy=float(rec.energy), forces=torch.tensor(np.array(rec.forces), dtype=dtype), stress=stress)


def list_cutoffs(model: torch.nn.Module) -> List[float]:
    """The cutoff of every neighbour list ``model`` declares, in its order."""
    from ..contract import NeighborListSpec

    return [NeighborListSpec.of(item).cutoff for item in model.neighbor_lists()]


def build_samples(
    records: Sequence[Record], cutoffs: Union[float, Sequence[float]], dtype: torch.dtype
) -> List[Sample]:
    """One pre-built graph per record, one edge set per neighbour-list cutoff of the model."""
    samples = []
    for rec in records:
        atoms = rec.to_atoms()
        g = graph_from_atoms(atoms, cutoffs, dtype)
        samples.append(
            Sample(
                numbers=g.atomic_numbers,
                edge_indices=g.edge_indices,
                edge_vectors=[ev.detach() for ev in g.edge_vectors()],
                volume=float(atoms.get_volume()) if rec.periodic else 0.0,
                record_id=rec.id,
                charge=float(atoms.info.get("charge", 0.0)),
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


def epoch_batches(sizes: Sequence[int], batch_atoms: int, seed: int, epoch: int) -> List[List[int]]:
    """The shuffled batches of one epoch: a pure function of (seed, epoch), so resumable."""
    rng = np.random.default_rng([seed, epoch])
    return pack(rng.permutation(len(sizes)).tolist(), sizes, batch_atoms)


@dataclass
class Batch:
    numbers: torch.Tensor
    edge_indices: List[torch.Tensor]
    edge_vectors: List[torch.Tensor]
    batch: torch.Tensor  # [N] structure index per atom
    charge: torch.Tensor  # [B] float64 total charges
    n_atoms: torch.Tensor  # [B]
    energy: torch.Tensor  # [B]
    forces: torch.Tensor  # [N, 3]
    stress: torch.Tensor  # [B, 3, 3] (zeros where absent)
    has_stress: torch.Tensor  # [B] bool
    volume: torch.Tensor  # [B]

    @property
    def n_structures(self) -> int:
        return int(self.n_atoms.shape[0])

    def system(self) -> Dict[str, torch.Tensor]:
        """The contract's system inputs for a batch: per-structure values plus ``batch``."""
        return {
            "charge": self.charge,
            "fidelity": torch.zeros_like(self.n_atoms),
            "batch": self.batch,
        }


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
    stress = torch.stack([s.stress if s.stress is not None else torch.zeros(3, 3, dtype=dtype) for s in samples])
    return Batch(
        numbers=torch.cat([s.numbers for s in samples]).to(device),
        edge_indices=[torch.cat(e, dim=1).to(device) for e in edge_indices],
        edge_vectors=[torch.cat([s.edge_vectors[m] for s in samples]).to(device) for m in range(n_lists)],
        batch=torch.cat(batch).to(device),
        charge=torch.tensor([s.charge for s in samples], dtype=torch.float64, device=device),
        n_atoms=torch.tensor([s.n_atoms for s in samples], device=device),
        energy=torch.tensor([s.energy for s in samples], dtype=dtype, device=device),
        forces=torch.cat([s.forces for s in samples]).to(device),
        stress=stress.to(device),
        has_stress=torch.tensor([s.stress is not None for s in samples], device=device),
        volume=torch.tensor([s.volume if s.volume > 0 else 1.0 for s in samples], dtype=dtype, device=device),
    )
