"""`mlff learn config.yaml [--scheduler ADDRESS]`: the active-learning loop (resumable)."""

from __future__ import annotations

import argparse

LEARN_HELP = """\
Active learning: explore with a committee (MD at the given temperatures/pressures),
select frames whose force deviation lies in the trust window [lo, hi) (ACE: the
extrapolation grade), label them with the teacher, retrain the members (warm start,
seeds base + member), repeat until the uncertain fraction falls below the target or the
iteration budget is spent. Re-running the same command resumes a killed run.

  teacher: {name: emt}                 # any mlff label teacher; settings: {...}
  initial_data: data.db                # or initial_sampling: {rattle: 20, strain: 10, md_frames: 0}
  structures: [start.xyz]              # exploration starts; repeat: [2, 2, 2]
  model: train.yaml                    # mlff train config of the members (or inline)
  members: 3
  explore: {engine: ase, temperatures: [300, 900], pressures: null, steps: 200, interval: 10}
  select: {lo: 0.05, hi: 0.5, max_per_iteration: 20, dedup: farthest_point}
  label: {executor: local, workers: 2}  # or executor: dask, scheduler: tcp://host:8786
  stop: {max_iterations: 5, uncertain_fraction: 0.05}
  test_data: null
  output_dir: learn_output             # state.json, dataset.db, it<k>/, report.csv, report.png
"""


def _cmd_learn(args: argparse.Namespace) -> int:
    from .config import load_learn_config
    from .loop import learn

    cfg = load_learn_config(args.config, scheduler=args.scheduler)
    summary = learn(cfg)
    print(f"mlff learn: {summary.reason} after {summary.iterations} iteration(s); model {summary.model}; "
          f"data {summary.dataset}")
    return 0


def register(subparsers) -> None:
    s = subparsers.add_parser(
        "learn", help="active learning: explore, select, label, retrain (YAML config, resumable)",
        description=LEARN_HELP, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    s.add_argument("config", help="YAML learn config (see above and README, section Active learning)")
    s.add_argument("--scheduler", metavar="ADDRESS",
                   help="label on this Dask distributed scheduler (tcp://host:8786) instead of local processes")
    s.set_defaults(func=_cmd_learn)
