"""Units: the one place where mlff's units (eV, Å, e) meet the engines' units.

The contract speaks eV, Å, eV/Å and eV/Å³. Every Python engine adaptor converts
with the factors below; the LAMMPS plugin uses LAMMPS's own factors
(``utils::get_conversion_factor``), which the tests compare with these.

Factors are derived from ASE's CODATA constants, so energies from OpenMM and from the
ASE calculator agree to the last digit. Each name reads "one X in Y".
"""

from __future__ import annotations

from typing import Dict

import numpy as np
from ase import units as _ase

#: 1 eV in kJ/mol (OpenMM energies).
EV_IN_KJ_PER_MOL: float = 1.0 / (_ase.kJ / _ase.mol)
#: 1 eV in kcal/mol as LAMMPS ``units real`` defines it (LAMMPS's METAL2REAL energy
#: factor, 23.060549); ASE's CODATA value differs in the 7th digit.
EV_IN_KCAL_PER_MOL_LAMMPS: float = 23.060549
#: 1 eV in kcal/mol from ASE's constants (for users' own conversions).
EV_IN_KCAL_PER_MOL: float = 1.0 / (_ase.kcal / _ase.mol)
#: 1 nm in Å (OpenMM lengths).
NM_IN_ANGSTROM: float = 10.0
#: 1 fs in ASE time units (Å sqrt(amu/eV)).
FS_IN_ASE_TIME: float = _ase.fs
#: 1 ps in ASE time units.
PS_IN_ASE_TIME: float = 1000.0 * _ase.fs
#: 1 eV/Å³ in bar.
EV_PER_A3_IN_BAR: float = 1.0 / _ase.bar
#: 1 bohr in Å and 1 hartree in eV (quantum-chemistry teachers, D3 reference data).
BOHR_IN_ANGSTROM: float = _ase.Bohr
HARTREE_IN_EV: float = _ase.Hartree

#: Energy factor (eV -> engine unit) by LAMMPS unit style; others are refused.
LAMMPS_ENERGY_FACTOR: Dict[str, float] = {"metal": 1.0, "real": EV_IN_KCAL_PER_MOL_LAMMPS}
#: One LAMMPS time unit in fs, by unit style.
LAMMPS_TIME_IN_FS: Dict[str, float] = {"metal": 1000.0, "real": 1.0}


def lammps_energy_factor(units: str) -> float:
    """eV -> LAMMPS energy unit for ``units`` (metal or real), refusing the rest."""
    try:
        return LAMMPS_ENERGY_FACTOR[units]
    except KeyError:
        raise ValueError(
            f"mlff supports LAMMPS 'units metal' (eV, Å) and 'units real' (kcal/mol, Å), not {units!r}"
        ) from None


def stress_from_virial(virial, volume: float):
    """Cauchy stress (eV/Å³, ASE sign: positive = tensile) from the contract virial.

    The contract virial is ``W = -sum r_ij (x) dE/dr_ij``; ASE's stress is ``-W / V``
    and LAMMPS's pressure tensor (virial part) is ``+W / V``. Works on torch tensors
    and numpy arrays alike.
    """
    return -virial / volume


def pressure_bar_from_stress(stress_voigt: np.ndarray) -> float:
    """Hydrostatic pressure in bar from an ASE Voigt stress (eV/Å³): p = -tr(σ)/3."""
    return float(-np.sum(np.asarray(stress_voigt)[:3]) / 3.0 * EV_PER_A3_IN_BAR)
