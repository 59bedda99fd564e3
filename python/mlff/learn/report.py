"""The per-iteration report: ``report.csv``, ``report.png`` and a printed table.

Rows are kept in the run's state; both files are rewritten (atomically) from all rows
after every iteration, so a resumed run never appends a row twice.
"""

from __future__ import annotations

import csv
import io
import math
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from ..atomic import atomic_write

#: report columns, in order
COLUMNS = (
    "iteration",
    "n_explored",
    "n_accurate",
    "n_candidates",
    "n_failed",
    "uncertain_fraction",
    "n_selected",
    "n_labelled",
    "n_data",
    "force_rmse_new",
    "test_force_rmse",
    "test_energy_rmse_per_atom",
)

#: what the columns mean (README and --help)
COLUMN_HELP = {
    "n_explored": "frames judged in the exploration",
    "n_accurate": "below the trust window",
    "n_candidates": "inside the window [lo, hi)",
    "n_failed": "at or above hi (not labelled)",
    "uncertain_fraction": "(candidates + failed) / explored: the stopping criterion",
    "n_selected": "candidates chosen for labelling (cap, de-duplication)",
    "n_labelled": "of those, labelled by the teacher",
    "n_data": "structures in the training store after this iteration",
    "force_rmse_new": "eV/Å, the previous model on the newly labelled frames (before retraining)",
    "test_force_rmse": "eV/Å, the retrained model on test_data",
    "test_energy_rmse_per_atom": "eV/atom, the retrained model on test_data",
}


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def format_table(rows: Sequence[Dict[str, Any]]) -> str:
    """The rows as an aligned text table (what `mlff learn` prints after every iteration)."""
    short = {"uncertain_fraction": "uncertain", "force_rmse_new": "F_rmse_new", "test_force_rmse": "F_rmse_test",
             "test_energy_rmse_per_atom": "E_rmse_test", "n_candidates": "n_cand"}
    heads = [short.get(c, c) for c in COLUMNS]
    body = [[_cell(r.get(c)) for c in COLUMNS] for r in rows]
    widths = [max(len(h), *(len(b[k]) for b in body)) if body else len(h) for k, h in enumerate(heads)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(heads, widths))]
    lines += ["  ".join(v.rjust(w) for v, w in zip(b, widths)) for b in body]
    return "\n".join(lines)


def write_report(rows: Sequence[Dict[str, Any]], output_dir: str | os.PathLike) -> List[Path]:
    """Write ``report.csv`` (and ``report.png`` where matplotlib is installed); returns the files."""
    out = Path(output_dir)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(COLUMNS), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({c: _cell(r.get(c)) for c in COLUMNS})
    text = buf.getvalue()
    written = [atomic_write(out / "report.csv", lambda tmp: Path(tmp).write_text(text))]
    png = plot_report(rows, out / "report.png")
    if png is not None:
        written.append(png)
    return written


def _values(rows: Sequence[Dict[str, Any]], key: str) -> List[Optional[float]]:
    return [None if r.get(key) is None else float(r[key]) for r in rows]


def plot_report(rows: Sequence[Dict[str, Any]], path: Path) -> Optional[Path]:
    """Three panels over the iterations: uncertain fraction, force error, data size."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    its = [int(r["iteration"]) for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    axes[0].plot(its, _values(rows, "uncertain_fraction"), "o-")
    axes[0].set_ylabel("uncertain fraction")
    axes[0].set_ylim(0, 1.05)
    for key, label in (("force_rmse_new", "new frames (before retraining)"), ("test_force_rmse", "test set")):
        vals = _values(rows, key)
        pts = [(i, v) for i, v in zip(its, vals) if v is not None and not math.isnan(v)]
        if pts:
            axes[1].plot(*zip(*pts), "o-", label=label)
    axes[1].set_ylabel("force RMSE vs teacher (eV/Å)")
    if axes[1].get_legend_handles_labels()[0]:
        axes[1].legend(fontsize=8)
    axes[2].plot(its, _values(rows, "n_data"), "o-", label="training store")
    axes[2].bar(its, _values(rows, "n_labelled"), alpha=0.4, label="labelled this iteration")
    axes[2].set_ylabel("structures")
    axes[2].legend(fontsize=8)
    for ax in axes:
        ax.set_xlabel("iteration")
        ax.set_xticks(its)
    fig.tight_layout()

    def write(tmp: str) -> None:
        fig.savefig(tmp, format="png", dpi=110)

    try:
        return atomic_write(path, write)
    finally:
        plt.close(fig)
