"""Benchmark: mlff's ACE fit against pacemaker's (pyace backend) on the same EMT Cu data and
the same ~30-function spec. Not part of the test suite (pacemaker takes many minutes).

    python -m mlff.ace.fit.benchmark --out /tmp/ace_bench [--pacemaker] [--maxiter 30]

Data: 60 training and 20 held-out rattled (0.08 Å), strained (2 %) fcc Cu cells of 32 atoms
with lattice constants 0.96-1.05 x 3.61 Å, labelled by ASE's EMT (seeds 0 and 1). Spec:
FinnisSinclairShiftedScaled [1, 1, 1, 0.5] (ndensity 2), ChebExpCos (5.25), rcut 5 Å,
nradmax_by_orders [15, 3, 2, 1], lmax_by_orders [0, 3, 2, 1], 30 functions per element,
kappa 0.3, same maxiter for both. pacemaker gets ``energy_corrected`` with the same
least-squares reference energy mlff uses, and ``backend: {evaluator: pyace}`` (its
licence-free CPU path: BFGS with finite-difference gradients).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

import numpy as np

SPEC: Dict[str, Any] = {
    "deltaSplineBins": 0.001,
    "elements": ["Cu"],
    "embeddings": {"ALL": {"npot": "FinnisSinclairShiftedScaled", "fs_parameters": [1, 1, 1, 0.5], "ndensity": 2}},
    "bonds": {"ALL": {"radbase": "ChebExpCos", "radparameters": [5.25], "rcut": 5.0, "dcut": 0.01}},
    "functions": {
        "number_of_functions_per_element": 30,
        "ALL": {"nradmax_by_orders": [15, 3, 2, 1], "lmax_by_orders": [0, 3, 2, 1]},
    },
}


def emt_cu(n: int, seed: int) -> List[Any]:
    from ase.build import bulk
    from ase.calculators.emt import EMT
    from ase.calculators.singlepoint import SinglePointCalculator

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        a = bulk("Cu", "fcc", a=3.61 * rng.uniform(0.96, 1.05), cubic=True).repeat(2)
        a.set_cell(a.cell @ (np.eye(3) + rng.normal(0, 0.02, (3, 3))), scale_atoms=True)
        a.positions += rng.normal(0, 0.08, a.positions.shape)
        a.calc = EMT()
        e, f, s = a.get_potential_energy(), a.get_forces(), a.get_stress()
        a.calc = SinglePointCalculator(a, energy=e, forces=f, stress=s)
        out.append(a)
    return out


def _pacemaker_input(out: Path, maxiter: int) -> str:
    import yaml

    cfg = {
        "cutoff": 5.0,
        "seed": 42,
        "data": {"filename": str(out / "train.pckl.gzip"), "test_filename": str(out / "test.pckl.gzip")},
        "potential": SPEC,
        "fit": {"loss": {"kappa": 0.3, "L1_coeffs": 0, "L2_coeffs": 0}, "optimizer": "BFGS", "maxiter": maxiter},
        "backend": {"evaluator": "pyace", "parallel_mode": "serial"},
    }
    return yaml.safe_dump(cfg, sort_keys=False)


def _pacemaker_metrics(potential: Path, eref: float, structures: List[Any]) -> Dict[str, float]:
    """RMSEs of pacemaker's ``output_potential.yaml`` (read by mlff's core; E0 = the reference
    energy its ``energy_corrected`` removed) on ``structures``. pacemaker's ``test_metrics.txt``
    holds only the first iteration's row with the pyace backend, so the numbers are recomputed
    here exactly as mlff's are (the training RMSE this gives equals pacemaker's own log)."""
    from .. import _ace
    from .fit import metrics_of

    model = _ace.BBasis.load(str(potential)).energy_model.to_dict()
    model["E0"] = [eref]
    return metrics_of(model, structures)[0]


def main(argv: List[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--maxiter", type=int, default=30)
    p.add_argument("--pacemaker", action="store_true", help="also run pacemaker (needs python-ace)")
    args = p.parse_args(argv)
    import torch

    from .fit import fit_ace

    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    train, test = emt_cu(60, 0), emt_cu(20, 1)
    results: Dict[str, Any] = {}
    t0 = time.perf_counter()
    res = fit_ace(train, {"potential": SPEC, "kappa": 0.3, "maxiter": args.maxiter}, output_dir=out / "mlff",
                  test_structures=test, plots=False, active_set=False)
    results["mlff"] = dict(wall_s=time.perf_counter() - t0, test=res.metrics["test"], train=res.metrics["train"],
                           evaluations=res.n_evaluations)
    if args.pacemaker:
        import pandas as pd

        n = np.array([len(a) for a in train])
        e = np.array([a.get_potential_energy() for a in train])
        eref = float(e.sum() / n.sum())  # the least-squares reference of a one-element set
        for name, ss in (("train", train), ("test", test)):
            pd.DataFrame({
                "ase_atoms": ss,
                "energy": [a.get_potential_energy() for a in ss],
                "forces": [a.get_forces() for a in ss],
                "energy_corrected": [a.get_potential_energy() - eref * len(a) for a in ss],
            }).to_pickle(out / f"{name}.pckl.gzip", compression="gzip")
        work = out / "pacemaker"
        work.mkdir(exist_ok=True)
        (work / "input.yaml").write_text(_pacemaker_input(out, args.maxiter))
        exe = shutil.which("pacemaker") or str(Path(sys.executable).parent / "pacemaker")
        t0 = time.perf_counter()
        subprocess.run([exe, "input.yaml"], cwd=work, check=True, stdout=subprocess.DEVNULL,
                       stderr=open(work / "pacemaker.err", "w"), env=dict(os.environ, OMP_NUM_THREADS="1"))
        wall = time.perf_counter() - t0
        pot = work / "output_potential.yaml"
        results["pacemaker"] = dict(wall_s=wall, test=_pacemaker_metrics(pot, eref, test),
                                    train=_pacemaker_metrics(pot, eref, train))
    print(json.dumps(results, indent=2))
    (out / "results.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
