"""ACE basis construction from a pacemaker-style ``potential`` spec.

The spec has pacemaker's shape (keys ``elements``, ``deltaSplineBins``, ``embeddings``,
``bonds``, ``functions``; levels ``ALL``/``UNARY``/``BINARY``/``TERNARY`` or one element /
one pair) so a pacemaker ``input.yaml``'s ``potential:`` section works unchanged.

Rotationally invariant B functions are enumerated here, not taken from a table:

- a *species block* is a central element plus the set of neighbour elements a function
  involves (``Cu``, ``Cu Ni``, ``Ni Cu``, ...); the block's ``functions`` entry gives, per
  body order (rank) r, the largest radial index ``nradmax_by_orders[r-1]`` and the largest
  ``lmax_by_orders[r-1]``;
- for rank r the neighbour elements run over combinations with replacement of the block's
  elements (those that make up the whole block), the radial indices over all tuples, and the
  slots (mu, n) are sorted, so that equal slots are interchangeable;
- for each slot pattern the angular labels ls run in lexicographic order, non-decreasing over
  interchangeable slots, with an even sum (parity), and for each ls the intermediate couplings
  LS in lexicographic order (the core's ``ms_couplings`` validates and returns the generalised
  Clebsch-Gordan coefficients: no second CG implementation here);
- a candidate is kept only if it is linearly independent of those already kept: the function
  is a polynomial in the A_{mu n l m}, and as A's of equal slots commute its coefficient
  vector lives on sorted (slot class, l, m) monomials; functions with different multisets of
  (class, l) never overlap, so the test runs per multiset (greedy in enumeration order, rank
  by SVD). The count per rank equals pyace's (tests/ace/test_ace_fit.py checks it).

``number_of_functions_per_element`` truncates as pacemaker does: each block keeps its first
``N * n_elements // n_blocks`` functions in "power order" (stable sort on
rank + sum(ns) + sum(ls)), and every block is written in "body order" (rank, ns, ls, LS,
elements). Radial coefficients start as pacemaker's delta (crad[n][l][n] = 1) and bond sizes
(nradmax, lmax, nradbase) are the maxima over the functions that use the bond, symmetrised.

These facts were learned from reading pyace's basis-extension module (academic licence); no
code or data of it is used.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from .. import _ace

KEYWORDS = ("ALL", "UNARY", "BINARY", "TERNARY", "QUATERNARY", "QUINARY")
NARY = {"UNARY": 1, "BINARY": 2, "TERNARY": 3, "QUATERNARY": 4, "QUINARY": 5}
_ELEMENT = re.compile(r"[A-Z][a-z]?")

#: relative singular-value threshold of the independence test
_RANK_TOL = 1e-8


@dataclass
class BFunctionSpec:
    """One B function: central element first in ``elements``; ``ns`` 1-based."""

    elements: Tuple[str, ...]
    ns: Tuple[int, ...]
    ls: Tuple[int, ...]
    LS: Tuple[int, ...]
    coeffs: List[float]

    @property
    def rank(self) -> int:
        return len(self.ns)

    def key(self) -> Tuple[Any, ...]:
        return (self.elements, self.ns, self.ls, self.LS)


@dataclass
class SpeciesBlock:
    """A pacemaker species block: its elements (central first), embedding/bond and functions."""

    elements: Tuple[str, ...]
    spec: Dict[str, Any]
    functions: List[BFunctionSpec] = field(default_factory=list)
    # bond sizes and radial coefficients [nradmax][lmax+1][nradbase] (unary/binary blocks)
    nradmax: int = 0
    lmax: int = 0
    nradbase: int = 0
    crad: Optional[np.ndarray] = None

    @property
    def name(self) -> str:
        return " ".join(self.elements)


@dataclass
class ACEBasis:
    """A B basis: elements (sorted, ML-PACE's species order), blocks, spline spacing."""

    elements: List[str]
    blocks: List[SpeciesBlock]
    delta_spline_bins: float = 0.001

    def block(self, name: str) -> SpeciesBlock:
        for b in self.blocks:
            if b.name == name:
                return b
        raise KeyError(name)

    def num_functions(self) -> Dict[str, int]:
        out = {el: 0 for el in self.elements}
        for b in self.blocks:
            out[b.elements[0]] += len(b.functions)
        return out

    def count_by_rank(self) -> Dict[int, int]:
        out: Dict[int, int] = {}
        for b in self.blocks:
            for f in b.functions:
                out[f.rank] = out.get(f.rank, 0) + 1
        return dict(sorted(out.items()))

    def all_functions(self) -> List[BFunctionSpec]:
        return [f for b in self.blocks for f in b.functions]

    def copy(self) -> "ACEBasis":
        import copy

        return copy.deepcopy(self)


# ----------------------------------------------------------------------------- spec expansion


def _species_keys(elements: Sequence[str], r: int) -> List[Tuple[str, ...]]:
    """Blocks of r distinct elements: a central one, then the others sorted."""
    keys = set()
    for el in elements:
        rest = sorted(e for e in elements if e != el)
        for tail in itertools.combinations(rest, r - 1):
            keys.add((el,) + tuple(tail))
    return sorted(keys)


def _parse_key(k: Any) -> Tuple[str, ...]:
    if isinstance(k, str):
        return tuple(_ELEMENT.findall(k))
    return tuple(str(v) for v in k)


def _functions_by_block(potential: Mapping[str, Any], elements: List[str]) -> Dict[Tuple[str, ...], Dict[str, Any]]:
    funcs = dict(potential.get("functions", {}))
    out: Dict[Tuple[str, ...], Dict[str, Any]] = {}
    all_keys = [k for r in range(1, len(elements) + 1) for k in _species_keys(elements, r)]
    if "ALL" in funcs:
        for k in all_keys:
            out.setdefault(k, {}).update(funcs["ALL"])
    for name, r in NARY.items():
        if name in funcs:
            for k in _species_keys(elements, r):
                out.setdefault(k, {}).update(funcs[name])
    for k, v in funcs.items():
        if k in KEYWORDS or k == "number_of_functions_per_element" or not isinstance(v, Mapping):
            continue
        key = _parse_key(k)
        if any(e not in elements for e in key):
            raise ValueError(f"ACE basis: functions block {k!r} names elements beyond {elements}")
        out.setdefault(key, {}).update(v)
    return {k: v for k, v in out.items() if v}


def _bonds(potential: Mapping[str, Any], elements: List[str]) -> Dict[Tuple[str, str], Dict[str, Any]]:
    bonds = dict(potential.get("bonds", {}))
    out: Dict[Tuple[str, str], Dict[str, Any]] = {p: {} for p in itertools.product(elements, repeat=2)}
    if "ALL" in bonds:
        for p in out:
            out[p].update(bonds["ALL"])
    if "UNARY" in bonds:
        for el in elements:
            out[(el, el)].update(bonds["UNARY"])
    if "BINARY" in bonds:
        for p in itertools.permutations(elements, 2):
            out[p].update(bonds["BINARY"])
    for k, v in bonds.items():
        if k in KEYWORDS:
            continue
        key = _parse_key(k)
        if len(key) == 1:
            key = (key[0], key[0])
        if len(key) != 2 or any(e not in elements for e in key):
            raise ValueError(f"ACE basis: bond {k!r} is not a pair of {elements}")
        out[key].update(v)
        out[(key[1], key[0])].update(v)
    return out


def _embeddings(potential: Mapping[str, Any], elements: List[str]) -> Dict[str, Dict[str, Any]]:
    emb = dict(potential.get("embeddings", {}))
    out: Dict[str, Dict[str, Any]] = {el: {} for el in elements}
    for level in ("ALL", "UNARY"):
        if level in emb:
            for el in elements:
                out[el].update(emb[level])
    for k, v in emb.items():
        if k in ("ALL", "UNARY"):
            continue
        if k not in elements:
            raise ValueError(f"ACE basis: embedding for {k!r}, which is not one of {elements}")
        out[k].update(v)
    for el, e in out.items():
        if "ndensity" not in e or "fs_parameters" not in e or "npot" not in e:
            raise ValueError(f"ACE basis: embedding of {el} needs npot, fs_parameters and ndensity, got {sorted(e)}")
        if len(e["fs_parameters"]) != 2 * int(e["ndensity"]):
            raise ValueError(f"ACE basis: embedding of {el}: fs_parameters needs 2 x ndensity values")
    return out


# ----------------------------------------------------------------------------- enumeration


def _ls_LS_candidates(classes: Tuple[int, ...], lmax: int) -> List[Tuple[Tuple[int, ...], Tuple[int, ...]]]:
    """All (ls, LS) with a non-empty invariant coupling, lexicographic, ls non-decreasing over
    equal slot classes, sum(ls) even."""
    rank = len(classes)
    out: List[Tuple[Tuple[int, ...], Tuple[int, ...]]] = []
    if rank == 1:
        return [((0,), ())]
    for ls in itertools.product(range(lmax + 1), repeat=rank):
        if sum(ls) % 2:
            continue
        if any(classes[t] == classes[t + 1] and ls[t] > ls[t + 1] for t in range(rank - 1)):
            continue
        if rank == 2:
            if ls[0] == ls[1]:
                out.append((ls, ()))
            continue
        big = sum(ls)
        for LS in itertools.product(range(big + 1), repeat=rank - 2):
            try:
                ms, _ = _ace.ms_couplings(list(ls), list(LS), False)
            except ValueError:
                continue
            if len(ms):
                out.append((ls, LS))
    return out


def _coupling_vector(classes: Tuple[int, ...], ls: Tuple[int, ...], LS: Tuple[int, ...]) -> Dict[Tuple[Any, ...], float]:
    """The function as a polynomial in the A's of commuting equal slots: monomial -> coefficient."""
    ms, coef = _ace.ms_couplings(list(ls), list(LS), False)
    vec: Dict[Tuple[Any, ...], float] = {}
    for row, c in zip(np.asarray(ms), np.asarray(coef)):
        mono = tuple(sorted(zip(classes, ls, (int(m) for m in row))))
        vec[mono] = vec.get(mono, 0.0) + float(c)
    return vec


_PATTERN_CACHE: Dict[Tuple[Tuple[int, ...], int], List[Tuple[Tuple[int, ...], Tuple[int, ...]]]] = {}


def independent_couplings(classes: Tuple[int, ...], lmax: int) -> List[Tuple[Tuple[int, ...], Tuple[int, ...]]]:
    """The (ls, LS) kept for slots of the given classes (equal class = interchangeable slot,
    classes non-decreasing) with l <= lmax: linearly independent invariants, greedy in
    enumeration order (see the module docstring)."""
    key = (tuple(classes), lmax)
    if key in _PATTERN_CACHE:
        return _PATTERN_CACHE[key]
    kept: List[Tuple[Tuple[int, ...], Tuple[int, ...]]] = []
    groups: Dict[Tuple[Any, ...], List[Dict[Tuple[Any, ...], float]]] = {}
    for ls, LS in _ls_LS_candidates(tuple(classes), lmax):
        vec = _coupling_vector(tuple(classes), ls, LS)
        if not vec or max(abs(v) for v in vec.values()) < 1e-12:
            continue
        gkey = tuple(sorted(zip(classes, ls)))
        prev = groups.setdefault(gkey, [])
        monos = sorted(set().union(*[v.keys() for v in prev], vec.keys()))
        col = {m: i for i, m in enumerate(monos)}
        mat = np.zeros((len(prev) + 1, len(monos)))
        for i, v in enumerate(prev + [vec]):
            for m, c in v.items():
                mat[i, col[m]] = c
        mat /= np.linalg.norm(mat, axis=1, keepdims=True)
        s = np.linalg.svd(mat, compute_uv=False)
        if s[-1] > _RANK_TOL * s[0]:
            prev.append(vec)
            kept.append((ls, LS))
    _PATTERN_CACHE[key] = kept
    return kept


def _block_functions(
    block: Tuple[str, ...], spec: Mapping[str, Any], ndensity: int
) -> List[BFunctionSpec]:
    central = block[0]
    elms = tuple(sorted(set(block)))
    nrad = list(spec["nradmax_by_orders"])
    lmaxs = list(spec["lmax_by_orders"])
    if len(nrad) != len(lmaxs):
        raise ValueError(f"ACE basis: block {' '.join(block)}: nradmax_by_orders and lmax_by_orders differ in length")
    out: List[BFunctionSpec] = []
    for rank, (nmax, lmax) in enumerate(zip(nrad, lmaxs), start=1):
        seen = set()
        for mus in itertools.combinations_with_replacement(elms, rank):
            if len(set((central,) + mus)) != len(elms):
                continue
            for ns in itertools.product(range(1, int(nmax) + 1), repeat=rank):
                slots = tuple(sorted(zip(mus, ns)))
                if slots in seen:
                    continue
                seen.add(slots)
                # classes: equal (mu, n) slots are interchangeable
                index = {s: i for i, s in enumerate(sorted(set(slots)))}
                classes = tuple(index[s] for s in slots)
                for ls, LS in independent_couplings(classes, int(lmax) if rank > 1 else 0):
                    out.append(
                        BFunctionSpec(
                            elements=(central,) + tuple(m for m, _ in slots),
                            ns=tuple(n for _, n in slots),
                            ls=tuple(ls),
                            LS=tuple(LS),
                            coeffs=[0.0] * ndensity,
                        )
                    )
    return out


def power_order_key(f: BFunctionSpec) -> int:
    return f.rank + sum(f.ns) + sum(f.ls)


def body_order_key(f: BFunctionSpec) -> Tuple[Any, ...]:
    return (f.rank, f.ns, f.ls, f.LS, f.elements)


def ladder_sort(funcs: List[BFunctionSpec], ladder_type: str) -> List[BFunctionSpec]:
    if ladder_type == "power_order":
        return sorted(funcs, key=power_order_key)
    if ladder_type == "body_order":
        return sorted(funcs, key=body_order_key)
    raise ValueError(f"ACE basis: ladder_type must be power_order or body_order, got {ladder_type!r}")


def _delta_crad(nradmax: int, lmax: int, nradbase: int) -> np.ndarray:
    c = np.zeros((nradmax, lmax + 1, nradbase))
    for n in range(min(nradmax, nradbase)):
        c[n, :, n] = 1.0
    return c


def update_bond_shapes(basis: ACEBasis, old: Optional[ACEBasis] = None) -> None:
    """Bond sizes from the functions using them (symmetrised), crad delta-initialised and
    overwritten on the common part by ``old``'s (warm start)."""
    size: Dict[Tuple[str, str], List[int]] = {}
    for f in basis.all_functions():
        for mu, n, l in zip(f.elements[1:], f.ns, f.ls):
            s = size.setdefault((f.elements[0], mu), [0, 0, 0])  # nradbase, nradmax, lmax
            if f.rank == 1:
                s[0] = max(s[0], n)
            else:
                s[1] = max(s[1], n)
            s[2] = max(s[2], l)
    for (a, b), s in list(size.items()):
        t = size.setdefault((b, a), [0, 0, 0])
        m = [max(x, y) for x, y in zip(s, t)]
        size[(a, b)] = m
        size[(b, a)] = list(m)
    for blk in basis.blocks:
        if len(blk.elements) > 2:
            blk.nradmax = blk.lmax = blk.nradbase = 0
            blk.crad = None
            continue
        bond = (blk.elements[0], blk.elements[-1])
        nb, nr, lm = size.get(bond, [0, 0, 0])
        nb = max(nb, 1)
        blk.nradbase, blk.nradmax, blk.lmax = nb, nr, lm
        crad = _delta_crad(nr, lm, nb)
        prev = None
        if old is not None:
            try:
                prev = old.block(blk.name).crad
            except KeyError:
                prev = None
        if prev is not None and prev.size:
            c = [min(x, y) for x, y in zip(crad.shape, prev.shape)]
            crad[: c[0], : c[1], : c[2]] = prev[: c[0], : c[1], : c[2]]
        blk.crad = crad


def build_basis(potential: Mapping[str, Any], full: bool = False) -> ACEBasis:
    """The basis of a pacemaker ``potential`` spec.

    ``full``: ignore ``number_of_functions_per_element`` (the ladder's final basis).
    """
    if "elements" not in potential:
        raise ValueError("ACE basis: the spec needs `elements`")
    elements = sorted(str(e) for e in potential["elements"])
    embeddings = _embeddings(potential, elements)
    bonds = _bonds(potential, elements)
    fblocks = _functions_by_block(potential, elements)
    if not fblocks:
        raise ValueError("ACE basis: `functions` gives no block any nradmax_by_orders/lmax_by_orders")
    blocks: List[SpeciesBlock] = []
    for key in sorted(fblocks, key=lambda k: (len(k), k)):
        spec = fblocks[key]
        if "nradmax_by_orders" not in spec or "lmax_by_orders" not in spec:
            raise ValueError(f"ACE basis: functions of block {' '.join(key)} need nradmax_by_orders and lmax_by_orders")
        bspec: Dict[str, Any] = {}
        if len(key) == 1:
            bspec.update(embeddings[key[0]])
        if len(key) <= 2:
            bspec.update(bonds[(key[0], key[-1])])
        nd = int(embeddings[key[0]]["ndensity"])
        blocks.append(SpeciesBlock(elements=key, spec=bspec, functions=_block_functions(key, spec, nd)))
    basis = ACEBasis(elements, blocks, float(potential.get("deltaSplineBins", 0.001)))
    nfun = potential.get("functions", {}).get("number_of_functions_per_element")
    if nfun is not None and not full:
        step = int(nfun) * len(elements) // len(blocks)
        for b in blocks:
            b.functions = ladder_sort(b.functions, "power_order")[:step]
    for b in blocks:
        b.functions = ladder_sort(b.functions, "body_order")
    update_bond_shapes(basis)
    return basis


def extend_basis(current: ACEBasis, final: ACEBasis, step: int, ladder_type: str) -> Tuple[ACEBasis, bool]:
    """One ladder step: per block, the next ``step`` functions of ``final`` (in ``ladder_type``
    order) not yet in ``current``; coefficients and crad of ``current`` kept (warm start)."""
    out = current.copy()
    grown = False
    have = {b.name: b for b in out.blocks}
    for fb in final.blocks:
        blk = have.get(fb.name)
        if blk is None:
            blk = SpeciesBlock(elements=fb.elements, spec=dict(fb.spec))
            out.blocks.append(blk)
            have[fb.name] = blk
        existing = {f.key() for f in blk.functions}
        new = [f for f in ladder_sort(fb.functions, ladder_type) if f.key() not in existing][:step]
        if new:
            grown = True
            import copy

            blk.functions = ladder_sort(blk.functions + copy.deepcopy(new), "body_order")
    out.blocks.sort(key=lambda b: (len(b.elements), b.elements))
    update_bond_shapes(out, old=current)
    return out, grown


def empty_like(final: ACEBasis) -> ACEBasis:
    """The ladder's start: the blocks of ``final`` without functions."""
    out = final.copy()
    for b in out.blocks:
        b.functions = []
        b.crad = None
    return out


# ----------------------------------------------------------------------------- YAML


def _num(x: float) -> str:
    x = float(x)
    if x == int(x) and abs(x) < 1e15:
        return str(int(x))
    return repr(x)


def _list(xs: Sequence[float]) -> str:
    return "[" + ", ".join(_num(x) for x in xs) + "]"


def to_bbasis_yaml(basis: ACEBasis) -> str:
    """The B-basis YAML (pacemaker's ``output_potential.yaml`` layout) of the basis.

    Numbers are written with ``repr`` (shortest round-trip), so reading the file back gives
    the same doubles.
    """
    lines = ["global:", f"  DeltaSplineBins: {_num(basis.delta_spline_bins)}", "species:"]
    for b in basis.blocks:
        s = b.spec
        lines.append(f"  - speciesblock: {b.name}")
        if len(b.elements) == 1:
            lines.append(f"    ndensityi: {int(s['ndensity'])}")
            lines.append(f"    npoti: {s['npot']}")
            lines.append(f"    parameters: {_list(s['fs_parameters'])}")
            lines.append(f"    rho_core_cut: {_num(s.get('rho_core_cut', 100000))}")
            lines.append(f"    drho_core_cut: {_num(s.get('drho_core_cut', 250))}")
        if len(b.elements) <= 2:
            crad = b.crad if b.crad is not None else np.zeros((0, 0, 0))
            lines.append(f"    nradmaxi: {b.nradmax}")
            lines.append(f"    lmaxi: {b.lmax}")
            lines.append(f"    rcutij: {_num(s['rcut'])}")
            lines.append(f"    dcutij: {_num(s.get('dcut', 0.01))}")
            inner = s.get("inner_cutoff_type")
            if inner is None:
                inner = "distance"
            if "r_in" in s:
                lines.append(f"    r_in: {_num(s['r_in'])}")
            if "delta_in" in s:
                lines.append(f"    delta_in: {_num(s['delta_in'])}")
            lines.append(f"    inner_cutoff_type: {inner}")
            lines.append(f"    nradbaseij: {b.nradbase}")
            lines.append(f"    radbase: {s.get('radbase', 'ChebExpCos')}")
            lines.append(f"    radparameters: {_list(s.get('radparameters', [5.25]))}")
            rc = "[" + ", ".join(
                "[" + ", ".join(_list(crad[n, l]) for l in range(crad.shape[1])) + "]" for n in range(crad.shape[0])
            ) + "]"
            lines.append(f"    radcoefficients: {rc}")
            core = s.get("core-repulsion", [0.0, 5.0])
            lines.append(f"    core-repulsion: {_list(core)}")
        if b.functions:
            lines.append("    nbody:")
            for f in b.functions:
                item = f"{{type: {' '.join(f.elements)}, nr: {_list(f.ns)}, nl: {_list(f.ls)}"
                if f.LS:
                    item += f", lint: {_list(f.LS)}"
                item += f", c: {_list(f.coeffs)}}}"
                lines.append(f"      - {item}")
    return "\n".join(lines) + "\n"


def read_bbasis_yaml(source: Any) -> ACEBasis:
    """The basis of a B-basis YAML (a path or its text): :func:`to_bbasis_yaml`'s layout, which is
    pacemaker's ``output_potential.yaml``; coefficients and radial coefficients included.

    Keys mlff's basis has no place for (pacemaker's ``metadata``, cutoff-function names) are
    ignored; B-basis files carry no reference energies (E0), the fit sets its own.
    """
    import os

    import yaml

    where = str(source) if os.path.exists(str(source)) else "<B-basis text>"
    text = open(source).read() if where != "<B-basis text>" else str(source)
    data = yaml.safe_load(text)
    if not isinstance(data, Mapping) or not isinstance(data.get("species"), list):
        raise ValueError(f"{where} is not a B-basis YAML (no `species:` list of species blocks); an ACE fit "
                         "starts from the output_potential.yaml of mlff's ACE fit or pacemaker")
    delta = float((data.get("global") or {}).get("DeltaSplineBins", 0.001))
    blocks: List[SpeciesBlock] = []
    for sb in data["species"]:
        els = tuple(str(sb["speciesblock"]).split())
        spec: Dict[str, Any] = {}
        if len(els) == 1:
            spec.update(ndensity=int(sb["ndensityi"]), npot=str(sb["npoti"]),
                        fs_parameters=[float(v) for v in sb["parameters"]],
                        rho_core_cut=float(sb.get("rho_core_cut", 100000)),
                        drho_core_cut=float(sb.get("drho_core_cut", 250)))
        nradmax = lmax = nradbase = 0
        crad = None
        if len(els) <= 2 and "rcutij" in sb:
            spec.update(rcut=float(sb["rcutij"]), dcut=float(sb.get("dcutij", 0.01)),
                        radbase=str(sb.get("radbase", "ChebExpCos")),
                        radparameters=[float(v) for v in sb.get("radparameters", [5.25])])
            spec["core-repulsion"] = [float(v) for v in sb.get("core-repulsion", [0.0, 5.0])]
            for key in ("r_in", "delta_in"):
                if key in sb:
                    spec[key] = float(sb[key])
            if sb.get("inner_cutoff_type") not in (None, "distance"):
                spec["inner_cutoff_type"] = str(sb["inner_cutoff_type"])
            nradmax, lmax, nradbase = int(sb.get("nradmaxi", 0)), int(sb.get("lmaxi", 0)), int(sb.get("nradbaseij", 0))
            crad = np.asarray(sb.get("radcoefficients") or [], dtype=np.float64).reshape(nradmax, lmax + 1, nradbase)
        functions = [
            BFunctionSpec(tuple(str(f["type"]).split()), tuple(int(v) for v in f["nr"]),
                          tuple(int(v) for v in f["nl"]), tuple(int(v) for v in (f.get("lint") or [])),
                          [float(v) for v in f["c"]])
            for f in sb.get("nbody") or []
        ]
        blocks.append(SpeciesBlock(els, spec, functions, nradmax, lmax, nradbase, crad))
    elements = sorted({b.elements[0] for b in blocks})
    blocks.sort(key=lambda b: (len(b.elements), b.elements))
    return ACEBasis(elements, blocks, delta)


#: block settings that must agree for a source's coefficients to mean the same in a new basis
_SHAPE_KEYS = ("ndensity", "npot", "fs_parameters", "rcut", "dcut", "radbase", "radparameters")


def warm_start(basis: ACEBasis, source: ACEBasis) -> Tuple[ACEBasis, Dict[str, Any]]:
    """``basis`` with the coefficients of ``source``'s functions (matched by elements, ns, ls,
    LS) and its radial coefficients on the common (n, l, k) part; the rest keep their
    start values (zero coefficients, delta crad). A block whose embedding or radial basis
    differs from the source's is refused (its coefficients would mean something else).
    Returns the basis and {loaded, new, unused} function counts."""
    import copy

    out = basis.copy()
    have = {b.name: b for b in source.blocks}
    differ = []
    for blk in out.blocks:
        src = have.get(blk.name)
        if src is None:
            continue
        for key in _SHAPE_KEYS:
            if key in blk.spec and key in src.spec and blk.spec[key] != src.spec[key]:
                differ.append(f"block {blk.name}: {key} {src.spec[key]!r} in the file, {blk.spec[key]!r} here")
    if differ:
        raise ValueError("model.init_from: the potential's basis differs from model.potential's: " + "; ".join(differ))
    coeffs = {f.key(): f.coeffs for b in source.blocks for f in b.functions}
    loaded = new = 0
    for blk in out.blocks:
        for f in blk.functions:
            c = coeffs.get(f.key())
            if c is not None and len(c) == len(f.coeffs):
                f.coeffs = list(c)
                loaded += 1
            else:
                new += 1
        src = have.get(blk.name)
        if blk.crad is not None and src is not None and src.crad is not None and src.crad.size:
            c = [min(x, y) for x, y in zip(blk.crad.shape, src.crad.shape)]
            blk.crad = blk.crad.copy()
            blk.crad[: c[0], : c[1], : c[2]] = src.crad[: c[0], : c[1], : c[2]]
    mine = {f.key() for f in out.all_functions()}
    unused = sum(1 for k in coeffs if k not in mine)
    return out, copy.deepcopy({"loaded_functions": loaded, "new_functions": new, "unused_functions": unused})


def bbasis_of(basis: ACEBasis) -> "_ace.BBasis":
    """The core's B basis (energy and projection models) of this basis."""
    return _ace.BBasis.from_text(to_bbasis_yaml(basis), "<mlff ACE basis>")


def function_lines(basis: ACEBasis) -> Dict[int, Tuple[int, int]]:
    """Line number (1-based, in :func:`to_bbasis_yaml`'s text) -> (block index, function index)."""
    out: Dict[int, Tuple[int, int]] = {}
    text = to_bbasis_yaml(basis).splitlines()
    bi = -1
    fi = 0
    for line_no, line in enumerate(text, start=1):
        if line.startswith("  - speciesblock:"):
            bi += 1
            fi = 0
        elif line.startswith("      - {type:"):
            out[line_no] = (bi, fi)
            fi += 1
    return out


def read_potential_spec(source: Any) -> Dict[str, Any]:
    """A ``potential`` spec from a dict, a pacemaker ``input.yaml`` path or text (its
    ``potential:`` section is used when present)."""
    import os

    import yaml

    if isinstance(source, Mapping):
        spec = dict(source)
    else:
        text = open(source).read() if os.path.exists(str(source)) else str(source)
        spec = yaml.safe_load(text)
    if "potential" in spec:
        spec = spec["potential"]
    return spec


__all__ = [
    "ACEBasis",
    "SpeciesBlock",
    "BFunctionSpec",
    "build_basis",
    "extend_basis",
    "empty_like",
    "ladder_sort",
    "to_bbasis_yaml",
    "bbasis_of",
    "function_lines",
    "independent_couplings",
    "read_potential_spec",
    "read_bbasis_yaml",
    "warm_start",
]
