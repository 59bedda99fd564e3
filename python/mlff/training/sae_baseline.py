"""The run's self-atomic energies (``sae:`` in the config) as an additive physics term.

``sae: path/to/sae.yaml`` reads a table per fidelity (:func:`mlff.data.sae.read_sae_yaml`);
``sae: fit`` fits them on the training records (:func:`mlff.data.sae.fit_sae_by_fidelity`,
one least-squares fit per level with outliers left out) and writes them to
``output_dir/sae.yaml``. The term (:class:`mlff.physics.sae_term.AtomicEnergies`) then
joins the other terms: the network learns the labels minus the baseline, and export
adds it back (:mod:`mlff.training.residual`, :class:`mlff.models.composite.AdditiveModel`).

A run without named fidelities has one level: its table is the file's only one (or the
one named like the records' tag), or the fit of all training records.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from ..data.errors import DatasetError
from ..data.records import Record
from ..data.sae import fit_sae, fit_sae_by_fidelity, read_sae_yaml, write_sae_yaml
from ..physics.sae_term import AtomicEnergies
from .config import SAE_FIT

#: the table name of a run whose records carry no fidelity tag
DEFAULT_NAME = "default"

SAETables = Dict[str, Dict[str, float]]


def _single_level_name(records: Sequence[Record]) -> str:
    tags = sorted({r.fidelity for r in records if r.fidelity is not None})
    return tags[0] if len(tags) == 1 else DEFAULT_NAME


def fitted_tables(records: Sequence[Record], elements: Sequence[int], fidelities: Sequence[str]) -> SAETables:
    """One SAE table per fidelity of the run, fitted on ``records``."""
    if not fidelities:
        return {_single_level_name(records): fit_sae(records, elements)}
    tables = fit_sae_by_fidelity(records, elements)
    missing = [f for f in fidelities if f not in tables]
    if missing:
        raise DatasetError(
            f"sae: fit: no training structures of {missing}, so their self-atomic energies cannot be fitted; "
            "give them in a file (sae: path/to/sae.yaml, see mlff sae)"
        )
    return {f: tables[f] for f in fidelities}


def file_tables(path: str, records: Sequence[Record], fidelities: Sequence[str]) -> SAETables:
    """The tables of ``path`` the run needs, in model order; a missing one is refused, naming it."""
    tables = read_sae_yaml(path)
    if not fidelities:
        if len(tables) == 1:
            return dict(tables)
        name = _single_level_name(records)
        if name in tables:
            return {name: tables[name]}
        raise DatasetError(
            f"sae: {path} has tables for {sorted(tables)}; this run has one unnamed level: name it "
            "(data.fidelities) or give a file with one table"
        )
    missing = [f for f in fidelities if f not in tables]
    if missing:
        raise DatasetError(f"sae: {path} has no table for {missing} (it has {sorted(tables)})")
    return {f: tables[f] for f in fidelities}


def sae_term(
    setting: str,
    records: Sequence[Record],
    elements: Sequence[int],
    fidelities: Sequence[str],
    network_list: Tuple[str, float],
    output_dir: Optional[Path] = None,
) -> Tuple[AtomicEnergies, str]:
    """The SAE term of a run and a line saying where its values come from.

    ``network_list``: the network's first neighbour list (name, cutoff), which the term
    declares and does not read (see :mod:`mlff.physics.sae_term`). With ``sae: fit`` the
    tables are written to ``output_dir/sae.yaml`` when ``output_dir`` is given.
    """
    if setting == SAE_FIT:
        tables = fitted_tables(records, elements, fidelities)
        origin = f"fitted on {len(records)} training structures"
        if output_dir is not None:
            output_dir.mkdir(parents=True, exist_ok=True)
            write_sae_yaml(output_dir / "sae.yaml", tables, notes=[f"mlff train (sae: fit), {origin}."])
            origin += f", written to {output_dir / 'sae.yaml'}"
    else:
        tables = file_tables(setting, records, fidelities)
        origin = f"from {setting}"
    names: List[str] = list(fidelities) or list(tables)
    name, cutoff = network_list
    try:
        term = AtomicEnergies(elements, tables, names, list_name=name, cutoff=cutoff)
    except ValueError as exc:
        raise DatasetError(f"sae: {exc}") from None
    return term, f"self-atomic energies {origin}"


__all__ = ["sae_term", "fitted_tables", "file_tables", "DEFAULT_NAME"]
