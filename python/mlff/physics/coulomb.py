"""Long-range Coulomb energy of per-atom charges as contract-v2 building blocks.

The multi-fidelity (AIMNet2-style) model predicts charges q_i from the environment and
adds their Coulomb energy; the functions here turn charges and ONE neighbour list into
per-atom energies ``[N]`` (eV). They are TorchScript-compatible (the caller's scripted
module compiles them), so gradients flow to the edge vectors both directly and through
q, and the contract's gradient rule gives forces and stress.

Conventions (all functions):

- ``edge_index`` ``[2, E]`` is a full list (both (i, j) and (j, i)), ``edge_vectors``
  ``[E, 3]`` = r_j - r_i in Å. Each directed edge gives half of its pair energy to its
  centre atom i, so a full list counts every pair once in total.
- Edges at or beyond ``cutoff`` (and zero-length edges) get exactly zero energy and
  zero gradient (``torch.where``, no boolean indexing), as the contract requires.
- k_e = :data:`COULOMB_CONSTANT` = 14.399645351950543 eV Å / e^2, i.e. e^2 / (4 pi eps0)
  with CODATA 2014, the value of ``ase.units`` (Hartree x Bohr) that the rest of mlff
  (D3, teachers' unit conversions) uses. LAMMPS ``units metal`` rounds it to
  ``qqr2e = 14.399645`` (3e-8 relative below); pass ``coulomb_constant=14.399645`` to
  reproduce LAMMPS to the last digits.

Pair energies (r = |r_ij| < Rc = ``cutoff``):

- ``coulomb_simple``  E_ij = k_e q_i q_j / r * s_sr(r) * s_cut(r), where s_cut is the
  C2 switch of :func:`mlff.physics.d3.smooth_cutoff` over [Rc - ``switch_width``, Rc]
  (1 - 10x^3 + 15x^4 - 6x^5): energy, force and force derivative reach zero
  continuously at Rc, so MD conserves energy (``switch_width = 0``: hard truncation).
  Bare 1/r for molecules: take Rc larger than the molecule (15 Å by default).
- ``coulomb_dsf``  damped shifted force (Fennell & Gezelter, J. Chem. Phys. 124, 234104
  (2006)), as LAMMPS ``pair_style coul/dsf alpha Rc``:
  E_ij = k_e q_i q_j [erfc(a r)/r - erfc(a Rc)/Rc + (erfc(a Rc)/Rc^2
         + 2a/sqrt(pi) exp(-a^2 Rc^2)/Rc) (r - Rc)] * s_sr(r)
  energy and force vanish at Rc by construction (C1; the force's derivative jumps there,
  as in every DSF code). Plus a self term on every atom,
  E_self,i = -k_e q_i^2 [erfc(a Rc)/Rc + a/sqrt(pi) exp(-a^2 Rc^2) + a/sqrt(pi)]
           = k_e q_i^2 / 2 * lim_{r->0} (V_DSF(r) - 1/r),
  the energy of a charge with its own damped, shifted image. This is the convention of
  LAMMPS' coul/dsf (measured: a lone charge, dimers, NaCl and water boxes agree to 3e-15
  relative when LAMMPS' erfc approximation, Abramowitz-Stegun 7.1.26, is substituted;
  with the exact erfc used here, to 5e-7); the Wolf self term -k_e q^2 [erfc(a Rc)/(2 Rc) +
  a/sqrt(pi)] lacks the force shift's share and is what coul/wolf uses. The self term is
  not short-range switched (it belongs to the atom, not to a pair).

Short-range subtraction: the network already sees pairs closer than ``sr_cutoff``
(4.6 Å by default, AIMNet2's value), so their Coulomb energy is removed smoothly by
multiplying the pair energy by

  s_sr(r) = 0                        for r <= r_sr - w,
  s_sr(r) = x^3 (10 - 15x + 6x^2)    x = (r - r_sr + w) / w, for r_sr - w < r < r_sr,
  s_sr(r) = 1                        for r >= r_sr,

with w = ``sr_width`` (default: the whole short range, w = r_sr, the gentlest ramp; any
0 < w <= r_sr). s_sr is C2 (value, first and second derivatives continuous at both
ends). What is subtracted from the full term is therefore exactly (1 - s_sr(r)) E_ij:
all of it below r_sr - w, a C2 ramp in between, nothing at r >= r_sr; and since s_sr
vanishes there, the 1/r singularity never appears. ``sr_cutoff = 0`` subtracts nothing
(s_sr = 1), which is the bare method that LAMMPS computes.

Ewald for periodic cells is in :mod:`mlff.physics.ewald` (:class:`FixedChargeCoulomb`
offers it as ``method="ewald"``): its reciprocal sum needs the positions and the cell,
which such a model asks the engines for (``geometry_inputs``), and is a whole-system term.
PPPM is not provided.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch

from ..elements import element_indices, element_table
from .base import PhysicsTerm

from .d3 import smooth_cutoff

#: e^2 / (4 pi eps0) in eV Å / e^2 (CODATA 2014, = ase.units.Hartree * ase.units.Bohr).
COULOMB_CONSTANT = 14.399645351950543
#: Pair cutoff (Å) of both methods (DSF: Rc).
DEFAULT_CUTOFF = 15.0
#: DSF damping parameter alpha (1/Å). DSF vs PPPM on a water box with SPC/E-size
#: charges: force RMS 26 meV/Å at 0.2, 4 meV/Å at 0.1 (DESIGN.md).
DEFAULT_ALPHA = 0.2
#: Pairs closer than this (Å) are left to the network (AIMNet2's value).
DEFAULT_SR_CUTOFF = 4.6
#: Width (Å) of the switch that takes the simple Coulomb term to zero at its cutoff.
DEFAULT_SWITCH_WIDTH = 2.0
#: The methods of :class:`FixedChargeCoulomb`.
METHODS = ("dsf", "simple", "ewald")


# ----------------------------------------------------------------------------- TorchScript functions


def edge_lengths(edge_vectors: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """|r_ij| and the mask of non-zero edges; zero-length edges get r = 1 so that 1/r and
    its gradient stay finite (their weight is then set to zero with ``torch.where``)."""
    r2 = (edge_vectors * edge_vectors).sum(dim=-1)
    valid = r2 > 0.0
    return torch.sqrt(torch.where(valid, r2, torch.ones_like(r2))), valid


def short_range_switch(r: torch.Tensor, sr_cutoff: float, sr_width: Optional[float] = None) -> torch.Tensor:
    """s_sr(r): 0 for r <= sr_cutoff - w, 1 for r >= sr_cutoff, C2 smoothstep between.

    ``sr_width`` w defaults to ``sr_cutoff``; ``sr_cutoff <= 0`` gives 1 everywhere. The
    factored form x^3 (10 - 15x + 6x^2) is exactly 0 at x = 0 and exactly 1 at x = 1, and
    the clamp makes the gradient exactly zero outside the ramp.
    """
    if sr_cutoff <= 0.0:
        return torch.ones_like(r)
    width = sr_cutoff if sr_width is None else sr_width
    x = torch.clamp((r - (sr_cutoff - width)) * (1.0 / width), 0.0, 1.0)
    return x * x * x * (10.0 + x * (-15.0 + 6.0 * x))


def _pair_charges(q: torch.Tensor, edge_index: torch.Tensor, dtype: torch.dtype) -> Tuple[torch.Tensor, torch.Tensor]:
    """q in the edge dtype and q_i q_j per edge."""
    q = q.to(dtype)
    return q, q.index_select(0, edge_index[0]) * q.index_select(0, edge_index[1])


def _half_to_centre(
    pair_energy: torch.Tensor, keep: torch.Tensor, edge_index: torch.Tensor, n_atoms: int
) -> torch.Tensor:
    """Per-atom energies: half of every kept edge's pair energy to its centre atom.

    ``torch.where`` (not indexing) so dropped edges have exactly zero gradient, also
    through the charges.
    """
    e = torch.where(keep, pair_energy, torch.zeros_like(pair_energy))
    return torch.zeros(n_atoms, dtype=e.dtype, device=e.device).index_add(0, edge_index[0], 0.5 * e)


def coulomb_simple(
    q: torch.Tensor,
    edge_index: torch.Tensor,
    edge_vectors: torch.Tensor,
    cutoff: float = DEFAULT_CUTOFF,
    sr_cutoff: float = DEFAULT_SR_CUTOFF,
    switch_width: float = DEFAULT_SWITCH_WIDTH,
    sr_width: Optional[float] = None,
    coulomb_constant: float = COULOMB_CONSTANT,
) -> torch.Tensor:
    """Per-atom energies [N] (eV) of k_e q_i q_j / r, short-range switched and smoothly cut.

    E_ij = k_e q_i q_j / r * s_sr(r) * s_cut(r) for r < ``cutoff``; see the module docstring.
    ``q`` ``[N]`` in e (may depend on positions), lengths in Å.
    """
    q, qq = _pair_charges(q, edge_index, edge_vectors.dtype)
    r, valid = edge_lengths(edge_vectors)
    weight = short_range_switch(r, sr_cutoff, sr_width) * smooth_cutoff(r, cutoff, switch_width)
    pair = coulomb_constant * qq / r * weight
    return _half_to_centre(pair, valid & (r < cutoff), edge_index, q.shape[0])


def dsf_self_coefficient(alpha: float, cutoff: float) -> float:
    """c in E_self,i = -k_e q_i^2 c: erfc(a Rc)/Rc + a/sqrt(pi) exp(-a^2 Rc^2) + a/sqrt(pi) (1/Å)."""
    a_pi = alpha / math.sqrt(math.pi)
    return math.erfc(alpha * cutoff) / cutoff + a_pi * math.exp(-alpha * alpha * cutoff * cutoff) + a_pi


def coulomb_dsf(
    q: torch.Tensor,
    edge_index: torch.Tensor,
    edge_vectors: torch.Tensor,
    alpha: float = DEFAULT_ALPHA,
    cutoff: float = DEFAULT_CUTOFF,
    sr_cutoff: float = DEFAULT_SR_CUTOFF,
    sr_width: Optional[float] = None,
    coulomb_constant: float = COULOMB_CONSTANT,
) -> torch.Tensor:
    """Per-atom energies [N] (eV) of damped shifted force Coulomb with its self term.

    Pair term (r < Rc = ``cutoff``, times s_sr(r)) and self term
    -k_e q_i^2 [erfc(a Rc)/Rc + a/sqrt(pi) exp(-a^2 Rc^2) + a/sqrt(pi)] on every atom, as
    LAMMPS ``pair_style coul/dsf alpha cutoff``; see the module docstring.
    """
    q, qq = _pair_charges(q, edge_index, edge_vectors.dtype)
    r, valid = edge_lengths(edge_vectors)
    erfc_rc = math.erfc(alpha * cutoff) / cutoff  # erfc(a Rc)/Rc
    # -dV/dr at Rc: the force shift that makes the force vanish at the cutoff
    force_shift = erfc_rc / cutoff + 2.0 * alpha / math.sqrt(math.pi) * math.exp(-alpha * alpha * cutoff * cutoff) / cutoff
    potential = torch.erfc(alpha * r) / r - erfc_rc + force_shift * (r - cutoff)
    pair = coulomb_constant * qq * potential * short_range_switch(r, sr_cutoff, sr_width)
    energies = _half_to_centre(pair, valid & (r < cutoff), edge_index, q.shape[0])
    return energies - (coulomb_constant * dsf_self_coefficient(alpha, cutoff)) * q * q


# ----------------------------------------------------------------------------- contract-v2 term


def _atomic_number(key: Union[int, str]) -> int:
    """An element key of ``charges_by_element``: atomic number, its string, or a symbol."""
    from ase.data import atomic_numbers

    if isinstance(key, str) and not key.strip().isdigit():
        if key not in atomic_numbers:
            raise ValueError(f"unknown element {key!r} in charges_by_element")
        return int(atomic_numbers[key])
    z = int(key)
    if not 1 <= z <= 118:
        raise ValueError(f"atomic numbers must be in 1..118, got {key!r} in charges_by_element")
    return z


class FixedChargeCoulomb(PhysicsTerm):
    """Coulomb energy per atom (eV) of fixed per-element charges under contract v2.

    Parameters
    ----------
    elements:
        Atomic numbers the term handles (stored sorted).
    charges_by_element:
        Charge in e of every element, keyed by atomic number or symbol
        (``{"Na": 1.0, "Cl": -1.0}``); keys outside ``elements`` are ignored.
    method:
        ``"dsf"`` (:func:`coulomb_dsf`, periodic and condensed systems), ``"simple"``
        (:func:`coulomb_simple`, molecules smaller than the cutoff) or ``"ewald"``
        (:func:`mlff.physics.ewald.coulomb_ewald`, cells periodic in all three directions;
        the model then declares the positions and the cell as geometry inputs).
    alpha:
        DSF damping or Ewald splitting parameter (1/Å); unused by ``simple``. Default:
        0.2 for DSF, from ``accuracy`` and ``cutoff`` for Ewald.
    accuracy, kspace_cutoff:
        Ewald only: the target accuracy eps (default 1e-6) from which alpha and the
        reciprocal cutoff kc (1/Å) are chosen (:func:`mlff.physics.ewald.ewald_parameters`),
        unless given.
    cutoff:
        Pair cutoff (Å); the term asks for one list ``"coulomb"`` of this cutoff.
    sr_cutoff, sr_width:
        Short-range subtraction (Å): pairs below ``sr_cutoff - sr_width`` are removed,
        a C2 ramp up to ``sr_cutoff`` (``sr_width`` default: ``sr_cutoff``). 0: none.
    switch_width:
        Width (Å) of the C2 switch to zero at the cutoff (``simple`` only; DSF's own
        shift already takes energy and force to zero).
    coulomb_constant:
        k_e in eV Å / e^2 (default CODATA 2014; LAMMPS metal uses 14.399645).

    An oracle for the Coulomb functions (it reproduces LAMMPS' coul/dsf and coul/cut)
    and a term for users of fixed-charge models.
    """

    kind = "coulomb"

    def __init__(
        self,
        elements: Sequence[int],
        charges_by_element: Mapping[Union[int, str], float],
        method: str = "dsf",
        alpha: Optional[float] = None,
        cutoff: float = DEFAULT_CUTOFF,
        sr_cutoff: float = DEFAULT_SR_CUTOFF,
        sr_width: Optional[float] = None,
        switch_width: float = DEFAULT_SWITCH_WIDTH,
        coulomb_constant: float = COULOMB_CONSTANT,
        accuracy: Optional[float] = None,
        kspace_cutoff: Optional[float] = None,
    ):
        super().__init__()
        elements = sorted({int(z) for z in elements})
        if not elements or min(elements) < 1 or max(elements) > 118:
            raise ValueError(f"elements must be atomic numbers 1..118, got {elements}")
        if method not in METHODS:
            raise ValueError(f"unknown Coulomb method {method!r}; choose one of {list(METHODS)}")
        charges = {_atomic_number(k): float(v) for k, v in dict(charges_by_element).items()}
        missing = [z for z in elements if z not in charges]
        if missing:
            raise ValueError(f"charges_by_element gives no charge for atomic numbers {missing}")
        if not cutoff > 0.0:
            raise ValueError(f"cutoff must be positive, got {cutoff}")
        if method != "ewald" and (accuracy is not None or kspace_cutoff is not None):
            raise ValueError(f"accuracy and kspace_cutoff are Ewald options; method {method!r} takes neither")
        self.accuracy = 0.0
        self.kspace_cutoff = 0.0
        if method == "ewald":
            from .ewald import DEFAULT_ACCURACY, ewald_parameters

            self.accuracy = float(DEFAULT_ACCURACY if accuracy is None else accuracy)
            auto_alpha, auto_kc = ewald_parameters(cutoff, self.accuracy)
            alpha = auto_alpha if alpha is None else alpha
            self.kspace_cutoff = float(auto_kc if kspace_cutoff is None else kspace_cutoff)
            if not (alpha > 0.0 and self.kspace_cutoff > 0.0):
                raise ValueError(f"Ewald needs alpha > 0 and kspace_cutoff > 0, got {alpha} and {kspace_cutoff}")
        elif alpha is None:
            alpha = DEFAULT_ALPHA
        if not alpha >= 0.0:
            raise ValueError(f"alpha must be >= 0 (1/Å), got {alpha}")
        if not 0.0 <= sr_cutoff < cutoff:
            raise ValueError(f"sr_cutoff must lie in [0, cutoff), got sr_cutoff={sr_cutoff}, cutoff={cutoff}")
        width = float(sr_cutoff if sr_width is None else sr_width)
        if sr_cutoff > 0.0 and not 0.0 < width <= sr_cutoff:
            raise ValueError(f"sr_width must lie in (0, sr_cutoff], got {sr_width}")
        if method == "simple" and not 0.0 <= switch_width <= cutoff - sr_cutoff:
            raise ValueError(
                f"switch_width must lie in [0, cutoff - sr_cutoff] = [0, {cutoff - sr_cutoff}], got {switch_width}"
            )
        self.elements: List[int] = elements
        self.method = method
        self.use_dsf = method == "dsf"
        self.use_ewald = method == "ewald"
        self.alpha = float(alpha)
        self.cutoff = float(cutoff)
        self.sr_cutoff = float(sr_cutoff)
        self.sr_width = width if sr_cutoff > 0.0 else 0.0
        self.switch_width = float(switch_width)
        self.coulomb_constant = float(coulomb_constant)
        self.register_buffer("z_to_index", element_table(elements))
        self.register_buffer("element_charges", torch.tensor([charges[z] for z in elements], dtype=torch.float64))

    # ------------------------------------------------------------------ contract (plain Python)

    @torch.jit.unused
    def neighbor_lists(self) -> List[Tuple[str, float, float]]:
        return [("coulomb", self.cutoff, 0.0)]  # a pair term (charges fixed): reach 0

    @torch.jit.unused
    def hyperparameters(self) -> Dict[str, Any]:
        """Constructor arguments that rebuild this term: ``FixedChargeCoulomb(**hyperparameters())``."""
        from ase.data import chemical_symbols

        return dict(
            elements=list(self.elements),
            # symbols as keys: they survive the JSON metadata unchanged
            charges_by_element={chemical_symbols[z]: float(q) for z, q in zip(self.elements, self.element_charges.tolist())},
            method=self.method,
            alpha=self.alpha,
            cutoff=self.cutoff,
            sr_cutoff=self.sr_cutoff,
            sr_width=self.sr_width if self.sr_cutoff > 0.0 else None,
            switch_width=self.switch_width,
            coulomb_constant=self.coulomb_constant,
            # Ewald: the resolved splitting and k-space cutoff, so a rebuild gives the same numbers
            **(dict(accuracy=self.accuracy, kspace_cutoff=self.kspace_cutoff) if self.use_ewald else {}),
        )

    @torch.jit.unused
    def interaction_range(self) -> float:
        return self.cutoff

    @torch.jit.unused
    def contract_info(self) -> Dict[str, Any]:
        info = super().contract_info()
        if self.use_ewald:
            # the reciprocal sum is over every atom of the cell and needs positions and cell
            info.update(locality="global", geometry_inputs=["positions", "cell"])
        return info

    # ------------------------------------------------------------------ TorchScript surface

    def charges(self, atomic_numbers: torch.Tensor) -> torch.Tensor:
        """Per-atom charges [N] (e, float64) of the elements."""
        species = element_indices(self.z_to_index, atomic_numbers, "Coulomb")
        return self.element_charges[species]

    def forward(
        self,
        atomic_numbers: torch.Tensor,
        edge_indices: List[torch.Tensor],
        edge_vectors: List[torch.Tensor],
        n_local: int,
        system: Dict[str, torch.Tensor],
    ) -> Dict[str, torch.Tensor]:
        q = self.charges(atomic_numbers)
        if self.use_ewald:
            positions, cell = require_geometry(system)
            batch: Optional[torch.Tensor] = None
            if "batch" in system:
                batch = system["batch"]
            e = coulomb_ewald(q, edge_indices[0], edge_vectors[0], positions, cell, n_local, self.alpha,
                              self.kspace_cutoff, self.cutoff, self.sr_cutoff, self.sr_width,
                              self.coulomb_constant, batch)
        elif self.use_dsf:
            e = coulomb_dsf(q, edge_indices[0], edge_vectors[0], self.alpha, self.cutoff, self.sr_cutoff,
                            self.sr_width, self.coulomb_constant)
        else:
            e = coulomb_simple(q, edge_indices[0], edge_vectors[0], self.cutoff, self.sr_cutoff,
                               self.switch_width, self.sr_width, self.coulomb_constant)
        return {"energies": e}


# at the bottom: ewald.py builds on the helpers above (the package imports this module
# first, so either import order resolves); TorchScript finds coulomb_ewald here
from .ewald import coulomb_ewald, require_geometry  # noqa: E402

__all__ = [
    "COULOMB_CONSTANT",
    "DEFAULT_ALPHA",
    "DEFAULT_CUTOFF",
    "DEFAULT_SR_CUTOFF",
    "DEFAULT_SWITCH_WIDTH",
    "FixedChargeCoulomb",
    "coulomb_dsf",
    "coulomb_simple",
    "dsf_self_coefficient",
    "edge_lengths",
    "short_range_switch",
]
