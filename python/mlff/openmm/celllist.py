"""A cell-list neighbour search written in TorchScript-compatible torch.

It runs inside the module that openmm-torch executes, so it must work on any device
and need no compiled extension beyond torch itself. Memory is O(N): atoms are binned
into cells at least one cutoff wide (in every lattice direction, so triclinic boxes
work), each atom only looks at the atoms of the neighbouring cells, and candidates
are examined in chunks of atoms so the temporary arrays stay bounded at any N.

Two modes share the code:

- dynamic (``capacity < 0``): grid size, cell occupancy and the number of pairs are
  read back from the device every call and arrays are sized exactly;
- static (``capacity >= 0``): those three sizes are fixed ahead of time, nothing is
  read back, and the pair list is padded to ``capacity`` entries. This is what CUDA
  graphs need. Exceeding a size cannot raise without a read-back, so the function
  returns an ``overflow`` flag instead and the caller decides what to do.

Open boundaries are handled as a periodic box large enough (extent + 2 cutoffs) that
no periodic image comes within the cutoff.
"""

from __future__ import annotations

from typing import List, Tuple

import torch


def int_vector(values: List[int], device: torch.device) -> torch.Tensor:
    """A small int64 tensor built on ``device`` by fill kernels.

    ``torch.tensor(values, device=cuda)`` would be a host-to-device copy, which a CUDA
    graph capture does not allow.
    """
    parts = [torch.full((1,), v, dtype=torch.long, device=device) for v in values]
    return torch.cat(parts)


def inverse_box(box: torch.Tensor) -> torch.Tensor:
    """``box^-1`` from cross products: no LAPACK call and no error-check read-back on GPUs."""
    a = box[0]
    b = box[1]
    c = box[2]
    bc = torch.linalg.cross(b, c)
    return torch.stack([bc, torch.linalg.cross(c, a), torch.linalg.cross(a, b)], dim=1) / torch.dot(a, bc)


def perpendicular_widths(box: torch.Tensor) -> torch.Tensor:
    """Distance between opposite faces of the cell spanned by the rows of ``box``."""
    a = box[0]
    b = box[1]
    c = box[2]
    volume = torch.abs(torch.dot(a, torch.linalg.cross(b, c)))
    areas = torch.stack(
        [
            torch.linalg.norm(torch.linalg.cross(b, c)),
            torch.linalg.norm(torch.linalg.cross(c, a)),
            torch.linalg.norm(torch.linalg.cross(a, b)),
        ]
    )
    return volume / areas


def grid_shape(widths: torch.Tensor, cutoff: float, n_atoms: int, max_cells_per_atom: float = 2.0) -> List[int]:
    """Cells per lattice direction: each at least ``cutoff`` wide.

    Sparse systems would get far more cells than atoms; the grid is coarsened (cells
    only get wider, which stays correct) so memory follows the atom count.
    """
    n = torch.clamp(torch.floor(widths / cutoff), min=1.0).to(torch.long)
    shape: List[int] = [int(n[0]), int(n[1]), int(n[2])]
    limit = max(1, int(max_cells_per_atom * n_atoms) + 27)
    while shape[0] * shape[1] * shape[2] > limit:
        k = 0
        if shape[1] > shape[k]:
            k = 1
        if shape[2] > shape[k]:
            k = 2
        shape[k] = max(1, (shape[k] + 1) // 2)
    return shape


def search_range(widths: torch.Tensor, shape: List[int], cutoff: float) -> torch.Tensor:
    """How many neighbouring cells (per direction) a sphere of radius ``cutoff`` can reach.

    A displacement of length ``cutoff`` changes the fractional coordinate along lattice
    direction k by at most cutoff / width_k, i.e. ``cutoff * n_k / width_k`` cells.
    """
    n = int_vector(shape, widths.device).to(widths.dtype)
    return torch.ceil(cutoff * n / widths - 1e-9).to(torch.long).clamp(min=1)


def open_box(positions: torch.Tensor, cutoff: float) -> Tuple[torch.Tensor, torch.Tensor]:
    """A box and an origin for a non-periodic system: extent + 2 cutoffs per direction."""
    lo = positions.min(dim=0).values
    hi = positions.max(dim=0).values
    lengths = (hi - lo) + 2.0 * cutoff + 1e-3
    return torch.diag(lengths), lo


def neighbor_pairs(
    positions: torch.Tensor,
    box: torch.Tensor,
    cutoff: float,
    shape: List[int],
    reach: List[int],
    max_per_cell: int = -1,
    capacity: int = -1,
    max_candidates: int = 1 << 20,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """All ordered pairs (i, j, image) with |r_j - r_i + image @ box| < cutoff.

    ``positions`` [N, 3] and ``box`` [3, 3] (rows are the lattice vectors) in one float
    dtype. Returns ``(edge_index [2, E], images [E, 3] float, frac [N, 3], valid [E] bool,
    overflow [] bool)``: ``frac`` are the wrapped fractional coordinates, so the edge
    vector is ``(frac[j] - frac[i] + images) @ box`` whatever the unwrapped positions
    are. In dynamic mode every edge is valid; in static mode the padding edges are
    (0, 0) with ``valid`` False.
    """
    device = positions.device
    dtype = positions.dtype
    n_atoms = positions.shape[0]
    static = capacity >= 0

    frac = positions @ inverse_box(box)
    frac = frac - torch.floor(frac)
    n_t = int_vector(shape, device)
    cell3 = torch.floor(frac * n_t.to(dtype)).to(torch.long)
    # frac can round to exactly 1.0 after wrapping
    cell3 = torch.minimum(torch.clamp(cell3, min=0), n_t - 1)
    n_cells = shape[0] * shape[1] * shape[2]
    cell = (cell3[:, 0] * shape[1] + cell3[:, 1]) * shape[2] + cell3[:, 2]

    counts = torch.zeros(n_cells, dtype=torch.long, device=device)
    counts = counts.index_add(0, cell, torch.ones_like(cell))
    overflow = torch.zeros((), dtype=torch.bool, device=device)
    if max_per_cell < 0:
        max_per_cell = max(1, int(counts.max()))
    else:
        overflow = overflow | (counts.max() > max_per_cell)
    order = torch.argsort(cell, stable=True)
    sorted_cell = cell[order]
    first = torch.cumsum(counts, 0) - counts
    rank = torch.arange(n_atoms, device=device) - first[sorted_cell]
    dump = n_cells * max_per_cell
    slot = torch.where(rank < max_per_cell, sorted_cell * max_per_cell + rank, torch.full_like(rank, dump))
    table = torch.full((dump + 1,), -1, dtype=torch.long, device=device)
    table = table.index_put((slot,), order)
    table = table[:dump].view(n_cells, max_per_cell)

    r0 = torch.arange(-reach[0], reach[0] + 1, device=device)
    r1 = torch.arange(-reach[1], reach[1] + 1, device=device)
    r2 = torch.arange(-reach[2], reach[2] + 1, device=device)
    g0, g1, g2 = torch.meshgrid(r0, r1, r2, indexing="ij")
    stencil = torch.stack([g0.reshape(-1), g1.reshape(-1), g2.reshape(-1)], dim=1)  # [K, 3]
    n_stencil = stencil.shape[0]

    cutoff2 = cutoff * cutoff
    wrapped = frac @ box
    chunk = max(1, max_candidates // (n_stencil * max_per_cell))
    pieces_i: List[torch.Tensor] = []
    pieces_j: List[torch.Tensor] = []
    pieces_img: List[torch.Tensor] = []
    if static:
        out_i = torch.zeros(capacity + 1, dtype=torch.long, device=device)
        out_j = torch.zeros(capacity + 1, dtype=torch.long, device=device)
        out_img = torch.zeros((capacity + 1, 3), dtype=torch.long, device=device)
    else:
        out_i = torch.zeros(0, dtype=torch.long, device=device)
        out_j = out_i
        out_img = torch.zeros((0, 3), dtype=torch.long, device=device)
    filled = torch.zeros((), dtype=torch.long, device=device)

    for start in range(0, n_atoms, chunk):
        ii = torch.arange(start, min(n_atoms, start + chunk), device=device)
        b = ii.shape[0]
        reached = cell3[ii].unsqueeze(1) + stencil.unsqueeze(0)  # [B, K, 3]
        image = torch.div(reached, n_t, rounding_mode="floor")
        inside = reached - image * n_t
        ncell = (inside[:, :, 0] * shape[1] + inside[:, :, 1]) * shape[2] + inside[:, :, 2]
        jj = table[ncell]  # [B, K, M]
        jj_safe = jj.clamp(min=0)
        shift = image.to(dtype) @ box  # [B, K, 3]
        vec = wrapped[jj_safe] - (wrapped[ii].unsqueeze(1) - shift).unsqueeze(2)
        d2 = (vec * vec).sum(-1)
        is_self = (jj == ii.view(b, 1, 1)) & (image == 0).all(-1).unsqueeze(2)
        mask = (jj >= 0) & (d2 < cutoff2) & ~is_self
        if static:
            flat = mask.reshape(-1)
            dest = filled + torch.cumsum(flat.to(torch.long), 0) - 1
            dest = torch.where(flat & (dest < capacity), dest, torch.full_like(dest, capacity))
            src_i = ii.view(b, 1, 1).expand(jj.shape).reshape(-1)
            src_img = image.unsqueeze(2).expand(b, n_stencil, max_per_cell, 3).reshape(-1, 3)
            out_i = out_i.index_put((dest,), src_i)
            out_j = out_j.index_put((dest,), jj_safe.reshape(-1))
            out_img = out_img.index_put((dest,), src_img)
            filled = filled + flat.sum()
        else:
            hit = torch.nonzero(mask)
            bi = hit[:, 0]
            ki = hit[:, 1]
            pieces_i.append(ii[bi])
            pieces_j.append(jj[bi, ki, hit[:, 2]])
            pieces_img.append(image[bi, ki])

    if static:
        overflow = overflow | (filled > capacity)
        edge_index = torch.stack([out_i[:capacity], out_j[:capacity]])
        images = out_img[:capacity].to(dtype)
        valid = torch.arange(capacity, device=device) < filled
        # padding slots still hold (0, 0, 0) from the initial zeros
    else:
        if len(pieces_i) > 0:
            out_i = torch.cat(pieces_i)
            out_j = torch.cat(pieces_j)
            out_img = torch.cat(pieces_img)
        edge_index = torch.stack([out_i, out_j])
        images = out_img.to(dtype)
        valid = torch.ones(out_i.shape[0], dtype=torch.bool, device=device)
    return edge_index, images, frac, valid, overflow
