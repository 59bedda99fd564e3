"""DFT-D3 dispersion with Becke-Johnson (rational) damping as a contract-v2 term.

Two-body D3(BJ) as in simple-dftd3 / tad-dftd3 (Grimme et al. 2010, 2011):

- coordination number  CN_i = sum_j 1 / (1 + exp(-k1 (R_cov,ij / r_ij - 1))),  k1 = 16,
  R_cov,ij the sum of the D3 covalent radii (4/3 x Pyykkö);
- Gaussian weights      w_ia = exp(-k3 (CN_i - CN_ref,ia)^2) / sum_b exp(...),  k3 = 4,
  evaluated in float64; where every weight underflows to zero (CN far above all the
  references) the reference with the largest CN gets weight 1 (tad-dftd3's rule, which
  reproduces simple-dftd3's);
- C6_ij = sum_ab w_ia w_jb C6_ref(Z_i, Z_j, a, b),  C8_ij = 3 C6_ij sqrt(Q_i Q_j) with
  sqrt(Q) the tabulated r4r2 values;
- E_ij = -C6_ij (s6 / (r^6 + R0^6) + s8 (C8/C6) / (r^8 + R0^8)),
  R0 = a1 sqrt(C8_ij / C6_ij) + a2.

The reference data (bohr, hartree) are converted once, when the module is built, to Å and
eV with ``ase.units`` (Bohr = 0.5291772105638411 Å, Hartree = 27.211386024367243 eV:
ASE's CODATA 2014 values, the ones the dftd3 ASE calculator uses as well): C6 in eV Å^6,
C8/C6 in Å^2, R0 and the covalent radii in Å; ``a2`` is given in bohr, as in the tables.

Truncation: the pair energy is multiplied by a C2 switch over ``[cutoff - switch_width,
cutoff]`` and the counting function, separately, by the same switch over
``[cn_cutoff - switch_width, cn_cutoff]``; ``switch_width = 0`` gives the hard cutoffs
of the reference implementations (simple-dftd3's defaults are 60 bohr = 31.75 Å for the
pairs and 40 bohr = 21.17 Å for CN). The three-body (ATM) term is not included.

The module needs only TorchScript-able torch operations; tad-dftd3 (and dftd3 for the
named parameters) are read once, when the module is built.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from ase.units import Bohr as _BOHR
from ase.units import Hartree as _HARTREE

from ..elements import element_indices, element_table
from ._d3_reference import K1, K3, bj_parameters, normalize_functional, reference_tables
from .base import PhysicsTerm

#: Dispersion pair cutoff (Å): the truncation error of PBE-D3(BJ) is ~0.2 meV/atom for
#: water at 15 Å; metals converge slower (fcc Cu ~6 meV/atom at 15 Å, 0.15 at 50 Å).
DEFAULT_CUTOFF = 15.0
#: Coordination-number cutoff (Å); CN changes < 3 µeV/atom between 10 and 21 Å.
DEFAULT_CN_CUTOFF = 10.0
#: Width (Å) of the C2 switch that takes pair energy and counting function to zero at
#: their cutoffs (0 = hard cutoffs, as simple-dftd3 and LAMMPS' dispersion/d3 use).
DEFAULT_SWITCH_WIDTH = 2.0


def smooth_cutoff(r: torch.Tensor, cutoff: float, width: float) -> torch.Tensor:
    """1 below ``cutoff - width``, 0 beyond ``cutoff``; C2 in between.

    The quintic ``1 - 10x^3 + 15x^4 - 6x^5 = (1 - x)^3 (1 + 3x + 6x^2)`` (x = (r - cutoff +
    width) / width) has zero first and second derivatives at both ends, so energy, force
    and the force's derivative reach zero continuously at the cutoff; the factored form
    makes value and gradient exactly 0 at r = cutoff in floating point too. ``width <= 0``
    is the hard cutoff (weight 1 for r <= cutoff). The clamp makes the gradient exactly
    zero outside the switching shell.
    """
    if width <= 0.0:
        return (r <= cutoff).to(r.dtype)
    x = torch.clamp((r - (cutoff - width)) * (1.0 / width), 0.0, 1.0)
    y = 1.0 - x
    return y * y * y * (1.0 + x * (3.0 + 6.0 * x))


class D3BJ(PhysicsTerm):
    """Two-body DFT-D3(BJ) dispersion energy per atom (eV) under contract v2.

    Parameters
    ----------
    elements:
        Atomic numbers the term must handle (stored sorted; data for these only).
    functional:
        Name in simple-dftd3's table (``"pbe"``, ``"pbe0"``, ``"b3lyp"``, ``"tpss"``,
        ``"wb97m"``, ``"wb97x"``, ...); ``None`` when s8, a1 and a2 are all given.
    s6, s8, a1, a2:
        Explicit rational-damping parameters (``a2`` in bohr); each one given overrides
        the functional's value. ``s6`` defaults to the functional's (else 1). With all
        four given, the functional is only a label and no table is read.
    cutoff, cn_cutoff:
        Dispersion pair and coordination-number cutoffs in Å.
    switch_width:
        Width in Å of the C2 switch applied to both (0 = hard cutoffs).
    """

    kind = "d3bj"

    def __init__(
        self,
        elements: Sequence[int],
        functional: Optional[str] = "pbe",
        s6: Optional[float] = None,
        s8: Optional[float] = None,
        a1: Optional[float] = None,
        a2: Optional[float] = None,
        cutoff: float = DEFAULT_CUTOFF,
        cn_cutoff: float = DEFAULT_CN_CUTOFF,
        switch_width: float = DEFAULT_SWITCH_WIDTH,
    ):
        super().__init__()
        elements = sorted({int(z) for z in elements})
        if not elements:
            raise ValueError("elements must be a non-empty list of atomic numbers")
        explicit = all(v is not None for v in (s6, s8, a1, a2))
        if functional is not None and not explicit:
            params = bj_parameters(functional)
        else:
            # all four numbers given (a rebuild from hyperparameters needs no parameter table)
            missing = [k for k, v in (("s8", s8), ("a1", a1), ("a2", a2)) if v is None]
            if missing:
                raise ValueError(f"without a functional name, give s8, a1 and a2 explicitly (missing {missing})")
            params = dict(s6=1.0)
        for key, value in (("s6", s6), ("s8", s8), ("a1", a1), ("a2", a2)):
            if value is not None:
                params[key] = float(value)
        if not (cutoff > 0 and cn_cutoff > 0):
            raise ValueError(f"cutoffs must be positive, got cutoff={cutoff}, cn_cutoff={cn_cutoff}")
        if not 0.0 <= switch_width < min(cutoff, cn_cutoff):
            raise ValueError(
                f"switch_width must lie in [0, min(cutoff, cn_cutoff)), got {switch_width}"
            )

        self.elements: List[int] = elements
        self.functional: Optional[str] = None if functional is None else normalize_functional(functional)
        self.s6 = float(params["s6"])
        self.s8 = float(params["s8"])
        self.a1 = float(params["a1"])
        self.a2 = float(params["a2"])
        self.cutoff = float(cutoff)
        self.cn_cutoff = float(cn_cutoff)
        self.switch_width = float(switch_width)
        self.k1 = float(K1)
        self.k3 = float(K3)
        self.n_elements = len(elements)

        tables = reference_tables(elements)
        n = len(elements)
        self.register_buffer("z_to_index", element_table(elements))
        # keep only the reference slots some element of the model uses (H, O: 2-3 of 7);
        # the dropped slots have weight exactly zero, so the result is unchanged
        used = (tables["ref_cn"] >= 0).any(dim=0).nonzero().flatten()
        ref_cn = tables["ref_cn"][:, used].contiguous()
        self.n_refs = int(used.numel())
        self.register_buffer("ref_cn", ref_cn)  # [n, R], -1 pads unused slots
        # a floating 0/1 mask rather than bool, so .to(dtype/device) treats every table alike
        self.register_buffer("ref_valid", (ref_cn >= 0).to(torch.float64))
        # reference C6 in eV Å^6, laid out [n(i), R(a), n(u), R(b)] for the per-atom contraction
        ref_c6 = tables["ref_c6"][:, :, used][:, :, :, used] * (_HARTREE * _BOHR**6)
        self.register_buffer("ref_c6", ref_c6.permute(0, 2, 1, 3).contiguous())
        # per element pair (flattened zi * n + zj), in Å and eV:
        # [k1 * (R_cov,i + R_cov,j), s8 * C8/C6, R0^6, R0^8]
        r4r2 = tables["r4r2"]
        qq = 3.0 * r4r2[:, None] * r4r2[None, :]  # C8 / C6 in bohr^2
        r0 = (self.a1 * torch.sqrt(qq) + self.a2) * _BOHR
        rcov = tables["rcov"] * _BOHR
        pair = torch.stack(
            [
                self.k1 * (rcov[:, None] + rcov[None, :]),
                self.s8 * qq * _BOHR**2,
                r0.pow(6),
                r0.pow(8),
            ],
            dim=-1,
        )
        self.register_buffer("pair_params", pair.reshape(n * n, 4).t().contiguous())  # [4, n*n]

    # ------------------------------------------------------------------ contract (plain Python)

    @torch.jit.unused
    def neighbor_lists(self) -> List[Tuple[str, float, float]]:
        # reach: the coordination numbers of every pair partner (within the pair cutoff)
        # come from edges centred on the partner
        return [("d3", max(self.cutoff, self.cn_cutoff), self.cutoff)]

    @torch.jit.unused
    def hyperparameters(self) -> Dict[str, Any]:
        """Constructor arguments that rebuild this term: ``D3BJ(**hyperparameters())``."""
        return dict(
            elements=list(self.elements),
            functional=self.functional,
            s6=self.s6,
            s8=self.s8,
            a1=self.a1,
            a2=self.a2,
            cutoff=self.cutoff,
            cn_cutoff=self.cn_cutoff,
            switch_width=self.switch_width,
        )

    @torch.jit.unused
    def interaction_range(self) -> float:
        # E_i depends on CN_j of neighbours j within `cutoff`, and CN_j on atoms within
        # `cn_cutoff` of j: the ghost shell must cover both hops
        return self.cutoff + self.cn_cutoff

    # ------------------------------------------------------------------ TorchScript surface

    def forward(
        self,
        atomic_numbers: torch.Tensor,
        edge_indices: List[torch.Tensor],
        edge_vectors: List[torch.Tensor],
        n_local: int,
        system: Dict[str, torch.Tensor],
    ) -> Dict[str, torch.Tensor]:
        return {"energies": self.energies(atomic_numbers, edge_indices[0], edge_vectors[0])}

    def switch(self, r: torch.Tensor, cutoff: float, valid: torch.Tensor) -> torch.Tensor:
        """:func:`smooth_cutoff` that is also 0 on zero-length (invalid) edges."""
        s = smooth_cutoff(r, cutoff, self.switch_width)
        return torch.where(valid, s, torch.zeros_like(s))

    def coordination_numbers(
        self, species: torch.Tensor, edge_index: torch.Tensor, r: torch.Tensor, valid: torch.Tensor
    ) -> torch.Tensor:
        """CN of every node (local and ghost) from its own edges; ``r`` in Å."""
        pair = species[edge_index[0]] * self.n_elements + species[edge_index[1]]
        k1_rcov = self.pair_params[0].to(r.dtype).index_select(0, pair)
        return self._cn(k1_rcov, r, valid, edge_index[0], species.shape[0])

    def _cn(
        self, k1_rcov: torch.Tensor, r: torch.Tensor, valid: torch.Tensor, centre: torch.Tensor, n: int
    ) -> torch.Tensor:
        # 1 / (1 + exp(-k1 (R_cov / r - 1)))
        count = torch.sigmoid(k1_rcov / r - self.k1) * self.switch(r, self.cn_cutoff, valid)
        return torch.zeros(n, dtype=r.dtype, device=r.device).index_add(0, centre, count)

    def reference_weights(self, species: torch.Tensor, cn: torch.Tensor) -> torch.Tensor:
        """Gaussian CN weights of the reference systems ``[N, R]``, computed in float64."""
        ref_cn = self.ref_cn[species].to(torch.float64)
        valid = self.ref_valid[species] > 0.5
        dcn = ref_cn - cn.to(torch.float64).unsqueeze(-1)
        w = torch.where(valid, torch.exp(-self.k3 * dcn * dcn), torch.zeros_like(dcn))
        norm = w.sum(dim=-1, keepdim=True)
        exceptional = norm == 0.0
        gw = w / torch.where(exceptional, torch.ones_like(norm), norm)
        # all weights underflowed: the reference with the largest CN takes weight 1
        max_cn = torch.max(torch.where(valid, ref_cn, torch.full_like(ref_cn, -1.0)), dim=-1, keepdim=True)[0]
        top = (valid & (ref_cn == max_cn)).to(torch.float64)
        return torch.where(exceptional, top, gw).to(cn.dtype)

    def energies(
        self, atomic_numbers: torch.Tensor, edge_index: torch.Tensor, edge_vectors: torch.Tensor
    ) -> torch.Tensor:
        """Per-atom energies [N] (eV) from the one ``d3`` list."""
        species = element_indices(self.z_to_index, atomic_numbers, "D3(BJ)")
        dtype = edge_vectors.dtype
        n_atoms = atomic_numbers.shape[0]
        n_el = self.n_elements
        i = edge_index[0]
        j = edge_index[1]
        # (1-D gathers and a loop over the R references: about twice as fast on CPU as gathering
        # rows of [E, k] tables and reducing over a short last dimension)
        r = torch.linalg.vector_norm(edge_vectors, dim=-1)
        valid = r > 0.0
        r = torch.where(valid, r, torch.ones_like(r))  # zero-length edges: weight 0, finite gradient
        zj = species.index_select(0, j)
        pair = species.index_select(0, i) * n_el + zj
        params = self.pair_params.to(dtype)  # [4, n_el^2]

        cn = self._cn(params[0].index_select(0, pair), r, valid, i, n_atoms)
        gw = self.reference_weights(species, cn)  # [N, R]
        # g[i, u, b] = sum_a w_ia C6_ref(Z_i, a, u, b): per atom, so each edge gathers R numbers
        ref_c6 = self.ref_c6.to(dtype)[species]  # [N, R, n_el, R]
        g = torch.bmm(gw.unsqueeze(1), ref_c6.reshape(n_atoms, self.n_refs, -1))
        g_t = g.reshape(n_atoms * n_el, self.n_refs).t().contiguous()  # [R, N * n_el]
        gw_t = gw.t().contiguous()  # [R, N]
        row = i * n_el + zj
        c6 = g_t[0].index_select(0, row) * gw_t[0].index_select(0, j)
        for b in range(1, self.n_refs):
            c6 = c6 + g_t[b].index_select(0, row) * gw_t[b].index_select(0, j)  # eV Å^6

        r2 = r * r
        r6 = r2 * r2 * r2
        e_pair = c6 * (
            self.s6 / (r6 + params[2].index_select(0, pair))
            + params[1].index_select(0, pair) / (r6 * r2 + params[3].index_select(0, pair))
        )
        e_pair = e_pair * self.switch(r, self.cutoff, valid)
        # full list: each directed edge gives half the pair energy (-E_ij) to its centre atom
        return torch.zeros(n_atoms, dtype=dtype, device=edge_vectors.device).index_add(0, i, -0.5 * e_pair)
