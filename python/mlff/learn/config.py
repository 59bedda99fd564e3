"""The `mlff learn` configuration (YAML), validated by pydantic; unknown keys are refused.

::

    teacher: {name: emt}               # any `mlff label` teacher; settings: {...} go to its factory
    initial_data: data.db              # a labelled store, or leave it out and give initial_sampling
    initial_sampling: {rattle: 20, strain: 10, md_frames: 0}   # mlff label's sampling of `structures`
    structures: [start.xyz]            # exploration starts (files, g2 molecule names or elements)
    repeat: [1, 1, 1]                  # supercell of every structure
    model: train.yaml                  # an `mlff train` config (path or inline)
    members: 3                         # committee size (kind ace: 1, selection by gamma)
    explore: {engine: ase, temperatures: [300, 900], pressures: null, steps: 200, interval: 10}
    select: {lo: 0.05, hi: 0.5, max_per_iteration: 20, dedup: farthest_point}
    label: {executor: local, workers: 2, scheduler: null}
    stop: {max_iterations: 5, uncertain_fraction: 0.05}
    test_data: null                    # a teacher-labelled store for the report's test error
    output_dir: learn_output

Relative paths are relative to the config file's folder. The member configs take
``data.train``, ``run.output_dir``, ``run.seed`` (base + member index) and
``model.init_from`` (the member's previous checkpoint) from the loop.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Dict, List, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from ..data.sampling import SamplingConfig


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TeacherConfig(_Strict):
    name: str = Field("emt", description="emt, lammps-eam, lammps-snap, tblite, pyscf or 'module:factory'")
    settings: Dict[str, Any] = Field(default_factory=dict, description="keyword arguments of the teacher factory")


class ExploreConfig(_Strict):
    engine: Literal["ase", "lammps"] = Field("ase", description="who runs the MD")
    temperatures: List[float] = Field(default_factory=lambda: [300.0])
    pressures: Optional[List[float]] = Field(
        None, description="bar; every temperature at every pressure (NPT, Berendsen in ASE); null: NVT (Langevin)"
    )
    steps: int = Field(200, ge=1, description="MD steps per trajectory")
    interval: int = Field(10, ge=1, description="steps between frames judged by the committee")
    timestep_fs: float = Field(2.0, gt=0)
    friction: float = Field(0.02, gt=0, description="Langevin friction (1/fs)")
    taut_fs: float = Field(100.0, gt=0, description="NPT: thermostat time constant")
    taup_fs: float = Field(1000.0, gt=0, description="NPT: barostat time constant")
    compressibility_per_bar: float = Field(1e-6, gt=0, description="NPT: Berendsen compressibility")
    abort_above: Optional[float] = Field(
        None, gt=0, description="end a trajectory once a frame's deviation (or gamma) exceeds this: the "
        "model has left its data and the rest of the run would be unphysical"
    )
    device: str = "cpu"
    seed: int = 0

    @field_validator("temperatures")
    @classmethod
    def _some_temperature(cls, v: List[float]) -> List[float]:
        if not v or any(t <= 0 for t in v):
            raise ValueError(f"give at least one temperature, all > 0 K, got {v}")
        return v

    @model_validator(mode="after")
    def _frames(self) -> "ExploreConfig":
        if self.interval > self.steps:
            raise ValueError(f"interval ({self.interval}) > steps ({self.steps}): no frame would be judged")
        return self


class SelectConfig(_Strict):
    # committees: the force-deviation window (eV/Å); ACE loops: the gamma window instead
    lo: Optional[float] = Field(0.05, ge=0, description="eV/Å: max force deviation from which a frame is uncertain")
    hi: Optional[float] = Field(0.5, gt=0, description="eV/Å: from here a frame is discarded as unphysical")
    gamma_lo: Optional[float] = Field(None, ge=0, description="ACE: extrapolation grade from which a frame is selected")
    gamma_hi: Optional[float] = Field(None, gt=0, description="ACE: grade from which a frame is discarded")
    max_per_iteration: int = Field(20, ge=1)
    dedup: Literal["farthest_point", "none"] = Field(
        "farthest_point", description="how the cap picks frames: farthest-point on a radial descriptor, or the "
        "most uncertain ones"
    )
    dedup_min_distance: float = Field(
        0.0, ge=0, description="farthest-point: drop candidates closer than this (descriptor units) to a chosen one"
    )

    @model_validator(mode="after")
    def _windows(self) -> "SelectConfig":
        for lo, hi, what in ((self.lo, self.hi, "lo/hi"), (self.gamma_lo, self.gamma_hi, "gamma_lo/gamma_hi")):
            if lo is not None and hi is not None and lo >= hi:
                raise ValueError(f"select {what}: the trust window [{lo}, {hi}) is empty")
        return self


class LabelConfig(_Strict):
    executor: Literal["local", "dask"] = "local"
    workers: int = Field(2, ge=1, description="local: teacher processes")
    scheduler: Optional[str] = Field(None, description="dask: the scheduler address (tcp://host:8786)")

    @model_validator(mode="after")
    def _address(self) -> "LabelConfig":
        if self.executor == "dask" and not self.scheduler:
            raise ValueError("label.executor dask needs label.scheduler (or mlff learn --scheduler ADDRESS)")
        return self


class StopConfig(_Strict):
    max_iterations: int = Field(5, ge=1)
    uncertain_fraction: float = Field(
        0.05, ge=0, le=1, description="stop once fewer explored frames than this are untrusted (deviation >= lo)"
    )


class LearnConfig(_Strict):
    teacher: TeacherConfig = Field(default_factory=TeacherConfig)
    initial_data: Optional[str] = Field(None, description="labelled store (.db, .xyz, .h5) the first members train on")
    initial_sampling: Optional[SamplingConfig] = Field(
        None, description="without initial_data: label these samples of `structures` (mlff label's sampling)"
    )
    structures: List[str] = Field(description="starting structures of the exploration")
    repeat: List[int] = Field(default_factory=lambda: [1, 1, 1], description="supercell of every structure")
    model: Union[str, Dict[str, Any]] = Field(description="mlff train config (a path, or inline)")
    members: int = Field(3, ge=1, description="committee members (different seeds)")
    explore: ExploreConfig = Field(default_factory=ExploreConfig)
    select: SelectConfig = Field(default_factory=SelectConfig)
    label: LabelConfig = Field(default_factory=LabelConfig)
    stop: StopConfig = Field(default_factory=StopConfig)
    test_data: Optional[str] = None
    output_dir: str = "learn_output"
    # the config file's folder: an inline member config's relative paths start there
    _base: Path = PrivateAttr(default_factory=Path.cwd)

    @field_validator("structures")
    @classmethod
    def _some_structure(cls, v: List[str]) -> List[str]:
        if not v:
            raise ValueError("give at least one starting structure")
        return v

    @model_validator(mode="after")
    def _initial(self) -> "LearnConfig":
        if (self.initial_data is None) == (self.initial_sampling is None):
            raise ValueError("give exactly one of initial_data (a labelled store) and initial_sampling")
        return self

    def resolve_paths(self, base: Path) -> "LearnConfig":
        def fix(p: Optional[str]) -> Optional[str]:
            return p if p is None or os.path.isabs(p) else str((base / p).resolve())

        # structures may also be molecule names or elements: only existing files are made absolute
        structures = [fix(s) if (base / s).exists() else s for s in self.structures]
        model = fix(self.model) if isinstance(self.model, str) else self.model
        out = self.model_copy(update={
            "initial_data": fix(self.initial_data), "test_data": fix(self.test_data), "structures": structures,
            "model": model, "output_dir": fix(self.output_dir),
        })
        out._base = base
        return out

    def fingerprint(self) -> str:
        """Hash of what decides the results: a resumed run refuses a config that changes it.

        ``stop`` (a larger budget continues the run) and ``label`` (where the teacher runs
        does not change its labels) are left out.
        """
        data = self.model_dump(exclude={"stop", "label"})
        return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def load_learn_config(path: str | os.PathLike, scheduler: Optional[str] = None) -> LearnConfig:
    """Read a YAML config; ``scheduler`` (the CLI's ``--scheduler``) selects the Dask executor."""
    from ..training.config import read_yaml

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"config file {str(path)!r} does not exist")
    raw = read_yaml(path) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: the config must be a mapping (teacher, structures, model, ...)")
    if scheduler:
        raw["label"] = {**(raw.get("label") or {}), "executor": "dask", "scheduler": scheduler}
    try:
        cfg = LearnConfig(**raw)
    except ValidationError as exc:
        raise ValueError(f"{path}: invalid learn config:\n{exc}") from None
    return cfg.resolve_paths(path.parent.resolve())


#: the member-config keys the loop sets itself
LOOP_OWNED = ("data.train", "run.output_dir", "run.seed (base + member)", "model.init_from (after the first iteration)")


def member_config(cfg: LearnConfig, train_store: Path, output_dir: Path, member: int,
                  init_from: Optional[str]) -> Any:
    """The :class:`mlff.training.config.TrainConfig` of one member in one iteration."""
    from ..training.config import TrainConfig, read_yaml

    if isinstance(cfg.model, str):
        base = Path(cfg.model).parent
        raw = read_yaml(Path(cfg.model)) or {}
        where = cfg.model
    else:
        base = cfg._base
        raw = json.loads(json.dumps(cfg.model))  # a deep copy: the learn config is never changed
        where = "model (inline)"
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: a training config must be a mapping (data, model, run, ...)")
    data = dict(raw.get("data") or {})
    data["train"] = str(train_store)
    run = dict(raw.get("run") or {})
    seed = int(run.get("seed", 0)) + member
    run.update(output_dir=str(output_dir), seed=seed, progress=False)
    model = dict(raw.get("model") or {})
    if init_from is not None:
        model["init_from"] = init_from
    raw = {**raw, "data": data, "run": run, "model": model}
    try:
        train_cfg = TrainConfig(**raw)
    except ValidationError as exc:
        raise ValueError(f"{where}: invalid training config for the members:\n{exc}") from None
    return train_cfg.resolve_paths(base.resolve())


def is_ace(cfg: LearnConfig) -> bool:
    """Whether the members are ACE fits (selection by extrapolation grade, one member)."""
    from ..training.config import ACE_FIT_KIND

    if isinstance(cfg.model, str):
        from ..training.config import read_yaml

        raw = read_yaml(Path(cfg.model)) or {}
    else:
        raw = cfg.model
    return ((raw.get("model") or {}).get("kind") if isinstance(raw, dict) else None) == ACE_FIT_KIND


def check_consistent(cfg: LearnConfig) -> None:
    """Refuse combinations that cannot work, before anything runs."""
    if isinstance(cfg.model, str) and not Path(cfg.model).exists():
        raise FileNotFoundError(f"model: training config {cfg.model!r} does not exist")
    ace = is_ace(cfg)
    if ace:
        if cfg.members != 1:
            raise ValueError("ACE members are selected by their extrapolation grade: set members: 1")
        if cfg.select.gamma_lo is None or cfg.select.gamma_hi is None:
            raise ValueError("an ACE loop selects by extrapolation grade: give select.gamma_lo and gamma_hi "
                             "(e.g. 2 and 10)")
        given = {k for k in ("lo", "hi") if k in cfg.select.model_fields_set and getattr(cfg.select, k) is not None}
        if given:  # the force-deviation window has defaults; only a window the user wrote is refused
            raise ValueError(f"select.{'/'.join(sorted(given))} (force deviation) do not apply to an ACE loop, "
                             "which selects by select.gamma_lo/gamma_hi")
    else:
        if cfg.members < 2:
            raise ValueError("a committee needs at least 2 members (their disagreement is the uncertainty)")
        if cfg.select.lo is None or cfg.select.hi is None:
            raise ValueError("select.lo and select.hi (eV/Å, the force-deviation trust window) are needed")
        if cfg.select.gamma_lo is not None or cfg.select.gamma_hi is not None:
            raise ValueError("select.gamma_lo/gamma_hi apply to ACE models (model.kind: ace) only")
    if cfg.explore.engine == "lammps" and ace:
        raise ValueError("explore.engine lammps explores with committees; an ACE loop uses engine ase")
    if cfg.explore.engine == "lammps" and cfg.explore.pressures:
        raise ValueError("explore.engine lammps runs NVT only here; use engine ase for pressures")
