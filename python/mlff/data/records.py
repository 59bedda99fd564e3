"""One labelled structure, independent of the store it came from."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple

import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

#: the system-level Record fields, spelled as ``atoms.info`` keys (ASE's convention for
#: charge and multiplicity, which tblite, PySCF wrappers and extxyz files from other tools use)
SYSTEM_KEYS: Tuple[str, ...] = ("fidelity", "charge", "mult")

#: the labels a record may carry, in the order reports list them
LABELS: Tuple[str, ...] = ("energy", "forces", "stress", "charges", "charge", "mult")


@dataclass
class Record:
    """A structure with its teacher labels (eV, Å, eV/Å, eV/Å³ Voigt-6 in ASE's sign, e).

    ``id`` is what error messages name: the row id of an ASE database, the frame index
    of an extxyz file, ``"<NNN>/<k>"`` (``"n<N>/<k>"`` in old files) in an HDF5 store.

    Every label is optional, so one type holds every level of a multi-fidelity set: a
    cheap level may have an energy and no forces. Validation
    (:func:`mlff.data.validate.validate_records`) decides what a use needs.

    - ``charges``: per-atom partial charges ``[N]`` from the teacher (its own scheme,
      e.g. Mulliken), or None.
    - ``charge``: total charge; None where not stated (consumers take it as neutral).
    - ``mult``: spin multiplicity 2S+1; None where not stated (the lowest one).
    - ``fidelity``: the level of theory that produced the labels ("gfn2-xtb",
      "pbe/def2-svp"); None in stores written before fidelities existed.

    ``fidelity``, ``charge`` and ``mult`` found in ``info`` (ASE's ``atoms.info``
    spelling, old stores) are moved into the fields, so the two can never disagree;
    :meth:`to_atoms` puts them back into ``atoms.info``.
    """

    id: str
    numbers: np.ndarray
    positions: np.ndarray
    cell: np.ndarray
    pbc: np.ndarray
    energy: Optional[float] = None
    forces: Optional[np.ndarray] = None
    stress: Optional[np.ndarray] = None
    info: Dict[str, Any] = field(default_factory=dict)
    # added for multi-fidelity data; after ``info`` so positional construction still works
    charges: Optional[np.ndarray] = None
    charge: Optional[float] = None
    mult: Optional[int] = None
    fidelity: Optional[str] = None

    def __post_init__(self) -> None:
        moved = {k: self.info[k] for k in SYSTEM_KEYS if k in self.info}
        if moved:
            self.info = {k: v for k, v in self.info.items() if k not in SYSTEM_KEYS}  # never the caller's dict
            for key, value in moved.items():
                current = getattr(self, key)
                if current is not None and value is not None and _normalised(key, value, self.id) != current:
                    raise ValueError(
                        f"structure {self.id}: info[{key!r}] = {value!r} disagrees with {key} = {current!r}"
                    )
                if current is None:
                    setattr(self, key, value)
        for key in SYSTEM_KEYS:
            value = getattr(self, key)
            if value is not None:
                setattr(self, key, _normalised(key, value, self.id))
        if self.charges is not None:
            self.charges = np.asarray(self.charges, dtype=np.float64)

    @property
    def n_atoms(self) -> int:
        return int(len(self.numbers))

    @property
    def periodic(self) -> bool:
        return bool(np.all(self.pbc))

    def labels(self) -> Tuple[str, ...]:
        """The labels this record carries (names from :data:`LABELS`)."""
        return tuple(name for name in LABELS if getattr(self, name) is not None)

    def system_info(self) -> Dict[str, Any]:
        """The set system fields as ``atoms.info`` entries (what stores without own columns keep)."""
        return {k: getattr(self, k) for k in SYSTEM_KEYS if getattr(self, k) is not None}

    def full_info(self) -> Dict[str, Any]:
        """``info`` plus :meth:`system_info`: the ``atoms.info`` of :meth:`to_atoms`."""
        return {**self.info, **self.system_info()}

    def to_atoms(self) -> Atoms:
        atoms = Atoms(numbers=self.numbers, positions=self.positions, cell=self.cell, pbc=self.pbc)
        results: Dict[str, Any] = {}
        for name in ("energy", "forces", "stress", "charges"):  # ASE's names for calculator results
            if getattr(self, name) is not None:
                results[name] = getattr(self, name)
        if results:
            atoms.calc = SinglePointCalculator(atoms, **results)
        # the trainer and charge-aware teachers read atoms.info["charge"]
        atoms.info.update(self.full_info())
        return atoms

    @classmethod
    def from_atoms(cls, atoms: Atoms, id: str, info: Optional[Dict[str, Any]] = None) -> "Record":
        """Take labels from an attached (single-point) calculator, if any, without recomputing."""
        energy = forces = stress = charges = None
        calc = atoms.calc
        if calc is not None:
            res = getattr(calc, "results", {}) or {}
            energy = res.get("energy", res.get("free_energy"))
            forces = res.get("forces")
            stress = res.get("stress")
            charges = res.get("charges")
        if stress is not None:
            stress = np.asarray(stress, dtype=np.float64)
            if stress.shape == (3, 3):
                from ase.stress import full_3x3_to_voigt_6_stress

                stress = full_3x3_to_voigt_6_stress(stress)
        return cls(
            id=str(id),
            numbers=np.asarray(atoms.get_atomic_numbers(), dtype=np.int64),
            positions=np.asarray(atoms.get_positions(), dtype=np.float64),
            cell=np.asarray(atoms.get_cell(), dtype=np.float64),
            pbc=np.asarray(atoms.get_pbc(), dtype=bool),
            energy=None if energy is None else float(energy),
            forces=None if forces is None else np.asarray(forces, dtype=np.float64),
            stress=stress,
            info={**atoms.info, **(info or {})},
            charges=None if charges is None else np.asarray(charges, dtype=np.float64),
        )


def _normalised(key: str, value: Any, where: str) -> Any:
    """One type per system field, whatever a file or user gave (-1 and -1.0 are one charge)."""
    try:
        if key == "fidelity":
            return fidelity_name(value)
        if key == "charge":
            if isinstance(value, (bool, np.bool_)):
                raise ValueError("a number is needed")
            return float(value)
        # mult
        if isinstance(value, (bool, np.bool_)) or float(value) != int(float(value)):
            raise ValueError("an integer 2S+1 is needed")
        return int(float(value))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"structure {where}: invalid {key} {value!r} ({exc})") from None


def fidelity_name(value: Any) -> str:
    """``value`` if it can name a fidelity (a non-empty string), else a ValueError."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"a fidelity is a non-empty name such as 'gfn2-xtb', got {value!r}")
    return value
