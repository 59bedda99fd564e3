from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def cu_db(tmp_path_factory) -> Path:
    """A small EMT-labelled Cu set: 8-atom cells from MD, rattling and strain (48 rows)."""
    from ase.build import bulk

    from mlff.data.label import label
    from mlff.data.sampling import SamplingConfig
    from mlff.data.teachers import make_teacher

    db = tmp_path_factory.mktemp("data") / "cu.db"
    base = bulk("Cu", cubic=True).repeat((2, 1, 1))
    cfg = SamplingConfig(temperatures=[300.0, 900.0], md_frames=12, md_interval=5, rattle=12, strain=12, seed=3)
    label(db, [base], make_teacher("emt"), cfg, progress=False)
    return db
