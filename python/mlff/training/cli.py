"""`mlff train config.yaml [--resume]` and `mlff tune config.yaml`."""

from __future__ import annotations

import argparse


def _cmd_train(args: argparse.Namespace) -> int:
    from .config import load_config
    from .trainer import train

    cfg = load_config(args.config)
    updates = {}
    if args.output_dir:
        updates["output_dir"] = args.output_dir
    if args.max_steps:
        updates["max_steps"] = args.max_steps
    if args.no_progress:
        updates["progress"] = False
    if updates:
        cfg = cfg.model_copy(update={"run": cfg.run.model_copy(update=updates)})
    train(cfg, resume=args.resume)
    return 0


def _cmd_tune(args: argparse.Namespace) -> int:
    from .tune import prepare, tune

    if args.check:
        tuner = prepare(args.config)
        print(f"{args.config}: ok ({len(tuner.cfg.space)} parameters, study {tuner.study_name!r} "
              f"in {tuner.storage_url})")
        return 0
    tune(args.config)
    return 0


TUNE_HELP = """\
Search hyper-parameters of `mlff train` with Optuna. The YAML config:

  base: train.yaml            # a train config (relative to this file), or the config inline
  study:
    name: cu-painn            # default: this file's name
    storage: sqlite:///study.db   # any Optuna RDB URL; default <output_dir>/study.db
    direction: minimize
    metric: val_loss          # or force_rmse, energy_rmse_per_atom, ... (metrics.csv columns)
    n_trials: 20              # COMPLETE + PRUNED trials of the study, shared by all workers
    timeout_minutes: null
    sampler: tpe              # tpe | random; seed: 0
    pruner: median            # median | none; n_startup_trials: 5, n_warmup_steps: 0
    heartbeat_interval: 60    # s; a RUNNING trial silent for grace_period (2x) is failed
    max_retry: 3              # ... and re-queued with the same parameters this often
  space:                      # dotted paths into the train config
    optim.lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}
    model.n_features: {type: categorical, choices: [16, 32, 64]}
    model.num_interactions: {type: int, low: 1, high: 3}
  output_dir: tune_output     # trial_<n>/, trials.csv, best_config.yaml, tune.png

A trial's value is the metric at its best checkpoint (the lowest val_loss). Re-running the
command continues the study without repeating finished trials; several processes on one
storage share it. A trial left RUNNING by a killed process is marked FAIL once its heartbeat
is grace_period old and its parameters run again as a new trial. The sampler seed is offset
by the number of trials already stored, so a resumed run draws new points.
"""


def register(subparsers) -> None:
    s = subparsers.add_parser(
        "train", help="train a student on labelled data (YAML config)",
        description="Train, validate, checkpoint and export a model. Under torchrun it trains "
        "data-parallel (gloo on CPU, nccl on CUDA).",
    )
    s.add_argument("config", help="YAML training config (see README, section Training)")
    s.add_argument("--resume", action="store_true", help="continue from output_dir/checkpoints/last.ckpt")
    s.add_argument("--output-dir", help="override run.output_dir")
    s.add_argument("--max-steps", type=int, help="override run.max_steps")
    s.add_argument("--no-progress", action="store_true")
    s.set_defaults(func=_cmd_train)

    s = subparsers.add_parser(
        "tune", help="hyper-parameter search over mlff train runs (Optuna, resumable)",
        description=TUNE_HELP, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    s.add_argument("config", help="YAML tune config (see above and README, section Hyper-parameter search)")
    s.add_argument("--check", action="store_true", help="validate the config and the search space, run nothing")
    s.set_defaults(func=_cmd_tune)
