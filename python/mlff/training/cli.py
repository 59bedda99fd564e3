"""`mlff train config.yaml [--resume]`."""

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
