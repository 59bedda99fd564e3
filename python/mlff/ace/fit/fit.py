"""mlff's own ACE fit: B-basis coefficients and radial coefficients by L-BFGS with
analytic gradients (permissive licence; no pyace/pacemaker code).

What is fitted, as pacemaker does: per B function one coefficient per density, and per
bond the radial coefficients crad[n][l][k] of R_nl = sum_k crad g_k. The model is
evaluated by :class:`mlff.ace.torch_module.ACEModule` (the torch C-tilde evaluator) built
from the core's *projection* model (one C-tilde function per B function, ctildes = its
generalised Clebsch-Gordan coefficients): before each evaluation the module's ``func_coef``
buffer is replaced by ``gen_cg x coefficient`` and ``crad`` by the radial parameters, both
differentiable tensors, so torch autograd gives the energy, the forces (with
``create_graph``) and the gradient of the loss with respect to every parameter. The
radial functions are the spline pieces ML-PACE evaluates (``radial="spline"``), so the
loss is computed on exactly the potential that is exported.

Loss (pacemaker's form): (1 - kappa) sum_s w_s (dE_s / N_s)^2 + kappa sum_i w_i |dF_i|^2
(+ stress_weight sum_s w_s |d sigma_s|^2) + L1 sum|c| + L2 sum c^2
+ sum_{n,l,k} crad^2 (w0_rad + w1_rad k^2 + w2_rad k^4), with structure weights w_s
summing to 1 and per-atom force weights w_i = w_s / N_s renormalised to 1 (with
``weighting``: pacemaker's energy-based weights, see :func:`structure_weights`).

Reference energies (``reference_energy: auto``) are a least-squares fit of the training
energies to the composition; they become the ``.yace`` E0. ``repulsion: auto`` sets a ZBL
core (inner cutoff = the data's smallest distance per bond, delta_in 0.1 Å, pacemaker's
choice), so no training structure is changed by it.

Ladder fitting grows the basis by ``ladder_step`` functions per block (an int, or a fraction
of the current size) in ``ladder_type`` order (power_order / body_order), each step
warm-started from the previous coefficients and crad.

Starting from a potential (``initial_potential``, ``model.init_from``; pacemaker's
``initial_potential``): a B-basis ``.yaml`` (mlff's or pacemaker's ``output_potential.yaml``).
Without ``potential`` the file's basis is fitted as it is; with it, the spec's basis takes the
file's coefficients of the functions they share (a ladder then starts from those functions).
The fit starts from exactly the file's coefficients: no linear least-squares start (it would
replace the first density's coefficients, i.e. forget the source on a small new set) and
no random seeding of the loaded functions, so its first evaluation is the file's potential
plus this fit's reference energies (B-basis files carry no E0). A ``.yace`` is refused: its
C-tilde coefficients are merged from the B functions and cannot be split back.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from ..torch_module import ACEModule
from .basis import (
    ACEBasis,
    bbasis_of,
    build_basis,
    empty_like,
    extend_basis,
    function_lines,
    read_bbasis_yaml,
    read_potential_spec,
    to_bbasis_yaml,
    warm_start,
)
from .yace_writer import write_yace
from ...atomic import atomic_write

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- options


@dataclass
class ACEFitOptions:
    """Fit settings (pacemaker's names where it has them)."""

    potential: Dict[str, Any] = field(default_factory=dict)
    kappa: float = 0.3
    stress_weight: float = 0.0
    L1_coeffs: float = 0.0
    L2_coeffs: float = 0.0
    w0_rad: float = 0.0
    w1_rad: float = 0.0
    w2_rad: float = 0.0
    maxiter: int = 200
    ladder_step: Optional[Union[int, float]] = None
    ladder_type: str = "power_order"
    fit_radial: bool = True
    #: start each (ladder) fit by the exact least-squares solve of the first density's
    #: coefficients (when its embedding is linear, m_0 = 1)
    linear_start: bool = True
    #: None (equal weights) or {DElow, DEup, DE, DF, wlow}: pacemaker's energy-based weighting
    weighting: Optional[Dict[str, float]] = None
    #: "auto" (least squares on composition), a {element: energy} map, or 0
    reference_energy: Union[str, Dict[str, float], float] = "auto"
    repulsion: Optional[str] = None
    seed: int = 0

    @classmethod
    def from_mapping(cls, m: Mapping[str, Any]) -> "ACEFitOptions":
        known = set(cls.__dataclass_fields__)
        bad = sorted(set(m) - known)
        if bad:
            raise ValueError(f"ACE fit: unknown options {bad}; known: {sorted(known)}")
        opts = cls(**dict(m))
        opts.potential = read_potential_spec(opts.potential) if opts.potential else {}
        if not 0.0 <= opts.kappa <= 1.0:
            raise ValueError(f"ACE fit: kappa must be in [0, 1], got {opts.kappa}")
        if opts.ladder_type not in ("power_order", "body_order"):
            raise ValueError(f"ACE fit: ladder_type must be power_order or body_order, got {opts.ladder_type!r}")
        if opts.repulsion not in (None, "auto", "none"):
            raise ValueError(f"ACE fit: repulsion must be 'auto' or omitted, got {opts.repulsion!r}")
        return opts


# ----------------------------------------------------------------------------- data


@dataclass
class Structure:
    """A labelled structure: numbers, positions, cell, pbc; energy (eV), forces (eV/Å),
    stress (Voigt-6, eV/Å³, ASE sign) or None."""

    numbers: np.ndarray
    positions: np.ndarray
    cell: np.ndarray
    pbc: np.ndarray
    energy: float
    forces: Optional[np.ndarray] = None
    stress: Optional[np.ndarray] = None

    @classmethod
    def from_any(cls, s: Any) -> "Structure":
        if isinstance(s, Structure):
            return s
        if hasattr(s, "get_positions"):  # ASE Atoms with a calculator or stored results
            calc = s.calc
            res = dict(calc.results) if calc is not None else {}
            energy = res.get("energy", s.info.get("energy"))
            forces = res.get("forces", s.arrays.get("forces"))
            stress = res.get("stress", s.info.get("stress"))
            return cls(
                s.get_atomic_numbers(), s.get_positions(), np.asarray(s.get_cell()), s.get_pbc(),
                float("nan") if energy is None else float(energy), None if forces is None else np.asarray(forces),
                None if stress is None else np.asarray(stress),
            )
        return cls(  # mlff.data.records.Record
            np.asarray(s.numbers), np.asarray(s.positions), np.asarray(s.cell), np.asarray(s.pbc),
            float(s.energy), None if s.forces is None else np.asarray(s.forces),
            None if s.stress is None else np.asarray(s.stress),
        )

    def to_atoms(self) -> Any:
        from ase import Atoms

        return Atoms(numbers=self.numbers, positions=self.positions, cell=self.cell, pbc=self.pbc)


def _voigt_to_full(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64).reshape(-1)
    if v.size == 9:
        return v.reshape(3, 3)
    xx, yy, zz, yz, xz, xy = v
    return np.array([[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]])


class _Batch:
    """All structures as one graph (float64), built once per cutoff."""

    def __init__(self, structures: Sequence[Structure], cutoff: float):
        from ...neighbors import neighbor_list

        z, ei, vec, batch, cells, pos = [], [], [], [], [], []
        edge_struct = []
        off = 0
        for k, s in enumerate(structures):
            e, shifts = neighbor_list(s.positions, s.cell, s.pbc, cutoff)
            v = s.positions[e[1]] - s.positions[e[0]] + shifts.astype(np.float64) @ np.asarray(s.cell)
            z.append(np.asarray(s.numbers, dtype=np.int64))
            ei.append(e + off)
            vec.append(v)
            batch.append(np.full(len(s.numbers), k))
            edge_struct.append(np.full(e.shape[1], k))
            off += len(s.numbers)
        self.n_structures = len(structures)
        self.z = torch.from_numpy(np.concatenate(z))
        self.edge_index = torch.from_numpy(np.concatenate(ei, axis=1).astype(np.int64))
        self.vectors = torch.from_numpy(np.concatenate(vec))
        self.batch = torch.from_numpy(np.concatenate(batch))
        self.edge_struct = torch.from_numpy(np.concatenate(edge_struct))
        self.n_atoms = torch.tensor([len(s.numbers) for s in structures], dtype=torch.float64)
        self.energy = torch.tensor([s.energy for s in structures], dtype=torch.float64)
        self.has_forces = all(s.forces is not None for s in structures)
        self.forces = (
            torch.from_numpy(np.concatenate([np.asarray(s.forces, dtype=np.float64) for s in structures]))
            if self.has_forces
            else None
        )
        self.has_stress = all(s.stress is not None and bool(np.all(s.pbc)) for s in structures)
        if self.has_stress:
            self.stress = torch.from_numpy(np.stack([_voigt_to_full(s.stress) for s in structures]))
            self.volume = torch.tensor([abs(np.linalg.det(s.cell)) for s in structures], dtype=torch.float64)
        self.min_dist: Dict[Tuple[int, int], float] = {}
        r = np.linalg.norm(np.concatenate(vec), axis=1) if vec else np.zeros(0)
        zc = self.z.numpy()
        i, j = self.edge_index.numpy()
        for a, b, d in zip(zc[i], zc[j], r):
            key = (int(min(a, b)), int(max(a, b)))
            if d > 0 and d < self.min_dist.get(key, np.inf):
                self.min_dist[key] = float(d)


# ----------------------------------------------------------------------------- the model


class ACEFitModel:
    """Differentiable view of an :class:`ACEBasis`: parameters, energy and force evaluation.

    ``coeffs`` [functions, ndensity_max] in the core's projection order (rows of every
    element concatenated), ``crad`` [nel^2, nradmax, lmax+1, nradbase] (zero outside each
    bond's own shape: ``crad_mask``).
    """

    def __init__(self, basis: ACEBasis, e0: Optional[Dict[str, float]] = None, radial: str = "spline"):
        self.basis = basis
        self.bbasis = bbasis_of(basis)
        self.elements: List[str] = list(self.bbasis.elements)
        nel = len(self.elements)
        energy = self.bbasis.energy_model.to_dict()
        proj = self.bbasis.projection_model.to_dict()
        self.e0 = [float((e0 or {}).get(el, 0.0)) for el in self.elements]
        ndens = [int(e["ndensity"]) for e in energy["embeddings"]]
        self.ndens = ndens
        nd = max(ndens)
        lines = function_lines(basis)
        self.func_ref: List[Tuple[int, int]] = []  # (block, function) of every coefficient row
        funcs_mod: List[List[Dict[str, Any]]] = []
        cg_rows: List[List[np.ndarray]] = []
        coef0: List[np.ndarray] = []
        fstart = [0]
        for s, el in enumerate(self.elements):
            bfs = self.bbasis.functions(el)
            pf = proj["functions"][s]
            if len(bfs) != len(pf):
                raise RuntimeError("ACE fit: projection model and B functions disagree")
            lst = []
            rows = []
            for f, p in zip(bfs, pf):
                if not np.array_equal(np.asarray(f["ms_combs"]).reshape(-1), np.asarray(p["ms_combs"]).reshape(-1)):
                    raise RuntimeError("ACE fit: projection model and B functions disagree on ms_combs")
                bi, fi = lines[int(f["line"])]
                self.func_ref.append((bi, fi))
                c = np.zeros(nd)
                c[: ndens[s]] = basis.blocks[bi].functions[fi].coeffs
                coef0.append(c)
                nms = np.asarray(p["ms_combs"]).reshape(-1, int(p["rank"])).shape[0]
                d = dict(p)
                d["ndensity"] = ndens[s]
                d["ctildes"] = np.zeros((nms, ndens[s]))
                lst.append(d)
                rows.append(np.asarray(f["gen_cgs"], dtype=np.float64))
            funcs_mod.append(lst)
            cg_rows.append(rows)
            fstart.append(fstart[-1] + len(bfs))
        model = dict(energy)
        # a basis of rank-1 functions only (a ladder's first step) has nradmax 0, which the torch
        # module cannot shape: pad those bonds with one zero radial function no function uses
        model["bonds"] = {k: dict(b) for k, b in energy["bonds"].items()}
        for b in model["bonds"].values():
            if int(b["nradmax"]) == 0:
                b["nradmax"] = 1
                b["radcoefficients"] = np.zeros((1, int(b["lmax"]) + 1, int(b["nradbasemax"])))
        model["functions"] = funcs_mod
        model["E0"] = [0.0] * nel
        self.module = ACEModule(model, dtype=torch.float64, radial=radial)
        # row -> function map in ACEModule's layout: per element, ranks ascending, functions in order
        row_func: List[int] = []
        row_cg: List[float] = []
        for s in range(nel):
            ranks = sorted({int(f["rank"]) for f in funcs_mod[s]})
            for rank in ranks:
                for k, f in enumerate(funcs_mod[s]):
                    if int(f["rank"]) == rank:
                        cg = cg_rows[s][k]
                        row_func.extend([fstart[s] + k] * len(cg))
                        row_cg.extend(cg.tolist())
        if len(row_func) != self.module.func_coef.shape[0]:
            raise RuntimeError("ACE fit: unexpected C-tilde layout of the torch module")
        self.row_func = torch.tensor(row_func, dtype=torch.long)
        self.row_cg = torch.tensor(row_cg, dtype=torch.float64).unsqueeze(1)
        self.func_species = torch.tensor(
            [s for s in range(nel) for _ in range(fstart[s + 1] - fstart[s])], dtype=torch.long
        )
        dmask = torch.zeros(len(self.func_species), nd, dtype=torch.float64)
        for k, s in enumerate(self.func_species.tolist()):
            dmask[k, : ndens[s]] = 1.0
        self.coef_mask = dmask
        self.coeffs = torch.tensor(np.array(coef0).reshape(-1, nd), dtype=torch.float64)
        # radial coefficients, padded to the module's global sizes
        nr, lm, nb = self.module.nradmax, self.module.lmax, self.module.nradbase
        self.crad_shape = (nel * nel, nr, lm + 1, nb)
        crad = torch.zeros(self.crad_shape, dtype=torch.float64)
        mask = torch.zeros(self.crad_shape, dtype=torch.float64)
        self.bond_block: Dict[int, int] = {}
        for key, b in energy["bonds"].items():
            i, j = (int(v) for v in key)
            shape = (int(b["nradmax"]), int(b["lmax"]) + 1, int(b["nradbasemax"]))
            c = np.asarray(b["radcoefficients"], dtype=np.float64).reshape(shape)
            crad[i * nel + j, : shape[0], : shape[1], : shape[2]] = torch.from_numpy(c)
            if i <= j:  # A-B and B-A share one radial basis (ML-PACE's rule): j > i is a copy
                mask[i * nel + j, : shape[0], : shape[1], : shape[2]] = 1.0
        self.crad = crad
        self.crad_mask = mask
        self.crad_mirror = torch.tensor([j * nel + i for i in range(nel) for j in range(nel)], dtype=torch.long)
        self.crad_lower = torch.tensor([i > j for i in range(nel) for j in range(nel)]).view(-1, 1, 1, 1)

    # ------------------------------------------------------------------ parameters

    def seed_zero_densities(self, rng: np.random.Generator, scale: float = 1e-4,
                            keep: Optional[torch.Tensor] = None) -> None:
        """Give the exactly-zero coefficients of densities p > 0 small random values.

        A non-linear embedding is evaluated as sign(rho) (...), whose autograd derivative at
        rho = 0 is 0 (torch.sign' = 0), while F'(0) is not: with every coefficient of a density
        at zero its gradient vanishes and the optimiser would never move it (pacemaker's
        ``coefs_init: random`` uses the same 1e-4 scale). ``keep``: a bool per row not to seed.
        """
        c = self.coeffs.clone()
        zero = (c == 0.0) & (self.coef_mask > 0)
        zero[:, 0] = False
        if keep is not None:  # rows taken from a potential file stay exactly as they were
            zero &= ~keep.view(-1, 1)
        noise = torch.from_numpy(rng.normal(0.0, scale, size=tuple(c.shape)))
        self.coeffs = torch.where(zero, noise, c)

    def n_params(self, fit_radial: bool) -> int:
        n = int(self.coef_mask.sum())
        return n + (int(self.crad_mask.sum()) if fit_radial else 0)

    def pack(self, fit_radial: bool) -> np.ndarray:
        parts = [self.coeffs[self.coef_mask > 0]]
        if fit_radial:
            parts.append(self.crad[self.crad_mask > 0])
        return torch.cat(parts).numpy().copy()

    def unpack(self, x: torch.Tensor, fit_radial: bool) -> Tuple[torch.Tensor, torch.Tensor]:
        nc = int(self.coef_mask.sum())
        coeffs = torch.zeros_like(self.coeffs).masked_scatter(self.coef_mask > 0, x[:nc])
        if fit_radial:
            crad = torch.zeros_like(self.crad).masked_scatter(self.crad_mask > 0, x[nc:])
            crad = torch.where(self.crad_lower, crad[self.crad_mirror], crad)
        else:
            crad = self.crad
        return coeffs, crad

    def set_params(self, coeffs: torch.Tensor, crad: torch.Tensor) -> None:
        """Put (possibly differentiable) parameters into the torch module."""
        m = self.module
        m.func_coef = self.row_cg * coeffs[self.row_func]
        nel2, nr, l1, nb = self.crad_shape
        m.crad = crad.reshape(nel2, nr * l1, nb).transpose(1, 2)

    def atom_energies(self, batch: _Batch, vectors: torch.Tensor) -> torch.Tensor:
        n = int(batch.z.shape[0])
        return self.module.energies(batch.z, batch.edge_index, vectors, n)

    # ------------------------------------------------------------------ back to the basis

    def store(self, coeffs: torch.Tensor, crad: torch.Tensor) -> None:
        """Write parameters back into the basis (B coefficients, block crad)."""
        self.coeffs = coeffs.detach().clone()
        self.crad = crad.detach().clone()
        c = self.coeffs.numpy()
        for k, (bi, fi) in enumerate(self.func_ref):
            s = int(self.func_species[k])
            self.basis.blocks[bi].functions[fi].coeffs = [float(v) for v in c[k, : self.ndens[s]]]
        nel = len(self.elements)
        index = {el: i for i, el in enumerate(self.elements)}
        for blk in self.basis.blocks:
            if len(blk.elements) > 2 or blk.crad is None:
                continue
            i, j = index[blk.elements[0]], index[blk.elements[-1]]
            sh = blk.crad.shape
            blk.crad = self.crad[i * nel + j, : sh[0], : sh[1], : sh[2]].numpy().copy()

    def model_dict(self) -> Dict[str, Any]:
        """The C-tilde model (B functions merged, E0 set) of the current basis."""
        d = bbasis_of(self.basis).energy_model.to_dict()
        d["E0"] = list(self.e0)
        return d


# ----------------------------------------------------------------------------- loss


def structure_weights(batch: _Batch, e_ref: torch.Tensor, spec: Optional[Dict[str, float]]) -> torch.Tensor:
    """Energy weights of the structures, summing to 1.

    ``spec`` None: equal weights. Otherwise pacemaker's energy-based weighting (its
    ``EnergyBasedWeightingPolicy`` semantics, "cohesive" reference): with dE the energy per
    atom above the lowest one, w = 1/(dE + DE)^2, structures with dE >= DEup get 0, and with
    ``wlow`` given the structures below DElow share exactly that fraction of the weight.
    """
    n = batch.n_structures
    if not spec:
        w = np.ones(n)
    else:
        bad = sorted(set(spec) - {"DElow", "DEup", "DE", "DF", "wlow"})
        if bad:
            raise ValueError(f"ACE fit: unknown weighting keys {bad}; known: DElow, DEup, DE, DF, wlow")
        e = (e_ref / batch.n_atoms).numpy()
        de = e - e.min()
        lo, up, width = float(spec.get("DElow", 1.0)), float(spec.get("DEup", 10.0)), abs(float(spec.get("DE", 1.0)))
        w = np.where(de < up, 1.0 / (de + width) ** 2, 0.0)
        if not w.sum() > 0:
            raise ValueError(f"ACE fit: no structure within DEup = {up} eV/atom of the lowest energy")
        w = w / w.sum()
        if spec.get("wlow") is not None:
            low = de < lo
            wl, wu = w[low].sum(), w[~low].sum()
            if 0.0 < wl < 1.0 and wu > 0.0:
                target = float(spec["wlow"])
                w = np.where(low, w * target / wl, w * (1.0 - target) / wu)
    w = torch.from_numpy(np.asarray(w, dtype=np.float64))
    return w / w.sum()


def force_weights(batch: _Batch, w_struct: torch.Tensor, spec: Optional[Dict[str, float]]) -> torch.Tensor:
    """Per-atom force weights [N, 1], summing to 1: the structure's weight over its atoms
    (``spec`` None), or with pacemaker's energy-based weighting w_s / (|F_i|^2 + DF)."""
    fw = (w_struct / batch.n_atoms)[batch.batch]
    if spec and batch.has_forces:
        df = abs(float(spec.get("DF", 1.0)))
        fw = w_struct[batch.batch] / ((batch.forces**2).sum(dim=1) + df)
    return (fw / fw.sum()).unsqueeze(1)


class _Objective:
    def __init__(self, model: ACEFitModel, batch: _Batch, target_e: torch.Tensor, weights: torch.Tensor,
                 opts: ACEFitOptions):
        self.m = model
        self.b = batch
        self.target_e = target_e
        self.w = weights
        self.opts = opts
        self.fw = force_weights(batch, weights, opts.weighting)
        nb = model.crad_shape[3]
        k = torch.arange(nb, dtype=torch.float64)
        self.rad_w = (opts.w0_rad + opts.w1_rad * k**2 + opts.w2_rad * k**4).view(1, 1, 1, nb)
        self.n_eval = 0

    def predict(self, coeffs: torch.Tensor, crad: torch.Tensor, need_forces: bool, create_graph: bool,
                need_stress: bool = False) -> Dict[str, torch.Tensor]:
        self.m.set_params(coeffs, crad)
        vec = self.b.vectors.clone().requires_grad_(need_forces or need_stress)
        ea = self.m.atom_energies(self.b, vec)
        e = torch.zeros(self.b.n_structures, dtype=torch.float64).index_add(0, self.b.batch, ea)
        out = {"energy": e}
        if need_forces or need_stress:
            (g,) = torch.autograd.grad(ea.sum(), vec, create_graph=create_graph)
            n = int(self.b.z.shape[0])
            i, j = self.b.edge_index
            f = torch.zeros((n, 3), dtype=torch.float64).index_add(0, i, g).index_add(0, j, -g)
            out["forces"] = f
            if need_stress:
                rg = vec.detach().unsqueeze(2) * g.unsqueeze(1)  # r_ij (x) dE/dr_ij
                s = torch.zeros((self.b.n_structures, 3, 3), dtype=torch.float64).index_add(0, self.b.edge_struct, rg)
                s = 0.5 * (s + s.transpose(1, 2))
                out["stress"] = s / self.b.volume.view(-1, 1, 1)
        return out

    def loss(self, x: torch.Tensor) -> Tuple[torch.Tensor, Dict[str, float]]:
        o = self.opts
        coeffs, crad = self.m.unpack(x, o.fit_radial)
        need_f = o.kappa > 0 and self.b.has_forces
        need_s = o.stress_weight > 0 and self.b.has_stress
        p = self.predict(coeffs, crad, need_f, True, need_s)
        de = (p["energy"] - self.target_e) / self.b.n_atoms
        le = (self.w * de**2).sum()
        total = (1.0 - o.kappa) * le
        parts = {"energy": float(le.detach())}
        if need_f:
            lf = (self.fw * (p["forces"] - self.b.forces) ** 2).sum()
            total = total + o.kappa * lf
            parts["forces"] = float(lf.detach())
        if need_s:
            ls = (self.w.view(-1, 1, 1) * (p["stress"] - self.b.stress) ** 2).sum()
            total = total + o.stress_weight * ls
            parts["stress"] = float(ls.detach())
        if o.L1_coeffs:
            total = total + o.L1_coeffs * coeffs.abs().sum()
        if o.L2_coeffs:
            total = total + o.L2_coeffs * (coeffs**2).sum()
        if o.fit_radial and (o.w0_rad or o.w1_rad or o.w2_rad):
            total = total + (self.rad_w * crad**2 * self.m.crad_mask).sum()
        self.n_eval += 1
        return total, parts


def _linear_start(obj: _Objective, x0: np.ndarray) -> np.ndarray:
    """Solve for the first density's coefficients by weighted linear least squares, the others
    (and crad) held: E = w_0 rho_0 + sum_{p>0} w_p F(rho_p) is affine in them when F_0 is
    linear (m_0 = 1), so the loss is exactly quadratic in them and one solve gives their
    optimum (with the L2 term, or a tiny ridge for rank-deficient designs). Columns are
    E(c_f = 1) - E(c_f = 0) and the same for forces, one autograd pass per function."""
    m, b, o = obj.m, obj.b, obj.opts
    species_linear = [
        abs(float(m.module.fs_m[s, 0]) - 1.0) < 1e-15 and float(m.module.fs_w[s, 0]) != 0.0
        for s in range(len(m.elements))
    ]
    cols = [k for k in range(m.coeffs.shape[0]) if species_linear[int(m.func_species[k])]]
    if not cols:
        return x0
    coeffs, crad = m.unpack(torch.from_numpy(x0), o.fit_radial)
    need_f = o.kappa > 0 and b.has_forces
    base_c = coeffs.clone()
    base_c[cols, 0] = 0.0
    p0 = obj.predict(base_c, crad, need_f, False)
    e_cols, f_cols = [], []
    for k in cols:
        c = base_c.clone()
        c[k, 0] = 1.0
        p = obj.predict(c, crad, need_f, False)
        e_cols.append((p["energy"] - p0["energy"]).detach())
        if need_f:
            f_cols.append((p["forces"] - p0["forces"]).detach().reshape(-1))
    ew = torch.sqrt((1.0 - o.kappa) * obj.w) / b.n_atoms
    rows = [torch.stack(e_cols, 1) * ew.unsqueeze(1)]
    rhs = [(obj.target_e - p0["energy"].detach()) * ew]
    if need_f:
        fw = torch.sqrt(o.kappa * obj.fw.expand(-1, 3).reshape(-1))
        rows.append(torch.stack(f_cols, 1) * fw.unsqueeze(1))
        rhs.append((b.forces - p0["forces"].detach()).reshape(-1) * fw)
    a = torch.cat(rows).numpy()
    y = torch.cat(rhs).numpy()
    ridge = o.L2_coeffs if o.L2_coeffs > 0 else 1e-10 * float(np.mean(a * a))
    n = a.shape[1]
    sol = np.linalg.solve(a.T @ a + ridge * np.eye(n), a.T @ y)
    coeffs = coeffs.clone()
    coeffs[cols, 0] = torch.from_numpy(sol)
    parts = [coeffs[m.coef_mask > 0]]
    if o.fit_radial:
        parts.append(crad[m.crad_mask > 0])
    return torch.cat(parts).detach().numpy().copy()


def _minimize(obj: _Objective, x0: np.ndarray, maxiter: int, fit_radial: bool) -> np.ndarray:
    """L-BFGS-B (scipy) with the analytic gradient from torch autograd."""
    from scipy.optimize import minimize

    state = {"best": (np.inf, x0.copy())}

    def fun(x: np.ndarray) -> Tuple[float, np.ndarray]:
        xt = torch.from_numpy(x.copy()).requires_grad_(True)
        val, _ = obj.loss(xt)
        (g,) = torch.autograd.grad(val, xt)
        v = float(val.detach())
        if v < state["best"][0]:
            state["best"] = (v, x.copy())
        return v, g.numpy().copy()

    if maxiter <= 0 or x0.size == 0:
        return x0
    res = minimize(fun, x0, jac=True, method="L-BFGS-B",
                   options=dict(maxiter=int(maxiter), maxfun=int(2 * maxiter + 20), gtol=1e-12, ftol=1e-16))
    return res.x if res.fun <= state["best"][0] else state["best"][1]


# ----------------------------------------------------------------------------- driver


@dataclass
class ACEFitResult:
    """What :func:`fit_ace` returns: the fitted basis, the C-tilde model dict, the
    reference energies, metrics, per-stage log and the files written."""

    basis: ACEBasis
    model: Dict[str, Any]
    e0: Dict[str, float]
    metrics: Dict[str, Dict[str, float]]
    history: List[Dict[str, Any]]
    files: Dict[str, str]
    wall_time_s: float
    n_evaluations: int
    #: with an initial potential: its path, sha256 and the loaded/new/unused function counts
    init_from: Optional[Dict[str, Any]] = None


def reference_energies(structures: Sequence[Structure], elements: Sequence[str],
                       spec: Union[str, Mapping[str, float], float]) -> Dict[str, float]:
    """Per-element reference energies: least squares on composition (``"auto"``), a given map,
    or zero."""
    from ase.data import atomic_numbers

    if isinstance(spec, Mapping):
        return {el: float(spec.get(el, 0.0)) for el in elements}
    if spec in (0, 0.0, None, "none"):
        return {el: 0.0 for el in elements}
    if spec != "auto":
        raise ValueError(f"ACE fit: reference_energy must be 'auto', a map or 0, got {spec!r}")
    zs = [atomic_numbers[el] for el in elements]
    a = np.array([[np.sum(np.asarray(s.numbers) == z) for z in zs] for s in structures], dtype=np.float64)
    e = np.array([s.energy for s in structures])
    sol, *_ = np.linalg.lstsq(a, e, rcond=None)
    return {el: float(v) for el, v in zip(elements, sol)}


def _apply_repulsion(basis: ACEBasis, min_dist: Dict[Tuple[int, int], float]) -> Dict[str, float]:
    """ZBL core, inner cutoff at the data's smallest distance per bond (pacemaker's auto)."""
    from ase.data import atomic_numbers

    z = {el: atomic_numbers[el] for el in basis.elements}
    out = {}
    for blk in basis.blocks:
        if len(blk.elements) > 2:
            continue
        a, b = z[blk.elements[0]], z[blk.elements[-1]]
        key = (min(a, b), max(a, b))
        if key in min_dist:
            r_in = min_dist[key]
        else:  # a bond the data never shows: the smaller of the two elements' own minima
            own = [min_dist[(q, q)] for q in (a, b) if (q, q) in min_dist]
            r_in = min(own) if own else min(min_dist.values())
        blk.spec["inner_cutoff_type"] = "zbl"
        blk.spec["r_in"] = float(r_in)
        blk.spec["delta_in"] = 0.1
        blk.spec["core-repulsion"] = [1.0, 1.0]
        if len(blk.elements) == 1:
            blk.spec["rho_core_cut"] = 1.0
            blk.spec["drho_core_cut"] = 1.0
        out[blk.name] = float(r_in)
    return out


def _rmse(pred: np.ndarray, ref: np.ndarray) -> float:
    return float(np.sqrt(np.mean((pred - ref) ** 2))) if ref.size else float("nan")


def evaluate(model: Dict[str, Any], structures: Sequence[Any], radial: str = "spline") -> Dict[str, np.ndarray]:
    """Energies [S], per-atom energies, forces [N, 3] of ``structures`` by the torch module
    built from the model dict: ``radial="spline"`` gives the exported potential's own numbers
    (ML-PACE's splines), ``"analytic"`` the radial formulas (what ace-jax evaluates)."""
    structures = [Structure.from_any(s) for s in structures]
    mod = ACEModule(model, dtype=torch.float64, radial=radial)
    cutoff = mod.cutoff
    b = _Batch(structures, cutoff)
    vec = b.vectors.clone().requires_grad_(True)
    ea = mod.energies(b.z, b.edge_index, vec, int(b.z.shape[0]))
    (g,) = torch.autograd.grad(ea.sum(), vec)
    i, j = b.edge_index
    f = torch.zeros((int(b.z.shape[0]), 3), dtype=torch.float64).index_add(0, i, g).index_add(0, j, -g)
    e = torch.zeros(b.n_structures, dtype=torch.float64).index_add(0, b.batch, ea.detach())
    return {"energy": e.numpy(), "atom_energies": ea.detach().numpy(), "forces": f.numpy(),
            "n_atoms": b.n_atoms.numpy()}


def metrics_of(model: Dict[str, Any], structures: Sequence[Structure]) -> Tuple[Dict[str, float], Dict[str, np.ndarray]]:
    structures = [Structure.from_any(s) for s in structures]
    if not structures:
        return {}, {}
    p = evaluate(model, structures)
    e_ref = np.array([s.energy for s in structures])
    n = p["n_atoms"]
    out = {"energy_rmse_per_atom": _rmse(p["energy"] / n, e_ref / n),
           "energy_mae_per_atom": float(np.mean(np.abs(p["energy"] / n - e_ref / n))),
           "n_structures": len(structures)}
    pairs = {"e_ref": e_ref / n, "e_pred": p["energy"] / n}
    if all(s.forces is not None for s in structures):
        f_ref = np.concatenate([np.asarray(s.forces) for s in structures])
        out["force_rmse"] = _rmse(p["forces"], f_ref)
        out["force_mae"] = float(np.mean(np.abs(p["forces"] - f_ref)))
        pairs["f_ref"] = f_ref.reshape(-1)
        pairs["f_pred"] = p["forces"].reshape(-1)
    return out, pairs


def _ladder_step(step: Optional[Union[int, float]], current: int, final: int) -> int:
    if step is None:
        return max(final - current, 1)
    if isinstance(step, float) and 0 < step < 1:
        return max(int(round(step * current)), 1)
    return max(int(step), 1)


def fit_ace(
    structures: Sequence[Any],
    options: Union[ACEFitOptions, Mapping[str, Any]],
    output_dir: Optional[Union[str, os.PathLike]] = None,
    test_structures: Sequence[Any] = (),
    plots: bool = True,
    active_set: bool = True,
    initial_potential: Optional[Union[str, os.PathLike]] = None,
) -> ACEFitResult:
    """Fit an ACE potential to labelled ``structures`` (ASE Atoms with results, mlff
    Records or :class:`Structure`) and, with ``output_dir``, write
    ``output_potential.yaml`` (B basis), ``output_potential.yace``, ``output_potential.asi``,
    ``metrics.json``, ``log.csv`` and parity plots.

    ``initial_potential``: a B-basis ``.yaml`` the fit starts from (see the module docstring)."""
    t0 = time.perf_counter()
    opts = options if isinstance(options, ACEFitOptions) else ACEFitOptions.from_mapping(options)
    source: Optional[ACEBasis] = None
    init_info: Optional[Dict[str, Any]] = None
    if initial_potential is not None:
        source, init_info = _read_initial_potential(initial_potential)
    if not opts.potential and source is None:
        raise ValueError("ACE fit: options.potential (the basis spec) is required")
    torch.manual_seed(opts.seed)
    rng = np.random.default_rng(opts.seed)
    structures = [Structure.from_any(s) for s in structures]
    test_structures = [Structure.from_any(s) for s in test_structures]
    if not structures:
        raise ValueError("ACE fit: no training structures")
    if source is None:
        final = build_basis(dict(opts.potential))
    elif opts.potential:
        final, counts = warm_start(build_basis(dict(opts.potential)), source)
        init_info.update(counts)
    else:
        final = source.copy()
        init_info.update(loaded_functions=len(final.all_functions()), new_functions=0, unused_functions=0)
    loaded_keys = {f.key() for f in source.all_functions()} if source is not None else set()
    e0 = reference_energies(structures, final.elements, opts.reference_energy)
    cutoff = max(float(b.spec["rcut"]) for b in final.blocks if len(b.elements) <= 2)
    batch = _Batch(structures, cutoff)
    if opts.repulsion == "auto":
        _apply_repulsion(final, batch.min_dist)
    shift = torch.tensor(
        [sum(e0[el] for el in s.to_atoms().get_chemical_symbols()) for s in structures], dtype=torch.float64
    )
    target = batch.energy - shift
    weights = structure_weights(batch, batch.energy, opts.weighting)

    final_count = len(final.all_functions())
    history: List[Dict[str, Any]] = []
    n_eval = 0

    def fit_stage(basis: ACEBasis, stage: int) -> "ACEFitModel":
        """One fit of ``basis`` (the whole basis, or one ladder step warm-started by the
        growth of the previous one)."""
        nonlocal n_eval
        model = ACEFitModel(basis, e0)
        keep = torch.tensor([basis.blocks[bi].functions[fi].key() in loaded_keys for bi, fi in model.func_ref],
                            dtype=torch.bool)
        model.seed_zero_densities(rng, keep=keep)
        obj = _Objective(model, batch, target, weights, opts)
        x0 = model.pack(opts.fit_radial)
        if opts.linear_start and source is None:  # from a file: its coefficients, not a re-solve
            x0 = _linear_start(obj, x0)
        start_loss = float(obj.loss(torch.from_numpy(x0))[0].detach())
        x = _minimize(obj, x0, opts.maxiter, opts.fit_radial)
        model.store(*model.unpack(torch.from_numpy(x), opts.fit_radial))
        n_eval += obj.n_eval
        history.append(dict(stage=stage, functions=len(basis.all_functions()), start_loss=start_loss,
                            loss=float(obj.loss(torch.from_numpy(x))[0].detach()), evaluations=obj.n_eval))
        return model

    if opts.ladder_step is None:
        current = final
        model = fit_stage(current, 0)
    else:
        current = empty_like(final)
        if source is not None:  # the ladder grows from the file's functions (pacemaker's way)
            for blk, fblk in zip(current.blocks, final.blocks):
                blk.functions = [f for f in fblk.functions if f.key() in loaded_keys]
            if current.all_functions():
                from .basis import update_bond_shapes

                update_bond_shapes(current, old=final)
        stage = 0
        while True:
            ncur = len(current.all_functions())
            step = _ladder_step(opts.ladder_step, ncur, final_count)
            current, grown = extend_basis(current, final, step, opts.ladder_type)
            if not grown:
                if stage == 0 and current.all_functions():  # a file's basis with nothing to add
                    model = fit_stage(current, stage)
                break
            model = fit_stage(current, stage)
            log.info("ACE ladder stage %d: %d functions, loss %.6g", stage, history[-1]["functions"],
                     history[-1]["loss"])
            stage += 1
    model_dict = model.model_dict()
    fit_time = time.perf_counter() - t0
    train_m, train_pairs = metrics_of(model_dict, structures)
    test_m, test_pairs = metrics_of(model_dict, test_structures)
    metrics = {"train": train_m}
    if test_m:
        metrics["test"] = test_m
    files: Dict[str, str] = {}
    if output_dir is not None:
        out = Path(output_dir)
        out.mkdir(parents=True, exist_ok=True)
        bbasis_text = to_bbasis_yaml(current)
        atomic_write(out / "output_potential.yaml", lambda tmp: Path(tmp).write_text(bbasis_text))
        files["yaml"] = str(out / "output_potential.yaml")
        write_yace(model_dict, out / "output_potential.yace")
        files["yace"] = str(out / "output_potential.yace")
        if active_set:
            from ..activeset import ActiveSetError, active_set_from_structures

            nonlinear = any(
                int(b.spec.get("ndensity", 1)) > 1 or float(b.spec.get("fs_parameters", [1, 1])[1]) != 1.0
                for b in current.blocks if len(b.elements) == 1
            )
            try:
                active_set_from_structures(out / "output_potential.yaml",
                                           [s.to_atoms() for s in structures],
                                           output=out / "output_potential.asi", nonlinear=nonlinear)
                files["asi"] = str(out / "output_potential.asi")
            except (ActiveSetError, np.linalg.LinAlgError, ValueError) as exc:
                log.warning("ACE fit: no active set written: %s", exc)
                files["asi_error"] = str(exc)
        log_text = "stage,functions,start_loss,loss,evaluations\n" + "".join(
            f"{h['stage']},{h['functions']},{h['start_loss']!r},{h['loss']!r},{h['evaluations']}\n" for h in history)
        atomic_write(out / "log.csv", lambda tmp: Path(tmp).write_text(log_text))
        files["log"] = str(out / "log.csv")
        summary = dict(metrics=metrics, e0=e0, history=history, fit_time_s=fit_time,
                       functions=current.num_functions(), count_by_rank=current.count_by_rank(),
                       n_evaluations=n_eval, init_from=init_info)
        summary_text = json.dumps(summary, indent=2)
        atomic_write(out / "metrics.json", lambda tmp: Path(tmp).write_text(summary_text))
        files["metrics"] = str(out / "metrics.json")
        if plots:
            from ...training.plots import parity_plot

            for name, pairs in (("train", train_pairs), ("test", test_pairs)):
                if not pairs:
                    continue
                tp = {k: [torch.from_numpy(np.asarray(v))] for k, v in pairs.items()}
                for k in ("f_ref", "f_pred"):
                    tp.setdefault(k, [])
                parity_plot(tp, out / f"parity_{name}.png")
                files[f"parity_{name}"] = str(out / f"parity_{name}.png")
    return ACEFitResult(current, model_dict, e0, metrics, history, files, time.perf_counter() - t0, n_eval,
                        init_info)


def _read_initial_potential(path: Union[str, os.PathLike]) -> Tuple[ACEBasis, Dict[str, Any]]:
    """The B basis of a potential file and its provenance (path, sha256)."""
    from ...training.transfer import file_sha256

    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"model.init_from: {str(p)!r} does not exist")
    if p.suffix.lower() in (".yace", ".ace"):
        raise ValueError(f"model.init_from: {p.name} is a C-tilde potential, whose coefficients are merged from "
                         "the B functions and cannot be split back; start from the B-basis .yaml written next to it "
                         "(output_potential.yaml of mlff's ACE fit or pacemaker)")
    if p.suffix.lower() not in (".yaml", ".yml"):
        raise ValueError(f"model.init_from: a kind ace fit starts from a B-basis .yaml potential, got {p.name}")
    return read_bbasis_yaml(p), {"source": str(p), "format": "bbasis-yaml", "sha256": file_sha256(p)}


__all__ = ["ACEFitOptions", "ACEFitResult", "ACEFitModel", "Structure", "fit_ace", "evaluate", "metrics_of",
           "reference_energies", "structure_weights", "force_weights"]
