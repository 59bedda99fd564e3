"""Validation on load: every problem is counted and the offending rows are named.

Every label is optional in a :class:`Record`; what a use needs is said here: an energy
always, forces unless the store is energies-only (``require_forces=False``, the cheap
level of a multi-fidelity set), stress only when asked. A label that is present is
always checked: NaN is never accepted, whatever is optional.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Literal, Optional, Sequence, Tuple

import numpy as np

from .errors import DatasetError
from .identity import SampleIndex, describe_duplicates
from .records import LABELS, Record

#: how many row ids a message lists before it says "and N more"
MAX_IDS_SHOWN = 20

OnInvalid = Literal["refuse", "skip"]

#: the problem kind of the second and later rows of a repeated sample identity
REPEATED = "repeated sample identity"

#: e: partial charges that miss the total charge by more than this are inconsistent labels
#: (Mulliken and xTB charges sum to it exactly; a charge model trained on them normalises to it)
CHARGE_SUM_TOLERANCE = 1e-3


def list_ids(ids: Sequence[str]) -> str:
    """Row ids for a message: the first :data:`MAX_IDS_SHOWN`, then how many more."""
    more = f" and {len(ids) - MAX_IDS_SHOWN} more" if len(ids) > MAX_IDS_SHOWN else ""
    return ", ".join(ids[:MAX_IDS_SHOWN]) + more


@dataclass
class ValidationReport:
    """Problems found, by kind -> ids of the records that have them."""

    n_total: int
    problems: Dict[str, List[str]] = field(default_factory=dict)
    kept: List[Record] = field(default_factory=list)
    #: repeated sample identity -> every row that carries it (the first one is kept when skipping)
    repeated: Dict[str, List[str]] = field(default_factory=dict)
    #: record id -> the labels it carries (names from :data:`mlff.data.records.LABELS`), every record
    labels: Dict[str, Tuple[str, ...]] = field(default_factory=dict)
    #: record id -> its fidelity (None where not stated), every record
    fidelities: Dict[str, Optional[str]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def n_bad(self) -> int:
        return len({i for ids in self.problems.values() for i in ids})

    def contents(self) -> str:
        """What the records carry, per fidelity: "gfn1-xtb: 80 structures (energy 80, charges 80)"."""
        by_fidelity: Dict[Optional[str], List[str]] = {}
        for rid, fid in self.fidelities.items():
            by_fidelity.setdefault(fid, []).append(rid)
        lines = []
        for fid, ids in sorted(by_fidelity.items(), key=lambda item: (item[0] is None, item[0] or "")):
            counts = {name: sum(name in self.labels[i] for i in ids) for name in LABELS}
            have = ", ".join(f"{name} {n}" for name, n in counts.items() if n) or "no labels"
            lines.append(f"{fid if fid is not None else '(no fidelity)'}: {len(ids)} structures ({have})")
        return "\n".join(lines)

    def describe(self, source: str = "dataset") -> str:
        lines = [f"{source}: {self.n_bad} of {self.n_total} structures are invalid:"]
        for kind, ids in self.problems.items():
            lines.append(f"  - {kind}: {len(ids)} (rows {list_ids(ids)})")
            if kind == REPEATED:
                lines.append(describe_duplicates(self.repeated, indent="      "))
        return "\n".join(lines)


def _symbols(numbers) -> str:
    from ase.data import chemical_symbols

    return ", ".join(chemical_symbols[int(z)] for z in sorted(set(int(z) for z in numbers)))


def _array_problem(name: str, value: Optional[np.ndarray], shape: Tuple[int, ...]) -> List[str]:
    if value is None:
        return []
    if np.shape(value) != shape:
        return [f"{name} of the wrong shape"]
    return [] if np.all(np.isfinite(value)) else [f"non-finite {name}"]


def _problems_of(rec: Record, elements: Optional[set], require_stress: bool, require_forces: bool) -> List[str]:
    found = []
    if rec.energy is None:
        found.append("missing energy")
    elif not np.isfinite(rec.energy):
        found.append("non-finite energy")
    if rec.forces is None and require_forces:
        found.append("missing forces")
    found += _array_problem("forces", rec.forces, (rec.n_atoms, 3))
    if not np.all(np.isfinite(rec.positions)):
        found.append("non-finite positions")
    found += _array_problem("stress", rec.stress, (6,))
    found += _array_problem("charges", rec.charges, (rec.n_atoms,))
    if rec.charge is not None and not np.isfinite(rec.charge):
        found.append("non-finite total charge")
    if rec.mult is not None and rec.mult < 1:
        found.append("spin multiplicity below 1")
    if (
        rec.charges is not None and np.shape(rec.charges) == (rec.n_atoms,) and np.all(np.isfinite(rec.charges))
        and abs(float(np.sum(rec.charges)) - (rec.charge or 0.0)) > CHARGE_SUM_TOLERANCE
    ):
        found.append("partial charges that do not sum to the total charge")
    if require_stress and rec.periodic and rec.stress is None:
        found.append("missing stress (periodic structure)")
    if elements is not None:
        unknown = set(int(z) for z in rec.numbers) - elements
        if unknown:
            found.append(f"elements outside the model ({_symbols(unknown)})")
    return found


def validate_records(
    records: Sequence[Record],
    elements: Optional[Sequence[int]] = None,
    on_invalid: OnInvalid = "refuse",
    min_structures: int = 1,
    require_stress: bool = False,
    source: str = "dataset",
    require_forces: bool = True,
) -> ValidationReport:
    """Check labels and repeats; refuse (raise :class:`DatasetError`) or skip invalid structures.

    A row that repeats the sample of an earlier row (:mod:`mlff.data.identity`) is
    invalid ("repeated sample identity"). ``require_forces=False`` accepts records
    without forces (an energies-only store); forces that are present are still checked.
    The report says what every record carries (``labels``, ``fidelities``, ``contents()``).

    With ``on_invalid="skip"`` the report's ``kept`` holds the valid records and a
    warning names the skipped rows. Either way fewer than ``min_structures`` valid
    structures is refused, with a message that says how many were found and needed.
    """
    if on_invalid not in ("refuse", "skip"):
        raise ValueError(f"on_invalid must be 'refuse' or 'skip', got {on_invalid!r}")
    allowed = None if elements is None else set(int(z) for z in elements)
    report = ValidationReport(n_total=len(records))
    samples = SampleIndex()
    for rec in records:
        # training on a repeated structure weights it twice: every copy after the first is invalid
        repeat = len(samples.add(rec)) > 1
        report.labels[rec.id] = rec.labels()
        report.fidelities[rec.id] = rec.fidelity
        found = _problems_of(rec, allowed, require_stress, require_forces) + ([REPEATED] if repeat else [])
        for kind in found:
            report.problems.setdefault(kind, []).append(rec.id)
        if not found:
            report.kept.append(rec)
    report.repeated = samples.repeated()
    if not report.ok:
        if on_invalid == "refuse":
            raise DatasetError(
                report.describe(source)
                + "\nFix or remove these rows, or set on_invalid: skip (CLI: --skip-invalid) to train without them."
            )
        import warnings

        warnings.warn(report.describe(source) + "\nThese structures are skipped.", stacklevel=2)
    if len(report.kept) < min_structures:
        raise DatasetError(
            f"{source}: {len(report.kept)} valid structures, but at least {min_structures} are needed "
            f"(of {report.n_total} read{'; ' + str(report.n_bad) + ' invalid skipped' if report.n_bad else ''}). "
            "Label more structures (mlff label) or lower min_structures."
        )
    return report


def elements_of(records: Sequence[Record]) -> List[int]:
    return sorted({int(z) for r in records for z in r.numbers})


def split_counts(n: int, fractions: Tuple[float, float]) -> Tuple[int, int]:
    """How many structures go to validation and test (at least 1 each when asked for)."""
    n_valid = max(1, int(round(n * fractions[0]))) if fractions[0] > 0 else 0
    n_test = max(1, int(round(n * fractions[1]))) if fractions[1] > 0 else 0
    return n_valid, n_test
