"""mlff stores (ASE db, extxyz, HDF5) ⇄ pacemaker's dataset, both ways.

pacemaker reads a pandas DataFrame pickled with gzip (``.pckl.gzip``) with the columns
``ase_atoms`` (structures without a calculator), ``energy`` (eV, total), ``forces``
(``[N, 3]`` eV/Å) and ``energy_corrected`` (eV, what it fits: the energy minus the
isolated-atom reference energies when they are given, else the energy itself); mlff
adds ``name`` (``<store>:<record id>``, pacemaker's own column for it).

pacemaker needs an energy and forces for every structure: records without them are
refused (:class:`MissingLabelsError`, naming them) or skipped with a count
(``missing="skip"``). pandas is imported only here, when a conversion is asked for.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Dict, List, Literal, Mapping, Optional, Sequence

import numpy as np

from ..atomic import atomic_write
from ..data.errors import DatasetError
from ..data.records import Record

if TYPE_CHECKING:  # pandas is optional for mlff
    import pandas as pd

#: what pacemaker's dataset files are called
SUFFIX = ".pckl.gzip"
COLUMNS = ("name", "ase_atoms", "energy", "forces", "energy_corrected")


class MissingLabelsError(DatasetError):
    """Structures without the energy or forces pacemaker fits."""


@dataclass
class Conversion:
    """A converted data set and what was left out."""

    frame: "pd.DataFrame"
    skipped: int  # records without energy or forces, skipped (missing="skip")
    skipped_ids: List[str]


def _pandas():
    try:
        import pandas as pd
    except ImportError as exc:  # pragma: no cover - pandas comes with pacemaker
        raise ImportError("pacemaker datasets are pandas DataFrames: pip install pandas") from exc
    return pd


def reference_energy(numbers: Sequence[int], references: Mapping[str, float], where: str) -> float:
    """Σ of the isolated-atom energies of ``numbers``; every element must have one."""
    from ase.data import chemical_symbols

    symbols = [chemical_symbols[int(z)] for z in numbers]
    missing = sorted(set(symbols) - set(references))
    if missing:
        raise DatasetError(f"{where}: no reference energy for {missing} (reference_energies has "
                           f"{sorted(references)})")
    return float(sum(references[s] for s in symbols))


def records_to_frame(
    records: Sequence[Record],
    reference_energies: Optional[Mapping[str, float]] = None,
    missing: Literal["refuse", "skip"] = "refuse",
    source: str = "",
) -> Conversion:
    """pacemaker's DataFrame of ``records`` (see the module docstring)."""
    pd = _pandas()
    if missing not in ("refuse", "skip"):
        raise ValueError(f"missing must be 'refuse' or 'skip', got {missing!r}")
    unlabelled = [r.id for r in records if r.energy is None or r.forces is None]
    if unlabelled and missing == "refuse":
        shown = ", ".join(unlabelled[:10]) + (" ..." if len(unlabelled) > 10 else "")
        raise MissingLabelsError(
            f"{source or 'data set'}: {len(unlabelled)} of {len(records)} structures have no forces or no energy "
            f"(pacemaker fits both): {shown}; label them, or set missing_forces: skip to leave them out"
        )
    rows: Dict[str, list] = {c: [] for c in COLUMNS}
    skipped = set(unlabelled)
    for rec in records:
        if rec.id in skipped:
            continue
        forces = np.asarray(rec.forces, dtype=np.float64)
        if forces.shape != (rec.n_atoms, 3):
            raise DatasetError(f"structure {rec.id}: forces have shape {forces.shape}, expected ({rec.n_atoms}, 3)")
        atoms = rec.to_atoms()
        atoms.calc = None  # pacemaker attaches its own single-point calculator from the columns
        energy = float(rec.energy)
        corrected = energy
        if reference_energies is not None:
            corrected = energy - reference_energy(rec.numbers, reference_energies, f"structure {rec.id}")
        rows["name"].append(f"{source}:{rec.id}" if source else str(rec.id))
        rows["ase_atoms"].append(atoms)
        rows["energy"].append(energy)
        rows["forces"].append(forces)
        rows["energy_corrected"].append(corrected)
    return Conversion(frame=pd.DataFrame(rows), skipped=len(skipped), skipped_ids=list(unlabelled))


def write_frame(frame: "pd.DataFrame", path: str | os.PathLike) -> Path:
    """Write a pacemaker dataset atomically (gzip pickle, protocol 4 as pacemaker writes)."""
    path = Path(path)
    if not path.name.endswith(SUFFIX):
        raise ValueError(f"{path}: pacemaker datasets end in {SUFFIX}")
    # pandas infers compression from the name, which the temporary file does not keep
    return atomic_write(path, lambda tmp: frame.to_pickle(tmp, compression="gzip", protocol=4))


def read_frame(path: str | os.PathLike) -> "pd.DataFrame":
    """Read a pacemaker dataset (a gzip-pickled DataFrame: only open files you trust)."""
    pd = _pandas()
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"pacemaker dataset {str(path)!r} does not exist")
    try:
        # pacemaker's files are gzip-compressed whatever they are called (.pckl.gzip, .pkl.gz)
        frame = pd.read_pickle(path, compression="gzip" if path.name.endswith((".gzip", ".gz")) else "infer")
    except Exception as exc:
        raise DatasetError(f"{path}: not a pacemaker dataset ({type(exc).__name__}: {exc})") from exc
    if not isinstance(frame, pd.DataFrame):
        raise DatasetError(f"{path}: holds a {type(frame).__name__}, not a pacemaker DataFrame")
    lacking = [c for c in ("ase_atoms", "forces") if c not in frame.columns]
    if lacking or not {"energy", "energy_corrected"} & set(frame.columns):
        raise DatasetError(f"{path}: a pacemaker dataset needs ase_atoms, forces and energy or energy_corrected; "
                           f"found columns {list(frame.columns)}")
    return frame


def frame_to_records(frame: "pd.DataFrame", source: str = "") -> List[Record]:
    """mlff records of a pacemaker DataFrame: ``energy`` (else ``energy_corrected``) and ``forces``.

    The record id is the DataFrame's ``name`` (else its index); other columns go to
    ``info`` only where they are scalars (``energy_corrected`` among them).
    """
    records: List[Record] = []
    energy_column = "energy" if "energy" in frame.columns else "energy_corrected"
    for index, row in frame.iterrows():
        atoms = row["ase_atoms"].copy()
        atoms.calc = None
        ident = str(row["name"]) if "name" in frame.columns else str(index)
        info = {}
        if "energy_corrected" in frame.columns and energy_column != "energy_corrected":
            info["energy_corrected"] = float(row["energy_corrected"])
        rec = Record.from_atoms(atoms, id=ident, info=info)
        rec.energy = float(row[energy_column])
        rec.forces = np.asarray(row["forces"], dtype=np.float64).reshape(len(atoms), 3)
        records.append(rec)
    return records


def store_to_pacemaker(
    store: str | os.PathLike,
    destination: str | os.PathLike,
    reference_energies: Optional[Mapping[str, float]] = None,
    missing: Literal["refuse", "skip"] = "refuse",
    selection: Optional[str] = None,
) -> Conversion:
    """Convert an mlff store (.db, .xyz, .h5) into a pacemaker dataset file."""
    from ..data.store import read_records

    records = read_records(store, selection)
    conversion = records_to_frame(records, reference_energies, missing, source=Path(store).name)
    write_frame(conversion.frame, destination)
    return conversion


def pacemaker_to_store(
    source: str | os.PathLike,
    store: str | os.PathLike,
    mode: Literal["append", "create", "overwrite"] = "create",
) -> int:
    """Convert a pacemaker dataset into an mlff store (format from the suffix); returns the count."""
    from ..data.store import write_records

    records = frame_to_records(read_frame(source), source=Path(source).name)
    write_records(store, records, {"source": f"pacemaker dataset {Path(source).name}"}, mode=mode)
    return len(records)
