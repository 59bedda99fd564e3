"""PySCF Kohn-Sham DFT as an ASE calculator: energy, analytic forces, Mulliken charges.

Molecules only (PySCF's periodic code is another program). Charge and multiplicity come
from ``atoms.info`` (:mod:`.electronic_state`); closed shells run restricted (RKS), open
shells unrestricted (UKS). Choices that make the labels fit for training:

- forces include the grid response: without it they are not the exact derivative of
  the energy on the moving integration grid (errors of ~1e-4 eV/Å), and a model trained
  on energies and forces would be fed two slightly different surfaces;
- a tight SCF threshold (1e-10 Eh), so force noise stays far below what a model resolves;
- an SCF that does not converge is an error, never a label;
- no checkpoint file (PySCF writes one per SCF to its temporary folder otherwise).
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator, CalculationFailed, all_changes
from ase.units import Bohr, Hartree

from .electronic_state import charge_and_mult, stated_state
from .errors import MissingPackageError


def import_pyscf():
    """The pyscf package, or an ImportError that says how to get it."""
    try:
        import pyscf  # noqa: F401
        from pyscf import dft, gto  # noqa: F401
    except ImportError as exc:
        raise MissingPackageError(
            "the pyscf teacher needs the optional package pyscf (pip install pyscf==2.14.0)"
        ) from exc
    return pyscf


class PySCFCalculator(Calculator):
    """Kohn-Sham DFT (default PBE/def2-SVP) for molecules through PySCF."""

    implemented_properties = ["energy", "free_energy", "forces", "charges"]
    default_parameters: Dict[str, Any] = {
        "xc": "PBE",
        "basis": "def2-SVP",
        "conv_tol": 1e-10,  # Eh
        "grid_level": 3,  # PySCF's default
        "max_cycle": 100,
        "max_memory": 4000,  # MB
    }

    def __init__(self, **kwargs: Any) -> None:
        import_pyscf()
        super().__init__(**kwargs)
        self._mf = None  # the converged SCF of self.atoms, for a later forces request

    def reset(self) -> None:
        super().reset()
        self._mf = None

    def check_state(self, atoms: Atoms, tol: float = 1e-15) -> List[str]:
        changes = super().check_state(atoms, tol)
        # ASE does not compare atoms.info, where charge and multiplicity live
        if self.atoms is not None and stated_state(atoms) != stated_state(self.atoms):
            changes.append("initial_charges")
        return changes

    def _scf(self, atoms: Atoms):
        from pyscf import dft, gto

        if atoms.pbc.any():
            raise CalculationFailed(
                "the pyscf teacher computes molecules; this structure is periodic (pbc "
                f"{atoms.pbc.tolist()}): use a periodic teacher (e.g. --teacher tblite) or set pbc False"
            )
        charge, mult = charge_and_mult(atoms)
        p = self.parameters
        mol = gto.M(
            atom=[(s, tuple(x)) for s, x in zip(atoms.get_chemical_symbols(), atoms.positions)],
            unit="Angstrom", basis=p.basis, charge=charge, spin=mult - 1, verbose=0,
            max_memory=p.max_memory,
        )
        mf = (dft.RKS if mult == 1 else dft.UKS)(mol)
        mf.xc = p.xc
        mf.conv_tol = p.conv_tol
        mf.max_cycle = p.max_cycle
        mf.grids.level = p.grid_level
        mf.chkfile = None
        mf.verbose = 0
        mf.kernel()
        if not mf.converged:
            raise CalculationFailed(
                f"PySCF {p.xc}/{p.basis} SCF did not converge in {p.max_cycle} cycles for "
                f"{atoms.get_chemical_formula()} (charge {charge}, multiplicity {mult}); no label is written"
            )
        return mf

    def calculate(
        self,
        atoms: Optional[Atoms] = None,
        properties: Optional[List[str]] = None,
        system_changes: List[str] = all_changes,
    ) -> None:
        super().calculate(atoms, properties, system_changes)
        properties = properties or ["energy"]
        if self._mf is None or system_changes:
            self._mf = self._scf(self.atoms)
            self.results["energy"] = self.results["free_energy"] = float(self._mf.e_tot) * Hartree
            # Mulliken charges count the ECP core charges too, so they sum to the total charge
            self.results["charges"] = np.asarray(self._mf.mulliken_pop(verbose=0)[1], dtype=np.float64)
        if "forces" in properties and "forces" not in self.results:
            grad = self._mf.nuc_grad_method()
            grad.grid_response = True
            grad.verbose = 0
            self.results["forces"] = -np.asarray(grad.kernel(), dtype=np.float64) * Hartree / Bohr
