"""The demo's pipeline on small organic molecules labelled by GFN2-xTB (tblite).

    .venv/bin/pip install tblite        # optional teacher (a wheel on PyPI)
    .venv/bin/python examples/molecules_tblite.py [--quick]

Labels teacher MD (300 and 600 K) and rattled geometries of a few molecules from
ASE's g2 set, trains one student for all of them, and reports its errors on
held-out teacher-MD frames (other seed). Output in ``molecules_output/``.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from pathlib import Path
from typing import List, Optional

os.environ.setdefault("OMP_NUM_THREADS", "1")

sys.path.insert(0, str(Path(__file__).resolve().parent))
import demo  # noqa: E402

MOLECULES = ["CH4", "H2O", "NH3", "CH3OH", "C2H6", "CH3CHO", "HCOOH", "C2H4"]
SAMPLING = dict(temperatures=[300.0, 600.0], md_frames=40, md_interval=5, md_equilibration=20,
                timestep_fs=0.5, rattle=30, rattle_amplitude=0.05, seed=0)
TEST = dict(temperatures=[300.0, 600.0], md_frames=5, md_interval=20, md_equilibration=100,
            timestep_fs=0.5, rattle=0, seed=999)


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--output", default="molecules_output")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--train-minutes", type=float, default=3.0)
    args = p.parse_args(argv)

    import torch

    from mlff.data.label import label, parse_structure
    from mlff.data.sampling import SamplingConfig
    from mlff.data.teachers import make_teacher

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    try:
        teacher = make_teacher("tblite")
    except RuntimeError as exc:
        raise SystemExit(str(exc)) from None
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    names = MOLECULES[:3] if args.quick else MOLECULES
    bases = [parse_structure(n)[0] for n in names]
    sampling, test = dict(SAMPLING), dict(TEST)
    if args.quick:
        sampling.update(md_frames=4, rattle=4, md_equilibration=0)
        test.update(md_frames=1, md_equilibration=10)
    t0 = time.perf_counter()
    demo.banner(f"1. labelling {', '.join(names)} with GFN2-xTB")
    label(out / "train.db", bases, teacher, SamplingConfig(**sampling), base_names=names)
    demo.banner("2. labelling held-out GFN2-xTB MD frames")
    label(out / "test.db", bases, teacher, SamplingConfig(**test), base_names=names)

    cfg = copy.deepcopy(demo.quick_config() if args.quick else demo.DEFAULT_CONFIG)
    cfg["train"]["model"].update(cutoff=5.0)
    # molecules differ in composition, so energies need more weight than in one-element bulk
    cfg["train"]["loss"].update(stress_weight=0.0, energy_weight=10.0)
    cfg["train"]["run"].update(max_minutes=args.train_minutes, batch_atoms=64)
    if not args.quick:
        cfg["train"]["run"].update(max_steps=100_000)  # small graphs: the time limit decides
    summary = demo.step_train(cfg, out, out / "train.db")
    acc = demo.step_accuracy(Path(summary["model"]), out / "test.db")
    print(f"\nGFN2-xTB -> student on {len(names)} molecules; training {summary['steps']} steps in "
          f"{summary['train_seconds']:.0f} s")
    for r in acc:
        print(f"  {r['set']:<8} {r['frames']:>4} frames  force RMSE {r['force_rmse']:.4f} eV/Å  "
              f"MAE {r['force_mae']:.4f} eV/Å  energy RMSE {r['energy_rmse_mev']:.2f} meV/atom")
    print(f"total {(time.perf_counter() - t0) / 60:.1f} min")
    (out / "report.json").write_text(json.dumps({"molecules": names, "train": summary, "accuracy": acc}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
