"""Molecular dynamics with ``pair_style mlff`` in the real ``lmp`` (optionally ``mpirun``)."""

from __future__ import annotations

import re
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from .data import energy_unit_per_ev, type_symbols, velocity_scale, write_data
from .plugin import LammpsError, lmp_command, mpirun_command, subprocess_env

THERMO_COLUMNS = ["Step", "Time", "Temp", "PotEng", "KinEng", "TotEng", "Press", "Volume"]


@dataclass
class MDResult:
    """Thermo output of a LAMMPS run (energies converted to eV) and the final structure."""

    steps: int
    timestep_fs: float
    nprocs: int
    units: str
    time_ps: np.ndarray
    potential_energy: np.ndarray  # eV
    kinetic_energy: np.ndarray  # eV
    temperature: np.ndarray  # K
    pressure: np.ndarray  # bar (metal) or atm (real), as LAMMPS prints it
    volume: np.ndarray  # Å^3
    seconds_per_step: float  # LAMMPS "Loop time" / steps
    thermo_lines: List[str]  # the thermo table exactly as LAMMPS printed it
    log: str
    atoms: object = None  # final structure, in the frame of the input atoms
    extra: Dict[str, object] = field(default_factory=dict)

    @property
    def total_energy(self) -> np.ndarray:
        return self.potential_energy + self.kinetic_energy


def read_thermo(log: str) -> tuple[List[str], Dict[str, np.ndarray]]:
    """The (last) thermo table of a LAMMPS log: raw lines (header first) and columns by name."""
    lines = log.splitlines()
    starts = [k for k, ln in enumerate(lines) if ln.split()[:1] == ["Step"]]
    if not starts:
        raise LammpsError("no thermo output in the LAMMPS log")
    k = starts[-1]
    header = lines[k].split()
    table, rows = [lines[k]], []
    for ln in lines[k + 1 :]:
        if ln.startswith("Loop time"):
            break
        parts = ln.split()
        if len(parts) != len(header):
            continue  # a warning printed in the middle of the table
        try:
            rows.append([float(p) for p in parts])
        except ValueError:
            continue
        table.append(ln)
    data = np.array(rows) if rows else np.zeros((0, len(header)))
    return table, {h: data[:, c] for c, h in enumerate(header)}


def _loop_time(log: str) -> Optional[float]:
    m = re.findall(r"Loop time of ([0-9.eE+-]+) on \d+ procs for (\d+) steps", log)
    if not m:
        return None
    t, n = m[-1]
    return float(t) / max(int(n), 1)


def _read_final(path: Path, atoms, rotation: np.ndarray):
    """Final positions/velocities/cell from a ``write_dump ... custom`` file, ASE frame."""
    text = path.read_text().splitlines()
    k = next(i for i, ln in enumerate(text) if ln.startswith("ITEM: BOX BOUNDS"))
    triclinic = "xy" in text[k]
    b = np.array([[float(v) for v in text[k + 1 + d].split()] for d in range(3)])
    if triclinic:
        xy, xz, yz = b[0, 2], b[1, 2], b[2, 2]
        xlo = b[0, 0] - min(0.0, xy, xz, xy + xz)
        xhi = b[0, 1] - max(0.0, xy, xz, xy + xz)
        ylo = b[1, 0] - min(0.0, yz)
        yhi = b[1, 1] - max(0.0, yz)
        zlo, zhi = b[2, 0], b[2, 1]
    else:
        xy = xz = yz = 0.0
        (xlo, xhi), (ylo, yhi), (zlo, zhi) = b[0, :2], b[1, :2], b[2, :2]
    cell_lmp = np.array([[xhi - xlo, 0, 0], [xy, yhi - ylo, 0], [xz, yz, zhi - zlo]])
    a = next(i for i, ln in enumerate(text) if ln.startswith("ITEM: ATOMS"))
    cols = text[a].split()[2:]
    rows = np.array([[float(v) for v in ln.split()] for ln in text[a + 1 : a + 1 + len(atoms)]])
    rows = rows[np.argsort(rows[:, cols.index("id")])]
    out = atoms.copy()
    pos = rows[:, [cols.index(c) for c in ("xu", "yu", "zu")]]
    out.set_positions(pos @ rotation.T)
    if atoms.pbc.any():
        out.set_cell(cell_lmp @ rotation.T if atoms.pbc.all() else atoms.cell)
    v = rows[:, [cols.index(c) for c in ("vx", "vy", "vz")]]
    return out, v @ rotation.T


def run_md(
    model,
    atoms,
    steps: int,
    timestep_fs: float = 1.0,
    temperature: Optional[float] = None,
    ensemble: str = "nve",
    pressure: Optional[float] = None,
    thermostat_damping_fs: float = 100.0,
    barostat_damping_fs: float = 1000.0,
    report_interval: int = 10,
    nprocs: int = 1,
    units: str = "metal",
    device: str = "cpu",
    seed: int = 12345,
    elements: Optional[Sequence[str]] = None,
    thermo_format: Optional[str] = None,
    threads: Optional[int] = None,
    workdir=None,
    extra_commands: Sequence[str] = (),
    warmup_steps: int = 0,
    timeout: float = 3600,
) -> MDResult:
    """Run ``steps`` of MD on ``atoms`` with the real ``lmp`` (``mpirun -np nprocs``).

    ``ensemble``: ``"nve"`` (velocities from ``atoms``, or drawn at ``temperature``),
    ``"nvt"`` (Nosé-Hoover at ``temperature``) or ``"npt"`` (Nosé-Hoover, isotropic
    ``pressure`` in LAMMPS pressure units: bar for metal, atm for real). Thermo output
    every ``report_interval`` steps; ``thermo_format`` e.g. ``"%.10g"`` sets the printed
    precision. ``warmup_steps`` are run (and excluded from the thermo table and the
    timing) before the ``steps``. The input script, data file and log stay in
    ``workdir`` if given.
    """
    if ensemble not in ("nve", "nvt", "npt"):
        raise ValueError(f"ensemble must be nve, nvt or npt, not {ensemble!r}")
    if ensemble != "nve" and temperature is None:
        raise ValueError(f"{ensemble} needs a temperature")
    if ensemble == "npt" and pressure is None:
        raise ValueError("npt needs a pressure")
    to_unit = energy_unit_per_ev(units)
    dt = timestep_fs * (1e-3 if units == "metal" else 1.0)
    with tempfile.TemporaryDirectory(prefix="mlff-lammps-md-") as tmp:
        wd = Path(workdir) if workdir is not None else Path(tmp)
        wd.mkdir(parents=True, exist_ok=True)
        symbols = type_symbols(atoms, elements)
        frame = write_data(wd / "start.data", atoms, symbols, units)
        has_v = atoms.get_velocities() is not None and np.abs(atoms.get_velocities()).max() > 0
        lines = [
            f"units {units}",
            "atom_style atomic",
            "atom_modify map yes",
            f"boundary {frame.boundary}",
            "read_data start.data",
            f"pair_style mlff {Path(model).resolve()} device {device}",
            "pair_coeff * * " + " ".join(symbols),
            f"timestep {dt:.17g}",
        ]
        if temperature is not None and not (ensemble == "nve" and has_v):
            lines.append(f"velocity all create {temperature} {seed} mom yes rot no dist gaussian")
        tdamp = thermostat_damping_fs * (1e-3 if units == "metal" else 1.0)
        pdamp = barostat_damping_fs * (1e-3 if units == "metal" else 1.0)
        if ensemble == "nve":
            lines.append("fix integrate all nve")
        elif ensemble == "nvt":
            lines.append(f"fix integrate all nvt temp {temperature} {temperature} {tdamp}")
        else:
            lines.append(
                f"fix integrate all npt temp {temperature} {temperature} {tdamp} iso {pressure} {pressure} {pdamp}"
            )
        lines += list(extra_commands)
        lines.append("thermo_style custom step time temp pe ke etotal press vol")
        lines.append("thermo_modify norm no" + (f" format float {thermo_format}" if thermo_format else ""))
        lines.append(f"thermo {report_interval}")
        if warmup_steps > 0:
            lines.append(f"run {warmup_steps}")
        lines.append(f"run {steps}")
        lines.append("write_dump all custom final.dump id type xu yu zu vx vy vz modify sort id")
        (wd / "in.lammps").write_text("\n".join(lines) + "\n")
        cmd = lmp_command() + ["-in", "in.lammps", "-log", "log.lammps", "-nocite"]
        if nprocs > 1:
            cmd = mpirun_command(nprocs) + cmd
        t0 = time.perf_counter()
        proc = subprocess.run(
            cmd, cwd=wd, capture_output=True, text=True, env=subprocess_env(threads), timeout=timeout
        )
        wall = time.perf_counter() - t0
        log = proc.stdout + proc.stderr
        if proc.returncode != 0:
            raise LammpsError(f"lmp failed (exit {proc.returncode}):\n{log[-4000:]}")
        table, thermo = read_thermo(log)
        final, v_lmp = _read_final(wd / "final.dump", atoms, frame.rotation)
        final.set_velocities(v_lmp / velocity_scale(units))
        return MDResult(
            steps=steps,
            timestep_fs=timestep_fs,
            nprocs=nprocs,
            units=units,
            time_ps=thermo["Step"] * timestep_fs * 1e-3,
            potential_energy=thermo["PotEng"] / to_unit,
            kinetic_energy=thermo["KinEng"] / to_unit,
            temperature=thermo["Temp"],
            pressure=thermo["Press"],
            volume=thermo["Volume"],
            seconds_per_step=_loop_time(log) or wall / max(steps, 1),
            thermo_lines=table,
            log=log,
            atoms=final,
            extra={"wall_seconds": wall, "workdir": str(wd) if workdir is not None else None},
        )
