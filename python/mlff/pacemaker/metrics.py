"""The final train/test errors of a pacemaker run, read from the files it writes.

pacemaker (python-ace 0.4) writes whitespace tables with a header row (``rmse_epa`` in
eV/atom, ``rmse_f_comp`` in eV/Å per force component, ``loss``, ...):

- ``metrics.txt``: one row per optimizer evaluation; ``cycle_metrics.txt``: one row per
  fit cycle (pacemaker keeps the cycle with the lowest loss); ``ladder_metrics.txt``: one
  row per ladder step (the last is the final potential). ``test_*`` files the same for
  the held-out set — only the tensorpot backend fills them.
- ``test_pred.pckl.gzip`` / ``train_pred.pckl.gzip``: its predictions of the final
  potential (after ``repulsion: auto`` set the ZBL core), with ``energy_pred`` and
  ``forces_pred``; the test errors of the pyace backend come from there.
- the log: ``Iteration #N (E evals): Loss: ... | RMSE Energy(low): a (b) meV/at |
  Forces(low): c (d) meV/A`` (two decimals; the last resort).

The numbers are taken as written (the tables print Python floats in full), so they equal
pacemaker's own to the last digit.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Dict, List, Optional

#: mlff's names for pacemaker's columns
RMSE_ENERGY = "rmse_energy_per_atom"  # eV/atom
RMSE_FORCES = "rmse_forces"  # eV/Å, per component

_LOG_LINE = re.compile(
    r"RMSE Energy\(low\):\s*([-+0-9.eE]+)\s*\(([-+0-9.eE]+)\)\s*meV/at\s*\|\s*"
    r"Forces\(low\):\s*([-+0-9.eE]+)\s*\(([-+0-9.eE]+)\)\s*meV/A"
)


def read_table(path: Path) -> List[Dict[str, float]]:
    """Rows of a pacemaker metrics table (empty when the file is absent or has a header only)."""
    if not path.is_file():
        return []
    lines = [line.split() for line in path.read_text().splitlines() if line.strip()]
    if not lines:
        return []
    header, rows = lines[0], []
    for number, fields in enumerate(lines[1:], start=2):
        if len(fields) != len(header):
            raise ValueError(f"{path}: line {number} has {len(fields)} columns, the header {len(header)}")
        rows.append({name: float(value) for name, value in zip(header, fields)})
    return rows


def _from_tables(workdir: Path, prefix: str) -> Optional[Dict[str, object]]:
    ladder = read_table(workdir / f"{prefix}ladder_metrics.txt")
    if ladder:
        row, source = ladder[-1], f"{prefix}ladder_metrics.txt"
    else:
        cycles = read_table(workdir / f"{prefix}cycle_metrics.txt")
        if cycles:
            # pacemaker keeps the first cycle with the lowest loss (numpy argmin)
            row, source = min(cycles, key=lambda r: r["loss"]), f"{prefix}cycle_metrics.txt"
        else:
            running = read_table(workdir / f"{prefix}metrics.txt")
            if not running:
                return None
            row, source = running[-1], f"{prefix}metrics.txt"
    return {RMSE_ENERGY: row["rmse_epa"], RMSE_FORCES: row["rmse_f_comp"], "source": source}


def _from_predictions(path: Path) -> Optional[Dict[str, object]]:
    if not path.is_file():
        return None
    import numpy as np
    import pandas as pd

    frame = pd.read_pickle(path, compression="gzip")
    de = (frame["energy_pred"] - frame["energy_corrected"]) / frame["NUMBER_OF_ATOMS"]
    df = np.vstack(frame["forces_pred"].to_list()) - np.vstack(frame["forces"].to_list())
    return {RMSE_ENERGY: float(np.sqrt(np.mean(np.square(de.to_numpy(dtype=float))))),
            RMSE_FORCES: float(np.sqrt(np.mean(np.square(df)))), "source": path.name}


def _from_log(path: Path) -> Optional[Dict[str, object]]:
    if not path.is_file():
        return None
    last = None
    for line in path.read_text(errors="replace").splitlines():
        if "Iteration" in line or "Initial state" in line:
            match = _LOG_LINE.search(line)
            if match:
                last = match
    if last is None:
        return None
    return {RMSE_ENERGY: float(last.group(1)) * 1e-3, RMSE_FORCES: float(last.group(3)) * 1e-3,
            "source": f"{path.name} (log, 0.01 meV resolution)"}


def final_metrics(workdir: Path, log_path: Optional[Path] = None) -> Dict[str, Dict[str, object]]:
    """``{"train": {...}, "test": {...}}`` with :data:`RMSE_ENERGY`, :data:`RMSE_FORCES` and
    ``source`` (the file the numbers come from); a set without numbers is left out."""
    out: Dict[str, Dict[str, object]] = {}
    train = _from_tables(workdir, "")
    if train is None and log_path is not None:
        train = _from_log(log_path)
    if train is not None:
        out["train"] = train
    test = _from_tables(workdir, "test_") or _from_predictions(workdir / "test_pred.pckl.gzip")
    if test is not None:
        out["test"] = test
    for values in out.values():
        for key in (RMSE_ENERGY, RMSE_FORCES):
            if not math.isfinite(float(values[key])):  # type: ignore[arg-type]
                raise ValueError(f"pacemaker reported a non-finite {key} ({values[key]}) in {values['source']}")
    return out
