"""The `mlff train` configuration (YAML), validated by pydantic; unknown keys are refused."""

from __future__ import annotations

import os
from pathlib import Path
from typing import List, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


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


class ModelConfig(_Strict):
    kind: Literal["painn"] = "painn"
    elements: Optional[List[Union[str, int]]] = Field(None, description="default: the elements of the data")
    cutoff: float = Field(5.0, gt=0)
    n_features: int = Field(64, ge=2)
    num_interactions: int = Field(3, ge=1)
    n_rbf: int = Field(20, ge=1)
    cutoff_fn: Literal["cosine", "polynomial"] = "cosine"


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
    loss: LossConfig = Field(default_factory=LossConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    run: RunConfig = Field(default_factory=RunConfig)

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


def load_config(path: str | os.PathLike) -> TrainConfig:
    """Read a YAML config; errors name the offending keys."""
    import yaml

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"config file {str(path)!r} does not exist")
    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: the config must be a mapping of sections (data, model, ...)")
    try:
        cfg = TrainConfig(**raw)
    except ValidationError as exc:
        raise ValueError(f"{path}: invalid training config:\n{exc}") from None
    return cfg.resolve_paths(path.parent.resolve())
