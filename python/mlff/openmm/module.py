"""The TorchScript module OpenMM runs: positions (nm) and box in, energy and forces out.

It owns the engine side of the contract for OpenMM: unit conversion, selection of the
ML atoms, the neighbour list, and the gradient rule (``derive_from_energies``, the
same function every Python engine uses), so TorchForce and the PythonForce fallback
execute literally the same code.
"""

from __future__ import annotations

from typing import List, Optional, Tuple

import torch

from ..contract import derive_from_energies
from .celllist import grid_shape, int_vector, inverse_box, neighbor_pairs, open_box, perpendicular_widths, search_range


def _ev_to_kj_per_mol() -> float:
    from ase import units

    return 1.0 / (units.kJ / units.mol)


#: 1 eV in kJ/mol, taken from ASE's constants so that energies from OpenMM and from the
#: ASE calculator agree to the last digit; 1 nm in Å.
EV_TO_KJ_PER_MOL = _ev_to_kj_per_mol()
NM_TO_ANGSTROM = 10.0


class MLFFOpenMMModule(torch.nn.Module):
    """Wraps an exported contract model for openmm-torch (``setOutputsForces(True)``).

    ``atomic_numbers`` are those of the ML atoms; ``atoms`` their indices in the OpenMM
    system (``None``: every particle, in order). ``static_capacity`` switches the
    neighbour list to fixed shapes (see :mod:`mlff.openmm.celllist`); ``static_grid`` and
    ``static_per_cell`` then fix the cell grid and the cell occupancy.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        atomic_numbers: torch.Tensor,
        cutoff: float,
        dtype: torch.dtype,
        periodic: bool,
        atoms: Optional[torch.Tensor] = None,
        static_capacity: int = -1,
        static_grid: Optional[List[int]] = None,
        static_reach: Optional[List[int]] = None,
        static_per_cell: int = -1,
        check_overflow: bool = True,
        static_open_lengths: Optional[List[float]] = None,
    ):
        super().__init__()
        self.model = model
        self.register_buffer("atomic_numbers", atomic_numbers.to(torch.long))
        self.register_buffer(
            "atoms", torch.zeros(0, dtype=torch.long) if atoms is None else atoms.to(torch.long)
        )
        self.subset = atoms is not None
        # an empty tensor of the model dtype: TorchScript has no dtype-typed attributes
        self.register_buffer("dtype_probe", torch.zeros(0, dtype=dtype))
        self.cutoff = float(cutoff)
        self.periodic = bool(periodic)
        self.capacity = int(static_capacity)
        self.grid: List[int] = list(static_grid) if static_grid is not None else [1, 1, 1]
        self.reach: List[int] = list(static_reach) if static_reach is not None else [1, 1, 1]
        self.per_cell = int(static_per_cell)
        self.check_overflow = bool(check_overflow)
        # static mode, open boundaries: the box never gets smaller than the one the grid was
        # sized for, so the fixed grid's cells stay at least a cutoff wide
        self.register_buffer(
            "open_lengths",
            torch.tensor(static_open_lengths if static_open_lengths is not None else [0.0, 0.0, 0.0], dtype=torch.float64),
        )
        self.length_scale = NM_TO_ANGSTROM
        self.energy_scale = EV_TO_KJ_PER_MOL
        self.force_scale = EV_TO_KJ_PER_MOL * NM_TO_ANGSTROM

    def forward(
        self, positions: torch.Tensor, boxvectors: Optional[torch.Tensor] = None
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        n_total = positions.shape[0]
        pos = positions.detach().to(torch.float64)
        if self.subset:
            pos = pos[self.atoms]
        pos = pos * self.length_scale
        if self.periodic:
            if boxvectors is None:
                raise RuntimeError("mlff: this force is periodic but OpenMM passed no box vectors")
            box = boxvectors.detach().to(torch.float64) * self.length_scale
        else:
            box, _ = open_box(pos, self.cutoff)
            if self.capacity >= 0:
                box = torch.diag(torch.maximum(torch.diagonal(box), self.open_lengths.to(box.device)))

        if self.capacity >= 0:
            shape = self.grid
            reach = self.reach
        else:
            widths = perpendicular_widths(box)
            shape = grid_shape(widths, self.cutoff, pos.shape[0])
            r = search_range(widths, shape, self.cutoff)
            reach = [int(r[0]), int(r[1]), int(r[2])]
        edge_index, images, frac, valid, overflow = neighbor_pairs(
            pos, box, self.cutoff, shape, reach, self.per_cell, self.capacity
        )
        if self.capacity >= 0:
            # a box that shrank (NPT) can make the fixed grid's cells narrower than the cutoff
            widths = perpendicular_widths(box)
            grid_t = int_vector(shape, pos.device).to(torch.float64)
            reach_t = int_vector(reach, pos.device).to(torch.float64)
            overflow = overflow | (self.cutoff * grid_t / widths > reach_t).any()
            if self.check_overflow and bool(overflow):
                raise RuntimeError(
                    "mlff: the static neighbour list overflowed (more pairs or atoms per cell than "
                    "its fixed capacity, or the box shrank below its grid); rebuild MLFFForce "
                    "with a larger static_capacity_factor or without static shapes"
                )

        i = edge_index[0]
        j = edge_index[1]
        if self.periodic:
            vectors = (frac[j] - frac[i] + images) @ box
        else:
            vectors = pos[j] - pos[i]
        if self.capacity >= 0:
            # padding edges sit past the cutoff, where every contract model gives zero weight
            far = torch.zeros_like(vectors)
            far[:, 0] = 2.0 * self.cutoff
            vectors = torch.where(valid.unsqueeze(1), vectors, far)
        edge_vectors = vectors.to(self.dtype_probe.dtype).detach().requires_grad_(True)

        # callers run this with grad mode on (openmm-torch does; the PythonForce callback
        # makes sure): TorchScript cannot switch it on itself
        out = self.model(self.atomic_numbers, edge_index, edge_vectors, pos.shape[0])
        result = derive_from_energies(out["energies"], edge_index, edge_vectors, pos.shape[0], False, False)
        energy = result["energy"].detach().to(torch.float64) * self.energy_scale
        forces = result["forces"].detach().to(torch.float64) * self.force_scale
        if self.capacity >= 0 and not self.check_overflow:
            # no read-back allowed (CUDA graphs): make an overflow impossible to miss
            energy = torch.where(overflow, torch.full_like(energy, float("nan")), energy)
        if self.subset:
            full = torch.zeros((n_total, 3), dtype=torch.float64, device=forces.device)
            forces = full.index_copy(0, self.atoms, forces)
        return energy, forces.to(positions.dtype)


def static_sizes(
    positions_angstrom: torch.Tensor,
    box_angstrom: Optional[torch.Tensor],
    cutoff: float,
    factor: float = 1.5,
) -> Tuple[List[int], List[int], int, int, List[float]]:
    """Grid, reach, cell occupancy, pair capacity (and open-box lengths) for the static mode.

    Taken from one configuration; ``factor`` (> 1) leaves room for density fluctuations
    and a moderately shrinking periodic box.
    """
    pos = positions_angstrom.to(torch.float64)
    if box_angstrom is None:
        box, _ = open_box(pos, cutoff)
        open_lengths = [float(x) for x in torch.diagonal(box)]
        shrink = 1.0  # the module never lets an open box shrink below this one
    else:
        box = box_angstrom.to(torch.float64)
        open_lengths = [0.0, 0.0, 0.0]
        # size cells for a box that shrank by 1/factor**(1/3) in every direction
        shrink = factor ** (1.0 / 3.0)
    widths = perpendicular_widths(box)
    shape = grid_shape(widths / shrink, cutoff, pos.shape[0])
    r = search_range(widths / shrink, shape, cutoff)
    reach = [int(r[0]), int(r[1]), int(r[2])]
    edge_index, _, _, _, _ = neighbor_pairs(pos, box, cutoff, shape, reach)
    frac = pos @ inverse_box(box)
    frac = frac - torch.floor(frac)
    n_t = torch.tensor(shape, dtype=torch.long)
    cell3 = torch.minimum(torch.floor(frac * n_t.to(torch.float64)).long().clamp(min=0), n_t - 1)
    cell = (cell3[:, 0] * shape[1] + cell3[:, 1]) * shape[2] + cell3[:, 2]
    per_cell = int(torch.bincount(cell, minlength=shape[0] * shape[1] * shape[2]).max())
    per_cell = int(per_cell * factor) + 2
    capacity = int(edge_index.shape[1] * factor) + 64
    return shape, reach, per_cell, capacity, open_lengths
