"""Training students on labelled data: config, trainer (resumable, DDP), metrics, plots."""

from .config import TrainConfig, load_config
from .trainer import Trainer, train

__all__ = ["TrainConfig", "load_config", "Trainer", "train"]
