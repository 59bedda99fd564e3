"""One labelled structure, independent of the store it came from."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Optional

import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator


@dataclass
class Record:
    """A structure with its teacher labels (eV, Å, eV/Å, eV/Å³ Voigt-6 in ASE's sign).

    ``id`` is what error messages name: the row id of an ASE database, the frame index
    of an extxyz file, ``"n<N>/<k>"`` in an HDF5 store.
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

    @property
    def n_atoms(self) -> int:
        return int(len(self.numbers))

    @property
    def periodic(self) -> bool:
        return bool(np.all(self.pbc))

    def to_atoms(self) -> Atoms:
        atoms = Atoms(numbers=self.numbers, positions=self.positions, cell=self.cell, pbc=self.pbc)
        results: Dict[str, Any] = {}
        if self.energy is not None:
            results["energy"] = self.energy
        if self.forces is not None:
            results["forces"] = self.forces
        if self.stress is not None:
            results["stress"] = self.stress
        if results:
            atoms.calc = SinglePointCalculator(atoms, **results)
        atoms.info.update(self.info)
        return atoms

    @classmethod
    def from_atoms(cls, atoms: Atoms, id: str, info: Optional[Dict[str, Any]] = None) -> "Record":
        """Take labels from an attached (single-point) calculator, if any, without recomputing."""
        energy = forces = stress = None
        calc = atoms.calc
        if calc is not None:
            res = getattr(calc, "results", {}) or {}
            energy = res.get("energy", res.get("free_energy"))
            forces = res.get("forces")
            stress = res.get("stress")
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
        )
