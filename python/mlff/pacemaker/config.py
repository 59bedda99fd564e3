"""The `mlff pacemaker` configuration (YAML), validated by pydantic; unknown keys are refused.

One :class:`TrainingConfig` says what to fit (data, elements, cutoff, basis size), how
(loss weights, weighting, ladder, optimizer, ZBL core), with which tools (the pacemaker
executables) and under which limits (``min_structures``, ``timeout``). The values reach
pacemaker through a Jinja2 template of its ``input.yaml`` (:mod:`.render`); the default
template ships in this package.

Loss weights (:class:`LossWeights`) are mlff's: ``energy`` on the squared error of the
energy per atom (eV²) and ``forces`` on the squared error of one force *component*
((eV/Å)²), as in ``mlff train``. pacemaker's loss is
``(1 − κ) Σ_s w_s (ΔE_s/N_s)² + κ Σ_i w_i |ΔF_i|²`` with weights normalised to sum 1
(uniform weighting: means over structures and over atoms), and ``|ΔF|²`` sums three
components, so the same minimum is reached with
``κ = (forces/3) / (energy + forces/3)`` (defaults 1 and 100: κ = 100/103 ≈ 0.971).
Only the ratio matters (the scale moves the loss relative to the L1/L2 terms, which
are given as pacemaker's own coefficients). pacemaker's ACE loss has no stress term
(python-ace 0.4, pyace and tensorpot backends): the stress weight is kept for the
record (rendered into the input's ``metadata``) and cannot change the fit.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any, Dict, List, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

class ExecutableNotFoundError(FileNotFoundError):
    """A pacemaker tool is not installed where the config says (or not on PATH)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LossWeights(_Strict):
    """mlff's loss weights, mapped to pacemaker's κ (see the module docstring)."""

    energy: float = Field(1.0, gt=0, description="on the (E/atom) squared error, eV^2")
    forces: float = Field(100.0, gt=0, description="on the force-component squared error, (eV/Å)^2")
    stress: float = Field(10.0, gt=0, description="recorded only: pacemaker's ACE loss has no stress term")
    L1_coeffs: float = Field(1e-8, ge=0, description="pacemaker's L1 regularisation of the basis coefficients")
    L2_coeffs: float = Field(1e-8, ge=0, description="pacemaker's L2 regularisation of the basis coefficients")

    @property
    def kappa(self) -> float:
        """pacemaker's κ: the force share of its loss, with |ΔF|² = 3 × the component mean."""
        per_atom_forces = self.forces / 3.0
        return per_atom_forces / (self.energy + per_atom_forces)


class EnergyWeighting(_Strict):
    """pacemaker's ``EnergyBasedWeightingPolicy`` (structures near the lowest energy weigh more)."""

    DElow: float = Field(1.0, gt=0)
    DEup: float = Field(10.0, gt=0)
    DFup: float = Field(50.0, gt=0)
    DE: float = Field(1.0, gt=0)
    DF: float = Field(1.0, gt=0)
    wlow: float = Field(0.75, gt=0, lt=1)
    energy: Literal["convex_hull", "cohesive"] = "convex_hull"
    reftype: Literal["all", "calculator"] = "all"
    seed: int = 42

    def to_pacemaker(self) -> Dict[str, Any]:
        return {"type": "EnergyBasedWeightingPolicy", **self.model_dump()}


class BasisSettings(_Strict):
    """The ACE basis pacemaker builds (one set of settings for every element and bond)."""

    number_of_functions_per_element: int = Field(300, ge=1, description="basis size per element")
    nradmax_by_orders: List[int] = Field([15, 3, 2, 1, 1], min_length=1)
    lmax_by_orders: List[int] = Field([0, 2, 2, 1, 1], min_length=1)
    ndensity: int = Field(2, ge=1, description="densities of the Finnis-Sinclair embedding")
    fs_parameters: Optional[List[float]] = Field(
        None, description="[w0, m0, w1, m1, ...]; default [1, 1, 1, 0.5, ...] for ndensity densities"
    )
    radbase: Literal["SBessel", "ChebExpCos", "ChebPow"] = "SBessel"
    radparameters: List[float] = Field([5.25], min_length=1)
    dcut: float = Field(0.01, gt=0)

    @model_validator(mode="after")
    def _orders(self) -> "BasisSettings":
        if len(self.nradmax_by_orders) != len(self.lmax_by_orders):
            raise ValueError(
                f"nradmax_by_orders ({len(self.nradmax_by_orders)} orders) and lmax_by_orders "
                f"({len(self.lmax_by_orders)} orders) must have one entry per body order"
            )
        if self.fs_parameters is not None and len(self.fs_parameters) != 2 * self.ndensity:
            raise ValueError(f"fs_parameters needs 2 × ndensity = {2 * self.ndensity} numbers, "
                             f"got {len(self.fs_parameters)}")
        return self

    def embedding(self) -> Dict[str, Any]:
        fs = self.fs_parameters
        if fs is None:
            fs = [1.0, 1.0] + [1.0, 0.5] * (self.ndensity - 1)
        return {"npot": "FinnisSinclairShiftedScaled", "fs_parameters": list(fs), "ndensity": self.ndensity}


class DeltaLearning(_Strict):
    """The ZBL reference that the ACE is blended into at short distances.

    ``r_in: auto`` is pacemaker's ``repulsion: auto`` (the inner cutoff from the data's
    minimum distance per bond, set after the fit); a number sets ``r_in``/``delta_in``
    with ``inner_cutoff_type: zbl`` on every bond before the fit.
    """

    kind: Literal["zbl", "none"] = "zbl"
    r_in: Union[Literal["auto"], float] = "auto"
    delta_in: float = Field(0.1, gt=0, description="Å over which ACE is blended into ZBL (with a numeric r_in)")

    @field_validator("r_in")
    @classmethod
    def _positive(cls, value: Union[str, float]) -> Union[str, float]:
        if not isinstance(value, str) and value <= 0:
            raise ValueError("r_in must be 'auto' or a positive distance in Å")
        return value


class FitSettings(_Strict):
    maxiter: int = Field(1500, ge=1, description="optimizer iterations (per ladder step)")
    optimizer: Literal["BFGS", "L-BFGS-B"] = "BFGS"
    ladder_step: Optional[Union[int, float]] = Field(
        None, description="functions added per ladder step (int) or a fraction of the current size (float < 1)"
    )
    ladder_type: Literal["body_order", "power_order"] = "power_order"
    batch_size: int = Field(100, ge=1, description="structures per batch (tensorpot backend)")
    test_size: float = Field(0.1, ge=0, lt=1, description="fraction of the structures held out by pacemaker")
    evaluator: Literal["pyace", "tensorpot"] = Field(
        "pyace", description="pyace: no TensorFlow needed (slow finite-difference BFGS); tensorpot: TensorFlow"
    )
    display_step: int = Field(50, ge=1)
    seed: int = 42

    @field_validator("ladder_step")
    @classmethod
    def _ladder(cls, value: Optional[Union[int, float]]) -> Optional[Union[int, float]]:
        if value is not None and value <= 0:
            raise ValueError("ladder_step must be positive")
        return value


class Pruning(_Strict):
    """Select the most informative structures (D-optimality, MaxVol) before the fit (``pace_select``).

    The B-projections come from the target basis (``pacemaker --dry-run``'s
    ``target_potential.yaml``) evaluated on the data. MaxVol keeps the structures holding
    the active set, at most about as many as the basis has functions per element, so a
    small basis keeps few structures. ``min_structures`` applies to the data before pruning.
    """

    max_structures: int = Field(ge=1, description="keep at most this many structures")
    gamma_tolerance: float = Field(1.01, gt=1)
    maxvol_iters: int = Field(300, ge=1)


class Executables(_Strict):
    """Where the pacemaker tools are: a name looked up on PATH (and next to the running
    Python, where a virtual environment keeps its console scripts) or a path."""

    pacemaker: str = "pacemaker"
    pace_yaml2yace: str = "pace_yaml2yace"
    pace_activeset: str = "pace_activeset"
    pace_select: str = "pace_select"

    @field_validator("pacemaker", "pace_yaml2yace", "pace_activeset", "pace_select")
    @classmethod
    def _given_paths_exist(cls, value: str) -> str:
        # ExecutableNotFoundError is no ValueError: pydantic lets it through as it is
        if os.sep in value or (os.altsep and os.altsep in value):
            check_executable(Path(value), value)
        return value

    def resolve(self, tool: str) -> Path:
        """The executable of ``tool`` (a field name) as an absolute path, or an
        :class:`ExecutableNotFoundError` saying where it was looked for."""
        value = getattr(self, tool)
        if os.sep in value or (os.altsep and os.altsep in value):
            return check_executable(Path(value), value)
        found = shutil.which(value)
        if found is None:
            beside_python = Path(sys.executable).parent / value
            if beside_python.is_file() and os.access(beside_python, os.X_OK):
                found = str(beside_python)
        if found is None:
            raise ExecutableNotFoundError(
                f"{tool} executable {value!r} not found on PATH or in {Path(sys.executable).parent}; "
                f"install python-ace (pip install python-ace; academic licence) or set "
                f"executables.{tool} to its path"
            )
        return Path(found).absolute()


def check_executable(path: Path, given: str) -> Path:
    if not path.exists():
        raise ExecutableNotFoundError(f"executable {given!r} does not exist")
    if not path.is_file() or not os.access(path, os.X_OK):
        raise ExecutableNotFoundError(f"{given!r} is not an executable file")
    return path.absolute()


class TrainingConfig(_Strict):
    """Everything `mlff pacemaker config.yaml` needs (paths relative to the config file)."""

    database: Path = Field(description="labelled structures: ASE db (.db), extxyz (.xyz) or mlff HDF5 (.h5)")
    selection: Optional[str] = Field(None, description="ASE-db query (databases only)")
    output: Path = Field(description="where the fitted .yace goes (written only on success)")
    workdir: Optional[Path] = Field(
        None, description="parent of the fresh work directory (default: next to output); kept for inspection"
    )
    elements: Optional[List[str]] = Field(None, description="default: the elements of the data")
    cutoff: float = Field(7.0, gt=0, description="rcut, Å")
    basis: BasisSettings = Field(default_factory=BasisSettings)
    loss: LossWeights = Field(default_factory=LossWeights)
    weighting: Optional[EnergyWeighting] = Field(None, description="None: uniform (pacemaker's default)")
    fit: FitSettings = Field(default_factory=FitSettings)
    delta_learning: DeltaLearning = Field(default_factory=DeltaLearning)
    reference_energies: Optional[Dict[str, float]] = Field(
        None, description="isolated-atom energies (eV) subtracted from the energies (pacemaker's energy_corrected, "
        "which the potential then predicts)"
    )
    missing_forces: Literal["refuse", "skip"] = Field(
        "refuse", description="structures without forces (or energy): refuse the data set, or skip them"
    )
    min_structures: int = Field(50, ge=1, description="refuse to fit on fewer structures")
    prune_with_activeset: Optional[Pruning] = None
    activeset: bool = Field(
        False, description="also write the active set (.asi) and the B-basis .yaml it belongs to (extrapolation grades)"
    )
    predict: bool = Field(True, description="pacemaker's predictions and parity report after the fit")
    template: Optional[Path] = Field(None, description="Jinja2 template of input.yaml (default: the shipped one)")
    executables: Executables = Field(default_factory=Executables)
    timeout: Optional[float] = Field(None, gt=0, description="seconds for the whole pacemaker run")

    @field_validator("output")
    @classmethod
    def _yace(cls, value: Path) -> Path:
        if Path(value).suffix != ".yace":
            raise ValueError(f"output {value} must be a .yace file")
        return value

    @field_validator("elements")
    @classmethod
    def _elements(cls, value: Optional[List[str]]) -> Optional[List[str]]:
        if value is None:
            return None
        from ase.data import chemical_symbols

        unknown = [s for s in value if s not in chemical_symbols[1:]]
        if unknown:
            raise ValueError(f"unknown element symbol(s) {unknown}")
        if len(set(value)) != len(value):
            raise ValueError(f"elements repeat: {value}")
        return sorted(value)

    @field_validator("reference_energies")
    @classmethod
    def _references(cls, value: Optional[Dict[str, float]]) -> Optional[Dict[str, float]]:
        if value is not None:
            from ase.data import chemical_symbols

            unknown = [s for s in value if s not in chemical_symbols[1:]]
            if unknown:
                raise ValueError(f"reference_energies: unknown element symbol(s) {unknown}")
        return value

    @field_validator("template")
    @classmethod
    def _template_placeholders(cls, value: Optional[Path]) -> Optional[Path]:
        if value is not None:
            from .render import check_template

            check_template(Path(value))
        return value

    def resolve_paths(self, base: Path) -> "TrainingConfig":
        """Relative paths taken relative to ``base`` (the config file's folder)."""

        def fix(p: Optional[Path]) -> Optional[Path]:
            return None if p is None or p.is_absolute() else base / p

        update: Dict[str, Any] = {}
        for name in ("database", "output", "workdir", "template"):
            value = getattr(self, name)
            if value is not None and not value.is_absolute():
                update[name] = fix(value)
        return self.model_copy(update=update)


def load_config(path: str | os.PathLike) -> TrainingConfig:
    """Read a YAML config; errors name the file and the offending keys or lines."""
    from ..training.config import read_yaml

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"config file {str(path)!r} does not exist")
    raw = read_yaml(path) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: the config must be a mapping (database, output, fit, ...)")
    base = path.parent.resolve()
    # relative executable and template paths are checked against the config's folder
    exe = raw.get("executables")
    if isinstance(exe, dict):
        raw["executables"] = {k: (str(base / v) if isinstance(v, str) and os.sep in v and not os.path.isabs(v)
                                  else v) for k, v in exe.items()}
    if isinstance(raw.get("template"), str) and not os.path.isabs(raw["template"]):
        raw["template"] = str(base / raw["template"])
    try:
        cfg = TrainingConfig(**raw)
    except ValidationError as exc:
        raise ValueError(f"{path}: invalid pacemaker config:\n{exc}") from None
    return cfg.resolve_paths(base)
