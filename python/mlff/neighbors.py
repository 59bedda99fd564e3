"""Neighbour lists for the Python engines (ASE, OpenMM fallback, training), via vesin.

Periodic, triclinic, mixed and open boundaries, and cells smaller than twice the
cutoff (vesin returns every periodic image of a neighbour, each with its own shift).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from vesin import NeighborList


@dataclass
class Graph:
    """Contract inputs built from a structure; ``offsets`` = integer image shift @ cell."""

    atomic_numbers: torch.Tensor  # [N] int64
    positions: torch.Tensor  # [N, 3]
    edge_index: torch.Tensor  # [2, E] int64
    offsets: torch.Tensor  # [E, 3]

    @property
    def n_atoms(self) -> int:
        return int(self.atomic_numbers.shape[0])

    def edge_vectors(self) -> torch.Tensor:
        return self.positions[self.edge_index[1]] - self.positions[self.edge_index[0]] + self.offsets


def _box_for(cell: np.ndarray, pbc: np.ndarray, positions: np.ndarray, cutoff: float) -> np.ndarray:
    """vesin wants a box for every direction; give open directions a harmless one.

    A non-periodic direction with a zero cell vector gets a vector orthogonal to the
    others and longer than the structure plus the cutoff, so no spurious image forms.
    """
    box = np.array(cell, dtype=np.float64)
    if pbc.all():
        return box
    if not pbc.any():
        return np.zeros((3, 3))
    extent = np.ptp(positions, axis=0).max() if len(positions) else 0.0
    length = extent + 2.0 * cutoff + 1.0
    for k in range(3):
        if not pbc[k] and np.linalg.norm(box[k]) < 1e-12:
            others = [box[m] for m in range(3) if m != k]
            n = np.cross(others[0], others[1])
            if np.linalg.norm(n) < 1e-12:
                n = np.eye(3)[k]
            box[k] = n / np.linalg.norm(n) * length
    return box


def neighbor_list(
    positions: np.ndarray, cell: np.ndarray, pbc, cutoff: float
) -> tuple[np.ndarray, np.ndarray]:
    """Full list (both i->j and j->i) within ``cutoff``: ``(edge_index [2,E], shifts [E,3])``."""
    positions = np.ascontiguousarray(positions, dtype=np.float64)
    pbc = np.broadcast_to(np.asarray(pbc, dtype=bool), (3,))
    box = _box_for(np.asarray(cell, dtype=np.float64), pbc, positions, cutoff)
    if pbc.any() and abs(np.linalg.det(box)) < 1e-12:
        raise ValueError("periodic structure has a degenerate cell (zero volume)")
    nl = NeighborList(cutoff=float(cutoff), full_list=True)
    i, j, shifts = nl.compute(points=positions, box=box, periodic=[bool(p) for p in pbc], quantities="ijS")
    edge_index = np.stack([i, j]).astype(np.int64)
    return edge_index, np.asarray(shifts, dtype=np.int64)


def graph_from_atoms(atoms, cutoff: float, dtype: torch.dtype = torch.float64, device="cpu") -> Graph:
    """Build contract inputs for an ``ase.Atoms``."""
    pos = atoms.get_positions()
    cell = np.asarray(atoms.get_cell())
    edge_index, shifts = neighbor_list(pos, cell, atoms.get_pbc(), cutoff)
    offsets = shifts.astype(np.float64) @ cell
    return Graph(
        atomic_numbers=torch.as_tensor(atoms.get_atomic_numbers(), dtype=torch.long, device=device),
        positions=torch.as_tensor(pos, dtype=dtype, device=device),
        edge_index=torch.as_tensor(edge_index, device=device),
        offsets=torch.as_tensor(offsets, dtype=dtype, device=device),
    )


def batch_graphs(graphs: list[Graph]) -> tuple[Graph, torch.Tensor]:
    """Concatenate graphs into one disconnected graph; returns it and the per-atom batch index."""
    offsets_atoms = 0
    z, pos, ei, off, batch = [], [], [], [], []
    for k, g in enumerate(graphs):
        z.append(g.atomic_numbers)
        pos.append(g.positions)
        ei.append(g.edge_index + offsets_atoms)
        off.append(g.offsets)
        batch.append(torch.full((g.n_atoms,), k, dtype=torch.long, device=g.atomic_numbers.device))
        offsets_atoms += g.n_atoms
    merged = Graph(torch.cat(z), torch.cat(pos), torch.cat(ei, dim=1), torch.cat(off))
    return merged, torch.cat(batch)
