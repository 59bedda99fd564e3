"""Contract-v2 test models: everything version 2 can express, in small scriptable modules.

``TwoListModel``: a PaiNN network on a short list plus a long-range pair term whose
strength depends on environment-dependent atomic charges (so an owned atom's energy
depends on its neighbours' neighbours through the long list), a total-charge input, two
fidelities, and a per-atom output ``charges``. ``GlobalChargeModel``: the same with
charges normalised to the total charge over all atoms, a whole-system term
(``locality: global``). Neither is physical; both exercise every engine path.
"""

from __future__ import annotations

from typing import Any, Dict, List, Sequence, Tuple

import torch
from torch import nn

from mlff.models import PaiNN
from mlff.models.radial import PolynomialCutoff


class TwoListModel(nn.Module):
    kind = "test-two-lists"
    locality = "local"

    def __init__(self, elements: Sequence[int], short: float = 3.0, long: float = 6.0, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.net = PaiNN(list(elements), cutoff=short, n_features=8, num_interactions=2, n_rbf=6)
        elements = sorted(int(z) for z in elements)
        self.elements = elements
        self.short = float(short)
        self.long = float(long)
        lookup = torch.full((119,), -1, dtype=torch.long)
        for k, z in enumerate(elements):
            lookup[z] = k
        self.register_buffer("z_to_index", lookup)
        n = len(elements)
        self.register_buffer("qref", torch.linspace(-0.4, 0.4, n, dtype=torch.float64))
        self.register_buffer("c6", torch.linspace(1.0, 2.0, n, dtype=torch.float64))
        self.fc_short = PolynomialCutoff(short)
        self.fc_long = PolynomialCutoff(long)

    @torch.jit.unused
    def neighbor_lists(self) -> List[Tuple[str, float, float]]:
        # charges of long-list partners come from their own short edges
        return [("short", self.short, max(self.short, self.long)), ("long", self.long, 0.0)]

    @torch.jit.unused
    def contract_info(self) -> Dict[str, Any]:
        return dict(
            kind=self.kind,
            elements=self.elements,
            neighbor_lists=self.neighbor_lists(),
            num_interactions=2,
            # charges see the short list; the long pair term couples charges of atoms a
            # long cutoff apart: long + short
            interaction_range=max(2 * self.short, self.long + self.short),
            outputs=[{"name": "charges", "per_atom": True, "unit": "e", "description": "toy charges"}],
            fidelities=["low", "high"],
            uses_charge=True,
            locality=self.locality,
        )

    def raw_charges(self, idx: torch.Tensor, edge_index: torch.Tensor, r: torch.Tensor, n: int) -> torch.Tensor:
        coordination = torch.zeros(n, dtype=r.dtype, device=r.device).index_add(0, edge_index[0], self.fc_short(r))
        return self.qref.to(r.dtype)[idx] + 0.05 * coordination

    def charges(
        self, idx: torch.Tensor, edge_index: torch.Tensor, r: torch.Tensor, n_local: int, total: torch.Tensor
    ) -> torch.Tensor:
        n = idx.shape[0]
        return self.raw_charges(idx, edge_index, r, n) + 0.01 * total.to(r.dtype)

    def forward(
        self,
        atomic_numbers: torch.Tensor,
        edge_indices: List[torch.Tensor],
        edge_vectors: List[torch.Tensor],
        n_local: int,
        system: Dict[str, torch.Tensor],
    ) -> Dict[str, torch.Tensor]:
        idx = self.z_to_index[atomic_numbers]
        r_short = torch.linalg.norm(edge_vectors[0], dim=1)
        q = self.charges(idx, edge_indices[0], r_short, n_local, system["charge"])
        return self.energies_from_charges(atomic_numbers, edge_indices, edge_vectors, q, system)

    def energies_from_charges(
        self,
        atomic_numbers: torch.Tensor,
        edge_indices: List[torch.Tensor],
        edge_vectors: List[torch.Tensor],
        q: torch.Tensor,
        system: Dict[str, torch.Tensor],
    ) -> Dict[str, torch.Tensor]:
        idx = self.z_to_index[atomic_numbers]
        e = self.net.energies(atomic_numbers, edge_indices[0], edge_vectors[0])["energies"]
        i = edge_indices[1][0]
        j = edge_indices[1][1]
        r = torch.linalg.norm(edge_vectors[1], dim=1)
        fc = self.fc_long(r)
        c6 = self.c6.to(r.dtype)
        pair = (-c6[idx[i]] * c6[idx[j]] / (r**6 + 20.0) + q[i] * q[j] * torch.exp(-0.5 * r)) * fc
        e = e + torch.zeros_like(e).index_add(0, i, 0.5 * pair)
        e = e * (1.0 + 0.1 * system["fidelity"].to(e.dtype))
        return {"energies": e, "charges": q}


class GlobalChargeModel(TwoListModel):
    """Charges normalised so that they sum to the total charge: a whole-system term.

    The two sums it needs (Σf and Σq over all atoms) come from ``global_sums`` over the
    owned atoms, or complete from the engine in ``system["global_sums"]`` (LAMMPS MPI).
    """

    kind = "test-global-charges"
    locality = "global"

    @torch.jit.unused
    def contract_info(self) -> Dict[str, Any]:
        return {**super().contract_info(), "global_sums": 2}

    def _raw(self, atomic_numbers: torch.Tensor, edge_indices: List[torch.Tensor],
             edge_vectors: List[torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
        idx = self.z_to_index[atomic_numbers]
        r = torch.linalg.norm(edge_vectors[0], dim=1)
        q = self.raw_charges(idx, edge_indices[0], r, idx.shape[0])
        return q, 1.0 + 0.1 * q * q

    @torch.jit.export
    def global_sums(
        self,
        atomic_numbers: torch.Tensor,
        edge_indices: List[torch.Tensor],
        edge_vectors: List[torch.Tensor],
        n_local: int,
        system: Dict[str, torch.Tensor],
    ) -> torch.Tensor:
        q, f = self._raw(atomic_numbers, edge_indices, edge_vectors)
        return torch.stack([f[:n_local].sum(), q[:n_local].sum()])

    def forward(
        self,
        atomic_numbers: torch.Tensor,
        edge_indices: List[torch.Tensor],
        edge_vectors: List[torch.Tensor],
        n_local: int,
        system: Dict[str, torch.Tensor],
    ) -> Dict[str, torch.Tensor]:
        if "global_sums" in system:
            sums = system["global_sums"]
        else:
            sums = self.global_sums(atomic_numbers, edge_indices, edge_vectors, n_local, system)
        q, f = self._raw(atomic_numbers, edge_indices, edge_vectors)
        q = q + f / sums[0] * (system["charge"].to(q.dtype) - sums[1])
        return self.energies_from_charges(atomic_numbers, edge_indices, edge_vectors, q, system)


class PerRankChargeModel(TwoListModel):
    """A whole-system model that does not expose its sums: refused on several LAMMPS ranks."""

    kind = "test-per-rank-charges"
    locality = "global"

    def charges(
        self, idx: torch.Tensor, edge_index: torch.Tensor, r: torch.Tensor, n_local: int, total: torch.Tensor
    ) -> torch.Tensor:
        q = self.raw_charges(idx, edge_index, r, idx.shape[0])
        return q + (total.to(q.dtype) - q[:n_local].sum()) / n_local
