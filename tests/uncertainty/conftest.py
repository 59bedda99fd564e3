"""One thread per test process: the uncertainty tests train small models and time nothing."""

from __future__ import annotations

import os

import torch

os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(1)
