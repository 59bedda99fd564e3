"""Active learning against random sampling at equal teacher calls (BENCHMARKS.md).

``python -m mlff.learn.bench [--workdir DIR] [--iterations 3] [--seed 0]`` on the demo
system (32-atom fcc Cu, EMT teacher):

1. ``mlff learn`` from a small rattled start: explore at 300/900/1500 K, label what the
   committee is unsure of, retrain; the teacher calls are the final store's size.
2. Random sampling with the same teacher calls: the same start, plus frames drawn at
   random from everything the loop explored (the same pool the loop selected from),
   labelled by the same teacher, trained with the same member config and as many steps
   as a loop member took in all.
3. Both committees' mean forces against EMT on held-out EMT MD at 300, 900 and 1500 K
   (the temperatures explored), and at 1800 K (beyond them).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Dict, List, Sequence

import numpy as np

#: the members (as the demo's student, smaller so the benchmark fits minutes)
MEMBER = {
    "data": {"valid_fraction": 0.1, "min_structures": 5},
    "model": {"kind": "painn", "cutoff": 4.5, "n_features": 16, "num_interactions": 2, "n_rbf": 10},
    "loss": {"energy_weight": 1.0, "forces_weight": 20.0},
    "optim": {"lr": 3.0e-3},
    "run": {"max_steps": 300, "valid_every": 100, "batch_atoms": 128, "plots": False, "tensorboard": False,
            "dtype": "float32", "num_threads": 1, "progress": False},
}


def _test_frames(temperatures: Sequence[float], n_per: int, seed: int):
    """Held-out EMT Langevin MD frames of 32-atom Cu (independent seeds)."""
    from ase import units
    from ase.build import bulk
    from ase.calculators.emt import EMT
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

    frames = []
    for t in temperatures:
        atoms = bulk("Cu", "fcc", a=3.615, cubic=True).repeat((2, 2, 2))
        atoms.calc = EMT()
        MaxwellBoltzmannDistribution(atoms, temperature_K=t, rng=np.random.default_rng(seed + int(t)))
        dyn = Langevin(atoms, 2 * units.fs, temperature_K=t, friction=0.02, rng=np.random.default_rng(seed + 7 * int(t)))
        dyn.run(200)
        for _ in range(n_per):
            dyn.run(25)
            a = atoms.copy()
            a.info["temperature"] = t
            a.arrays["ref_forces"] = atoms.get_forces().copy()
            frames.append(a)
    return frames


def _force_rmse(model: str, frames) -> Dict[float, float]:
    from ..calculator import MLFFCalculator

    calc = MLFFCalculator(model, compile=False)
    errors: Dict[float, List[float]] = {}
    for a in frames:
        b = a.copy()
        b.calc = calc
        diff = b.get_forces() - a.arrays["ref_forces"]
        errors.setdefault(a.info["temperature"], []).append(float((diff**2).mean()))
    return {t: float(np.sqrt(np.mean(v))) for t, v in errors.items()}


def run(workdir: Path, iterations: int, seed: int, per_iteration: int = 12) -> Dict[str, object]:
    from ..data.store import read_records, write_records
    from ..learn.config import LearnConfig, member_config
    from ..learn.executor import label_frame
    from ..learn.explore import Frames
    from ..learn.loop import learn
    from ..training.trainer import train
    from ..uncertainty import build_committee

    workdir.mkdir(parents=True, exist_ok=True)
    members = 2
    cfg = LearnConfig(
        teacher={"name": "emt"},
        initial_sampling={"rattle": 12, "strain": 4, "md_frames": 0, "rattle_amplitude": 0.1, "seed": seed},
        structures=["Cu"], repeat=[2, 2, 2], model=MEMBER, members=members,
        explore={"engine": "ase", "temperatures": [300, 900, 1500], "steps": 300, "interval": 10, "timestep_fs": 2},
        select={"lo": 0.03, "hi": 1.0, "max_per_iteration": per_iteration, "dedup": "farthest_point"},
        label={"executor": "local", "workers": 1},
        stop={"max_iterations": iterations, "uncertain_fraction": 0.0},
        output_dir=str(workdir / "al"),
    ).resolve_paths(workdir)
    summary = learn(cfg, log=lambda msg: None)
    al_store = summary.dataset
    n_calls = len(read_records(al_store))
    n_initial = len(read_records(workdir / "al" / "initial.db"))

    # the random baseline: the same start plus as many frames drawn from the explored pool
    pool = [Frames.load(p) for p in sorted((workdir / "al").glob("it*/frames.npz"))]
    candidates = [(f, i) for f in pool for i in range(len(f))]
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(candidates), size=n_calls - n_initial, replace=False)
    from ..data.records import Record

    records = list(read_records(workdir / "al" / "initial.db"))
    spec = {"name": "emt", "settings": {}}
    for k, p in enumerate(sorted(picks)):
        frames, i = candidates[p]
        a = frames.atoms(i)
        lab = label_frame(spec, {"numbers": a.numbers, "positions": a.positions, "cell": a.cell[:],
                                 "pbc": a.pbc, "info": {}})
        records.append(Record(id=f"random-{k}", numbers=a.numbers, positions=a.positions, cell=np.asarray(a.cell[:]),
                              pbc=a.pbc, energy=lab["energy"], forces=lab["forces"], stress=lab["stress"],
                              fidelity=records[0].fidelity, info={"sample_id": f"random-{k}"}))
    random_store = workdir / "random.db"
    write_records(random_store, records, mode="overwrite")
    steps = MEMBER["run"]["max_steps"] * (iterations + 1)  # a loop member's steps over all iterations
    paths = []
    for m in range(members):
        out = workdir / f"random_m{m}"
        tcfg = member_config(cfg, random_store, out, m, None)
        tcfg = tcfg.model_copy(update={"run": tcfg.run.model_copy(update={"max_steps": steps})})
        if not (out / "model.pt").exists():
            train(tcfg)
        paths.append(out / "model.pt")
    build_committee(paths, workdir / "random_committee.pt")

    test = _test_frames([300, 900, 1500, 1800], 12, seed + 1000)
    result = {
        "teacher_calls": n_calls,
        "initial": n_initial,
        "iterations": iterations,
        "active_learning": _force_rmse(summary.model, test),
        "random": _force_rmse(str(workdir / "random_committee.pt"), test),
    }
    (workdir / "result.json").write_text(json.dumps(result, indent=1))
    return result


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m mlff.learn.bench", description=__doc__.splitlines()[0])
    p.add_argument("--workdir", default="bench_output/learn")
    p.add_argument("--iterations", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    r = run(Path(args.workdir), args.iterations, args.seed)
    print(f"teacher calls: {r['teacher_calls']} ({r['initial']} initial), {r['iterations']} iterations")
    print("| held-out MD | active learning: force RMSE (eV/Å) | random: force RMSE (eV/Å) | ratio |")
    print("|---|---|---|---|")
    for t in sorted(r["active_learning"]):
        a, b = r["active_learning"][t], r["random"][t]
        print(f"| {t:g} K | {a:.4f} | {b:.4f} | {b / a:.2f} |")


if __name__ == "__main__":
    main()
