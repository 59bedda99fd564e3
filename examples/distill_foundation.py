"""Distil a foundation model (CHGNet) into a fast mlff student for one material (fcc Cu).

The point of mlff: replace a slow teacher calculator by a fast student by changing one
line (``atoms.calc = MLFFCalculator("model.pt")``). CHGNet's pretrained weights ship
inside its PyPI wheel, so this runs offline.

    .venv/bin/pip install -r requirements/examples.txt -c requirements/lock.txt
    .venv/bin/python examples/distill_foundation.py            # ~10 min on 2 cores
    .venv/bin/python examples/distill_foundation.py --quick    # smoke test

The ``-c requirements/lock.txt`` keeps torch at 2.9.1 (and every other pinned package
where it is). Steps: label Cu structures with CHGNet (teacher MD at 300-900 K,
rattled and strained cells; through ``mlff label``'s ``module:factory`` teacher spec),
train the student, then measure force errors on held-out CHGNet-MD frames and the
time per MD step of teacher and student at 500 atoms. Results go to
``distill_output/report.json``; BENCHMARKS.md records a run.
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

os.environ.setdefault("OMP_NUM_THREADS", "1")


# the demo's step functions (labelling, accuracy, timing) are reused as they are
sys.path.insert(0, str(Path(__file__).resolve().parent))
import demo  # noqa: E402

TEACHER = "chgnet.model.dynamics:CHGNetCalculator"  # any module:factory returning an ASE calculator
TEACHER_OPTIONS = {"use_device": "cpu"}

CONFIG: Dict[str, Any] = copy.deepcopy(demo.DEFAULT_CONFIG)
CONFIG.update(teacher=TEACHER, element="Cu", train_cell=[2, 2, 2])
CONFIG["sampling"].update(temperatures=[300.0, 600.0, 900.0, 1200.0], md_frames=40, md_interval=5,
                          md_equilibration=20, rattle=50, strain=50)
# held-out frames on the training cell size: CHGNet MD on CPU is the slow part of this example
CONFIG["test"].update(cell=[2, 2, 2], temperatures=[300.0, 600.0, 900.0], frames=5, interval=10, equilibration=20)
CONFIG["train"]["run"].update(max_steps=2000, max_minutes=4.0)
CONFIG["md"] = {"cell": [5, 5, 5], "steps": 5, "temperature": 600.0, "timestep_fs": 2.0}  # 500 atoms


def teacher_calculator():
    from mlff.data.teachers import make_teacher

    try:
        return make_teacher(TEACHER, **TEACHER_OPTIONS)
    except ValueError as exc:
        raise SystemExit(
            f"{exc}\nInstall the example's teacher first:\n"
            "  .venv/bin/pip install -r requirements/examples.txt -c requirements/lock.txt"
        ) from None


def label_sets(cfg: Dict[str, Any], out: Path):
    """Training and held-out sets, labelled by CHGNet (resumable: re-runs skip what exists)."""
    from mlff.data.label import label
    from mlff.data.sampling import SamplingConfig

    teacher = teacher_calculator()
    demo.banner("1. labelling with CHGNet (training set)")
    s = label(out / "train.db", [demo.bulk_cell(cfg["element"], cfg["train_cell"])], teacher,
              SamplingConfig(**cfg["sampling"]))
    print(f"{s.path}: {s.planned} structures ({s.labelled} new) in {s.seconds:.0f} s")
    t = cfg["test"]
    demo.banner("2. labelling held-out CHGNet-MD frames")
    s = label(out / "test.db", [demo.bulk_cell(cfg["element"], t["cell"])], teacher,
              SamplingConfig(temperatures=t["temperatures"], md_frames=t["frames"], md_interval=t["interval"],
                             md_equilibration=t["equilibration"], rattle=0, strain=0, seed=t["seed"],
                             timestep_fs=cfg["sampling"]["timestep_fs"]))
    print(f"{s.path}: {s.planned} frames in {s.seconds:.0f} s")
    return out / "train.db", out / "test.db", teacher


def time_at_500(cfg: Dict[str, Any], model_path: Path, teacher) -> Dict[str, Any]:
    from mlff import MLFFCalculator

    md = cfg["md"]
    atoms = demo.bulk_cell(cfg["element"], md["cell"])
    demo.banner(f"5. MD step time at {len(atoms)} atoms: student vs CHGNet")
    s_dt, _ = demo._time_md(atoms, MLFFCalculator(str(model_path)), md["steps"], md["temperature"], md["timestep_fs"], "student MD")
    t_dt, _ = demo._time_md(atoms, teacher.calculator, md["steps"], md["temperature"], md["timestep_fs"], "CHGNet MD")
    return {"n_atoms": len(atoms), "steps": md["steps"], "student_ms_per_step": 1000 * s_dt,
            "teacher_ms_per_step": 1000 * t_dt, "speedup": t_dt / s_dt}


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--output", default="distill_output")
    p.add_argument("--quick", action="store_true")
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    cfg = copy.deepcopy(CONFIG)
    if args.quick:
        q = demo.quick_config()
        for key in ("sampling", "test", "train"):
            cfg[key] = q[key]
        cfg["md"]["steps"] = 2
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    train_db, test_db, teacher = label_sets(cfg, out)
    summary = demo.step_train(cfg, out, train_db)
    model_path = Path(summary["model"])
    acc = demo.step_accuracy(model_path, test_db)
    speed = time_at_500(cfg, model_path, teacher)
    lines = ["", f"CHGNet -> mlff PaiNN student, {cfg['element']}",
             f"training: {summary['steps']} steps in {summary['train_seconds']:.0f} s",
             f"  {'set':<8} {'frames':>6} {'F RMSE (eV/Å)':>14} {'F MAE (eV/Å)':>13} {'E RMSE (meV/atom)':>18}"]
    for r in acc:
        lines.append(f"  {r['set']:<8} {r['frames']:>6} {r['force_rmse']:>14.4f} {r['force_mae']:>13.4f} {r['energy_rmse_mev']:>18.2f}")
    lines.append(f"MD at {speed['n_atoms']} atoms: student {speed['student_ms_per_step']:.0f} ms/step, "
                 f"CHGNet {speed['teacher_ms_per_step']:.0f} ms/step -> {speed['speedup']:.1f}x faster")
    lines.append(f"total {(time.perf_counter() - t0) / 60:.1f} min")
    print("\n".join(lines))
    (out / "report.json").write_text(json.dumps({"train": summary, "accuracy": acc, "speed": speed}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
