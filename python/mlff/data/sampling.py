"""Sampling plans: which structures a teacher labels.

A plan is a list of tasks with stable ids, derived only from the settings and the
seed, so an interrupted labelling run can be resumed by skipping the ids already in
the database. Teacher MD chains are resumed from their last stored frame
(positions and momenta are stored), each segment with its own seeded thermostat.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import List, Sequence, Tuple

import numpy as np
from ase import Atoms
from pydantic import BaseModel, ConfigDict, Field


class SamplingConfig(BaseModel):
    """How many structures of each kind to generate per base structure."""

    model_config = ConfigDict(extra="forbid")

    temperatures: List[float] = Field(default_factory=lambda: [300.0, 600.0, 900.0])
    md_frames: int = Field(20, ge=0, description="frames stored per temperature and base structure")
    md_interval: int = Field(10, ge=1, description="MD steps between stored frames")
    md_equilibration: int = Field(0, ge=0, description="MD steps before the first stored frame")
    timestep_fs: float = Field(2.0, gt=0)
    friction: float = Field(0.02, gt=0, description="Langevin friction (1/fs)")
    rattle: int = Field(20, ge=0, description="randomly displaced structures per base structure")
    rattle_amplitude: float = Field(0.1, ge=0, description="max. Gaussian displacement std (Å)")
    strain: int = Field(20, ge=0, description="strained + rattled cells (periodic structures only)")
    max_strain: float = Field(0.04, ge=0)
    seed: int = 0
    as_is: bool = Field(
        False, description="label the given structures themselves, nothing sampled (e.g. an uncertainty queue)"
    )


@dataclass
class Task:
    """One thing to label. MD tasks are frames ``k`` of chain ``chain``."""

    id: str
    base: int
    kind: str  # "md" | "rattle" | "strain"
    chain: str = ""
    frame: int = 0
    temperature: float = 0.0
    seed: int = 0


def stable_seed(*parts: object) -> int:
    """A seed that depends only on its arguments (not on Python's hash randomisation)."""
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:4], "little")


def plan(bases: Sequence[Atoms], cfg: SamplingConfig) -> List[Task]:
    tasks: List[Task] = []
    if cfg.as_is:
        # one task per structure, by position: a queue that grows (fix mlff/extrapolation
        # appends frames) is labelled incrementally on each re-run
        return [Task(f"given-b{b}", b, "given") for b in range(len(bases))]
    for b, atoms in enumerate(bases):
        for t in cfg.temperatures:
            chain = f"md-b{b}-T{t:g}"
            for k in range(cfg.md_frames):
                tasks.append(Task(f"{chain}-{k}", b, "md", chain, k, float(t), stable_seed(cfg.seed, chain, k)))
        for k in range(cfg.rattle):
            tasks.append(Task(f"rattle-b{b}-{k}", b, "rattle", seed=stable_seed(cfg.seed, "rattle", b, k)))
        if atoms.pbc.all():
            for k in range(cfg.strain):
                tasks.append(Task(f"strain-b{b}-{k}", b, "strain", seed=stable_seed(cfg.seed, "strain", b, k)))
    return tasks


def rattled(base: Atoms, task: Task, cfg: SamplingConfig) -> Atoms:
    rng = np.random.default_rng(task.seed)
    atoms = base.copy()
    atoms.calc = None
    # a spread of amplitudes: small ones cover the harmonic region, large ones the walls
    sigma = cfg.rattle_amplitude * rng.uniform(0.1, 1.0)
    atoms.positions += rng.normal(0.0, sigma, size=atoms.positions.shape)
    return atoms


def strained(base: Atoms, task: Task, cfg: SamplingConfig) -> Atoms:
    rng = np.random.default_rng(task.seed)
    atoms = base.copy()
    atoms.calc = None
    eps = rng.uniform(-cfg.max_strain, cfg.max_strain, size=(3, 3))
    eps = 0.5 * (eps + eps.T)
    atoms.set_cell(atoms.cell.array @ (np.eye(3) + eps), scale_atoms=True)
    atoms.positions += rng.normal(0.0, 0.3 * cfg.rattle_amplitude, size=atoms.positions.shape)
    return atoms


@dataclass
class ChainState:
    """Where an MD chain stands: the last stored frame (or None before the first)."""

    last_frame: int = -1
    atoms: Atoms | None = None
    done: List[int] = field(default_factory=list)


def md_chain_start(base: Atoms, temperature: float, seed: int) -> Atoms:
    from ase.md.velocitydistribution import Stationary, thermalize_momenta

    atoms = base.copy()
    atoms.calc = None
    rng = np.random.default_rng(seed)
    thermalize_momenta(atoms, temperature_K=temperature, rng=rng)
    Stationary(atoms)
    return atoms


def run_md_segment(atoms: Atoms, calc, temperature: float, steps: int, cfg: SamplingConfig, seed: int) -> Atoms:
    """Advance ``atoms`` (with momenta) by ``steps`` Langevin steps under ``calc``."""
    from ase import units
    from ase.md.langevin import Langevin

    atoms.calc = calc
    dyn = Langevin(
        atoms,
        timestep=cfg.timestep_fs * units.fs,
        temperature_K=temperature,
        friction=cfg.friction / units.fs,
        rng=np.random.default_rng(seed),
        fixcm=False,
    )
    dyn.run(steps)
    return atoms


def split_name(task_id: str) -> Tuple[str, int]:
    chain, _, k = task_id.rpartition("-")
    return chain, int(k)
