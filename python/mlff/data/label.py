"""Label sampled structures with a teacher, writing each one as soon as it exists.

Resumable: every row carries its task id (``sample_id``); a re-run skips those ids and
continues each MD chain from its last stored frame. Each row is written in its own
SQLite transaction, so a kill loses at most the structure being computed. A run holds
the database's write lock from reading what is done to its last row, so two runs on
one file never label (and store) the same task twice.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
from ase import Atoms

from .. import __version__
from .errors import DatasetError
from .locking import store_lock
from .records import Record
from .sampling import SamplingConfig, Task, md_chain_start, plan, rattled, run_md_segment, strained
from .store import read_metadata, read_records, write_records
from .teachers import Teacher


@dataclass
class LabelSummary:
    path: Path
    planned: int
    already_done: int
    labelled: int
    seconds: float


def _existing(path: Path) -> Dict[str, Record]:
    """sample_id -> stored record (only rows written by mlff label have one)."""
    if not path.exists():
        return {}
    return {rec.info["sample_id"]: rec for rec in read_records(path, selection="sample_id")}


def _labelled_record(atoms: Atoms, teacher: Teacher, task: Task, base_name: str) -> Record:
    from ase.calculators.calculator import PropertyNotImplementedError

    from .electronic_state import charge_and_mult

    atoms.calc = teacher.calculator
    energy = float(atoms.get_potential_energy())
    forces = np.array(atoms.get_forces())
    stress = None
    if atoms.pbc.all():
        try:
            stress = np.array(atoms.get_stress(voigt=True))
        except (PropertyNotImplementedError, NotImplementedError):
            stress = None
    # partial charges where the teacher computes them (tblite, pyscf): a charge model's target
    charges = None
    if "charges" in getattr(teacher.calculator, "implemented_properties", ()):
        charges = np.array(atoms.get_charges(), dtype=np.float64)
    info = {
        "sample_id": task.id,
        "sample_kind": task.kind,
        "base": base_name,
        **({"temperature": task.temperature} if task.kind == "md" else {}),
        "teacher": teacher.name,
        "teacher_settings": dict(teacher.settings),
    }
    if task.kind == "md":
        info["momenta"] = np.array(atoms.get_momenta())
    rec = Record.from_atoms(atoms, id=task.id)
    rec.energy, rec.forces, rec.stress, rec.charges = energy, forces, stress, charges
    rec.info = info
    rec.fidelity = teacher.fidelity
    if teacher.takes_charge:
        # the state the labels were computed for, defaults included (neutral, lowest multiplicity)
        charge, rec.mult = charge_and_mult(atoms)
        rec.charge = float(charge)
    return rec


def _check_teacher(path: Path, teacher: Teacher) -> None:
    if not path.exists():
        return
    stored = read_metadata(path)
    # the fidelity too: one teacher (tblite) computes several levels of theory
    for key, mine in (("teacher", teacher.name), ("fidelity", teacher.fidelity)):
        theirs = stored.get(key)
        if theirs is not None and theirs != mine:
            raise DatasetError(
                f"{path} was labelled by {key} {theirs!r}; refusing to add rows from {key} {mine!r} "
                "(mixed teachers would train a model on two different potential-energy surfaces; "
                "use another output file)"
            )


def _resumed_chains(tasks: Sequence[Task], done: Dict[str, Record]) -> Dict[str, Atoms]:
    """Each MD chain's last stored frame (positions and momenta), to continue it from there."""
    chain_atoms: Dict[str, Atoms] = {}
    chain_last: Dict[str, int] = {}
    for t in tasks:
        if t.kind == "md" and t.id in done and t.frame > chain_last.get(t.chain, -1):
            rec = done[t.id]
            atoms = rec.to_atoms()
            # keep the electronic state (a charged molecule stays charged), drop the row's bookkeeping
            atoms.calc = None
            atoms.info = {k: v for k, v in rec.system_info().items() if k in ("charge", "mult")}
            momenta = rec.info.get("momenta")
            if momenta is not None:
                atoms.set_momenta(np.asarray(momenta))
            chain_atoms[t.chain], chain_last[t.chain] = atoms, t.frame
    return chain_atoms


def label(
    output: str | os.PathLike,
    bases: Sequence[Atoms],
    teacher: Teacher,
    cfg: Optional[SamplingConfig] = None,
    base_names: Optional[Sequence[str]] = None,
    progress: bool = True,
    max_new: Optional[int] = None,
) -> LabelSummary:
    """Sample around ``bases`` and label with ``teacher`` into the ASE database ``output``.

    ``max_new`` stops after that many new rows (used to test resumption). The whole
    session holds the database's write lock: a second labelling run on the same file
    waits, then labels only what the first one left (never the same task twice).
    """
    from tqdm.auto import tqdm

    from ..runtime import tune_allocator

    tune_allocator()  # torch-based teachers page-fault their big tensors every call otherwise
    cfg = cfg or SamplingConfig()
    path = Path(output)
    if path.suffix != ".db":
        raise DatasetError(f"mlff label writes an ASE SQLite database (.db), got {path.name!r}")
    teacher.check_covers({s for a in bases for s in a.get_chemical_symbols()})
    names = list(base_names) if base_names else [a.get_chemical_formula() for a in bases]
    tasks = plan(bases, cfg)
    t0 = time.perf_counter()
    metadata = {
        **teacher.describe(),
        "sampling": cfg.model_dump(),
        "bases": names,
        "provenance": {"tool": "mlff label", "mlff_version": __version__},
    }

    def say_waiting(lock: Path) -> None:
        print(f"mlff label: another process is writing {path}; waiting for it to finish, then labelling "
              f"what it left (lock file {lock})", file=sys.stderr, flush=True)

    with store_lock(path, on_wait=say_waiting):
        # what is done is read under the lock: a run that waited sees the other run's rows
        _check_teacher(path, teacher)
        done = _existing(path)
        todo = [t for t in tasks if t.id not in done]
        chain_atoms = _resumed_chains(tasks, done)
        n_new = 0
        bar = tqdm(total=len(tasks), initial=len(tasks) - len(todo), desc=f"label ({teacher.name})",
                   unit="struct", disable=not progress, dynamic_ncols=True)
        try:
            for task in todo:
                if max_new is not None and n_new >= max_new:
                    break
                base = bases[task.base]
                if task.kind == "md":
                    atoms = chain_atoms.get(task.chain)
                    steps = cfg.md_interval
                    if atoms is None:
                        atoms = md_chain_start(base, task.temperature, task.seed)
                        steps += cfg.md_equilibration
                    atoms = run_md_segment(atoms, teacher.calculator, task.temperature, steps, cfg, task.seed)
                    chain_atoms[task.chain] = atoms
                elif task.kind == "given":
                    atoms = base.copy()
                    atoms.calc = None
                elif task.kind == "rattle":
                    atoms = rattled(base, task, cfg)
                else:
                    atoms = strained(base, task, cfg)
                rec = _labelled_record(atoms, teacher, task, names[task.base])
                write_records(path, [rec], metadata if n_new == 0 else None)
                n_new += 1
                bar.update(1)
        finally:
            bar.close()
    return LabelSummary(path, len(tasks), len(tasks) - len(todo), n_new, time.perf_counter() - t0)


def parse_structure(spec: str, repeat: Sequence[int] = (1, 1, 1)) -> List[Atoms]:
    """A file (every frame), a molecule name from ASE's g2 set, or an element for bulk."""
    if len(repeat) != 3 or any(int(r) < 1 for r in repeat):
        # ASE would build an empty cell and fail much later ("zero-size array to reduction")
        raise ValueError(
            f"repeat must be three positive integers (copies along a, b, c; 1 1 1 = no supercell), "
            f"got {' '.join(map(str, repeat))}"
        )
    from ase.build import bulk, molecule
    from ase.collections import g2

    if Path(spec).exists():
        from ase.io import read

        frames = read(spec, index=":")
    elif spec in g2.names:
        frames = [molecule(spec)]
    else:
        try:
            frames = [bulk(spec, cubic=True)]
        except Exception:
            try:
                frames = [bulk(spec)]
            except Exception as exc:
                raise ValueError(
                    f"{spec!r} is neither a file, a molecule name (ase.collections.g2) nor an "
                    f"element with a known crystal structure ({exc})"
                ) from None
    out = []
    for a in frames:
        a = a.repeat(tuple(repeat)) if a.pbc.all() else a
        a.calc = None
        out.append(a)
    return out
