"""ase.Atoms <-> LAMMPS: the box convention and data files.

LAMMPS wants the cell as a lower-triangular matrix (a along x, b in the xy plane). Any
right-handed cell is brought there by a rotation ``R`` (``r_lammps = r_ase @ R``);
vectors computed by LAMMPS come back as ``v_ase = v_lammps @ R.T`` and tensors as
``R @ T @ R.T``. Non-periodic directions are shrink-wrapped with a minimum (boundary m), so the box
stays large enough for LAMMPS's neighbour bins.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np

from ..units import EV_IN_KCAL_PER_MOL_LAMMPS as EV_IN_KCAL_PER_MOL
from ..units import FS_IN_ASE_TIME, LAMMPS_ENERGY_FACTOR, LAMMPS_TIME_IN_FS, lammps_energy_factor

UNIT_STYLES = tuple(LAMMPS_ENERGY_FACTOR)


def energy_unit_per_ev(units: str) -> float:
    return lammps_energy_factor(units)


def velocity_scale(units: str) -> float:
    """ASE velocity (Å per ASE time unit) -> LAMMPS velocity (Å per ps or per fs)."""
    lammps_energy_factor(units)
    return FS_IN_ASE_TIME * LAMMPS_TIME_IN_FS[units]


@dataclass
class LammpsFrame:
    """A structure expressed in LAMMPS's box convention."""

    positions: np.ndarray  # [N, 3] in the LAMMPS frame
    lo: np.ndarray  # xlo, ylo, zlo
    hi: np.ndarray  # xhi, yhi, zhi
    tilt: Optional[np.ndarray]  # xy, xz, yz (None: orthogonal box)
    boundary: str  # e.g. "p p p" or "s s s"
    rotation: np.ndarray  # r_lammps = r_ase @ rotation

    @property
    def volume(self) -> float:
        return float(np.prod(self.hi - self.lo))


def lammps_frame(atoms, margin: float = 6.0) -> LammpsFrame:
    """Box, positions and rotation of ``atoms`` in LAMMPS's convention."""
    pos = np.asarray(atoms.get_positions(), dtype=np.float64)
    pbc = np.asarray(atoms.get_pbc(), dtype=bool)
    cell = np.asarray(atoms.get_cell(), dtype=np.float64)
    if not pbc.any():
        lo = pos.min(axis=0) - margin if len(pos) else np.zeros(3)
        hi = pos.max(axis=0) + margin if len(pos) else np.ones(3)
        return LammpsFrame(pos.copy(), lo, hi, None, "m m m", np.eye(3))
    if not pbc.all():
        off = cell - np.diag(np.diag(cell))
        if np.abs(off).max() > 1e-12 or np.any(np.diag(cell)[pbc] <= 0):
            raise ValueError(
                "partially periodic structures must have an orthogonal cell aligned with x, y, z"
            )
        lo = np.zeros(3)
        hi = np.diag(cell).copy()
        for k in range(3):
            if not pbc[k]:
                lo[k] = pos[:, k].min() - margin
                hi[k] = pos[:, k].max() + margin
        boundary = " ".join("p" if p else "m" for p in pbc)
        return LammpsFrame(pos.copy(), lo, hi, None, boundary, np.eye(3))

    if np.linalg.det(cell) <= 0:
        raise ValueError(
            "LAMMPS needs a right-handed cell (positive determinant); swap two cell vectors "
            "(and the matching position columns) first"
        )
    a, b, c = cell
    lx = np.linalg.norm(a)
    xy = b @ a / lx
    ly = np.sqrt(b @ b - xy**2)
    xz = c @ a / lx
    yz = (b @ c - xy * xz) / ly
    lz = np.sqrt(c @ c - xz**2 - yz**2)
    cell_lmp = np.array([[lx, 0.0, 0.0], [xy, ly, 0.0], [xz, yz, lz]])
    rotation = np.linalg.solve(cell, cell_lmp)  # cell @ R = cell_lmp
    tilt = np.array([xy, xz, yz])
    if np.abs(tilt).max() < 1e-12 * max(lx, ly, lz):
        tilt = None
    return LammpsFrame(pos @ rotation, np.zeros(3), np.array([lx, ly, lz]), tilt, "p p p", rotation)


def type_symbols(atoms, elements: Optional[Sequence[str]] = None) -> List[str]:
    """LAMMPS type order: ``elements`` if given, else the structure's elements by Z."""
    from ase.data import atomic_numbers

    present = sorted(set(atoms.get_chemical_symbols()), key=lambda s: atomic_numbers[s])
    if elements is None:
        return present
    missing = [s for s in present if s not in elements]
    if missing:
        raise ValueError(f"elements {missing} of the structure are not in the type list {list(elements)}")
    return list(elements)


def write_data(
    path,
    atoms,
    elements: Optional[Sequence[str]] = None,
    units: str = "metal",
    frame: Optional[LammpsFrame] = None,
) -> LammpsFrame:
    """Write ``atoms`` as a LAMMPS data file (atom_style atomic; velocities if set)."""
    from ase.data import atomic_masses, atomic_numbers

    frame = frame or lammps_frame(atoms)
    symbols = type_symbols(atoms, elements)
    type_of = {s: k + 1 for k, s in enumerate(symbols)}
    lines = [f"# written by mlff.lammps for {atoms.get_chemical_formula()}", ""]
    lines.append(f"{len(atoms)} atoms")
    lines.append(f"{len(symbols)} atom types")
    lines.append("")
    for k, name in enumerate("xyz"):
        lines.append(f"{frame.lo[k]:.17g} {frame.hi[k]:.17g} {name}lo {name}hi")
    if frame.tilt is not None:
        lines.append(f"{frame.tilt[0]:.17g} {frame.tilt[1]:.17g} {frame.tilt[2]:.17g} xy xz yz")
    lines += ["", "Masses", ""]
    for s in symbols:
        lines.append(f"{type_of[s]} {atomic_masses[atomic_numbers[s]]:.10g}  # {s}")
    lines += ["", "Atoms # atomic", ""]
    for i, (s, r) in enumerate(zip(atoms.get_chemical_symbols(), frame.positions)):
        lines.append(f"{i + 1} {type_of[s]} {r[0]:.17g} {r[1]:.17g} {r[2]:.17g}")
    v = atoms.get_velocities()
    if v is not None and np.abs(v).max() > 0:
        # ASE: Å per ASE time unit; metal: Å/ps, real: Å/fs
        v = (v @ frame.rotation) * velocity_scale(units)
        lines += ["", "Velocities", ""]
        for i, vi in enumerate(v):
            lines.append(f"{i + 1} {vi[0]:.17g} {vi[1]:.17g} {vi[2]:.17g}")
    Path(path).write_text("\n".join(lines) + "\n")
    return frame
