"""Ziegler-Biersack-Littmark screened nuclear repulsion as a contract-v2 term.

Pair energy (Ziegler, Biersack, Littmark, *The Stopping and Range of Ions in Matter*, 1985):

    E_ZBL(r) = K Z_i Z_j / r * phi(r / a),   a = 0.46850 Å / (Z_i^0.23 + Z_j^0.23)
    phi(x)   = 0.18175 e^{-3.19980 x} + 0.50986 e^{-0.94229 x}
             + 0.28022 e^{-0.40290 x} + 0.02817 e^{-0.20162 x}

with LAMMPS' ``pair_style zbl inner outer`` truncation (the switch of ``lj/gromacs``):
E(r) = E_ZBL(r) + S(r) for r < outer and 0 beyond, where, with t = r - inner and
d = outer - inner,

    S(r) = C                          for r <= inner
    S(r) = A/3 t^3 + B/4 t^4 + C      for inner < r < outer
    A = (-3 E'(outer) + d E''(outer)) / d^2
    B = ( 2 E'(outer) - d E''(outer)) / d^3
    C = -E(outer) + d/2 E'(outer) - d^2/12 E''(outer)

so that energy, force and the force's derivative all vanish at ``outer`` (derived from
those three conditions; LAMMPS' documentation states them). K defaults to LAMMPS' metal
units value of e^2 / (4 pi eps0), 14.399645 eV Å, so the term reproduces ``pair_style zbl``
to rounding; CODATA's 14.3996454784 differs by 3e-8 relative.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Sequence, Tuple

import torch

from ..elements import element_indices, element_table
from .base import PhysicsTerm

#: e^2 / (4 pi eps0) in eV Å as LAMMPS ``units metal`` defines it (force->qqr2e).
LAMMPS_METAL_COULOMB = 14.399645
#: Universal screening length prefactor (Å) and exponent of the ZBL screening radius.
ZBL_A0 = 0.46850
ZBL_POWER = 0.23
#: Universal screening function coefficients c_k and exponents d_k.
ZBL_C = (0.18175, 0.50986, 0.28022, 0.02817)
ZBL_D = (3.19980, 0.94229, 0.40290, 0.20162)


def zbl_pair(r: float, zi: float, zj: float, k: float = LAMMPS_METAL_COULOMB) -> Tuple[float, float, float]:
    """Unswitched E, dE/dr and d2E/dr2 of one pair at distance ``r`` (Å), in float64."""
    a = ZBL_A0 / (zi**ZBL_POWER + zj**ZBL_POWER)
    zz = k * zi * zj
    x = r / a
    phi = sum(c * math.exp(-d * x) for c, d in zip(ZBL_C, ZBL_D))
    dphi = sum(-d * c * math.exp(-d * x) for c, d in zip(ZBL_C, ZBL_D)) / a
    d2phi = sum(d * d * c * math.exp(-d * x) for c, d in zip(ZBL_C, ZBL_D)) / (a * a)
    e = zz * phi / r
    de = zz * (dphi / r - phi / r**2)
    d2e = zz * (d2phi / r - 2.0 * dphi / r**2 + 2.0 * phi / r**3)
    return e, de, d2e


def switch_coefficients(inner: float, outer: float, zi: float, zj: float, k: float) -> Tuple[float, float, float]:
    """A, B, C of the switch that zeroes E, E' and E'' at ``outer``."""
    e, de, d2e = zbl_pair(outer, zi, zj, k)
    d = outer - inner
    a = (-3.0 * de + d * d2e) / (d * d)
    b = (2.0 * de - d * d2e) / (d * d * d)
    c = -e + 0.5 * d * de - d * d * d2e / 12.0
    return a, b, c


class ZBL(PhysicsTerm):
    """ZBL repulsion per atom (eV), switched to zero between ``inner`` and ``outer`` (Å).

    One neighbour list (``"zbl"``, cutoff ``outer``); each pair energy is split half and
    half between its atoms.
    """

    kind = "zbl"

    def __init__(
        self,
        elements: Sequence[int],
        inner: float = 1.5,
        outer: float = 2.0,
        coulomb_constant: float = LAMMPS_METAL_COULOMB,
    ):
        super().__init__()
        elements = sorted({int(z) for z in elements})
        if not elements or min(elements) < 1 or max(elements) > 118:
            raise ValueError(f"elements must be atomic numbers 1..118, got {elements}")
        if not 0.0 < inner < outer:
            raise ValueError(f"ZBL needs 0 < inner < outer (Å), got inner={inner}, outer={outer}")
        self.elements: List[int] = elements
        self.inner = float(inner)
        self.outer = float(outer)
        self.coulomb_constant = float(coulomb_constant)
        self.n_elements = len(elements)
        n = len(elements)
        self.register_buffer("z_to_index", element_table(elements))
        zz = torch.zeros(n * n, dtype=torch.float64)
        inv_a = torch.zeros(n * n, dtype=torch.float64)
        sw = torch.zeros(n * n, 3, dtype=torch.float64)
        for p, zi in enumerate(elements):
            for q, zj in enumerate(elements):
                zz[p * n + q] = self.coulomb_constant * zi * zj
                inv_a[p * n + q] = (zi**ZBL_POWER + zj**ZBL_POWER) / ZBL_A0
                a, b, c = switch_coefficients(self.inner, self.outer, float(zi), float(zj), self.coulomb_constant)
                sw[p * n + q] = torch.tensor([a / 3.0, b / 4.0, c], dtype=torch.float64)
        self.register_buffer("pair_zz", zz)
        self.register_buffer("pair_inv_a", inv_a)
        self.register_buffer("pair_switch", sw)  # A/3, B/4, C
        self.register_buffer("screen_c", torch.tensor(ZBL_C, dtype=torch.float64))
        self.register_buffer("screen_d", torch.tensor(ZBL_D, dtype=torch.float64))

    @torch.jit.unused
    def neighbor_lists(self) -> List[Tuple[str, float, float]]:
        return [("zbl", self.outer, 0.0)]  # a pair term: edges centred on counted atoms only

    @torch.jit.unused
    def hyperparameters(self) -> Dict[str, Any]:
        """Constructor arguments that rebuild this term: ``ZBL(**hyperparameters())``."""
        return dict(
            elements=list(self.elements),
            inner=self.inner,
            outer=self.outer,
            coulomb_constant=self.coulomb_constant,
        )

    @torch.jit.unused
    def interaction_range(self) -> float:
        return self.outer

    def forward(
        self,
        atomic_numbers: torch.Tensor,
        edge_indices: List[torch.Tensor],
        edge_vectors: List[torch.Tensor],
        n_local: int,
        system: Dict[str, torch.Tensor],
    ) -> Dict[str, torch.Tensor]:
        return {"energies": self.energies(atomic_numbers, edge_indices[0], edge_vectors[0])}

    def energies(
        self, atomic_numbers: torch.Tensor, edge_index: torch.Tensor, edge_vectors: torch.Tensor
    ) -> torch.Tensor:
        """Per-atom energies [N] (eV) from the one ``zbl`` list."""
        species = element_indices(self.z_to_index, atomic_numbers, "ZBL")
        dtype = edge_vectors.dtype
        i = edge_index[0]
        pair = species[i] * self.n_elements + species[edge_index[1]]
        r2 = (edge_vectors * edge_vectors).sum(dim=-1)
        valid = r2 > 0.0
        r = torch.sqrt(torch.where(valid, r2, torch.ones_like(r2)))
        x = (r * self.pair_inv_a[pair].to(dtype)).unsqueeze(-1)
        phi = (self.screen_c.to(dtype) * torch.exp(-self.screen_d.to(dtype) * x)).sum(dim=-1)
        sw = self.pair_switch[pair].to(dtype)
        t = torch.clamp(r - self.inner, min=0.0)
        e = self.pair_zz[pair].to(dtype) * phi / r + t * t * t * (sw[:, 0] + sw[:, 1] * t) + sw[:, 2]
        e = torch.where(valid & (r < self.outer), e, torch.zeros_like(e))
        return torch.zeros(atomic_numbers.shape[0], dtype=dtype, device=edge_vectors.device).index_add(
            0, i, 0.5 * e
        )
