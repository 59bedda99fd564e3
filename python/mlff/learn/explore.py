"""Exploration: MD with the current model, every ``interval`` steps a frame and its uncertainty.

One trajectory per (structure, temperature[, pressure]), each with its own seed derived
from the run seed, the iteration and the trajectory's name, so an exploration repeated
after a kill produces the same frames. The frames of one iteration are written as one
``.npz`` file (atomically; positions in float64, exactly as the teacher will see them).

Uncertainty per frame: the committee's largest per-atom force deviation
(``forces_uncertainty_max``, eV/Å) or, for ACE potentials, the largest per-atom
extrapolation grade γ.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
from ase import Atoms

from ..atomic import atomic_write
from ..data.sampling import stable_seed
from .config import ExploreConfig


@dataclass
class Frames:
    """Explored frames: geometry, where they come from, the model's prediction and uncertainty."""

    ids: List[str] = field(default_factory=list)
    structure: List[int] = field(default_factory=list)
    temperature: List[float] = field(default_factory=list)
    pressure: List[float] = field(default_factory=list)  # bar; nan for NVT
    step: List[int] = field(default_factory=list)
    deviation: List[float] = field(default_factory=list)  # max force deviation (eV/Å) or max γ
    deviation_mean: List[float] = field(default_factory=list)
    numbers: List[np.ndarray] = field(default_factory=list)
    positions: List[np.ndarray] = field(default_factory=list)
    cells: List[np.ndarray] = field(default_factory=list)
    pbc: List[np.ndarray] = field(default_factory=list)
    forces: List[np.ndarray] = field(default_factory=list)  # the model's (committee mean) forces
    info: List[Dict[str, float]] = field(default_factory=list)  # charge / mult of the start structure

    def __len__(self) -> int:
        return len(self.ids)

    def add(self, frame_id: str, structure: int, temperature: float, pressure: Optional[float], step: int,
            deviation: float, deviation_mean: float, atoms: Atoms, forces: np.ndarray, base: Atoms) -> None:
        """Append one explored frame (``base``: the start structure, whose charge/mult it keeps)."""
        self.ids.append(frame_id)
        self.structure.append(structure)
        self.temperature.append(float(temperature))
        self.pressure.append(float("nan") if pressure is None else float(pressure))
        self.step.append(step)
        self.deviation.append(deviation)
        self.deviation_mean.append(deviation_mean)
        self.numbers.append(np.array(atoms.numbers, dtype=np.int64))
        self.positions.append(np.array(atoms.positions, dtype=np.float64))
        self.cells.append(np.array(atoms.cell.array, dtype=np.float64))
        self.pbc.append(np.array(atoms.pbc, dtype=bool))
        self.forces.append(forces)
        self.info.append({k: v for k, v in base.info.items() if k in ("charge", "mult")})

    def atoms(self, i: int) -> Atoms:
        a = Atoms(numbers=self.numbers[i], positions=self.positions[i], cell=self.cells[i], pbc=self.pbc[i])
        a.info.update(self.info[i])
        return a

    def save(self, path: str | os.PathLike) -> None:
        counts = np.array([len(n) for n in self.numbers], dtype=np.int64)
        empty3 = np.zeros((0, 3))
        arrays = {
            "ids": np.array(self.ids, dtype=str),
            "structure": np.array(self.structure, dtype=np.int64),
            "temperature": np.array(self.temperature, dtype=np.float64),
            "pressure": np.array(self.pressure, dtype=np.float64),
            "step": np.array(self.step, dtype=np.int64),
            "deviation": np.array(self.deviation, dtype=np.float64),
            "deviation_mean": np.array(self.deviation_mean, dtype=np.float64),
            "counts": counts,
            # per-atom arrays concatenated over frames (frames may differ in size): no pickles
            "numbers": np.concatenate(self.numbers) if self.numbers else np.zeros(0, dtype=np.int64),
            "positions": np.concatenate(self.positions) if self.positions else empty3,
            "forces": np.concatenate(self.forces) if self.forces else empty3,
            "cells": np.array(self.cells, dtype=np.float64).reshape(-1, 3, 3),
            "pbc": np.array(self.pbc, dtype=bool).reshape(-1, 3),
            "charge": np.array([i.get("charge", np.nan) for i in self.info], dtype=np.float64),
            "mult": np.array([i.get("mult", np.nan) for i in self.info], dtype=np.float64),
        }

        def write(tmp: str) -> None:
            with open(tmp, "wb") as fh:  # a file object: np.savez would append .npz to a name
                np.savez(fh, **arrays)

        atomic_write(path, write)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Frames":
        with np.load(path, allow_pickle=False) as z:
            splits = np.cumsum(z["counts"])[:-1]
            info = []
            for c, m in zip(z["charge"], z["mult"]):
                d: Dict[str, float] = {}
                if not np.isnan(c):
                    d["charge"] = float(c)
                if not np.isnan(m):
                    d["mult"] = int(m)
                info.append(d)
            n = len(z["ids"])
            return cls(
                ids=[str(s) for s in z["ids"]],
                structure=[int(v) for v in z["structure"]],
                temperature=[float(v) for v in z["temperature"]],
                pressure=[float(v) for v in z["pressure"]],
                step=[int(v) for v in z["step"]],
                deviation=[float(v) for v in z["deviation"]],
                deviation_mean=[float(v) for v in z["deviation_mean"]],
                numbers=list(np.split(z["numbers"], splits)) if n else [],
                positions=list(np.split(z["positions"], splits)) if n else [],
                forces=list(np.split(z["forces"], splits)) if n else [],
                cells=list(z["cells"]),
                pbc=list(z["pbc"]),
                info=info,
            )


def trajectory_name(structure: int, temperature: float, pressure: Optional[float]) -> str:
    return f"s{structure}-T{temperature:g}" + ("" if pressure is None else f"-P{pressure:g}")


class _Measure:
    """Reads a frame's uncertainty from the calculator's last results."""

    def __init__(self, ace: bool):
        self.ace = ace

    def __call__(self, calc, atoms: Atoms) -> tuple:
        if self.ace:
            grade = np.asarray(calc.get_property("extrapolation_grade", atoms), dtype=np.float64)
            return float(grade.max()), float(grade.mean())
        per_atom = np.asarray(calc.get_property("forces_uncertainty", atoms), dtype=np.float64)
        return float(per_atom.max()), float(per_atom.mean())


def _dynamics(atoms: Atoms, cfg: ExploreConfig, temperature: float, pressure: Optional[float], seed: int):
    from ase import units

    if pressure is None:
        from ase.md.langevin import Langevin

        return Langevin(atoms, timestep=cfg.timestep_fs * units.fs, temperature_K=temperature,
                        friction=cfg.friction / units.fs, rng=np.random.default_rng(seed), fixcm=False)
    from ase.md.nptberendsen import NPTBerendsen

    return NPTBerendsen(atoms, timestep=cfg.timestep_fs * units.fs, temperature_K=temperature,
                        pressure_au=pressure * units.bar, taut=cfg.taut_fs * units.fs, taup=cfg.taup_fs * units.fs,
                        compressibility_au=cfg.compressibility_per_bar / units.bar)


def explore(
    model: str,
    structures: Sequence[Atoms],
    cfg: ExploreConfig,
    iteration: int,
    activeset: Optional[str] = None,
    log: Callable[[str], None] = print,
) -> Frames:
    """Run every trajectory of one iteration with ``model`` (a committee ``.pt`` or an ACE file)."""
    if cfg.engine == "lammps":
        return explore_lammps(model, structures, cfg, iteration, activeset, log)
    from ase.md.velocitydistribution import Stationary, thermalize_momenta

    from ..calculator import MLFFCalculator

    # compile=False: eager results are bit-reproducible, so a repeated exploration
    # (after a kill) gives the same frames
    calc = MLFFCalculator(model, device=cfg.device, compile=False, activeset=activeset)
    measure = _Measure(activeset is not None)
    frames = Frames()
    t0 = time.perf_counter()
    for s, base in enumerate(structures):
        for temperature in cfg.temperatures:
            for pressure in (cfg.pressures or [None]):
                name = trajectory_name(s, temperature, pressure)
                seed = stable_seed(cfg.seed, iteration, name)
                atoms = base.copy()
                atoms.calc = None
                thermalize_momenta(atoms, temperature_K=temperature, rng=np.random.default_rng(seed))
                Stationary(atoms)
                atoms.calc = calc
                dyn = _dynamics(atoms, cfg, temperature, pressure, seed + 1)
                for step in range(cfg.interval, cfg.steps + 1, cfg.interval):
                    try:
                        dyn.run(cfg.interval)
                        forces = np.array(atoms.get_forces(), dtype=np.float64)
                        dev, dev_mean = measure(calc, atoms)
                    except Exception as exc:  # a model far outside its data may fail (atoms too close)
                        log(f"[mlff learn] trajectory {name} ended at step {step}: {type(exc).__name__}: {exc}")
                        break
                    if not np.all(np.isfinite(forces)) or not np.isfinite(dev):
                        log(f"[mlff learn] trajectory {name} ended at step {step}: non-finite forces")
                        break
                    frames.add(f"{name}-{step}", s, temperature, pressure, step, dev, dev_mean, atoms, forces, base)
                    if cfg.abort_above is not None and dev > cfg.abort_above:
                        log(f"[mlff learn] trajectory {name} ended at step {step}: uncertainty {dev:.3g} > "
                            f"explore.abort_above {cfg.abort_above:g}")
                        break
    log(f"[mlff learn] iteration {iteration}: explored {len(frames)} frames in "
        f"{time.perf_counter() - t0:.1f} s")
    return frames


def explore_lammps(model: str, structures: Sequence[Atoms], cfg: ExploreConfig, iteration: int,
                   activeset: Optional[str], log: Callable[[str], None]) -> Frames:
    """LAMMPS runs the MD (``pair_style mlff``, Nosé-Hoover NVT); the frames it dumps are judged here.

    The model is evaluated again in Python on each dumped frame: LAMMPS gives the
    trajectory, the calculator the uncertainty, so both engines select by one definition.
    """
    import tempfile

    from ..calculator import MLFFCalculator
    from ..lammps.data import lammps_frame
    from ..lammps.md import _read_final, run_md

    if activeset is not None:
        raise ValueError("explore.engine lammps runs committees; ACE loops explore with engine ase")
    calc = MLFFCalculator(model, device=cfg.device, compile=False)
    measure = _Measure(False)
    frames = Frames()
    for s, base in enumerate(structures):
        symbols = sorted(set(base.get_chemical_symbols()))
        rotation = lammps_frame(base).rotation  # dumps are in LAMMPS's frame; _read_final turns them back
        for temperature in cfg.temperatures:
            name = trajectory_name(s, temperature, None)
            seed = stable_seed(cfg.seed, iteration, name) % 900_000_000 + 1  # LAMMPS seeds: positive, < 2^30
            dumped: List[Atoms] = []
            with tempfile.TemporaryDirectory(prefix="mlff-learn-lmp-") as tmp:
                try:
                    run_md(model, base, cfg.steps, timestep_fs=cfg.timestep_fs, temperature=temperature,
                           ensemble="nvt", seed=seed, device=cfg.device, elements=symbols, workdir=tmp,
                           extra_commands=[
                               f"dump learn all custom {cfg.interval} frame.*.dump id type xu yu zu vx vy vz",
                               # full precision: the teacher labels exactly the positions LAMMPS ran
                               "dump_modify learn sort id format float %.17g",
                           ])
                except Exception as exc:
                    log(f"[mlff learn] LAMMPS trajectory {name} failed: {type(exc).__name__}: {exc}")
                for step in range(cfg.interval, cfg.steps + 1, cfg.interval):
                    path = Path(tmp) / f"frame.{step}.dump"
                    if path.exists():
                        dumped.append(_read_final(path, base, rotation)[0])
            for atoms, step in zip(dumped, range(cfg.interval, cfg.steps + 1, cfg.interval)):
                atoms.calc = calc
                forces = np.array(atoms.get_forces(), dtype=np.float64)
                dev, dev_mean = measure(calc, atoms)
                frames.add(f"{name}-{step}", s, temperature, None, step, dev, dev_mean, atoms, forces, base)
    log(f"[mlff learn] iteration {iteration}: LAMMPS explored {len(frames)} frames")
    return frames
