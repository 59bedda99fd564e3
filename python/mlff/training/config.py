"""The `mlff train` configuration (YAML), validated by pydantic; unknown keys are refused.

The ``model:`` block is ``{kind, elements, <options of that kind>}``: ``kind`` selects the
class from :data:`mlff.models.MODEL_REGISTRY` and the class's own ``Options`` model
validates the rest. Physics terms the network does not learn are given as
``dispersion:`` (a D3(BJ) spec) and ``terms:`` (a list of specs, see
:mod:`mlff.physics.terms`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, List, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..models import DEFAULT_MODEL_KIND, model_class


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataConfig(_Strict):
    train: str = Field(description="dataset (.db, .xyz, .h5)")
    valid: Optional[str] = Field(None, description="separate validation set; else split from train")
    test: Optional[str] = None
    valid_fraction: float = Field(0.1, ge=0, lt=1)
    test_fraction: float = Field(0.0, ge=0, lt=1)
    split_seed: int = 0
    on_invalid: Literal["refuse", "skip"] = "refuse"
    min_structures: int = Field(10, ge=1, description="refuse to train on fewer valid structures")
    selection: Optional[str] = Field(None, description="ASE-db query applied to the training store")


class ModelConfig(BaseModel):
    """``kind`` and ``elements``; every other key is an option of that kind's model class.

    After validation the options hold the class's defaults too, so the stored config
    says exactly what was built.
    """

    # the kind's Options model refuses unknown keys (see _kind_options)
    model_config = ConfigDict(extra="allow")

    kind: str = DEFAULT_MODEL_KIND
    elements: Optional[List[Union[str, int]]] = Field(None, description="default: the elements of the data")

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, v: str) -> str:
        model_class(v)
        return v

    @model_validator(mode="after")
    def _kind_options(self) -> "ModelConfig":
        options = model_class(self.kind).validate_options(self.__pydantic_extra__ or {})
        self.__pydantic_extra__ = options
        return self

    @property
    def options(self) -> Dict[str, Any]:
        """The kind-specific options (defaults filled in)."""
        return dict(self.__pydantic_extra__ or {})


class LossConfig(_Strict):
    energy_weight: float = Field(1.0, ge=0, description="on (E/atom) squared error, eV^2")
    forces_weight: float = Field(10.0, ge=0, description="on force-component squared error, (eV/Å)^2")
    stress_weight: float = Field(0.0, ge=0, description="on stress-component squared error, (eV/Å^3)^2")


class OptimConfig(_Strict):
    lr: float = Field(2e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0, description="not applied to embeddings, shifts and biases")
    betas: List[float] = Field(default_factory=lambda: [0.9, 0.999], min_length=2, max_length=2)
    grad_clip: Optional[float] = Field(10.0, gt=0, description="max gradient norm; null = off")


class ScheduleConfig(_Strict):
    kind: Literal["cosine", "plateau", "constant"] = "cosine"
    warmup_steps: int = Field(0, ge=0)
    min_lr_ratio: float = Field(0.01, ge=0, le=1, description="cosine: final lr / lr")
    plateau_factor: float = Field(0.5, gt=0, lt=1)
    plateau_patience: int = Field(3, ge=0, description="validations without improvement")


class RunConfig(_Strict):
    output_dir: str = "train_output"
    max_steps: int = Field(1000, ge=1)
    max_minutes: Optional[float] = Field(None, gt=0, description="stop (and export) after this wall time")
    batch_atoms: int = Field(256, ge=1, description="atoms per batch (structures are packed up to it)")
    valid_every: int = Field(100, ge=1, description="steps between validations")
    checkpoint_every: Optional[int] = Field(None, ge=1, description="steps between checkpoints; default valid_every")
    keep_best: int = Field(3, ge=1)
    early_stopping_patience: Optional[int] = Field(None, ge=1, description="validations without improvement")
    seed: int = 0
    dtype: Literal["float32", "float64"] = "float32"
    device: str = "cpu"
    progress: bool = True
    tensorboard: bool = True
    plots: bool = True
    export: bool = True
    num_threads: Optional[int] = Field(None, ge=1, description="torch threads per process")


class TrainConfig(_Strict):
    data: DataConfig
    model: ModelConfig = Field(default_factory=ModelConfig)
    dispersion: Optional[Dict[str, Any]] = Field(
        None, description="D3(BJ) spec, e.g. {functional: pbe, cutoff: 15, cn_cutoff: 10, switch_width: 1}"
    )
    terms: List[Dict[str, Any]] = Field(
        default_factory=list, description="other physics terms, e.g. [{kind: zbl, inner: 1.0, outer: 1.8}]"
    )
    loss: LossConfig = Field(default_factory=LossConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    run: RunConfig = Field(default_factory=RunConfig)

    @field_validator("dispersion")
    @classmethod
    def _dispersion_spec(cls, v: Optional[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
        from ..physics.terms import dispersion_spec

        return None if v is None else dispersion_spec(v)

    @field_validator("terms")
    @classmethod
    def _term_specs(cls, v: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
        from ..physics.terms import validate_term_spec

        return [validate_term_spec(spec, f"terms[{k}]") for k, spec in enumerate(v)]

    @property
    def term_specs(self) -> List[Dict[str, Any]]:
        """Every physics term the network does not learn: ``terms`` then ``dispersion``."""
        return list(self.terms) + ([self.dispersion] if self.dispersion else [])

    @model_validator(mode="after")
    def _split(self) -> "TrainConfig":
        if self.data.valid is None and self.data.valid_fraction <= 0:
            raise ValueError("give data.valid or a data.valid_fraction > 0: training needs a validation set")
        if self.data.valid_fraction + self.data.test_fraction >= 0.9:
            raise ValueError("valid_fraction + test_fraction leave too little to train on")
        return self

    def resolve_paths(self, base: Path) -> "TrainConfig":
        """Dataset and output paths relative to the config file's folder."""
        def fix(p: Optional[str]) -> Optional[str]:
            if p is None or os.path.isabs(p):
                return p
            return str((base / p).resolve())

        data = self.data.model_copy(update={"train": fix(self.data.train), "valid": fix(self.data.valid), "test": fix(self.data.test)})
        run = self.run.model_copy(update={"output_dir": fix(self.run.output_dir)})
        return self.model_copy(update={"data": data, "run": run})


def _yaml_loader():
    """A safe loader that refuses a key given twice in one mapping.

    PyYAML keeps the last of two equal keys silently, so a setting written twice (the
    second time further down the file) would replace the first without a word.
    """
    import yaml

    class UniqueKeyLoader(yaml.SafeLoader):
        pass

    def construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> Dict[Any, Any]:
        first_line: Dict[Any, int] = {}
        for key_node, _ in node.value:
            key = loader.construct_object(key_node, deep=deep)
            try:
                seen = key in first_line
            except TypeError:  # an unhashable key: SafeLoader's own error names it
                break
            if seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"{key!r} is given twice (first on line {first_line[key] + 1})", key_node.start_mark
                )
            first_line[key] = key_node.start_mark.line
        return yaml.SafeLoader.construct_mapping(loader, node, deep)

    UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping)
    return UniqueKeyLoader


def read_yaml(path: Path) -> Any:
    """Parse a YAML file; a syntax error names the file, the line and column, and the problem."""
    import yaml

    text = path.read_text()
    try:
        return yaml.load(text, Loader=_yaml_loader())
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or "invalid YAML"
        if exc.context:
            problem = f"{problem} ({exc.context}"
            if exc.context_mark is not None and exc.context_mark is not mark:
                problem += f" on line {exc.context_mark.line + 1}"
            problem += ")"
        if mark is None:
            raise ValueError(f"{path}: {problem}") from None
        lines = text.splitlines()
        shown = lines[mark.line] if mark.line < len(lines) else ""
        raise ValueError(
            f"{path}: line {mark.line + 1}, column {mark.column + 1}: {problem}\n"
            f"    {shown}\n    {' ' * mark.column}^"
        ) from None
    except yaml.YAMLError as exc:  # errors without a position (e.g. a bad encoding)
        raise ValueError(f"{path}: not valid YAML: {exc}") from None


def load_config(path: str | os.PathLike) -> TrainConfig:
    """Read a YAML config; errors name the file and the offending keys or lines."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"config file {str(path)!r} does not exist")
    raw = read_yaml(path) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: the config must be a mapping of sections (data, model, ...)")
    try:
        cfg = TrainConfig(**raw)
    except ValidationError as exc:
        raise ValueError(f"{path}: invalid training config:\n{exc}") from None
    return cfg.resolve_paths(path.parent.resolve())
