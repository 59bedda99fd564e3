"""Ewald summation of the Coulomb energy of per-atom charges in periodic cells.

The periodic counterpart of :func:`mlff.physics.coulomb.coulomb_dsf`: per-atom energies
``[N]`` (eV) of the charges ``q`` and all their periodic images, the conditionally
convergent lattice sum taken with tin-foil (conducting) boundary conditions, as LAMMPS
``pair_style coul/long`` + ``kspace_style ewald`` computes it. TorchScript-compatible;
gradients flow to the edge vectors, the positions, the cell and (through q) to whatever
the charges depend on.

Unlike every other term, the reciprocal-space sum depends on the absolute positions
and the cell, which edge vectors do not carry: a model that uses it declares
``geometry_inputs: ["positions", "cell"]`` in its metadata and the engines pass
``system["positions"]`` ``[N, 3]`` and ``system["cell"]`` ``[3, 3]`` (rows = lattice
vectors), both Å, and add their gradients to forces and virial (the rule lives in
:func:`mlff.contract.derive_from_energies`). A whole-system term: LAMMPS evaluates it on
one MPI rank and refuses several.

Energy (k_e = ``coulomb_constant``, alpha the splitting parameter, V the cell volume,
Q = sum_i q_i)::

    E = E_real + E_recip + E_self + E_background
    E_real  = 1/2 sum_i sum_(j,n)' k_e q_i q_j [erfc(alpha r) - (1 - s_sr(r))] / r,  r = |r_j + n - r_i| < Rc
    E_recip = (2 pi k_e / V) sum_(k != 0, |k| < kc) exp(-k^2 / 4 alpha^2) / k^2 |S(k)|^2,
              S(k) = sum_i q_i exp(i k . r_i)
    E_self  = -k_e alpha / sqrt(pi) sum_i q_i^2
    E_background = -k_e pi Q^2 / (2 V alpha^2)      (a neutralising background, for Q != 0)

Per atom: the real-space pair energy half to each partner (each directed edge of the
full list gives half to its centre), atom i's share of E_recip is
(4 pi k_e / V) sum_(half space) f(k) q_i Re(exp(i k . r_i) S(k)*), of the background
-k_e pi Q q_i / (2 V alpha^2); these sum exactly to the totals.

Short-range subtraction: as for ``simple`` and ``dsf`` (see :mod:`mlff.physics.coulomb`),
the part the network already sees is removed by weighting the bare 1/r with s_sr(r): the
sum computed is exactly the Ewald sum of k_e q_i q_j s_sr(r) / r over all pairs and
images. Since 1/r = erfc(alpha r)/r + erf(alpha r)/r and the reciprocal sum carries the
whole erf part, the real-space term subtracts (1 - s_sr(r))/r: at short range it is
-erf(alpha r)/r, finite at r -> 0. ``sr_cutoff = 0``: plain Ewald (what LAMMPS computes).

Parameters from a target accuracy eps (:func:`ewald_parameters`, fixed in the model: a
splitting that changed with the system would make the energy depend on it)::

    alpha = sqrt(-ln eps) / Rc,   kc = 2 alpha sqrt(-ln eps)

so that both truncated tails are suppressed by the same factor eps: the real-space
pair term at Rc by erfc(alpha Rc) < exp(-alpha^2 Rc^2) = eps, each omitted k-vector
by exp(-kc^2 / 4 alpha^2) = eps. The k-vectors are the lattice points 2 pi (n1 b1 + n2 b2 +
n3 b3) of the reciprocal lattice (b_j the rows of inv(cell)^T) inside the sphere |k| < kc,
one of each pair +-k (the sum is even in k). The set depends on the cell (it changes
discretely as an NPT cell changes, by terms of size eps, as in every Ewald code).
Measured (tests/physics/test_ewald.py, NaCl, triclinic NaCl and SPC/E-charged water,
Rc 12-15 Å, eps 1e-4 and 1e-6): the rms force error against a converged sum is
0.05-0.16 eps k_e e^2/Å^2, i.e. below eps in LAMMPS' definition of the ``kspace_style
ewald`` accuracy (relative to two unit charges 1 Å apart), and per-atom energies are
within 0.03-0.11 eps k_e e^2/Å. Converged, the sum equals LAMMPS' ``coul/long`` +
``kspace_style ewald`` to 1e-13 relative once LAMMPS' erfc approximation is accounted for.

Cost: O(N^2) with a fixed alpha (N atoms x K ~ V kc^3 / (12 pi^2) k-vectors); the
reciprocal sum is evaluated in blocks of k-vectors to bound memory. Fine for the
cells ML models are run on (thousands of atoms); PPPM is not provided.
"""

from __future__ import annotations

import math
from typing import Dict, Optional, Tuple

import torch

from .coulomb import COULOMB_CONSTANT, DEFAULT_SR_CUTOFF, _half_to_centre, edge_lengths, short_range_switch

#: Default target accuracy eps of :func:`ewald_parameters` (LAMMPS' customary 1e-6).
DEFAULT_ACCURACY = 1e-6
#: At most this many (atom, k-vector) pairs are held at once in the reciprocal sum.
BLOCK_ELEMENTS = 1 << 21


def ewald_parameters(cutoff: float, accuracy: float = DEFAULT_ACCURACY) -> Tuple[float, float]:
    """(alpha in 1/Å, reciprocal cutoff kc in 1/Å) for real-space cutoff ``cutoff`` (Å).

    alpha = sqrt(-ln eps) / Rc and kc = 2 alpha sqrt(-ln eps): the real-space and the
    reciprocal-space tails are both suppressed by eps (see the module docstring).
    """
    if not cutoff > 0.0:
        raise ValueError(f"the Ewald real-space cutoff must be positive, got {cutoff}")
    if not 0.0 < accuracy < 1.0:
        raise ValueError(f"the Ewald accuracy must lie in (0, 1) (e.g. 1e-6), got {accuracy}")
    s = math.sqrt(-math.log(accuracy))
    alpha = s / cutoff
    return alpha, 2.0 * alpha * s


def reciprocal_vectors(cell: torch.Tensor, kspace_cutoff: float) -> torch.Tensor:
    """k-vectors ``[K, 3]`` (1/Å) with 0 < |k| < ``kspace_cutoff``, one of each pair +-k.

    ``cell`` ``[3, 3]`` has the lattice vectors as rows. The integer grid is chosen from
    the detached cell (|n_d| <= kc |a_d| / 2 pi because n_d = k . a_d / 2 pi); the vectors
    themselves are differentiable in the cell.
    """
    two_pi = 2.0 * math.pi  # a local: TorchScript reads no module globals
    recip = two_pi * torch.linalg.inv(cell).transpose(0, 1)  # rows 2 pi b_j, a_i . b_j = delta_ij
    lengths = torch.linalg.norm(cell.detach(), dim=1)
    m = torch.floor(lengths * (kspace_cutoff / two_pi)).to(torch.long)
    m0 = int(m[0])
    m1 = int(m[1])
    m2 = int(m[2])
    grid = torch.cartesian_prod(
        torch.arange(0, m0 + 1, device=cell.device),
        torch.arange(-m1, m1 + 1, device=cell.device),
        torch.arange(-m2, m2 + 1, device=cell.device),
    ).view(-1, 3)
    n0 = grid[:, 0]
    n1 = grid[:, 1]
    n2 = grid[:, 2]
    # one of each +-k: the first non-zero index positive
    half = (n0 > 0) | ((n0 == 0) & (n1 > 0)) | ((n0 == 0) & (n1 == 0) & (n2 > 0))
    n = grid[half].to(cell.dtype)
    k_fixed = n @ recip.detach()
    inside = (k_fixed * k_fixed).sum(dim=1) < kspace_cutoff * kspace_cutoff
    return n[inside] @ recip


def reciprocal_energies(
    q: torch.Tensor,
    positions: torch.Tensor,
    cell: torch.Tensor,
    alpha: float,
    kspace_cutoff: float,
    coulomb_constant: float = COULOMB_CONSTANT,
) -> torch.Tensor:
    """Per-atom reciprocal-space plus background energies ``[n]`` (eV) of ONE cell.

    ``q`` ``[n]``, ``positions`` ``[n, 3]`` (any periodic images: the sum is invariant
    under lattice translations of single atoms), ``cell`` ``[3, 3]``, all in one dtype.
    """
    k = reciprocal_vectors(cell, kspace_cutoff)
    volume = torch.abs(torch.linalg.det(cell))
    k2 = (k * k).sum(dim=1)
    # the half-space sum counts each +-k pair once: 2 x (2 pi / V)
    factor = (4.0 * math.pi * coulomb_constant) / volume * torch.exp(k2 * (-0.25 / (alpha * alpha))) / k2
    n = q.shape[0]
    out = torch.zeros(n, dtype=q.dtype, device=q.device)
    n_k = k.shape[0]
    block = max(1, 2097152 // max(n, 1))  # BLOCK_ELEMENTS (TorchScript reads no globals)
    for start in range(0, n_k, block):
        kb = k[start:start + block]
        fb = factor[start:start + block]
        phase = positions @ kb.transpose(0, 1)  # [n, Kb]
        c = torch.cos(phase)
        s = torch.sin(phase)
        s_re = q @ c  # Re S(k)
        s_im = q @ s  # Im S(k)
        # q_i Re(exp(i k r_i) S(k)*) = q_i (cos_i Re S + sin_i Im S)
        out = out + q * (c @ (fb * s_re) + s @ (fb * s_im))
    background = (math.pi * coulomb_constant / (2.0 * alpha * alpha)) / volume * q.sum()
    return out - background * q


def coulomb_ewald(
    q: torch.Tensor,
    edge_index: torch.Tensor,
    edge_vectors: torch.Tensor,
    positions: torch.Tensor,
    cell: torch.Tensor,
    n_local: int,
    alpha: float,
    kspace_cutoff: float,
    cutoff: float,
    sr_cutoff: float = DEFAULT_SR_CUTOFF,
    sr_width: Optional[float] = None,
    coulomb_constant: float = COULOMB_CONSTANT,
    batch: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Per-atom Ewald energies ``[N]`` (eV); see the module docstring.

    ``edge_index``/``edge_vectors``: a full list of at least ``cutoff`` (longer edges get
    exactly zero weight). ``positions`` ``[N, 3]`` and ``cell`` ``[3, 3]`` (``[B, 3, 3]``
    with ``batch`` ``[N]``, the structure of every atom, for a training batch). Only the
    atoms ``< n_local`` enter the structure factors: an engine whose nodes include ghost
    atoms passes every owned atom of the whole system as local (one process).
    """
    dtype = edge_vectors.dtype
    q = q.to(dtype)
    n_atoms = q.shape[0]
    qq = q.index_select(0, edge_index[0]) * q.index_select(0, edge_index[1])
    r, valid = edge_lengths(edge_vectors)
    # erfc(a r) - (1 - s_sr) rather than erfc - 1 + s_sr: exact where s_sr = 1 (r >= sr_cutoff)
    screened = torch.erfc(alpha * r) - (1.0 - short_range_switch(r, sr_cutoff, sr_width))
    energies = _half_to_centre(coulomb_constant * qq * screened / r, valid & (r < cutoff), edge_index, n_atoms)
    energies = energies - (coulomb_constant * alpha / math.sqrt(math.pi)) * q * q
    pos = positions.to(dtype)
    h = cell.to(dtype)
    if batch is None:
        if h.dim() != 2:
            raise RuntimeError("mlff: Ewald needs system['cell'] of shape [3, 3] (or 'batch' with [B, 3, 3])")
        local = torch.arange(n_local, device=q.device)
        rec = reciprocal_energies(q[:n_local], pos[:n_local], h, alpha, kspace_cutoff, coulomb_constant)
        return energies.index_add(0, local, rec)
    local_batch = batch[:n_local]
    for b in range(h.shape[0]):
        idx = torch.nonzero(local_batch == b).squeeze(1)
        rec = reciprocal_energies(q[idx], pos[idx], h[b], alpha, kspace_cutoff, coulomb_constant)
        energies = energies.index_add(0, idx, rec)
    return energies


def require_geometry(system: Dict[str, torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
    """``system["positions"]`` and ``system["cell"]``, or the contract's refusal."""
    if "positions" not in system or "cell" not in system:
        raise RuntimeError(
            "mlff: this model sums Coulomb energies with Ewald, which needs the positions and the "
            "periodic cell (system inputs 'positions' and 'cell'), and the engine did not pass them: "
            "run it on a structure periodic in all three directions with an mlff engine that "
            "passes geometry_inputs (ASE, OpenMM, LAMMPS on one rank), or use a model with "
            "coulomb dsf (condensed phase) or simple (molecules)"
        )
    return system["positions"], system["cell"]


__all__ = [
    "DEFAULT_ACCURACY",
    "coulomb_ewald",
    "ewald_parameters",
    "require_geometry",
    "reciprocal_energies",
    "reciprocal_vectors",
]
