"""Multi-fidelity training (AIMNet2-style): a little DFT, more GFN2-xTB, lots of GFN1-xTB.

    .venv/bin/python examples/multifidelity.py [--quick] [--steps N] [--output DIR]

Small organic molecules from ASE's g2 set (H, C, N, O):

- fidelity 0, ``pbe/def2-svp``: PySCF DFT with forces on a few hundred rattled geometries;
- fidelity 1, ``gfn2-xtb``: tblite GFN2-xTB on teacher MD frames and rattled geometries;
- fidelity 2, ``gfn1-xtb``: tblite GFN1-xTB, energies only (forces dropped on purpose).

Two AIMNet2-style models are trained with the same number of steps and the same batch
size: one on the DFT data alone, one on all three levels (shared backbone, a readout
and self-atomic energies per level, fidelity sampling weights). Both are judged on
held-out DFT geometries (another seed). The multi-fidelity file is then run in ASE,
LAMMPS (1 and 2 ranks) and OpenMM with the fidelity chosen at run time.

Output in ``multifidelity_output/`` (``report.json``); the numbers in BENCHMARKS.md come
from this script. Not part of the test suite (the DFT labels take minutes).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

os.environ.setdefault("OMP_NUM_THREADS", "1")

MOLECULES = ["CH4", "H2O", "NH3", "CH3OH", "HCOOH", "C2H6", "H3CNH2", "H2CO"]
FIDELITIES = ["pbe/def2-svp", "gfn2-xtb", "gfn1-xtb"]
#: sampling per level: (teacher, teacher options, sampling settings)
LEVELS: Dict[str, Dict[str, Any]] = {
    "gfn2": dict(teacher="tblite", options={"method": "GFN2-xTB"},
                 sampling=dict(temperatures=[300.0, 600.0], md_frames=60, md_interval=5, md_equilibration=20,
                               timestep_fs=0.5, rattle=60, rattle_amplitude=0.08, seed=1)),
    "gfn1": dict(teacher="tblite", options={"method": "GFN1-xTB"},
                 sampling=dict(temperatures=[300.0, 600.0], md_frames=100, md_interval=5, md_equilibration=20,
                               timestep_fs=0.5, rattle=100, rattle_amplitude=0.08, seed=2)),
    "dft_train": dict(teacher="pyscf", options={},
                      sampling=dict(temperatures=[], md_frames=0, rattle=20, rattle_amplitude=0.08, seed=3)),
    "dft_test": dict(teacher="pyscf", options={},
                     sampling=dict(temperatures=[], md_frames=0, rattle=4, rattle_amplitude=0.08, seed=999)),
}
MODEL = dict(kind="aimnet2", cutoff=5.0, n_features=32, n_passes=2, n_gaussians=12, coulomb="simple",
             coulomb_cutoff=12.0, sr_cutoff=4.6)


def banner(text: str) -> None:
    print(f"\n=== {text}", flush=True)


def step_label(out: Path, quick: bool) -> Dict[str, Path]:
    """Label every level (re-running resumes); GFN1 keeps its energies only."""
    from mlff.data import read_records, write_records
    from mlff.data.label import label, parse_structure
    from mlff.data.sampling import SamplingConfig
    from mlff.data.teachers import make_teacher

    bases = [parse_structure(n)[0] for n in MOLECULES]
    stores: Dict[str, Path] = {}
    for name, level in LEVELS.items():
        sampling = dict(level["sampling"])
        if quick:
            sampling.update(md_frames=min(sampling["md_frames"], 5), rattle=min(sampling["rattle"], 3),
                            md_equilibration=0)
        banner(f"labelling {name} ({level['teacher']} {level['options'] or ''})")
        path = out / f"{name}.db"
        label(path, bases, make_teacher(level["teacher"], **level["options"]), SamplingConfig(**sampling),
              base_names=MOLECULES, progress=False)
        stores[name] = path
    # the cheap level as it usually comes: energies only
    energies_only = out / "gfn1_energies.db"
    if not energies_only.exists():
        records = list(read_records(stores["gfn1"]))
        for r in records:
            r.forces = None
        write_records(energies_only, records, mode="create")
    stores["gfn1"] = energies_only
    return stores


def config(out: Path, name: str, stores: List[Path], fidelities: Optional[List[str]], steps: int,
           weights: Optional[Dict[str, float]] = None) -> Dict[str, Any]:
    model = dict(MODEL)
    data: Dict[str, Any] = {"train": [str(s.resolve()) for s in stores], "valid_fraction": 0.1,
                            "min_structures": 10, "require_forces": fidelities is None}
    if fidelities:
        model.update(use_fidelity_readouts=True, fidelities=fidelities)
        data.update(fidelities=fidelities, fidelity_weights=weights or {})
    return {
        "data": data,
        "model": model,
        "sae": "fit",
        "loss": {"energy_weight": 10.0, "forces_weight": 10.0},
        "optim": {"lr": 2e-3, "weight_decay": 1e-5, "grad_clip": 10.0},
        "schedule": {"kind": "cosine", "warmup_steps": 50},
        "run": {"output_dir": str((out / name).resolve()), "max_steps": steps, "batch_atoms": 96,
                "valid_every": max(steps // 10, 10), "keep_best": 1, "dtype": "float32", "progress": False,
                "plots": False, "tensorboard": False},
    }


def step_train(out: Path, name: str, cfg: Dict[str, Any]) -> Dict[str, Any]:
    import yaml

    from mlff.training import TrainConfig, train

    banner(f"training {name}")
    shutil.rmtree(out / name, ignore_errors=True)
    train_cfg = TrainConfig(**cfg)
    (out / f"{name}.yaml").write_text(yaml.safe_dump(train_cfg.model_dump(), sort_keys=False))
    t0 = time.perf_counter()
    summary = train(train_cfg)
    summary["train_seconds"] = time.perf_counter() - t0
    return summary


def dft_errors(model_path: Path, test_db: Path, fidelity: Optional[str]) -> Dict[str, float]:
    """Force and energy errors of the DFT level on held-out geometries."""
    import numpy as np

    from mlff import MLFFCalculator
    from mlff.data import read_records

    calc = MLFFCalculator(model_path, fidelity=fidelity)
    df, de = [], []
    for r in read_records(test_db):
        atoms = r.to_atoms()
        atoms.calc = calc
        df.append((atoms.get_forces() - r.forces).ravel())
        de.append((atoms.get_potential_energy() - r.energy) / len(atoms))
    df, de = np.concatenate(df), np.asarray(de)
    return {"force_rmse": float(np.sqrt(np.mean(df**2))), "force_mae": float(np.mean(np.abs(df))),
            "energy_rmse_mev": float(1000 * np.sqrt(np.mean((de - de.mean()) ** 2))),
            "structures": int(len(de))}


def step_engines(model_path: Path) -> List[Dict[str, Any]]:
    """One molecule, every fidelity, in every engine: max differences to ASE."""
    import numpy as np
    from ase.build import molecule

    from mlff import MLFFCalculator
    from mlff.lammps import evaluate as lammps_evaluate
    from mlff.openmm import evaluate_atoms

    atoms = molecule("CH3OH")
    atoms.rattle(0.03, seed=4)
    rows = []
    for fid in FIDELITIES:
        a = atoms.copy()
        a.calc = MLFFCalculator(model_path, fidelity=fid)
        ref = {"energy": a.get_potential_energy(), "forces": a.get_forces(), "charges": a.get_charges()}
        got = {
            "LAMMPS 1 rank": lammps_evaluate(model_path, [atoms], fidelity=fid)[0],
            "LAMMPS 2 ranks": lammps_evaluate(model_path, [atoms], nprocs=2, fidelity=fid)[0],
            "OpenMM Reference": evaluate_atoms(model_path, atoms, platform="Reference", fidelity=fid),
        }
        for engine, res in got.items():
            rows.append({"fidelity": fid, "engine": engine, "energy_ase": ref["energy"],
                         "dE": abs(res["energy"] - ref["energy"]),
                         "max_dF": float(np.abs(res["forces"] - ref["forces"]).max()),
                         "max_dq": float(np.abs(res["charges"] - ref["charges"]).max())})
    return rows


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--output", default="multifidelity_output")
    p.add_argument("--quick", action="store_true", help="tiny data and few steps (a smoke test)")
    p.add_argument("--steps", type=int, default=8000)
    p.add_argument("--dft-weight", type=float, default=15.0,
                   help="sampling weight of the DFT level (GFN2 1, GFN1 0.5): how often its batches are drawn")
    args = p.parse_args(argv)

    import torch

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    steps = 40 if args.quick else args.steps
    t0 = time.perf_counter()
    stores = step_label(out, args.quick)

    single = step_train(out, "dft_only", config(out, "dft_only", [stores["dft_train"]], None, steps))
    multi_cfg = config(out, "multi", [stores["dft_train"], stores["gfn2"], stores["gfn1"]], FIDELITIES, steps,
                       weights={"pbe/def2-svp": args.dft_weight, "gfn2-xtb": 1.0, "gfn1-xtb": 0.5})
    multi = step_train(out, "multi", multi_cfg)

    banner("held-out DFT geometries")
    err_single = dft_errors(Path(single["model"]), stores["dft_test"], None)
    err_multi = dft_errors(Path(multi["model"]), stores["dft_test"], FIDELITIES[0])
    gain = 1.0 - err_multi["force_rmse"] / err_single["force_rmse"]
    banner("the multi-fidelity file in every engine, fidelity chosen at run time")
    engines = step_engines(Path(multi["model"]))

    print(f"\n{'model':<22} {'F RMSE (eV/Å)':>14} {'F MAE (eV/Å)':>13} {'E RMSE (meV/atom)':>18} {'train s':>8}")
    for name, err, summ in (("DFT only", err_single, single), ("multi-fidelity", err_multi, multi)):
        print(f"{name:<22} {err['force_rmse']:>14.4f} {err['force_mae']:>13.4f} {err['energy_rmse_mev']:>18.2f} "
              f"{summ['train_seconds']:>8.0f}")
    print(f"multi-fidelity force RMSE on DFT is {100 * gain:+.1f} % lower than DFT-only training "
          f"({steps} steps each, {err_single['structures']} held-out DFT structures)")
    print(f"\n{'fidelity':<14} {'engine':<18} {'|dE| (eV)':>10} {'max|dF| (eV/Å)':>15} {'max|dq| (e)':>12}")
    for r in engines:
        print(f"{r['fidelity']:<14} {r['engine']:<18} {r['dE']:>10.2e} {r['max_dF']:>15.2e} {r['max_dq']:>12.2e}")
    wall = time.perf_counter() - t0
    print(f"total {wall / 60:.1f} min; outputs in {out}/")
    report = {"molecules": MOLECULES, "fidelities": FIDELITIES, "steps": steps, "dft_weight": args.dft_weight,
              "dft_only": {"errors": err_single, "train_seconds": single["train_seconds"]},
              "multi": {"errors": err_multi, "train_seconds": multi["train_seconds"]},
              "force_rmse_reduction": gain, "engines": engines, "wall_seconds": wall}
    (out / "report.json").write_text(json.dumps(report, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
