"""The TorchScript module OpenMM runs: positions (nm) and box in, energy and forces out.

It owns the engine side of the contract for OpenMM: unit conversion, selection of the
ML atoms, the neighbour list, and the gradient rule (``derive_from_energies``, the
same function every Python engine uses), so TorchForce and the PythonForce fallback
execute literally the same code.
"""

from __future__ import annotations

import warnings
from typing import Dict, List, Optional, Tuple

import torch

from ..contract import derive_from_energies, member_deviation
from ..units import EV_IN_KJ_PER_MOL as EV_TO_KJ_PER_MOL
from ..units import NM_IN_ANGSTROM as NM_TO_ANGSTROM
from .celllist import grid_shape, int_vector, inverse_box, neighbor_pairs, open_box, perpendicular_widths, search_range


class MLFFOpenMMModule(torch.nn.Module):
    """Wraps an exported contract model for openmm-torch (``setOutputsForces(True)``).

    ``model`` has the contract-v2 signature (version-1 files come wrapped in
    :class:`~mlff.contract.V1Adapter`). ``atomic_numbers`` are those of the ML atoms;
    ``atoms`` their indices in the OpenMM system (``None``: every particle, in order).
    ``cutoffs`` are the model's neighbour-list cutoffs; each list gets its own cell-list
    search. ``charge`` and ``fidelity`` are the system inputs, fixed for the force.
    ``static`` switches the neighbour lists to fixed shapes (see
    :mod:`mlff.openmm.celllist`), one :func:`static_sizes` tuple per list.
    ``geometry``: the model declares geometry inputs (Ewald) and gets the ML atoms'
    positions and the box as ``system["positions"]``/``system["cell"]`` (periodic only).
    ``derived``: ``(name, source, per_atom)`` of the outputs computed from partial member
    outputs (a committee's deviations, :func:`mlff.contract.member_deviation`); dynamics
    (``forward``) asks the model for energies only (``system["outputs"] = 0``), so a
    committee's member forces cost nothing there, and :meth:`outputs` computes them.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        atomic_numbers: torch.Tensor,
        cutoffs: List[float],
        dtype: torch.dtype,
        periodic: bool,
        atoms: Optional[torch.Tensor] = None,
        charge: float = 0.0,
        fidelity: int = 0,
        static: Optional[List[Tuple[List[int], List[int], int, int, List[float]]]] = None,
        check_overflow: bool = True,
        close_contact_limit: Optional[float] = None,
        geometry: bool = False,
        derived: Optional[List[Tuple[str, str, bool]]] = None,
    ):
        super().__init__()
        # never empty: TorchScript cannot type an empty list attribute (an empty name is skipped)
        self.derived_names: List[str] = [d[0] for d in derived or []] or [""]
        self.derived_sources: List[str] = [d[1] for d in derived or []] or [""]
        self.derived_per_atom: List[bool] = [bool(d[2]) for d in derived or []] or [False]
        self.register_buffer("energies_only", torch.zeros((), dtype=torch.long))
        if geometry and not periodic:
            raise ValueError("a model with geometry inputs (Ewald) needs a periodic OpenMM System")
        self.geometry = bool(geometry)
        self.model = model
        self.register_buffer("atomic_numbers", atomic_numbers.to(torch.long))
        self.register_buffer(
            "atoms", torch.zeros(0, dtype=torch.long) if atoms is None else atoms.to(torch.long)
        )
        self.subset = atoms is not None
        # an empty tensor of the model dtype: TorchScript has no dtype-typed attributes
        self.register_buffer("dtype_probe", torch.zeros(0, dtype=dtype))
        self.register_buffer("charge", torch.tensor(float(charge), dtype=torch.float64))
        self.register_buffer("fidelity", torch.tensor(int(fidelity), dtype=torch.long))
        self.cutoffs: List[float] = [float(c) for c in cutoffs]
        self.box_cutoff = max(self.cutoffs)
        self.periodic = bool(periodic)
        n_lists = len(self.cutoffs)
        self.static = static is not None
        self.capacities: List[int] = [int(s[3]) for s in static] if static is not None else [-1] * n_lists
        self.grids: List[List[int]] = [list(s[0]) for s in static] if static is not None else [[1, 1, 1]] * n_lists
        self.reaches: List[List[int]] = [list(s[1]) for s in static] if static is not None else [[1, 1, 1]] * n_lists
        self.per_cells: List[int] = [int(s[2]) for s in static] if static is not None else [-1] * n_lists
        self.check_overflow = bool(check_overflow)
        # static mode, open boundaries: the box never gets smaller than the one the grids were
        # sized for, so the fixed grids' cells stay at least a cutoff wide
        self.register_buffer(
            "open_lengths",
            torch.tensor(static[0][4] if static is not None else [0.0, 0.0, 0.0], dtype=torch.float64),
        )
        # warn once when atoms come much closer than in the training data (ModelMetadata)
        self.close_limit = float(close_contact_limit) if close_contact_limit is not None else -1.0
        self.register_buffer("warned_close", torch.zeros((), dtype=torch.bool))
        self.length_scale = NM_TO_ANGSTROM
        self.energy_scale = EV_TO_KJ_PER_MOL
        self.force_scale = EV_TO_KJ_PER_MOL * NM_TO_ANGSTROM

    def _graph(
        self, positions: torch.Tensor, boxvectors: Optional[torch.Tensor]
    ) -> Tuple[torch.Tensor, List[torch.Tensor], List[torch.Tensor], torch.Tensor, torch.Tensor]:
        """ML-atom positions (Å), each list's edges and vectors, and the overflow/non-finite flags."""
        pos = positions.detach().to(torch.float64)
        if self.subset:
            pos = pos[self.atoms]
        pos = pos * self.length_scale
        # NaN/inf positions would fall out of every cell and silently get no neighbours:
        # poison the result instead (no read-back, so CUDA graphs still work)
        bad = ~torch.isfinite(pos).all()
        if self.periodic:
            if boxvectors is None:
                raise RuntimeError("mlff: this force is periodic but OpenMM passed no box vectors")
            box = boxvectors.detach().to(torch.float64) * self.length_scale
            bad = bad | ~torch.isfinite(box).all()
        else:
            box, _ = open_box(torch.nan_to_num(pos), self.box_cutoff)
            if self.static:
                box = torch.diag(torch.maximum(torch.diagonal(box), self.open_lengths.to(box.device)))
        pos = torch.nan_to_num(pos)
        overflow = torch.zeros((), dtype=torch.bool, device=pos.device)
        eis: List[torch.Tensor] = []
        evs: List[torch.Tensor] = []
        widths = perpendicular_widths(box)
        for k, cutoff in enumerate(self.cutoffs):
            if self.static:
                shape = self.grids[k]
                reach = self.reaches[k]
            else:
                shape = grid_shape(widths, cutoff, pos.shape[0])
                r = search_range(widths, shape, cutoff)
                reach = [int(r[0]), int(r[1]), int(r[2])]
            edge_index, images, frac, valid, over = neighbor_pairs(
                pos, box, cutoff, shape, reach, self.per_cells[k], self.capacities[k]
            )
            if self.static:
                # a box that shrank (NPT) can make the fixed grid's cells narrower than the cutoff
                grid_t = int_vector(shape, pos.device).to(torch.float64)
                reach_t = int_vector(reach, pos.device).to(torch.float64)
                overflow = overflow | over | (cutoff * grid_t / widths > reach_t).any()
            i = edge_index[0]
            j = edge_index[1]
            if self.periodic:
                vectors = (frac[j] - frac[i] + images) @ box
            else:
                vectors = pos[j] - pos[i]
            if self.static:
                # padding edges sit past the cutoff, where every contract model gives zero weight
                far = torch.zeros_like(vectors)
                far[:, 0] = 2.0 * cutoff
                vectors = torch.where(valid.unsqueeze(1), vectors, far)
            eis.append(edge_index)
            evs.append(vectors.to(self.dtype_probe.dtype).detach().requires_grad_(True))
        if self.static and self.check_overflow and bool(overflow):
            raise RuntimeError(
                "mlff: the static neighbour list overflowed (more pairs or atoms per cell than "
                "its fixed capacity, or the box shrank below its grid); rebuild MLFFForce "
                "with a larger static_capacity_factor or without static shapes"
            )
        return pos, eis, evs, overflow, bad

    def _system(self) -> Dict[str, torch.Tensor]:
        return {"charge": self.charge, "fidelity": self.fidelity}

    def _add_geometry(
        self, system: Dict[str, torch.Tensor], positions: torch.Tensor, boxvectors: Optional[torch.Tensor]
    ) -> Dict[str, torch.Tensor]:
        """``system`` plus the geometry inputs of a model that declares them (Ewald): the ML
        atoms' positions wrapped into the box (the node positions the edge vectors were
        built from) and the box, Å, model dtype, leaves that require grad."""
        if not self.geometry:
            return system
        if boxvectors is None:
            raise RuntimeError("mlff: this model needs the periodic box (Ewald) but OpenMM passed no box vectors")
        pos = positions.detach().to(torch.float64)
        if self.subset:
            pos = pos[self.atoms]
        pos = torch.nan_to_num(pos * self.length_scale)
        box = boxvectors.detach().to(torch.float64) * self.length_scale
        frac = pos @ inverse_box(box)
        frac = frac - torch.floor(frac)
        dtype = self.dtype_probe.dtype
        system["positions"] = (frac @ box).to(dtype).requires_grad_(True)
        system["cell"] = box.to(dtype).requires_grad_(True)
        return system

    def forward(
        self, positions: torch.Tensor, boxvectors: Optional[torch.Tensor] = None
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        n_total = positions.shape[0]
        pos, eis, evs, overflow, bad = self._graph(positions, boxvectors)
        n = pos.shape[0]
        if self.close_limit > 0.0 and not self.static and not bool(self.warned_close) and evs[0].shape[0] > 0:
            # a read-back, so not in static (CUDA-graph) mode
            shortest = float(torch.linalg.norm(evs[0].detach(), dim=1).min())
            if shortest < self.close_limit:
                self.warned_close.fill_(True)
                warnings.warn(
                    "mlff: two atoms are " + str(shortest) + " A apart, far closer than the "
                    "shortest distance in the model's training data (warning below "
                    + str(self.close_limit) + " A): the model extrapolates there and may "
                    "attract instead of repel; add a core repulsion (a ZBL term)"
                )
        # callers run this with grad mode on (openmm-torch does; the PythonForce callback
        # makes sure): TorchScript cannot switch it on itself
        system = self._add_geometry(self._system(), positions, boxvectors)
        system["outputs"] = self.energies_only
        out = self.model(self.atomic_numbers, eis, evs, n, system)
        result = derive_from_energies(
            out["energies"], eis, evs, n, False, False, system.get("positions"), system.get("cell")
        )
        energy = result["energy"].detach().to(torch.float64) * self.energy_scale
        forces = result["forces"].detach().to(torch.float64) * self.force_scale
        poison = bad
        if self.static and not self.check_overflow:
            # no read-back allowed (CUDA graphs): make an overflow impossible to miss
            poison = poison | overflow
        energy = torch.where(poison, torch.full_like(energy, float("nan")), energy)
        forces = torch.where(poison, torch.full_like(forces, float("nan")), forces)
        if self.subset:
            full = torch.zeros((n_total, 3), dtype=torch.float64, device=forces.device)
            forces = full.index_copy(0, self.atoms, forces)
        return energy, forces.to(positions.dtype)

    @torch.jit.export
    def outputs(self, positions: torch.Tensor, boxvectors: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
        """The model's outputs for the ML atoms (eV, Å, e): per-atom energies and named outputs.

        Same neighbour lists and system inputs as :meth:`forward`; for
        :func:`mlff.openmm.evaluate_atoms` and users who want per-atom quantities.
        """
        pos, eis, evs, overflow, bad = self._graph(positions, boxvectors)
        if bool(bad):
            raise RuntimeError("mlff: non-finite positions or box vectors")
        system = self._add_geometry(self._system(), positions, boxvectors)
        out = self.model(self.atomic_numbers, eis, evs, pos.shape[0], system)
        result: Dict[str, torch.Tensor] = {}
        for key, value in out.items():
            result[key] = value.detach()
        # no ghosts here: the partial member outputs are complete, so derive directly
        for k in range(len(self.derived_names)):
            source = self.derived_sources[k]
            if source != "" and source in result:
                result[self.derived_names[k]] = member_deviation(result[source], self.derived_per_atom[k])
        return result


def static_sizes(
    positions_angstrom: torch.Tensor,
    box_angstrom: Optional[torch.Tensor],
    cutoff: float,
    factor: float = 1.5,
    box_cutoff: Optional[float] = None,
) -> Tuple[List[int], List[int], int, int, List[float]]:
    """Grid, reach, cell occupancy, pair capacity (and open-box lengths) for the static mode.

    Taken from one configuration; ``factor`` (> 1) leaves room for density fluctuations
    and a moderately shrinking periodic box. ``box_cutoff`` (default ``cutoff``) sizes
    the open-boundary box: the largest cutoff of the model, shared by all its lists.
    """
    pos = positions_angstrom.to(torch.float64)
    if box_angstrom is None:
        box, _ = open_box(pos, box_cutoff if box_cutoff is not None else cutoff)
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
