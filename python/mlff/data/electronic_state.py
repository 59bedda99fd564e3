"""Total charge and spin multiplicity of a structure, as quantum-chemical teachers take them.

They come from ``atoms.info["charge"]`` and ``atoms.info["mult"]`` (the keys a
:class:`~mlff.data.records.Record` writes back there). A missing charge is neutral; a
missing multiplicity is the lowest one the electron count allows (singlet for an even
number of electrons, doublet for an odd one). Every teacher that reads them uses this one
rule, so a record states exactly the state its labels were computed for.
"""

from __future__ import annotations

from typing import Any, Tuple

import numpy as np
from ase import Atoms


def stated_state(atoms: Atoms) -> Tuple[Any, Any]:
    """The charge and multiplicity as ``atoms.info`` states them (unchecked; None where absent).

    What calculators compare to notice a change of state (ASE's own check ignores
    ``atoms.info``), without failing on a state that was already refused.
    """
    return atoms.info.get("charge"), atoms.info.get("mult")


def charge_and_mult(atoms: Atoms) -> Tuple[int, int]:
    """``(total charge, multiplicity 2S+1)`` of ``atoms``, checked against its electron count."""
    charge = atoms.info.get("charge", 0)
    if charge is None:
        charge = 0
    if float(charge) != round(float(charge)):
        raise ValueError(f"total charge {charge!r} is not an integer; a quantum-chemical teacher needs whole electrons")
    charge = int(round(float(charge)))
    n_electrons = int(np.sum(atoms.numbers)) - charge
    if n_electrons < 0:
        raise ValueError(f"total charge {charge} removes more electrons than the structure has ({int(np.sum(atoms.numbers))})")
    mult = atoms.info.get("mult")
    if mult is None:
        return charge, 1 if n_electrons % 2 == 0 else 2
    if float(mult) != round(float(mult)) or int(mult) < 1:
        raise ValueError(f"spin multiplicity {mult!r} is not a positive integer (2S+1: 1 singlet, 2 doublet, ...)")
    mult = int(mult)
    if (n_electrons - (mult - 1)) % 2:
        raise ValueError(
            f"multiplicity {mult} is impossible with {n_electrons} electrons (charge {charge}): "
            f"{'odd' if n_electrons % 2 else 'even'} electron counts need "
            f"{'even (2, 4, ...)' if n_electrons % 2 else 'odd (1, 3, ...)'} multiplicities"
        )
    return charge, mult
