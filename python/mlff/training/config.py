"""The `mlff train` configuration (YAML), validated by pydantic; unknown keys are refused.

The ``model:`` block is ``{kind, elements, init_from, <options of that kind>}``: ``kind``
selects the class from :data:`mlff.models.MODEL_REGISTRY` and the class's own ``Options``
model validates the rest. Physics terms the network does not learn are given as
``dispersion:`` (a D3(BJ) spec), ``terms:`` (a list of specs, see
:mod:`mlff.physics.terms`) and ``sae:`` (self-atomic energies per fidelity).

Multi-fidelity data: ``data.train`` may list several stores (one per level of theory is
typical), ``data.fidelities`` fixes the order of the levels (= the model's fidelity
indices) and ``data.fidelity_weights`` how often each level's batches are drawn.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Dict, List, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..models import DEFAULT_MODEL_KIND, model_class

#: ``model.kind`` of mlff's own ACE fit (routed to :mod:`mlff.ace.fit` by :func:`mlff.training.trainer.train`)
ACE_FIT_KIND = "ace"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StoreSpec(_Strict):
    """One store of a data set, with what applies to it alone."""

    path: str = Field(description="dataset (.db, .xyz, .h5)")
    fidelity: Optional[str] = Field(None, description="fidelity of the store's untagged structures")
    selection: Optional[str] = Field(None, description="ASE-db query (databases only); default data.selection")


#: a set of structures: one store, or several (their records are concatenated)
Stores = Union[str, StoreSpec, List[Union[str, StoreSpec]]]


def store_list(stores: Optional[Stores]) -> List[StoreSpec]:
    """``stores`` as a list of :class:`StoreSpec` (a bare path is a store with no options)."""
    if stores is None:
        return []
    items = stores if isinstance(stores, list) else [stores]
    return [StoreSpec(path=s) if isinstance(s, str) else s for s in items]


class DataConfig(_Strict):
    train: Stores = Field(description="dataset (.db, .xyz, .h5), or a list of them / of {path, fidelity, selection}")
    valid: Optional[Stores] = Field(None, description="separate validation set(s); else split from train")
    test: Optional[Stores] = None
    valid_fraction: float = Field(0.1, ge=0, lt=1, description="of every training store")
    test_fraction: float = Field(0.0, ge=0, lt=1)
    split_seed: int = 0
    on_invalid: Literal["refuse", "skip"] = "refuse"
    min_structures: int = Field(10, ge=1, description="refuse to train on fewer valid structures")
    selection: Optional[str] = Field(None, description="ASE-db query applied to the training stores")
    require_forces: bool = Field(True, description="false: structures without forces train on their other labels")
    fidelities: Optional[List[str]] = Field(
        None, description="levels of theory in model order; records of other levels are refused"
    )
    fidelity_weights: Dict[str, float] = Field(
        default_factory=dict, description="how often a level's batches are drawn (default 1 each)"
    )

    @field_validator("train")
    @classmethod
    def _some_store(cls, v: Stores) -> Stores:
        if isinstance(v, list) and not v:
            raise ValueError("give at least one training store")
        return v

    @field_validator("fidelities")
    @classmethod
    def _distinct(cls, v: Optional[List[str]]) -> Optional[List[str]]:
        if v is not None and (not v or len(set(v)) != len(v) or not all(isinstance(n, str) and n.strip() for n in v)):
            raise ValueError(f"fidelities must be distinct non-empty names, got {v}")
        return v

    @field_validator("fidelity_weights")
    @classmethod
    def _weights(cls, v: Dict[str, float]) -> Dict[str, float]:
        bad = {k: w for k, w in v.items() if not w >= 0}
        if bad:
            raise ValueError(f"fidelity weights must be >= 0, got {bad}")
        return v

    @property
    def train_stores(self) -> List[StoreSpec]:
        return store_list(self.train)

    @property
    def valid_stores(self) -> List[StoreSpec]:
        return store_list(self.valid)

    @property
    def test_stores(self) -> List[StoreSpec]:
        return store_list(self.test)


class ModelConfig(BaseModel):
    """``kind`` and ``elements``; every other key is an option of that kind's model class.

    After validation the options hold the class's defaults too, so the stored config
    says exactly what was built.
    """

    # the kind's Options model refuses unknown keys (see _kind_options)
    model_config = ConfigDict(extra="allow")

    kind: str = DEFAULT_MODEL_KIND
    elements: Optional[List[Union[str, int]]] = Field(None, description="default: the elements of the data")
    init_from: Optional[str] = Field(
        None, description="checkpoint or exported .pt (same kind and elements) whose weights of the same name and "
        "shape start the run; kind ace: a B-basis .yaml whose coefficients start the fit"
    )

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, v: str) -> str:
        if v == ACE_FIT_KIND:  # fitted by mlff.ace.fit (L-BFGS), not a gradient-trained network
            return v
        model_class(v)
        return v

    @model_validator(mode="after")
    def _kind_options(self) -> "ModelConfig":
        if self.kind == ACE_FIT_KIND:
            from ..ace.fit.train import validate_ace_options

            self.__pydantic_extra__ = validate_ace_options(self.__pydantic_extra__ or {})
            return self
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
    charges_weight: float = Field(
        0.0, ge=0, description="on per-atom charge squared error, e^2 (models that predict charges)"
    )


class ParamGroupRule(_Strict):
    """Optimizer settings for the parameters whose name matches ``pattern`` (``re.search``)."""

    pattern: str
    lr_scale: float = Field(1.0, gt=0, description="learning rate = schedule's rate x lr_scale")
    weight_decay: Optional[float] = Field(None, ge=0, description="default: optim.weight_decay (0 where exempt)")

    @field_validator("pattern")
    @classmethod
    def _regex(cls, v: str) -> str:
        return _compiles(v)


def _compiles(pattern: str) -> str:
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"{pattern!r} is not a regular expression: {exc}") from None
    return pattern


class OptimConfig(_Strict):
    lr: float = Field(2e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0, description="not applied to embeddings, shifts and biases")
    betas: List[float] = Field(default_factory=lambda: [0.9, 0.999], min_length=2, max_length=2)
    grad_clip: Optional[float] = Field(10.0, gt=0, description="max gradient norm; null = off")
    grad_clip_value: Optional[float] = Field(None, gt=0, description="max |gradient component| (before the norm)")
    param_groups: List[ParamGroupRule] = Field(
        default_factory=list, description="per-parameter settings by name regex; the first match wins"
    )
    freeze: List[str] = Field(
        default_factory=list, description="regexes of parameter names not to train (@backbone, @readout: the kind's roles)"
    )
    backbone_lr_scale: Optional[float] = Field(
        None, gt=0, description="lr factor of the model kind's backbone (@backbone) unless a param_groups rule matches"
    )

    @field_validator("freeze")
    @classmethod
    def _regexes(cls, v: List[str]) -> List[str]:
        return [_compiles(p) for p in v]


class ScheduleConfig(_Strict):
    kind: Literal["cosine", "plateau", "constant"] = "cosine"
    warmup_steps: int = Field(0, ge=0)
    warmup: Literal["linear", "cosine"] = Field("linear", description="shape of the warm-up, per step")
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
    export_compiled: bool = Field(
        False, description="also compile the exported model with AOTInductor (model.pt2 beside model.pt)"
    )
    num_threads: Optional[int] = Field(None, ge=1, description="torch threads per process")


#: ``sae: fit``: fit the self-atomic energies on the training records
SAE_FIT = "fit"


class TrainConfig(_Strict):
    data: DataConfig
    model: ModelConfig = Field(default_factory=ModelConfig)
    dispersion: Optional[Dict[str, Any]] = Field(
        None, description="D3(BJ) spec, e.g. {functional: pbe, cutoff: 15, cn_cutoff: 10, switch_width: 1}"
    )
    terms: List[Dict[str, Any]] = Field(
        default_factory=list, description="other physics terms, e.g. [{kind: zbl, inner: 1.0, outer: 1.8}]"
    )
    sae: Optional[str] = Field(
        None, description="self-atomic energies per fidelity: a YAML file, or 'fit' (on the training records)"
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

    @property
    def fidelity_names(self) -> List[str]:
        """The run's levels of theory in model order (empty: one unnamed level)."""
        if self.data.fidelities is not None:
            return list(self.data.fidelities)
        return list(self.model.options.get("fidelities") or [])

    @model_validator(mode="after")
    def _split(self) -> "TrainConfig":
        if self.data.valid is None and self.data.valid_fraction <= 0:
            raise ValueError("give data.valid or a data.valid_fraction > 0: training needs a validation set")
        if self.data.valid_fraction + self.data.test_fraction >= 0.9:
            raise ValueError("valid_fraction + test_fraction leave too little to train on")
        return self

    @model_validator(mode="after")
    def _fidelities_agree(self) -> "TrainConfig":
        # the model's fidelity index of a record is its level's position in data.fidelities:
        # two different lists would silently train one level's head on another's labels
        names = self.data.fidelities
        model_names = list(self.model.options.get("fidelities") or [])
        if names is not None and model_names and names != model_names:
            raise ValueError(
                f"data.fidelities {names} and model.fidelities {model_names} differ; they must be the same "
                "list in the same order (the model's fidelity index is the position in data.fidelities)"
            )
        if names is not None and len(names) > 1 and not model_names:
            raise ValueError(
                f"data.fidelities lists {len(names)} levels {names}, but this {self.model.kind} model has one "
                "energy head; a multi-fidelity model needs per-fidelity readouts (e.g. kind: aimnet2, "
                f"use_fidelity_readouts: true, fidelities: {names})"
            )
        unknown = sorted(set(self.data.fidelity_weights) - set(self.fidelity_names))
        if unknown:
            raise ValueError(
                f"data.fidelity_weights names {unknown}, which are not fidelities of this run "
                f"({self.fidelity_names or 'none named: give data.fidelities'})"
            )
        if self.data.fidelity_weights and not any(
            self.data.fidelity_weights.get(n, 1.0) > 0 for n in self.fidelity_names
        ):
            raise ValueError("data.fidelity_weights: at least one fidelity needs a weight > 0")
        return self

    def resolve_paths(self, base: Path) -> "TrainConfig":
        """Dataset, SAE, checkpoint and output paths relative to the config file's folder."""
        def fix(p: Optional[str]) -> Optional[str]:
            if p is None or os.path.isabs(p):
                return p
            return str((base / p).resolve())

        def fix_stores(stores: Optional[Stores]) -> Optional[Stores]:
            if stores is None:
                return None
            if isinstance(stores, str):  # a single path stays a string (as it was written)
                return fix(stores)
            fixed = [s.model_copy(update={"path": fix(s.path)}) for s in store_list(stores)]
            return fixed if isinstance(stores, list) else fixed[0]

        data = self.data.model_copy(update={
            "train": fix_stores(self.data.train), "valid": fix_stores(self.data.valid),
            "test": fix_stores(self.data.test),
        })
        run = self.run.model_copy(update={"output_dir": fix(self.run.output_dir)})
        model = self.model.model_copy(update={"init_from": fix(self.model.init_from)})
        sae = self.sae if self.sae in (None, SAE_FIT) else fix(self.sae)
        return self.model_copy(update={"data": data, "run": run, "model": model, "sae": sae})


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
