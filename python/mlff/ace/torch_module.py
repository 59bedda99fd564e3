"""ACE (atomic cluster expansion, C-tilde form) as a TorchScript module under contract v2.

The module evaluates a ``.yace`` potential (ML-PACE conventions, see ``shared/DESIGN.md``,
"ACE facts") from the model dict that ``mlff.ace._ace.Model.to_dict()`` returns, so that
``mlff export Cu.yace -o Cu.pt`` gives a file for CUDA, OpenMM's TorchForce and every tool
that takes ``.pt``. Per atom i of species mu_i, from the edges (i, j) of one full
neighbour list named ``"ace"``:

- radial basis g_k(r) of the bond (mu_i, mu_j) (ChebExpCos, ChebPow, ChebLinear, SBessel),
  radial functions R_nl = sum_k crad[n][l][k] g_k, core repulsion / ZBL pair term;
- A_{mu n l m} = sum_j R_nl Y_lm(r_hat) over neighbours of species mu (complex spherical
  harmonics, Condon-Shortley phase, Y00 = 1), and the rank-1 A1_{mu k} = sum_j g_k;
- rho_p = sum c~ A1 + sum_f sum_ms Re(c~_{ms,p} prod_t A_t) (``ms_combs`` is a half basis);
- E_i = sum_p w_p F(rho_p; m_p) blended with the core repulsion, plus E0.

Radial functions, two modes (fixed at construction):

- ``"spline"`` (default): ML-PACE and pyace never evaluate the radial formulas directly;
  they tabulate value and slope on a grid of ``deltaSplineBins`` and use the cubic Hermite
  piece of the bin. The module computes exactly that piece on the fly: the formulas at the
  two knots that bracket r, then the same cubic. No table is stored, and the numbers are
  ML-PACE's to rounding (measured against pyace: <= 4e-11 eV per atom, <= 2e-9 eV/Å). The
  formulas themselves differ from the spline by up to ~7e-9 eV and ~1e-4 eV/Å, worst where
  ChebExpCos' dcut switch squeezes a cosine into ten bins. The knots are computed in float64
  even in a float32 module: a spline slope is a difference of neighbouring knot values, which
  float32 would leave with ~1e-4 relative error.
- ``"analytic"``: the formulas themselves, in the module's dtype, differentiated by autograd
  (smooth to all orders; the natural choice for float32 on GPUs with slow float64).

Forces are the autograd gradient with respect to the edge vectors (the contract's rule);
the spline pieces are differentiated through the position inside the bin, so the
gradient is the exact derivative of the energy that is returned.

Only edges with a bond in the file and r < that bond's rcut contribute (ML-PACE's rule);
longer edges (a LAMMPS list with skin) get exactly zero weight. Everything the forward pass
needs is in buffers (coefficients, index tensors built here in Python), so the module
scripts, moves to CUDA, and has no Python loop over atoms or basis functions in forward and
no host synchronisation on CUDA (on CPU it compacts the edge list and groups atoms by
species, which is cheaper there).
"""

from __future__ import annotations

import math
import os
from typing import Any, Dict, List, Mapping, NamedTuple, Tuple

import numpy as np
import torch

from ..elements import element_indices

#: Radial basis names ML-PACE knows (the ``TEST_`` variants are test stubs there).
RADIAL_TYPES = ("ChebExpCos", "ChebPow", "ChebLinear", "SBessel")
EMBEDDING_TYPES = ("FinnisSinclair", "FinnisSinclairShiftedScaled")
INNER_CUTOFF_TYPES = ("density", "distance", "zbl")
RADIAL_MODES = ("spline", "analytic")
#: e^2 / (4 pi eps0) in eV Å as ML-PACE's ZBL uses it (not LAMMPS' 14.399645).
ZBL_K = 14.399645351950543
ZBL_A0 = 0.46850
ZBL_POWER = 0.23
ZBL_PHI_COEFS = (0.18175, 0.50986, 0.28022, 0.02817)
ZBL_PHI_EXPS = (-3.19980, -0.94229, -0.40290, -0.20162)
#: Name of the one neighbour list of an ACE model.
LIST_NAME = "ace"


class _Bond(NamedTuple):
    """Per-edge bond parameters: the columns of the model's float64 bond table.

    rcut, dcut: outer cutoff and the width of ChebExpCos' second switch; lam: the radial
    parameter lambda; cut_in, dcut_in: inner cutoff of the core terms; cut_in_rad: the
    inner cutoff the radial basis sees (differs for "zbl", see ACEModule); pre: |prehc|
    (density/distance) or prehc K/2 Zi Zj (zbl); lambdahc; rscale, inv_rscale, nlut: the
    spline grid (nlut / rcut bins per Å, nlut = int(rcut / deltaSplineBins)); radtype: index
    into RADIAL_TYPES; zbl_a: screening length; zbl_sa/sb/sc: the switch A, B, C of the ZBL
    pair term over [zbl_in, rcut] (zbl_in = rcut - dcut); zbl_delta = rcut - zbl_in.
    """

    rcut: torch.Tensor
    dcut: torch.Tensor
    lam: torch.Tensor
    cut_in: torch.Tensor
    dcut_in: torch.Tensor
    cut_in_rad: torch.Tensor
    pre: torch.Tensor
    lambdahc: torch.Tensor
    rscale: torch.Tensor
    inv_rscale: torch.Tensor
    nlut: torch.Tensor
    radtype: torch.Tensor
    zbl_a: torch.Tensor
    zbl_sa: torch.Tensor
    zbl_sb: torch.Tensor
    zbl_sc: torch.Tensor
    zbl_in: torch.Tensor
    zbl_delta: torch.Tensor


#: column of each _Bond field in the bond table
_COL = {name: k for k, name in enumerate(_Bond._fields)}
_N_PARAMS = len(_Bond._fields)


def _bond_columns(p: torch.Tensor) -> _Bond:
    """Split a [E, _N_PARAMS] table into named columns (same order as the fields)."""
    return _Bond(
        p[:, 0],
        p[:, 1],
        p[:, 2],
        p[:, 3],
        p[:, 4],
        p[:, 5],
        p[:, 6],
        p[:, 7],
        p[:, 8],
        p[:, 9],
        p[:, 10],
        p[:, 11],
        p[:, 12],
        p[:, 13],
        p[:, 14],
        p[:, 15],
        p[:, 16],
        p[:, 17],
    )


# --------------------------------------------------------------------------- formulas
# Each returns values and derivatives with respect to r, evaluated elementwise with
# per-edge parameters. They are written so that the branches a where() discards never
# divide by zero: the analytic mode differentiates through them with autograd, and a NaN
# in a discarded branch would still poison the gradient.


def _cutoff_poly(
    r: torch.Tensor, r_in: torch.Tensor, delta: torch.Tensor
) -> Tuple[torch.Tensor, torch.Tensor]:
    """ML-PACE's polynomial switch: 1 for r <= r_in - delta, 0 for r >= r_in, C2 between."""
    inside = (r > r_in - delta) & (r < r_in)
    safe_delta = torch.where(inside, delta, torch.ones_like(delta))
    x = 1.0 - 2.0 * (1.0 + (r - r_in) / safe_delta)
    x2 = x * x
    fc = 0.5 + 7.5 / 2.0 * (x / 4.0 - x2 * x / 6.0 + x2 * x2 * x / 20.0)
    dfc = -7.5 / safe_delta * (0.25 - x2 / 2.0 + x2 * x2 / 4.0)
    one = torch.ones_like(r)
    zero = torch.zeros_like(r)
    fc = torch.where(inside, fc, torch.where(r <= r_in - delta, one, zero))
    dfc = torch.where(inside, dfc, zero)
    return fc, dfc


def _chebyshev(x: torch.Tensor, n: int) -> Tuple[List[torch.Tensor], List[torch.Tensor]]:
    """T_0..T_n(x) and their derivatives dT_m/dx = m U_{m-1}(x), by the recursions."""
    t: List[torch.Tensor] = [torch.ones_like(x), x]
    u: List[torch.Tensor] = [torch.ones_like(x), 2.0 * x]
    for m in range(1, n):
        t.append(2.0 * x * t[m] - t[m - 1])
        u.append(2.0 * x * u[m] - u[m - 1])
    dt: List[torch.Tensor] = [torch.zeros_like(x)]
    for m in range(1, n + 1):
        dt.append(m * u[m - 1])
    return t[: n + 1], dt


def _cheb_exp_cos(
    r: torch.Tensor, lam: torch.Tensor, cut: torch.Tensor, dcut: torch.Tensor, nradbase: int
) -> Tuple[torch.Tensor, torch.Tensor]:
    """ChebExpCos: g_0 = 1, g_k = (1 - T_k(x))/2, x from exp(-lambda r/rc), cosine envelope,
    and a second cosine switch within dcut of rc."""
    y1 = torch.exp(-lam * r / cut)
    y2 = torch.exp(-lam)
    x = 1.0 - 2.0 * ((y1 - y2) / (1.0 - y2))
    dx = 2.0 * (lam / cut) * (y1 / (1.0 - y2))
    t, dt = _chebyshev(x, nradbase)
    g = [t[0]] + [0.5 - 0.5 * t[k] for k in range(1, nradbase)]
    dg = [dt[0] * dx] + [-0.5 * dt[k] * dx for k in range(1, nradbase)]
    gs = torch.stack(g, dim=1)
    dgs = torch.stack(dg, dim=1)
    env = (0.5 * (1.0 + torch.cos(math.pi * r / cut))).unsqueeze(1)
    denv = (-0.5 * torch.sin(math.pi * r / cut) * math.pi / cut).unsqueeze(1)
    dgs = gs * denv + dgs * env
    gs = gs * env
    start = cut - dcut
    in_switch = r > start
    safe_dcut = torch.where(in_switch, dcut, torch.ones_like(dcut))
    arg = math.pi * (r - start) / safe_dcut
    fcut = torch.where(in_switch, 0.5 * (1.0 + torch.cos(arg)), torch.ones_like(r)).unsqueeze(1)
    dfcut = torch.where(in_switch, -0.5 * torch.sin(arg) * math.pi / safe_dcut, torch.zeros_like(r)).unsqueeze(1)
    return gs * fcut, gs * dfcut + dgs * fcut


def _cheb_shifted(
    x: torch.Tensor, dx: torch.Tensor, nradbase: int
) -> Tuple[torch.Tensor, torch.Tensor]:
    """g_{k-1} = (1 - T_k(x))/2 for k = 1..nradbase (ChebPow, ChebLinear)."""
    t, dt = _chebyshev(x, nradbase)
    g = torch.stack([0.5 - 0.5 * t[k] for k in range(1, nradbase + 1)], dim=1)
    dg = torch.stack([-0.5 * dt[k] * dx for k in range(1, nradbase + 1)], dim=1)
    return g, dg


def _cheb_pow(
    r: torch.Tensor, lam: torch.Tensor, cut: torch.Tensor, nradbase: int
) -> Tuple[torch.Tensor, torch.Tensor]:
    """ChebPow: x = 1 - 2 (1 - r/rc)^lambda; no envelope (g and g' vanish at rc for lambda >= 1)."""
    y = 1.0 - r / cut
    dy = torch.pow(torch.clamp(y, min=0.0), lam - 1.0)
    y = dy * y
    dy = -lam / cut * dy
    x = 2.0 * (1.0 - y) - 1.0
    return _cheb_shifted(x, -2.0 * dy, nradbase)


def _cheb_linear(r: torch.Tensor, cut: torch.Tensor, nradbase: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """ChebLinear: x = 1 - r/rc (no envelope: the basis does not vanish at rc)."""
    return _cheb_shifted(1.0 - r / cut, -1.0 / cut, nradbase)


def _sinc(x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    nz = x != 0.0
    xs = torch.where(nz, x, torch.ones_like(x))
    s = torch.sin(xs)
    c = torch.cos(xs)
    return (
        torch.where(nz, s / xs, torch.ones_like(x)),
        torch.where(nz, (c * xs - s) / (xs * xs), torch.zeros_like(x)),
    )


def _sbessel(r: torch.Tensor, cut: torch.Tensor, nradbase: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Simplified spherical Bessel basis (Kocer et al.), orthogonalised by the e_n, d_n recursion."""
    pre0 = math.sqrt(2.0) * math.pi / torch.pow(cut, 1.5)
    f: List[torch.Tensor] = []
    df: List[torch.Tensor] = []
    for n in range(nradbase):
        a = float(n + 1)
        b = float(n + 2)
        pre = (-1.0) ** n * pre0 * (a * b / math.sqrt(a * a + b * b))
        s1, ds1 = _sinc(r * a * math.pi / cut)
        s2, ds2 = _sinc(r * b * math.pi / cut)
        f.append(pre * (s1 + s2))
        df.append(pre * (ds1 * a * math.pi / cut + ds2 * b * math.pi / cut))
    g: List[torch.Tensor] = [f[0]]
    dg: List[torch.Tensor] = [df[0]]
    d_prev = 1.0
    for n in range(1, nradbase):
        en = float(n * n * (n + 2) * (n + 2)) / (4.0 * float(n + 1) ** 4 + 1.0)
        dn = 1.0 - en / d_prev
        w = math.sqrt(en / d_prev)
        g.append(1.0 / math.sqrt(dn) * (f[n] + w * g[n - 1]))
        dg.append(1.0 / math.sqrt(dn) * (df[n] + w * dg[n - 1]))
        d_prev = dn
    return torch.stack(g, dim=1), torch.stack(dg, dim=1)


def _zbl_phi(x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """The universal screening function and its derivative (ZBL_PHI_COEFS, ZBL_PHI_EXPS;
    written out because TorchScript cannot read module-level tuples)."""
    t0 = 0.18175 * torch.exp(-3.19980 * x)
    t1 = 0.50986 * torch.exp(-0.94229 * x)
    t2 = 0.28022 * torch.exp(-0.40290 * x)
    t3 = 0.02817 * torch.exp(-0.20162 * x)
    phi = t0 + t1 + t2 + t3
    dphi = -3.19980 * t0 - 0.94229 * t1 - 0.40290 * t2 - 0.20162 * t3
    return phi, dphi


def _radial_basis(
    r: torch.Tensor, p: _Bond, nradbase: int, types: List[int], inner_type: int
) -> Tuple[torch.Tensor, torch.Tensor]:
    """g_k(r) and dg_k/dr [E, nradbase] for edges with bond parameters ``p`` [E, _N_PARAMS].

    ``types``: the radial basis types (indices into RADIAL_TYPES) present in the model;
    ``inner_type``: index into INNER_CUTOFF_TYPES.
    """
    cut = p.rcut
    lam = p.lam
    g = torch.zeros((r.shape[0], nradbase), dtype=r.dtype, device=r.device)
    dg = torch.zeros_like(g)
    for code in types:
        if code == 0:
            gk, dgk = _cheb_exp_cos(r, lam, cut, p.dcut, nradbase)
        elif code == 1:
            gk, dgk = _cheb_pow(r, lam, cut, nradbase)
        elif code == 2:
            gk, dgk = _cheb_linear(r, cut, nradbase)
        else:
            gk, dgk = _sbessel(r, cut, nradbase)
        if len(types) == 1:
            g, dg = gk, dgk
        else:
            mine = (p.radtype == float(code)).unsqueeze(1)
            g = torch.where(mine, gk, g)
            dg = torch.where(mine, dgk, dg)
    cin = p.cut_in_rad
    dcin = p.dcut_in
    if inner_type != 0:
        # distance and zbl: the basis fades in over [r_in - delta_in, r_in]
        fc, dfc = _cutoff_poly(r, cin, dcin)
        fc = (1.0 - fc).unsqueeze(1)
        dfc = (-dfc).unsqueeze(1)
        dg = dg * fc + g * dfc
        g = g * fc
    keep = ((r > cin - dcin) & (r < cut)).unsqueeze(1)
    return torch.where(keep, g, torch.zeros_like(g)), torch.where(keep, dg, torch.zeros_like(dg))


def _core_repulsion(r: torch.Tensor, p: _Bond, inner_type: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """The pair term summed into rho_core and its derivative.

    density/distance: |pre| exp(-|lambda| r^2)/r with a cosine envelope to rc (zero where
    lambda r^2 >= 50), for distance further switched off above r_in. zbl: the ZBL pair
    energy, switched to zero between rc - dcut and rc (its own switch, then the polynomial).
    """
    cut = p.rcut
    pre = p.pre
    zero = torch.zeros_like(r)
    if inner_type == 2:
        a = p.zbl_a
        zin = p.zbl_in
        phi, dphi = _zbl_phi(r / a)
        e = 1.0 / r * phi
        de = (-1.0 / (r * r)) * phi + 1.0 / r * dphi / a
        t = r - zin
        between = (r > zin) & (r < cut)
        s = torch.where(
            r <= zin,
            p.zbl_sc,
            torch.where(between, p.zbl_sa / 3.0 * t * t * t + p.zbl_sb / 4.0 * t * t * t * t + p.zbl_sc, zero),
        )
        ds = torch.where(between, p.zbl_sa * t * t + p.zbl_sb * t * t * t, zero)
        cr = pre * (e + s)
        dcr = pre * (de + ds)
        fc, dfc = _cutoff_poly(r, cut, p.zbl_delta)
        dcr = dcr * fc + cr * dfc
        cr = cr * fc
        inside = r < cut
        return torch.where(inside, cr, zero), torch.where(inside, dcr, zero)
    lam = p.lambdahc
    r2 = r * r
    lr2 = lam * r2
    active = lr2 < 50.0
    y = torch.exp(-torch.where(active, lr2, torch.zeros_like(lr2)))
    cr = pre * y / r
    dcr = -pre * y * (2.0 * lr2 + 1.0) / r2
    x0 = r / cut
    env = 0.5 * (1.0 + torch.cos(math.pi * x0))
    denv = -0.5 * torch.sin(math.pi * x0) * math.pi / cut
    dcr = cr * denv + dcr * env
    cr = cr * env
    if inner_type == 1:
        fc, dfc = _cutoff_poly(r, p.cut_in, p.dcut_in)
        dcr = dcr * fc + cr * dfc
        cr = cr * fc
    return torch.where(active, cr, zero), torch.where(active, dcr, zero)


def _pair_functions(
    r: torch.Tensor, p: _Bond, nradbase: int, types: List[int], inner_type: int, with_core: bool
) -> Tuple[torch.Tensor, torch.Tensor]:
    """[E, nradbase (+1)]: the radial basis and (last column) the core term, with derivatives."""
    g, dg = _radial_basis(r, p, nradbase, types, inner_type)
    if with_core:
        c, dc = _core_repulsion(r, p, inner_type)
        g = torch.cat([g, c.unsqueeze(1)], dim=1)
        dg = torch.cat([dg, dc.unsqueeze(1)], dim=1)
    return g, dg


def _spline_pair_functions(
    r: torch.Tensor, table: torch.Tensor, nradbase: int, types: List[int], inner_type: int, with_core: bool
) -> torch.Tensor:
    """The pair functions as ML-PACE evaluates them: the cubic Hermite piece of r's bin.

    Knots r_n = n / rscale, n = 1..nlut (nlut = int(rc / deltaSplineBins)); the bin
    [r_n, r_{n+1}) uses value and slope at both ends; r at or beyond r_nlut gives 0. Below
    the first knot (r < deltaSplineBins, where ML-PACE stops with an error) the first piece
    is extrapolated. Computed in float64 (see the module docstring); differentiable in r.
    """
    p = _bond_columns(table)
    rscale = p.rscale
    inv = p.inv_rscale
    nlut = p.nlut
    x = r * rscale
    nl = torch.clamp(torch.floor(x.detach()), min=1.0)
    wl = (x - nl).unsqueeze(1)
    # both knots in one batch; they do not depend on r within the bin (no gradient)
    knots = torch.cat([inv * nl, inv * (nl + 1.0)])
    pp = _bond_columns(torch.cat([table, table]))
    f, df = _pair_functions(knots, pp, nradbase, types, inner_type, with_core)
    n_edges = r.shape[0]
    f0 = f[:n_edges]
    f1 = f[n_edges:]
    invs = inv.unsqueeze(1)
    f0d1 = df[:n_edges] * invs
    f1d1 = df[n_edges:] * invs
    # the top knot's right neighbour is taken as 0 by ML-PACE (never used: nl < nlut)
    c2 = 3.0 * (f1 - f0) - f1d1 - 2.0 * f0d1
    c3 = -2.0 * (f1 - f0) + f1d1 + f0d1
    wl2 = wl * wl
    wl3 = wl2 * wl
    val = f0 + f0d1 * wl + c2 * wl2 + c3 * wl3
    return torch.where((nl < nlut).unsqueeze(1), val, torch.zeros_like(val))


def _spherical_harmonics(
    unit: torch.Tensor, lmax: int, alm: List[float], blm: List[float]
) -> List[torch.Tensor]:
    """Y_lm(r_hat) for m = 0..l, per l a [E, 2(l+1)] block: Re for m = 0..l, then Im.

    Y_lm = Pbar_lm(z) (x + iy)^m with the normalised associated-Legendre recursion
    (Pbar_00 = 1, so Y00 = 1 = sqrt(4 pi) x the orthonormal one; Condon-Shortley phase).
    ``alm``/``blm``: the recursion coefficients at index l(l+1)/2 + m.
    """
    x = unit[:, 0]
    y = unit[:, 1]
    z = unit[:, 2]
    plm: List[torch.Tensor] = []  # index l(l+1)/2 + m
    one = torch.ones_like(z)
    for l in range(lmax + 1):
        for m in range(l + 1):
            if l == 0:
                plm.append(one)
            elif m == l:
                plm.append(-math.sqrt(1.0 + 0.5 / l) * plm[(l - 1) * l // 2 + l - 1])
            elif m == l - 1:
                plm.append(math.sqrt(2.0 * l + 1.0) * z * plm[(l - 1) * l // 2 + l - 1])
            else:
                k = l * (l + 1) // 2 + m
                plm.append(alm[k] * (z * plm[(l - 1) * l // 2 + m] + blm[k] * plm[(l - 2) * (l - 1) // 2 + m]))
    # (x + iy)^m
    cre: List[torch.Tensor] = [one, x]
    cim: List[torch.Tensor] = [torch.zeros_like(z), y]
    for m in range(2, lmax + 1):
        cre.append(cre[m - 1] * x - cim[m - 1] * y)
        cim.append(cre[m - 1] * y + cim[m - 1] * x)
    blocks: List[torch.Tensor] = []
    for l in range(lmax + 1):
        cols: List[torch.Tensor] = []
        for m in range(l + 1):
            cols.append(plm[l * (l + 1) // 2 + m] * cre[m])
        for m in range(l + 1):
            cols.append(plm[l * (l + 1) // 2 + m] * cim[m])
        blocks.append(torch.stack(cols, dim=1))
    return blocks


def _fs_embedding(rho: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """ML-PACE's FinnisSinclair F(rho; m): sign(rho) |rho|^m, linearised below |rho| ~ 3e-6.

    F = sign(x) ((1 - g) |x|^m + w^(1-m) g |x|), g = exp(-(w |x|)^3), w = 1e6 (g = 0 once
    (w|x|)^3 > 30); F = w^(1-m) x for |x| <= 1e-10.
    """
    w = 1.0e6
    a = torch.abs(rho)
    big = a > 1e-10
    a_safe = torch.where(big, a, torch.ones_like(a))
    lam = torch.pow(torch.full_like(m, 1.0 / w), m - 1.0)
    # g = 0 once (w |x|)^3 > 30, i.e. |x| > 3.1e-6: the clamp keeps the cube finite in float32
    w3x3 = (w * torch.clamp(a_safe, max=1e-4)) ** 3
    g = torch.where(w3x3 > 30.0, torch.zeros_like(a), torch.exp(-torch.clamp(w3x3, max=30.0)))
    sign = torch.where(rho < 0.0, -torch.ones_like(rho), torch.ones_like(rho))
    f = sign * ((1.0 - g) * torch.pow(a_safe, m) + lam * g * a_safe)
    return torch.where(big, f, lam * rho)


def _fs_shifted_scaled(rho: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """FinnisSinclairShiftedScaled: rho for m = 1, else
    sign(rho) ((n^(n/(1-n)) e^-|rho| + |rho|)^m - n^(1/(1-n)) e^-|rho|), n = 1/m."""
    linear = torch.abs(m - 1.0) < 1e-10
    m_safe = torch.where(linear, torch.full_like(m, 2.0), m)
    a = torch.abs(rho)
    exprho = torch.exp(-a)
    nx = 1.0 / m_safe
    xoff = torch.pow(nx, nx / (1.0 - nx)) * exprho
    yoff = torch.pow(nx, 1.0 / (1.0 - nx)) * exprho
    sign = torch.where(rho < 0.0, -torch.ones_like(rho), torch.ones_like(rho))
    f = sign * (torch.pow(xoff + a, m_safe) - yoff)
    return torch.where(linear, rho, f)


# --------------------------------------------------------------------------- the module


def _symbol_to_z(symbol: str) -> int:
    from ase.data import atomic_numbers

    z = atomic_numbers.get(symbol, 0)
    if not 1 <= z <= 118:
        raise ValueError(f"ACE model: {symbol!r} is not a chemical element symbol")
    return int(z)


def _zbl_switch(rc: float, zin: float, a: float) -> Tuple[float, float, float]:
    """A, B, C of the ZBL switch that zeroes E, E', E'' at rc (E = phi(r/a)/r per unit charge)."""
    x = rc / a
    phi = sum(c * math.exp(e * x) for c, e in zip(ZBL_PHI_COEFS, ZBL_PHI_EXPS))
    dphi = sum(c * e * math.exp(e * x) for c, e in zip(ZBL_PHI_COEFS, ZBL_PHI_EXPS))
    d2phi = sum(c * e * e * math.exp(e * x) for c, e in zip(ZBL_PHI_COEFS, ZBL_PHI_EXPS))
    ec = 1.0 / rc * phi
    dec = (-1.0 / (rc * rc)) * phi + 1.0 / rc * dphi / a
    d2ec = (2.0 / (rc * rc * rc)) * phi + 2.0 * (-1.0 / (rc * rc)) * dphi / a + (1.0 / rc) * d2phi / (a * a)
    d = rc - zin
    sa = (-3.0 * dec + d * d2ec) / (d * d)
    sb = (2.0 * dec - d * d2ec) / (d * d * d)
    sc = -ec + 1.0 / 2.0 * d * dec - 1.0 / 12.0 * (d * d) * d2ec
    return sa, sb, sc


def _field(mapping: Mapping[str, Any], key: str, where: str) -> Any:
    try:
        return mapping[key]
    except (KeyError, TypeError):
        raise ValueError(f"ACE model: {where} has no {key!r}") from None


def _inner_cutoff_type(bonds: Mapping[Tuple[int, int], Mapping[str, Any]], nel: int) -> str:
    """The model's one inner-cutoff type.

    ML-PACE keeps a single type for the whole model: that of the last pair it sets up,
    (nel-1, nel-1), default-constructed ("distance") when the file lacks that bond; a bond
    without the key is read as "density" (files from before the key existed).
    """
    last = bonds.get((nel - 1, nel - 1))
    inner = str(last.get("inner_cutoff_type", "") or "density") if last is not None else "distance"
    if inner not in INNER_CUTOFF_TYPES:
        raise ValueError(f"ACE model: inner_cutoff_type {inner!r} is not one of {INNER_CUTOFF_TYPES}")
    return inner


def _bond_tables(
    bonds: Mapping[Tuple[int, int], Mapping[str, Any]],
    zs: List[int],
    delta_bins: float,
    inner: str,
    nradmax: int,
    lmax: int,
    nradbase: int,
) -> Tuple[np.ndarray, np.ndarray, List[int]]:
    """The float64 bond table [nel^2, _N_PARAMS] (see _Bond; zero rows, rcut 0, for pairs
    without a bond), crad [nel^2, nradmax, lmax+1, nradbase] (zero-padded to the global
    sizes, as ML-PACE does) and the radial types present."""
    nel = len(zs)
    params = np.zeros((nel * nel, _N_PARAMS))
    crad = np.zeros((nel * nel, nradmax, lmax + 1, nradbase))
    types: List[int] = []
    for (mu_i, mu_j), bond in sorted(bonds.items()):
        where = f"bond [{mu_i}, {mu_j}]"
        name = str(_field(bond, "radbasename", where))
        if name not in RADIAL_TYPES:
            raise ValueError(f"ACE model: {where}: radial basis {name!r} is not one of {RADIAL_TYPES}")
        code = RADIAL_TYPES.index(name)
        if code not in types:
            types.append(code)
        rcut = float(_field(bond, "rcut", where))
        dcut = float(_field(bond, "dcut", where))
        if not rcut > 0.0:
            raise ValueError(f"ACE model: {where}: rcut must be positive, got {rcut}")
        radpar = list(_field(bond, "radparameters", where))
        cut_in = float(bond.get("rcut_in", 0.0) or 0.0)
        dcut_in = float(bond.get("dcut_in", 0.0) or 0.0)
        prehc = float(_field(bond, "prehc", where))
        lambdahc = float(_field(bond, "lambdahc", where))
        nlut = int(rcut / delta_bins)  # ML-PACE: static_cast<int>(cutoff / deltaSplineBins)
        rscale = float(nlut) / rcut
        row = params[mu_i * nel + mu_j]
        row[_COL["rcut"]] = rcut
        row[_COL["dcut"]] = dcut
        row[_COL["lam"]] = float(radpar[0]) if radpar else 0.0
        row[_COL["cut_in"]] = cut_in
        row[_COL["dcut_in"]] = dcut_in
        # ML-PACE resets the radial basis' inner cutoff for zbl to (dcut_in == 0): with a
        # positive dcut_in the basis is not cut inside at all, the ZBL blend does the work
        row[_COL["cut_in_rad"]] = (1.0 if dcut_in == 0.0 else 0.0) if inner == "zbl" else cut_in
        row[_COL["rscale"]] = rscale
        row[_COL["inv_rscale"]] = 1.0 / rscale
        row[_COL["nlut"]] = float(nlut)
        row[_COL["radtype"]] = float(code)
        if inner == "zbl":
            # ZBL acts at full strength inside rcut - dcut and is switched off at rcut
            zi, zj = zs[mu_i], zs[mu_j]
            a = ZBL_A0 / (zi**ZBL_POWER + zj**ZBL_POWER)
            zin = rcut - dcut
            sa, sb, sc = _zbl_switch(rcut, zin, a)
            row[_COL["pre"]] = prehc * ZBL_K / 2 * zi * zj
            row[_COL["zbl_a"]] = a
            row[_COL["zbl_sa"]] = sa
            row[_COL["zbl_sb"]] = sb
            row[_COL["zbl_sc"]] = sc
            row[_COL["zbl_in"]] = zin
            row[_COL["zbl_delta"]] = rcut - zin
        else:
            # ML-PACE keeps the repulsion positive and decaying
            row[_COL["pre"]] = abs(prehc)
            row[_COL["lambdahc"]] = abs(lambdahc)
        c = np.asarray(_field(bond, "radcoefficients", where), dtype=np.float64)
        shape = (int(bond["nradmax"]), int(bond["lmax"]) + 1, int(bond["nradbasemax"]))
        if c.size != int(np.prod(shape)):
            raise ValueError(f"ACE model: {where}: radcoefficients has {c.size} values, expected {shape}")
        crad[mu_i * nel + mu_j, : shape[0], : shape[1], : shape[2]] = c.reshape(shape)
    return params, crad, sorted(types)


def _harmonic_tables(lmax: int) -> Tuple[List[float], List[float], List[int], List[float]]:
    """The normalised associated-Legendre recursion coefficients (index l(l+1)/2 + m) and
    the map from the accumulated m >= 0 blocks to the full m = -l..l layout.

    A is accumulated with the m >= 0 harmonics in blocks per l, [Re m=0..l, Im m=0..l] at
    column l(l+1); the products read [Re (l, m) at l^2 + l + m | Im likewise] for
    m = -l..l, from A_{l,-m} = (-1)^m conj(A_{l,m}): source column and sign per entry.
    """
    alm: List[float] = []
    blm: List[float] = []
    for l in range(lmax + 1):
        for m in range(l + 1):
            if l >= 2 and m < l - 1:
                alm.append(math.sqrt((4.0 * l * l - 1.0) / (l * l - m * m)))
                lm1 = (l - 1) * (l - 1)
                blm.append(-math.sqrt((lm1 - m * m) / (4.0 * lm1 - 1.0)))
            else:
                alm.append(0.0)
                blm.append(0.0)
    n_full = (lmax + 1) ** 2
    src = [0] * (2 * n_full)
    sign = [1.0] * (2 * n_full)
    for l in range(lmax + 1):
        for m in range(-l, l + 1):
            k = l * l + l + m
            odd = m < 0 and m % 2 == 1
            src[k] = l * (l + 1) + abs(m)
            sign[k] = -1.0 if odd else 1.0
            src[n_full + k] = l * (l + 1) + l + 1 + abs(m)
            sign[n_full + k] = (1.0 if odd else -1.0) if m < 0 else 1.0
    return alm, blm, src, sign


def _embedding_tables(embeddings: List[Mapping[str, Any]], symbols: List[str]) -> Dict[str, Any]:
    """Per species: ndensity, FS weights and exponents (padded with w = 0), embedding type,
    and the core-repulsion energy cutoff (rho_core_cutoff, drho_core_cutoff)."""
    nel = len(symbols)
    ndens = [int(_field(e, "ndensity", f"embedding {s}")) for s, e in enumerate(embeddings)]
    nd = max(ndens)
    out: Dict[str, Any] = dict(
        ndensity=ndens, w=np.zeros((nel, nd)), m=np.ones((nel, nd)), type=np.zeros(nel),
        rho_cut=np.zeros(nel), drho_cut=np.zeros(nel), names=[],
    )
    for s, e in enumerate(embeddings):
        where = f"embedding {s} ({symbols[s]})"
        fsp = [float(v) for v in _field(e, "FS_parameters", where)]
        if len(fsp) != 2 * ndens[s]:
            raise ValueError(
                f"ACE model: {where}: {len(fsp)} FS_parameters for ndensity {ndens[s]} (need 2 per density)"
            )
        out["w"][s, : ndens[s]] = fsp[0::2]
        out["m"][s, : ndens[s]] = fsp[1::2]
        npoti = str(_field(e, "npoti", where))
        if npoti not in EMBEDDING_TYPES:
            raise ValueError(f"ACE model: {where}: embedding {npoti!r} is not one of {EMBEDDING_TYPES}")
        out["names"].append(npoti)
        out["type"][s] = float(EMBEDDING_TYPES.index(npoti))
        out["rho_cut"][s] = float(e.get("rho_core_cutoff", 0.0))
        out["drho_cut"][s] = float(e.get("drho_core_cutoff", 0.0))
    return out


def _function_tables(
    functions: List[List[Mapping[str, Any]]],
    symbols: List[str],
    ndens: List[int],
    nradmax: int,
    lmax: int,
    nradbase: int,
) -> Dict[str, Any]:
    """Index tensors and coefficients of every (function, ms-combination), grouped by
    (species, rank) so that each group is a fixed number of row gathers.

    Rank 1 indexes A1 [(mu, k)]; higher ranks index A [(mu, n, l, m)] in the transposed
    layout of ``ACEModule.energies`` (mu * nradmax (lmax+1)^2 + (n-1) (lmax+1)^2 + l^2 + l + m).
    Groups are (species, rank, index offset, count, coefficient offset) into the flat
    ``index`` and ``coef`` [count, ndensity_max] (zero-padded densities).
    """
    nel = len(symbols)
    nd = max(ndens)
    n_full = (lmax + 1) ** 2
    per_mu = nradmax * n_full
    idx_all: List[np.ndarray] = []
    c_all: List[np.ndarray] = []
    groups: List[Tuple[int, int, int, int, int]] = []
    idx_off = 0
    c_off = 0
    num_functions: List[int] = []
    num_ms: List[int] = []
    for s in range(nel):
        by_rank: Dict[int, Tuple[List[np.ndarray], List[np.ndarray]]] = {}
        for k, f in enumerate(functions[s]):
            where = f"function {k} of species {s} ({symbols[s]})"
            rank = int(_field(f, "rank", where))
            mus = [int(v) for v in _field(f, "mus", where)]
            ns = [int(v) for v in _field(f, "ns", where)]
            ls = [int(v) for v in _field(f, "ls", where)]
            if int(f.get("mu0", s)) != s:
                raise ValueError(f"ACE model: {where}: mu0 {f.get('mu0')} is not its species {s}")
            if rank < 1 or len(mus) != rank or len(ns) != rank or len(ls) != rank:
                raise ValueError(f"ACE model: {where}: mus/ns/ls must have rank = {rank} entries")
            if any(not 0 <= mu < nel for mu in mus):
                raise ValueError(f"ACE model: {where}: mus {mus} beyond the {nel} elements")
            ms = np.asarray(_field(f, "ms_combs", where), dtype=np.int64).reshape(-1, rank)
            ct = np.asarray(_field(f, "ctildes", where), dtype=np.float64).reshape(-1)
            if ct.size != ms.shape[0] * ndens[s]:
                raise ValueError(
                    f"ACE model: {where}: {ct.size} ctildes for {ms.shape[0]} ms combinations x "
                    f"ndensity {ndens[s]} (the evaluator uses the element's ndensity)"
                )
            coef = np.zeros((ms.shape[0], nd))
            coef[:, : ndens[s]] = ct.reshape(ms.shape[0], ndens[s])
            if rank == 1:
                if not 1 <= ns[0] <= nradbase or ls[0] != 0 or ms.shape[0] != 1 or ms[0, 0] != 0:
                    raise ValueError(f"ACE model: {where}: a rank-1 function needs 1 <= n <= {nradbase}, l = m = 0")
                index = np.array([[mus[0] * nradbase + ns[0] - 1]])
            else:
                for t in range(rank):
                    if not 1 <= ns[t] <= nradmax or not 0 <= ls[t] <= lmax:
                        raise ValueError(
                            f"ACE model: {where}: n = {ns[t]}, l = {ls[t]} beyond nradmax {nradmax}, lmax {lmax}"
                        )
                if (np.abs(ms) > np.asarray(ls)[None, :]).any():
                    raise ValueError(f"ACE model: {where}: some |m| > l in ms_combs")
                base = np.array([mus[t] * per_mu + (ns[t] - 1) * n_full + ls[t] * ls[t] + ls[t] for t in range(rank)])
                index = (base[None, :] + ms).T  # [rank, num_ms]
            by_rank.setdefault(rank, ([], []))
            by_rank[rank][0].append(index)
            by_rank[rank][1].append(coef)
        for rank in sorted(by_rank):
            index = np.concatenate(by_rank[rank][0], axis=1)
            coef = np.concatenate(by_rank[rank][1], axis=0)
            groups.append((s, rank, idx_off, index.shape[1], c_off))
            idx_all.append(index.reshape(-1))
            c_all.append(coef)
            idx_off += index.size
            c_off += index.shape[1]
        num_functions.append(len(functions[s]))
        num_ms.append(sum(int(np.asarray(f["ms_combs"]).size) // int(f["rank"]) for f in functions[s]))
    return dict(
        groups=groups,
        index=np.concatenate(idx_all) if idx_all else np.zeros(0, dtype=np.int64),
        coef=np.concatenate(c_all) if c_all else np.zeros((0, nd)),
        num_functions=num_functions,
        num_ms_combs=num_ms,
    )


class ACEModule(torch.nn.Module):
    """An ACE potential (C-tilde form) under contract v2.

    ``model``: the dict of ``mlff.ace._ace.Model.to_dict()`` (keys as in ``.yace``).
    ``dtype``: the dtype of inputs and outputs (``.to(dtype)`` changes it later).
    ``radial``: ``"spline"`` (ML-PACE's numbers) or ``"analytic"`` (see the module docstring).
    A malformed dict raises ``ValueError`` naming the bond, embedding or function.
    """

    kind = "ace"

    def __init__(self, model: Mapping[str, Any], dtype: torch.dtype = torch.float64, radial: str = "spline"):
        super().__init__()
        if radial not in RADIAL_MODES:
            raise ValueError(f"ACE radial evaluation must be one of {RADIAL_MODES}, got {radial!r}")
        symbols = [str(s) for s in _field(model, "elements", "the model")]
        if not symbols:
            raise ValueError("ACE model: no elements")
        nel = len(symbols)
        zs = [_symbol_to_z(s) for s in symbols]
        if len(set(zs)) != nel:
            raise ValueError(f"ACE model: duplicate elements {symbols}")
        self.symbols: List[str] = symbols
        self.elements: List[int] = sorted(zs)
        self.n_species = nel
        self.radial_mode = radial
        self.use_spline = radial == "spline"
        # True: take the device (CUDA) code path on the CPU too (for tests)
        self.force_masked_path = False
        table = torch.full((119,), -1, dtype=torch.long)
        for s, z in enumerate(zs):
            table[z] = s
        self.register_buffer("z_to_index", table)

        e0 = [float(v) for v in model.get("E0", [0.0] * nel)]
        if len(e0) != nel:
            raise ValueError(f"ACE model: E0 has {len(e0)} values for {nel} elements")
        delta_bins = float(_field(model, "deltaSplineBins", "the model"))
        if not delta_bins > 0.0:
            raise ValueError(f"ACE model: deltaSplineBins must be positive, got {delta_bins}")

        # ---------------------------------------------------------------- bonds
        bonds: Dict[Tuple[int, int], Mapping[str, Any]] = {}
        for key, bond in _field(model, "bonds", "the model").items():
            mu_i, mu_j = (int(v) for v in key)
            if not (0 <= mu_i < nel and 0 <= mu_j < nel):
                raise ValueError(f"ACE model: bond {key} refers to a species beyond the {nel} elements")
            bonds[(mu_i, mu_j)] = bond
        if not bonds:
            raise ValueError("ACE model: no bonds")
        # ML-PACE's sizes are global maxima over the bonds (smaller bonds are zero-padded)
        self.nradmax = max(int(b["nradmax"]) for b in bonds.values())
        self.lmax = max(int(b["lmax"]) for b in bonds.values())
        self.nradbase = max(int(b["nradbasemax"]) for b in bonds.values())
        self.inner_cutoff_type = _inner_cutoff_type(bonds, nel)
        self.inner_code = INNER_CUTOFF_TYPES.index(self.inner_cutoff_type)
        params, crad, types = _bond_tables(
            bonds, zs, delta_bins, self.inner_cutoff_type, self.nradmax, self.lmax, self.nradbase
        )
        self.radial_types: List[int] = types
        self.present_pairs: List[int] = sorted(i * nel + j for i, j in bonds)
        self.cutoff = float(max(float(b["rcut"]) for b in bonds.values()))
        # the core term is needed for any repulsion, and for zbl always (it also blends)
        self.with_core = self.inner_cutoff_type == "zbl" or bool((params[:, _COL["pre"]] != 0.0).any())
        nl = self.nradmax * (self.lmax + 1)
        crad_t = torch.from_numpy(crad).reshape(nel * nel, nl, self.nradbase).transpose(1, 2).contiguous()
        self.register_buffer("crad", crad_t.to(dtype))  # [pairs, nradbase, nradmax*(lmax+1)]

        alm, blm, src, sign = _harmonic_tables(self.lmax)
        self.alm: List[float] = alm
        self.blm: List[float] = blm
        self.n_lm = (self.lmax + 1) * (self.lmax + 2) // 2
        self.register_buffer("lm_source", torch.tensor(src, dtype=torch.long))
        self.register_buffer("lm_sign", torch.tensor(sign, dtype=dtype))

        # ---------------------------------------------------------------- embeddings
        emb_in = _field(model, "embeddings", "the model")
        if len(emb_in) != nel:
            raise ValueError(f"ACE model: {len(emb_in)} embeddings for {nel} elements")
        emb_list = [emb_in[k] for k in sorted(emb_in)] if isinstance(emb_in, Mapping) else list(emb_in)
        emb = _embedding_tables(emb_list, symbols)
        ndens: List[int] = emb["ndensity"]
        self.ndensity_max = max(ndens)
        self.embedding_types: List[int] = sorted({int(t) for t in emb["type"]})
        self.register_buffer("fs_w", torch.from_numpy(emb["w"]).to(dtype))
        self.register_buffer("fs_m", torch.from_numpy(emb["m"]).to(dtype))
        self.register_buffer("fs_type", torch.from_numpy(emb["type"]).to(dtype))
        self.register_buffer("rho_core_cut", torch.from_numpy(emb["rho_cut"]).to(dtype))
        self.register_buffer("drho_core_cut", torch.from_numpy(emb["drho_cut"]).to(dtype))
        self.register_buffer("e0", torch.tensor(e0, dtype=dtype))

        # ---------------------------------------------------------------- functions
        funcs_in = _field(model, "functions", "the model")
        if isinstance(funcs_in, Mapping):
            funcs_in = [funcs_in.get(s, funcs_in.get(str(s), [])) for s in range(nel)]
        if len(funcs_in) != nel:
            raise ValueError(f"ACE model: functions for {len(funcs_in)} species, {nel} elements")
        fn = _function_tables(list(funcs_in), symbols, ndens, self.nradmax, self.lmax, self.nradbase)
        self.groups: List[Tuple[int, int, int, int, int]] = fn["groups"]
        self.register_buffer("func_index", torch.from_numpy(fn["index"]).to(torch.long))
        self.register_buffer("func_coef", torch.from_numpy(fn["coef"]).to(dtype))

        # the bond table stays float64 whatever the module's dtype (the spline knots must sit
        # exactly where ML-PACE puts them); registered after every dtype-following buffer so
        # that mlff.contract.model_dtype reads the module's dtype from those
        self._bond_table = params
        self.register_buffer("bond_table", torch.from_numpy(params.copy()))
        self._summary: Dict[str, Any] = dict(
            elements=symbols,
            radial_basis=sorted({str(b["radbasename"]) for b in bonds.values()}),
            lmax=self.lmax,
            nradmax=self.nradmax,
            nradbase=self.nradbase,
            rcut={f"{symbols[i]}-{symbols[j]}": float(b["rcut"]) for (i, j), b in sorted(bonds.items())},
            ndensity=ndens,
            embedding=emb["names"],
            inner_cutoff_type=self.inner_cutoff_type,
            num_functions=dict(zip(symbols, fn["num_functions"])),
            num_ms_combs=dict(zip(symbols, fn["num_ms_combs"])),
            deltaSplineBins=delta_bins,
            radial_evaluation=radial,
        )

    # ------------------------------------------------------------------ contract (plain Python)

    def _apply(self, fn: Any, *args: Any, **kwargs: Any) -> "ACEModule":
        # .to(dtype) casts every floating buffer; the bond table follows devices only
        super()._apply(fn, *args, **kwargs)
        device = self.bond_table.device
        self.bond_table = torch.from_numpy(self._bond_table.copy()).to(device)
        return self

    def contract_info(self) -> Dict[str, Any]:
        """What :func:`mlff.contract.metadata_for` reads: one list ``"ace"`` at the largest rcut.

        The same description as the native core's (:func:`mlff.ace.potential.contract_info`),
        so both paths give one contract key: ACE is local (one layer), range = reach = rcut.
        """
        from .potential import ace_contract_info

        return ace_contract_info(list(self.elements), float(self.cutoff), dict(self._summary))

    def summary(self) -> Dict[str, Any]:
        """Basis size, radial types, cutoffs (what ``mlff info`` shows for an ACE model)."""
        return dict(self._summary)

    # ------------------------------------------------------------------ TorchScript surface

    def forward(
        self,
        atomic_numbers: torch.Tensor,
        edge_indices: List[torch.Tensor],
        edge_vectors: List[torch.Tensor],
        n_local: int,
        system: Dict[str, torch.Tensor],
    ) -> Dict[str, torch.Tensor]:
        return {"energies": self.energies(atomic_numbers, edge_indices[0], edge_vectors[0], n_local)}

    def energies(
        self, atomic_numbers: torch.Tensor, edge_index: torch.Tensor, edge_vectors: torch.Tensor, n_local: int
    ) -> torch.Tensor:
        """Per-atom energies [N] (eV); atoms >= n_local (ghosts) get 0."""
        dtype = edge_vectors.dtype
        device = edge_vectors.device
        n_atoms = atomic_numbers.shape[0]
        nel = self.n_species
        species = element_indices(self.z_to_index, atomic_numbers, "ACE")
        params = self.bond_table.to(torch.float64)
        centre = edge_index[0]
        pair = species[centre] * nel + species[edge_index[1]]
        r2 = (edge_vectors * edge_vectors).sum(dim=1)
        nonzero = r2 > 0.0
        r = torch.sqrt(torch.where(nonzero, r2, torch.ones_like(r2)))
        p_edge = params[pair]
        bond = _bond_columns(p_edge)
        # ML-PACE's test, in float64: r < rcut of the bond (0 for pairs without a bond)
        valid = nonzero & (r.to(torch.float64) < bond.rcut) & (centre < n_local)
        on_cpu = not edge_vectors.is_cuda and not self.force_masked_path
        vec = edge_vectors
        if on_cpu:
            # compact the list (a host sync, harmless on the CPU): LAMMPS lists carry the skin
            keep = valid.nonzero().flatten()
            centre = centre[keep]
            pair = pair[keep]
            p_edge = p_edge[keep]
            vec = vec[keep]
            r = r[keep]
            valid = valid[keep]
            bond = _bond_columns(p_edge)
        validf = valid.unsqueeze(1)
        # a harmless stand-in distance for invalid edges keeps NaN out of every branch
        r_eval = torch.where(valid, r, 0.5 * bond.rcut.to(dtype))
        unit = vec / r_eval.unsqueeze(1)

        # ---------------------------------------------------------------- pair functions
        if self.use_spline:
            pf = _spline_pair_functions(
                r_eval.to(torch.float64), p_edge, self.nradbase, self.radial_types, self.inner_code, self.with_core
            ).to(dtype)
        else:
            pf, _ = _pair_functions(
                r_eval,
                _bond_columns(p_edge.to(dtype)),
                self.nradbase,
                self.radial_types,
                self.inner_code,
                self.with_core,
            )
        pf = torch.where(validf, pf, torch.zeros_like(pf))
        g = pf[:, : self.nradbase]
        nl = self.nradmax * (self.lmax + 1)
        # R_nl = sum_k crad[pair][n][l][k] g_k (linear, so the spline of R is crad x spline of g)
        if len(self.present_pairs) == 1:
            radial = torch.mm(g, self.crad[self.present_pairs[0]])
        else:
            radial = torch.zeros((g.shape[0], nl), dtype=dtype, device=device)
            for q in self.present_pairs:
                mine = (pair == q).unsqueeze(1)
                radial = radial + torch.mm(torch.where(mine, g, torch.zeros_like(g)), self.crad[q])
        radial = radial.view(-1, self.nradmax, self.lmax + 1)

        # ---------------------------------------------------------------- atomic base A
        # A_{mu n l m}(i) = sum_j R_nl Y_lm, per (atom, neighbour species) slot; one product
        # [E, nradmax, 2 n_lm] (Re and Im) and one scatter
        ylm = _spherical_harmonics(unit, self.lmax, self.alm, self.blm)
        parts: List[torch.Tensor] = []
        for l in range(self.lmax + 1):
            parts.append(radial[:, :, l : l + 1] * ylm[l].unsqueeze(1))
        slot = centre * nel + (pair % nel)
        n_rows = n_atoms * nel
        n_full = (self.lmax + 1) * (self.lmax + 1)
        a = torch.zeros((n_rows, self.nradmax, 2 * self.n_lm), dtype=dtype, device=device).index_add(
            0, slot, torch.cat(parts, dim=2)
        )
        a = (a[:, :, self.lm_source] * self.lm_sign).view(n_atoms, nel, self.nradmax, 2, n_full)[:n_local]
        # transposed, [mu n l m, atom]: the basis functions gather whole rows
        a_re = a[:, :, :, 0, :].reshape(n_local, -1).t().contiguous()
        a_im = a[:, :, :, 1, :].reshape(n_local, -1).t().contiguous()
        a1 = torch.zeros((n_rows, self.nradbase), dtype=dtype, device=device).index_add(0, slot, g)
        a1 = a1.view(n_atoms, -1)[:n_local].t().contiguous()

        # ---------------------------------------------------------------- densities
        species_local = species[:n_local]
        rho_t = torch.zeros((self.ndensity_max, n_local), dtype=dtype, device=device)
        current = -1
        rows = torch.zeros(0, dtype=torch.long, device=device)
        ar = a_re
        ai = a_im
        b1 = a1
        for group in self.groups:
            s, rank, i_off, count, c_off = group
            if nel > 1 and on_cpu and s != current:
                # this species' atoms only (a host sync, fine on the CPU)
                current = s
                rows = (species_local == s).nonzero().flatten()
                ar = a_re.index_select(1, rows)
                ai = a_im.index_select(1, rows)
                b1 = a1.index_select(1, rows)
            index = self.func_index.narrow(0, i_off, rank * count).view(rank, count)
            coef_t = self.func_coef.narrow(0, c_off, count).t()
            if rank == 1:
                contrib = torch.mm(coef_t, b1.index_select(0, index[0]))
            else:
                pr = ar.index_select(0, index[0])
                pi = ai.index_select(0, index[0])
                for t in range(1, rank - 1):
                    qr = ar.index_select(0, index[t])
                    qi = ai.index_select(0, index[t])
                    pr, pi = pr * qr - pi * qi, pr * qi + pi * qr
                last = index[rank - 1]
                # only Re(prod) enters (c~ is real)
                re = pr * ar.index_select(0, last) - pi * ai.index_select(0, last)
                contrib = torch.mm(coef_t, re)
            if nel == 1:
                rho_t = rho_t + contrib
            elif on_cpu:
                rho_t = rho_t.index_add(1, rows, contrib)
            else:
                rho_t = rho_t + torch.where((species_local == s).unsqueeze(0), contrib, torch.zeros_like(contrib))
        rho = rho_t.t()

        # ---------------------------------------------------------------- embedding
        w = self.fs_w[species_local]
        m = self.fs_m[species_local]
        f = torch.zeros_like(rho)
        for code in self.embedding_types:
            fk = _fs_embedding(rho, m) if code == 0 else _fs_shifted_scaled(rho, m)
            if len(self.embedding_types) == 1:
                f = fk
            else:
                f = torch.where((self.fs_type[species_local] == float(code)).unsqueeze(1), fk, f)
        e_ace = (w * f).sum(dim=1)

        # ---------------------------------------------------------------- core repulsion
        if self.with_core:
            core = pf[:, self.nradbase]
            rho_core = torch.zeros(n_atoms, dtype=dtype, device=device).index_add(0, centre, core)[:n_local]
            if self.inner_code == 2:
                fcut = self._zbl_transition(centre, r, bond, valid, n_atoms, n_local, dtype)
                e_local = e_ace * fcut + rho_core * (1.0 - fcut)
            else:
                rc = self.rho_core_cut[species_local]
                drc = self.drho_core_cut[species_local]
                fcut, _ = _cutoff_poly(rho_core, rc, drc)
                e_local = e_ace * fcut + rho_core
        else:
            e_local = e_ace
        e_local = e_local + self.e0[species_local]
        return torch.cat([e_local, torch.zeros(n_atoms - n_local, dtype=dtype, device=device)])

    def _zbl_transition(
        self,
        centre: torch.Tensor,
        r: torch.Tensor,
        bond: _Bond,
        valid: torch.Tensor,
        n_atoms: int,
        n_local: int,
        dtype: torch.dtype,
    ) -> torch.Tensor:
        """ML-PACE's ACE-to-ZBL blend per atom, driven by the nearest neighbour.

        d_j = r_j - (r_in - delta_in) of the bond; the neighbour with the smallest d (the
        first in the list on ties, below the largest rcut) sets t = r_in - r_min and the
        weight of ACE, 1 for r_min >= r_in and 0 for r_min <= r_in - delta_in.
        """
        cin = bond.cut_in.to(dtype)
        dcin = bond.dcut_in.to(dtype)
        d = r - (cin - dcin)
        big = torch.full_like(d, self.cutoff)
        d_valid = torch.where(valid, d, big).detach()
        dmin = torch.full((n_atoms,), self.cutoff, dtype=dtype, device=r.device).scatter_reduce(
            0, centre, d_valid, reduce="amin", include_self=True
        )
        n_edges = r.shape[0]
        if n_edges == 0:
            return torch.ones(n_local, dtype=dtype, device=r.device)
        eid = torch.arange(n_edges, device=r.device)
        cand = (d_valid == dmin[centre]) & (d_valid < self.cutoff)
        first = torch.full((n_atoms,), n_edges, dtype=torch.long, device=r.device).scatter_reduce(
            0, centre, torch.where(cand, eid, torch.full_like(eid, n_edges)), reduce="amin", include_self=True
        )[:n_local]
        has = first < n_edges
        sel = torch.clamp(first, max=n_edges - 1)
        d_sel = d[sel]
        dcin_sel = dcin[sel]
        t = dcin_sel - d_sel
        fcut, _ = _cutoff_poly(t, dcin_sel, dcin_sel)
        return torch.where(has, fcut, torch.ones_like(fcut))


def build_ace_module(
    model: Mapping[str, Any], dtype: torch.dtype = torch.float64, radial: str = "spline"
) -> torch.jit.ScriptModule:
    """The scripted ACE module of a model dict (``_ace.Model.to_dict()``), in eval mode."""
    return torch.jit.script(ACEModule(model, dtype=dtype, radial=radial).eval())


def ace_module_from_file(
    path: "str | os.PathLike[str]", dtype: torch.dtype = torch.float64, radial: str = "spline"
) -> Tuple[ACEModule, Any]:
    """(eager module, metadata) of a ``.yace``/``.ace`` file, read by the native core's reader.

    The module is eager so that :func:`mlff.contract.export_model` can script it and check
    the scripted copy against it; ``torch.jit.script`` it for TorchScript consumers.
    """
    from ..contract import metadata_for
    from .potential import load_potential

    module = ACEModule(load_potential(path).to_dict(), dtype=dtype, radial=radial).eval()
    source = os.path.abspath(os.fspath(path))
    return module, metadata_for(module, {"source": source})


__all__ = [
    "ACEModule",
    "build_ace_module",
    "ace_module_from_file",
    "RADIAL_TYPES",
    "EMBEDDING_TYPES",
    "INNER_CUTOFF_TYPES",
]
