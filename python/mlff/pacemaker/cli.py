"""`mlff pacemaker config.yaml`: fit an ACE potential with pacemaker (python-ace)."""

from __future__ import annotations

import argparse
import json
import sys


def _cmd_pacemaker(args: argparse.Namespace) -> int:
    from .config import load_config
    from .trainer import PacemakerTrainer

    cfg = load_config(args.config)
    overrides = {}
    if args.output is not None:
        overrides["output"] = args.output.resolve()
    if args.timeout is not None:
        overrides["timeout"] = args.timeout
    if overrides:  # validated like the file's values
        cfg = type(cfg).model_validate({**cfg.model_dump(), **overrides})
    echo = None if args.quiet else (lambda line: print(line, file=sys.stderr, flush=True))
    potential = PacemakerTrainer(cfg, echo=echo).train()
    if args.json:
        print(json.dumps(potential.to_dict(), indent=2))
        return 0
    print(f"{potential.path}: ACE potential for {' '.join(potential.elements)} fitted by pacemaker on "
          f"{potential.n_structures} structures in {potential.seconds:.1f} s (work directory {potential.workdir})")
    for name, values in potential.metrics.items():
        print(f"  {name:5s} RMSE  energy {1e3 * float(values['rmse_energy_per_atom']):.3f} meV/atom  "
              f"forces {1e3 * float(values['rmse_forces']):.3f} meV/Å  ({values['source']})")
    if potential.activeset is not None:
        print(f"  active set: {potential.activeset}")
    return 0


def register(subparsers) -> None:
    from pathlib import Path

    s = subparsers.add_parser(
        "pacemaker", help="fit an ACE potential with pacemaker (python-ace, installed by the user)",
        description="Prepare the data and input.yaml from an mlff config, run pacemaker and pace_yaml2yace "
        "in a fresh work directory and write the .yace (only on success) with its train/test RMSE.",
    )
    s.add_argument("config", help="YAML file of mlff.pacemaker.TrainingConfig")
    s.add_argument("-o", "--output", type=Path, help="the .yace to write (overrides the config's output)")
    s.add_argument("--timeout", type=float, help="seconds for the whole run (overrides the config)")
    s.add_argument("--json", action="store_true", help="print the result record as JSON")
    s.add_argument("-q", "--quiet", action="store_true", help="do not echo pacemaker's log")
    s.set_defaults(func=_cmd_pacemaker)
