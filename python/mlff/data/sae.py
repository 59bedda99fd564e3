"""Self-atomic energies (SAE) per fidelity: E_total ≈ Σ_elements n_el · e_el.

Absolute energies of different levels of theory differ by orders of magnitude (GFN1-xTB
and DFT total energies of one molecule are hundreds of eV apart), so a multi-fidelity
model learns each level's energy minus that level's SAE baseline.

The fit is least squares of each structure's total energy on its element counts, then
a refit without the structures whose residual lies outside the 2nd–98th percentile band
(AIMNet2's recipe). The band is taken between data values (no interpolation), so a set
of fewer than 50 structures loses nothing to it. The band alone removes at most 2 % from
either side; where more structures are gross errors (a failed SCF, a wrong unit), they
are found by their distance from the rest: a residual farther than
:data:`GROSS_SPREADS` robust standard deviations (1.4826 × median absolute deviation)
from the median, and more than :data:`GROSS_FLOOR` eV, is dropped and the fit repeated
until none is left.

Nothing is guessed: an element the structures do not contain, or elements whose
energies the compositions cannot separate (every structure with the same H:O ratio),
is an error naming them, never a minimum-norm answer.

On disk: YAML ``{fidelity: {element symbol: energy in eV}}`` with a comment header
saying how it was fitted (:func:`write_sae_yaml`, :func:`read_sae_yaml`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from .errors import DatasetError
from .records import Record
from .validate import list_ids

#: the residual band outside which structures are left out of the refit (percent)
PERCENTILES: Tuple[float, float] = (2.0, 98.0)
#: robust standard deviations beyond which a residual is a gross error
GROSS_SPREADS = 10.0
#: eV: residuals closer than this to the median are never called gross errors (exactly
#: fitted synthetic data has a spread of zero)
GROSS_FLOOR = 1e-3
#: at most this many gross-error rounds (each drops every residual beyond the limit at once)
MAX_ROUNDS = 20

#: SAE of one fidelity: element symbol -> eV
SAETable = Dict[str, float]
#: what fit_sae takes: records, or (atomic numbers per structure, total energies)
SAEData = Union[Sequence[Record], Tuple[Sequence[Sequence[int]], Sequence[float]]]


@dataclass
class SAEFit:
    """A fitted table and how it was obtained."""

    energies: SAETable
    #: structures offered to the fit
    n_structures: int
    #: ids (record ids, or indices as text) of the structures left out as outliers
    dropped: List[str] = field(default_factory=list)
    #: eV: root mean square residual of the structures kept
    rms_residual: float = 0.0

    def describe(self) -> str:
        return (f"{self.n_structures} structures, {len(self.dropped)} left out as outliers, "
                f"rms residual {self.rms_residual:.4g} eV")


def _symbol(z: int) -> str:
    from ase.data import chemical_symbols

    return chemical_symbols[int(z)]


def element_numbers(elements: Iterable[Union[int, str]]) -> List[int]:
    """Atomic numbers of ``elements`` (symbols or numbers), sorted, each once."""
    from ase.data import atomic_numbers

    out = set()
    for el in elements:
        if isinstance(el, str):
            if el not in atomic_numbers or el == "X":
                raise DatasetError(f"{el!r} is not an element symbol (write it as in the periodic table: H, C, Cu)")
            out.add(atomic_numbers[el])
        else:
            out.add(int(el))
    return sorted(out)


def composition_matrix(numbers_list: Sequence[Sequence[int]], elements: Sequence[int]) -> np.ndarray:
    """``[structures, elements]`` atom counts; an element outside ``elements`` is an error naming it."""
    index = {int(z): k for k, z in enumerate(elements)}
    counts = np.zeros((len(numbers_list), len(index)))
    for row, numbers in enumerate(numbers_list):
        zs, n = np.unique(np.asarray(numbers, dtype=np.int64), return_counts=True)
        unknown = [int(z) for z in zs if int(z) not in index]
        if unknown:
            raise DatasetError(
                f"structure {row} contains {', '.join(_symbol(z) for z in unknown)}, which is not among the "
                f"elements {', '.join(_symbol(z) for z in elements)}"
            )
        counts[row, [index[int(z)] for z in zs]] = n
    return counts


def undetermined_elements(counts: np.ndarray, elements: Sequence[int]) -> List[int]:
    """The elements whose energies the compositions do not fix (empty when the fit is determined).

    Rank deficiency of the count matrix: an element takes part in a null-space direction
    exactly when its energy can change without changing any fitted total energy.
    """
    k = counts.shape[1]
    if k == 0:
        return []
    _, s, vt = np.linalg.svd(counts, full_matrices=True)
    tol = (s.max() if s.size else 0.0) * max(counts.shape) * np.finfo(float).eps
    rank = int(np.sum(s > tol))
    if rank == k:
        return []
    null = vt[rank:]
    return [int(z) for z, col in zip(elements, np.abs(null).max(axis=0)) if col > 1e-8]


def _refuse_undetermined(counts: np.ndarray, elements: Sequence[int], where: str, after: str = "") -> None:
    bad = undetermined_elements(counts, elements)
    if not bad:
        return
    names = ", ".join(_symbol(z) for z in bad)
    raise DatasetError(
        f"{where}: the self-atomic energies of {names} cannot be told apart{after}: in every structure their "
        "counts keep the same proportions (e.g. only one molecule, or one composition ratio), so only a "
        "combination of them is fixed by the energies. Add structures of other compositions (other "
        "molecules, or the isolated atoms), or write the SAE file by hand."
    )


def _as_arrays(data: SAEData) -> Tuple[List[np.ndarray], np.ndarray, List[str]]:
    """(numbers per structure, energies, ids) from records or from a (numbers_list, energies) pair."""
    if len(data) == 2 and not isinstance(data[0], Record):
        numbers_list, energies = data
        if len(numbers_list) != len(energies):
            raise DatasetError(f"{len(numbers_list)} structures but {len(energies)} energies")
        ids = [str(k) for k in range(len(energies))]
        values = [None if e is None else float(e) for e in energies]
    else:
        records = list(data)
        numbers_list = [r.numbers for r in records]
        ids = [r.id for r in records]
        values = [r.energy for r in records]
    missing = [i for i, e in zip(ids, values) if e is None]
    bad = [i for i, e in zip(ids, values) if e is not None and not np.isfinite(e)]
    for what, which in (("have no energy", missing), ("have a non-finite energy", bad)):
        if which:
            raise DatasetError(f"{len(which)} structures {what} (rows {list_ids(which)}); the SAE fit needs every energy")
    return [np.asarray(n, dtype=np.int64) for n in numbers_list], np.asarray(values, dtype=np.float64), ids


def _band(residuals: np.ndarray, percentiles: Tuple[float, float]) -> Tuple[float, float]:
    """The residuals at the two percentiles, as data values taken symmetrically from both ends."""
    lo, hi = percentiles
    upper = np.percentile(residuals, hi, method="inverted_cdf")
    lower = -np.percentile(-residuals, 100.0 - lo, method="inverted_cdf")
    return float(lower), float(upper)


def fit_sae_report(
    data: SAEData,
    elements: Optional[Iterable[Union[int, str]]] = None,
    percentiles: Tuple[float, float] = PERCENTILES,
    where: str = "SAE fit",
) -> SAEFit:
    """Fit SAE (see the module docstring); ``elements`` defaults to those in the data.

    An element in ``elements`` that no structure contains, a structure with an element
    outside ``elements``, a missing or non-finite energy and an underdetermined fit are
    errors (:class:`DatasetError`) that name what is wrong; ``where`` starts the message.
    """
    lo_pct, hi_pct = (float(p) for p in percentiles)
    if not 0.0 <= lo_pct < hi_pct <= 100.0:
        raise ValueError(f"percentiles must satisfy 0 <= low < high <= 100, got {percentiles}")
    numbers_list, energies, ids = _as_arrays(data)
    if not len(energies):
        raise DatasetError(f"{where}: no structures to fit")
    present = element_numbers(int(z) for n in numbers_list for z in n)
    zs = present if elements is None else element_numbers(elements)
    absent = sorted(set(zs) - set(present))
    if absent:
        raise DatasetError(
            f"{where}: no structure contains {', '.join(_symbol(z) for z in absent)}, so "
            f"{'its' if len(absent) == 1 else 'their'} self-atomic energy cannot be fitted "
            "(add structures with it, or leave it out of the elements)"
        )
    outside = [i for i, n in zip(ids, numbers_list) if not set(n.tolist()) <= set(zs)]
    if outside:
        extra = sorted({int(z) for n in numbers_list for z in n} - set(zs))
        raise DatasetError(
            f"{where}: {len(outside)} structures (rows {list_ids(outside)}) contain {', '.join(_symbol(z) for z in extra)}, "
            f"which {'is' if len(extra) == 1 else 'are'} not among the elements {', '.join(_symbol(z) for z in zs)}"
        )
    counts = composition_matrix(numbers_list, zs)
    _refuse_undetermined(counts, zs, where)

    def solve(keep: np.ndarray) -> np.ndarray:
        _refuse_undetermined(counts[keep], zs, where, after=f" once the {int((~keep).sum())} outliers are left out")
        return np.linalg.lstsq(counts[keep], energies[keep], rcond=None)[0]

    keep = np.ones(len(energies), dtype=bool)
    residuals = energies - counts @ solve(keep)
    lower, upper = _band(residuals, (lo_pct, hi_pct))
    keep = (residuals >= lower) & (residuals <= upper)
    for _ in range(MAX_ROUNDS):
        sae = solve(keep)
        residuals = energies - counts @ sae
        centre = np.median(residuals[keep])
        spread = 1.4826 * np.median(np.abs(residuals[keep] - centre))
        gross = keep & (np.abs(residuals - centre) > max(GROSS_SPREADS * spread, GROSS_FLOOR))
        if not gross.any():
            break
        keep &= ~gross
        if keep.sum() < len(keep) / 2:
            raise DatasetError(
                f"{where}: more than half of the {len(keep)} structures lie far from a per-element energy "
                "model; the energies look like a mix (units, levels of theory, or charge states) rather than "
                "one level with a few outliers: check the data"
            )
    else:
        raise DatasetError(f"{where}: outliers were still being found after {MAX_ROUNDS} rounds; check the data")
    return SAEFit(
        energies={_symbol(z): float(e) for z, e in zip(zs, sae)},
        n_structures=len(energies),
        dropped=[i for i, k in zip(ids, keep) if not k],
        rms_residual=float(np.sqrt(np.mean(residuals[keep] ** 2))),
    )


def fit_sae(
    data: SAEData,
    elements: Optional[Iterable[Union[int, str]]] = None,
    percentiles: Tuple[float, float] = PERCENTILES,
) -> SAETable:
    """Self-atomic energies (element symbol -> eV) of one level of theory; see :func:`fit_sae_report`."""
    return fit_sae_report(data, elements, percentiles).energies


def group_by_fidelity(records: Iterable[Record], default: Optional[str] = None) -> Dict[str, List[Record]]:
    """Records per fidelity tag; ``default`` names the untagged ones (else they are an error)."""
    groups: Dict[str, List[Record]] = {}
    untagged = []
    for rec in records:
        name = rec.fidelity or default
        if name is None:
            untagged.append(rec.id)
        else:
            groups.setdefault(name, []).append(rec)
    if untagged:
        raise DatasetError(
            f"{len(untagged)} structures carry no fidelity tag (rows {list_ids(untagged)}); SAE are fitted per level of "
            "theory, so name theirs (CLI: --fidelity NAME, which applies to untagged structures only)"
        )
    return groups


def fit_sae_by_fidelity(
    records: Iterable[Record],
    elements: Optional[Iterable[Union[int, str]]] = None,
    percentiles: Tuple[float, float] = PERCENTILES,
    default_fidelity: Optional[str] = None,
) -> Dict[str, SAETable]:
    """One SAE table per fidelity tag (``default_fidelity`` names untagged records)."""
    elements = None if elements is None else list(elements)
    return {
        name: fit_sae_report(recs, elements, percentiles, where=f"fidelity {name!r}").energies
        for name, recs in group_by_fidelity(records, default_fidelity).items()
    }


def sae_energy(numbers: Sequence[int], table: Mapping[str, float]) -> float:
    """The SAE baseline of one structure (eV): Σ over atoms of its element's energy."""
    zs, n = np.unique(np.asarray(numbers, dtype=np.int64), return_counts=True)
    missing = [_symbol(z) for z in zs if _symbol(z) not in table]
    if missing:
        raise DatasetError(f"the SAE table has no energy for {', '.join(missing)} (it has {', '.join(table)})")
    return float(sum(table[_symbol(z)] * c for z, c in zip(zs, n)))


HEADER = """\
Self-atomic energies (eV) per fidelity: {{fidelity: {{element: energy}}}}.
Fitted by least squares of each structure's total energy on its element counts, then refitted
without the structures whose residual lies outside the {lo}-{hi} percentile band and
without gross errors (> {spreads:g} robust standard deviations and > {floor:g} eV from the median)."""


def _ordinal(x: float) -> str:
    """2 -> "2nd", 98 -> "98th", 2.5 -> "2.5th"."""
    if float(x) != int(x):
        return f"{x:g}th"
    n = int(x)
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def write_sae_yaml(
    path: Union[str, os.PathLike],
    sae: Mapping[str, Mapping[str, float]],
    notes: Sequence[str] = (),
    percentiles: Tuple[float, float] = PERCENTILES,
) -> None:
    """Write ``sae`` atomically, with a comment header saying how it was fitted plus ``notes`` lines."""
    import yaml

    from .. import __version__
    from ..atomic import atomic_write

    plain = {str(name): {str(el): float(e) for el, e in table.items()} for name, table in sae.items()}
    header = HEADER.format(lo=_ordinal(percentiles[0]), hi=_ordinal(percentiles[1]), spreads=GROSS_SPREADS,
                           floor=GROSS_FLOOR)
    lines = header.splitlines() + [f"Written by mlff {__version__}."] + list(notes)
    # floats are written with repr: reading the file back gives the same numbers bit for bit
    text = "".join(f"# {line}\n" for line in lines) + yaml.safe_dump(plain, sort_keys=False)

    def write(tmp: str) -> None:
        with open(tmp, "w") as fh:
            fh.write(text)

    atomic_write(path, write)


def read_sae_yaml(path: Union[str, os.PathLike]) -> Dict[str, SAETable]:
    """Read a file of :func:`write_sae_yaml` (or one written by hand in that layout), checked."""
    import yaml

    from ase.data import atomic_numbers

    path = Path(path)
    if not path.exists():
        raise DatasetError(f"SAE file {str(path)!r} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise DatasetError(f"{path}: not valid YAML ({exc})") from exc
    layout = "{fidelity name: {element symbol: energy in eV}}"
    if not isinstance(data, dict) or not data:
        raise DatasetError(f"{path}: expected a mapping {layout}")
    out: Dict[str, SAETable] = {}
    for name, table in data.items():
        if not isinstance(name, str) or not isinstance(table, dict) or not table:
            raise DatasetError(f"{path}: entry {name!r} is not a fidelity name with a mapping {layout}")
        out[name] = {}
        for el, energy in table.items():
            if isinstance(el, bool):  # YAML 1.1 reads an unquoted No (nobelium) as false
                raise DatasetError(f"{path}: fidelity {name!r} has the key {el!r}; quote element symbols such as 'No'")
            if el not in atomic_numbers or el == "X":
                raise DatasetError(f"{path}: fidelity {name!r}: {el!r} is not an element symbol")
            try:
                value = float(energy)
            except (TypeError, ValueError):
                value = float("nan")
            if isinstance(energy, bool) or not np.isfinite(value):
                raise DatasetError(f"{path}: fidelity {name!r}, element {el}: {energy!r} is not a finite energy in eV")
            out[name][el] = value
    return out
