"""Export-time data for the D3(BJ) term: damping parameters and reference tables.

Used only when a :class:`~mlff.physics.d3.D3BJ` module is built (plain Python, never
inside ``forward``). The reference C6 coefficients, reference coordination numbers,
<r4>/<r2> expectation values and D3 covalent radii come from the installed
``tad-dftd3`` (Apache-2.0), the same data simple-dftd3 uses; the module keeps only the
rows of its own elements, so an exported file is self-contained and small.

Damping parameters by functional name come from the parameter table of the installed
``dftd3`` package (simple-dftd3, needs ``tomli``) when it is importable, otherwise from
:data:`BJ_PARAMETERS` below (the same numbers, checked against dftd3 by the tests).
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import torch

#: Rational (Becke-Johnson) damping parameters of simple-dftd3's table (s6, s8, a1, a2;
#: a2 in bohr), two-body only. The fallback when the dftd3 package is not installed.
BJ_PARAMETERS: Dict[str, Dict[str, float]] = {
    "pbe": dict(s6=1.0, s8=0.7875, a1=0.4289, a2=4.4407),
    "pbe0": dict(s6=1.0, s8=1.2177, a1=0.4145, a2=4.8593),
    "b3lyp": dict(s6=1.0, s8=1.9889, a1=0.3981, a2=4.4211),
    "tpss": dict(s6=1.0, s8=1.9435, a1=0.4535, a2=4.4752),
    "tpss0": dict(s6=1.0, s8=1.2576, a1=0.3768, a2=4.5865),
    "revpbe": dict(s6=1.0, s8=2.3550, a1=0.5238, a2=3.5016),
    "rpbe": dict(s6=1.0, s8=0.8318, a1=0.1820, a2=4.0094),
    "blyp": dict(s6=1.0, s8=2.6996, a1=0.4298, a2=4.2359),
    "bp": dict(s6=1.0, s8=3.2822, a1=0.3946, a2=4.8516),
    "b97d": dict(s6=1.0, s8=2.2609, a1=0.5545, a2=3.2297),
    "hf": dict(s6=1.0, s8=0.9171, a1=0.3385, a2=2.8830),
    "hse06": dict(s6=1.0, s8=2.310, a1=0.383, a2=5.685),
    "wb97x": dict(s6=1.0, s8=0.2641, a1=0.0000, a2=5.4959),
    "wb97m": dict(s6=1.0, s8=0.3908, a1=0.5660, a2=3.1280),
}

#: D3 counting-function steepness k1 and Gaussian CN-weighting exponent k3 (Grimme 2010).
K1 = 16.0
K3 = 4.0


def normalize_functional(name: str) -> str:
    """``"B3-LYP"``, ``"ωB97M"``, ``"wb97m_d3bj"`` -> simple-dftd3's table keys."""
    key = name.strip().lower().replace("ω", "w")
    for suffix in ("-d3bj", "_d3bj", "-d3(bj)", "d3bj"):
        if key.endswith(suffix) and len(key) > len(suffix):
            key = key[: -len(suffix)]
    return key.replace("-", "").replace("_", "").replace(" ", "")


def _dftd3_table() -> Optional[Dict[str, Dict[str, float]]]:
    """Every rational-damping entry of the installed dftd3 package, or None."""
    try:
        from dftd3 import parameters
    except Exception:  # dftd3 absent, or its TOML parser (tomli) missing
        return None
    try:
        table = parameters.get_all_damping_params(defaults=["bj"])
    except Exception:
        return None
    out: Dict[str, Dict[str, float]] = {}
    for method, p in table.items():
        if all(k in p for k in ("s8", "a1", "a2")):
            out[normalize_functional(method)] = dict(
                s6=float(p.get("s6", 1.0)), s8=float(p["s8"]), a1=float(p["a1"]), a2=float(p["a2"])
            )
    return out or None


def bj_parameters(functional: str) -> Dict[str, float]:
    """Two-body rational damping parameters (s6, s8, a1, a2 [bohr]) of ``functional``."""
    key = normalize_functional(functional)
    table = _dftd3_table()
    source = "the dftd3 package's parameter table"
    if table is None or key not in table:
        if key in BJ_PARAMETERS:
            return dict(BJ_PARAMETERS[key])
        table = table or BJ_PARAMETERS
        if table is BJ_PARAMETERS:
            source = "mlff's built-in table (install dftd3 and tomli for simple-dftd3's full table)"
        raise ValueError(
            f"no D3(BJ) parameters for functional {functional!r} in {source}; known: "
            f"{', '.join(sorted(table))}. Pass s8, a1 and a2 (a2 in bohr) explicitly instead."
        )
    return dict(table[key])


def reference_tables(elements: Sequence[int]) -> Dict[str, torch.Tensor]:
    """float64 D3 reference data of ``elements`` (sorted atomic numbers), from tad-dftd3.

    Returns ``ref_cn [n, 7]`` (-1 pads unused reference slots), ``ref_c6 [n, n, 7, 7]``
    (hartree bohr^6), ``r4r2 [n]`` (sqrt(0.5 <r4>/<r2> sqrt(Z)) as simple-dftd3 uses it)
    and ``rcov [n]`` (D3 covalent radii, 4/3 x Pyykkö, in bohr).
    """
    try:
        import tad_dftd3
        from tad_mctc.data import radii
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "building a D3(BJ) term needs the reference data of tad-dftd3: "
            "pip install tad-dftd3 (only at export time; the exported model does not need it)"
        ) from exc
    dd = dict(dtype=torch.float64, device=torch.device("cpu"))
    ref = tad_dftd3.reference.Reference(**dd)
    r4r2_all = tad_dftd3.data.R4R2(**dd)
    rcov_all = radii.COV_D3(**dd)
    n_table = int(ref.cn.shape[0])  # row 0 is a dummy
    bad: List[int] = []
    for z in elements:
        if not 1 <= z < n_table or z >= r4r2_all.shape[0] or z >= rcov_all.shape[0]:
            bad.append(int(z))
        elif not bool((ref.cn[z] >= 0).any()) or float(r4r2_all[z]) <= 0.0 or float(rcov_all[z]) <= 0.0:
            bad.append(int(z))
    if bad:
        raise ValueError(
            f"D3(BJ) has no reference data for atomic numbers {bad} "
            f"(tad-dftd3 covers Z = 1..{n_table - 1})"
        )
    z = torch.as_tensor(list(elements), dtype=torch.long)
    return dict(
        ref_cn=ref.cn[z].clone(),
        ref_c6=ref.c6[z][:, z].clone(),
        r4r2=r4r2_all[z].clone(),
        rcov=rcov_all[z].clone(),
    )
