"""Neighbour lists for the Python engines (ASE, OpenMM fallback, training), via vesin.

Periodic, triclinic, mixed and open boundaries, and cells smaller than twice the
cutoff (vesin returns every periodic image of a neighbour, each with its own shift).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Sequence, Tuple, Union

import numpy as np
import torch
from vesin import NeighborList


@dataclass
class Graph:
    """Contract inputs built from a structure: one edge set per neighbour list.

    ``offsets[k]`` = integer image shift @ cell for the edges of list k.
    """

    atomic_numbers: torch.Tensor  # [N] int64
    positions: torch.Tensor  # [N, 3]
    edge_indices: List[torch.Tensor]  # per list [2, E_k] int64
    offsets: List[torch.Tensor]  # per list [E_k, 3]

    @property
    def n_atoms(self) -> int:
        return int(self.atomic_numbers.shape[0])

    def edge_vectors(self) -> List[torch.Tensor]:
        return [
            self.positions[ei[1]] - self.positions[ei[0]] + off
            for ei, off in zip(self.edge_indices, self.offsets)
        ]


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


def graph_from_atoms(
    atoms, cutoffs: Union[float, Sequence[float]], dtype: torch.dtype = torch.float64, device="cpu"
) -> Graph:
    """Build contract inputs for an ``ase.Atoms``, one edge set per cutoff.

    One vesin list is built at the largest cutoff; shorter lists are filtered from it
    (edges with r < cutoff), so a model with a 5 Å network and a 15 Å dispersion term
    costs one neighbour search.
    """
    cutoffs = [float(cutoffs)] if np.isscalar(cutoffs) else [float(c) for c in cutoffs]
    rmax = max(cutoffs)
    pos = atoms.get_positions()
    cell = np.asarray(atoms.get_cell())
    edge_index, shifts = neighbor_list(pos, cell, atoms.get_pbc(), rmax)
    offsets = shifts.astype(np.float64) @ cell
    eis, offs = [], []
    r = None
    for c in cutoffs:
        if c == rmax:
            ei, off = edge_index, offsets
        else:
            if r is None:
                r = np.linalg.norm(pos[edge_index[1]] - pos[edge_index[0]] + offsets, axis=1)
            keep = r < c
            ei, off = edge_index[:, keep], offsets[keep]
        eis.append(torch.as_tensor(np.ascontiguousarray(ei), device=device))
        offs.append(torch.as_tensor(off, dtype=dtype, device=device))
    return Graph(
        atomic_numbers=torch.as_tensor(atoms.get_atomic_numbers(), dtype=torch.long, device=device),
        positions=torch.as_tensor(pos, dtype=dtype, device=device),
        edge_indices=eis,
        offsets=offs,
    )


def batch_graphs(graphs: List[Graph]) -> Tuple[Graph, torch.Tensor]:
    """Concatenate graphs into one disconnected graph; returns it and the per-atom batch index."""
    n_lists = len(graphs[0].edge_indices)
    shift = 0
    z, pos, batch = [], [], []
    eis: List[List[torch.Tensor]] = [[] for _ in range(n_lists)]
    offs: List[List[torch.Tensor]] = [[] for _ in range(n_lists)]
    for k, g in enumerate(graphs):
        z.append(g.atomic_numbers)
        pos.append(g.positions)
        for m in range(n_lists):
            eis[m].append(g.edge_indices[m] + shift)
            offs[m].append(g.offsets[m])
        batch.append(torch.full((g.n_atoms,), k, dtype=torch.long, device=g.atomic_numbers.device))
        shift += g.n_atoms
    merged = Graph(
        torch.cat(z), torch.cat(pos), [torch.cat(e, dim=1) for e in eis], [torch.cat(o) for o in offs]
    )
    return merged, torch.cat(batch)
