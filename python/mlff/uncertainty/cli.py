"""`mlff ensemble`: several exported models as one committee file."""

from __future__ import annotations

import argparse


def _cmd_ensemble(args: argparse.Namespace) -> int:
    from .committee import build_committee

    meta = build_committee(args.models, args.output)
    members = meta.hyperparameters["members"]
    print(f"wrote {args.output}: committee of {len(members)} ({', '.join(m['kind'] for m in members)}), "
          f"elements {' '.join(meta.symbols)}, lists "
          + ", ".join(f"{nl.name} {nl.cutoff:g} Å" for nl in meta.neighbor_lists)
          + f", interaction range {meta.interaction_range:g} Å")
    print("outputs: energies (the members' mean), forces_uncertainty (per atom), energy_uncertainty, "
          "member_forces, member_energies")
    return 0


def register(subparsers) -> None:
    s = subparsers.add_parser(
        "ensemble",
        help="combine exported models into one committee file (mean energy + uncertainty)",
        description=(
            "Write a committee (deep ensemble) of exported .pt models as one contract file. It runs "
            "on the members' mean energy in every engine and reports forces_uncertainty (per-atom "
            "deviation of the members' forces, DeePMD's model deviation) and energy_uncertainty. "
            "Members may differ in architecture and cutoff but must know the same elements and "
            "share a dtype."
        ),
    )
    s.add_argument("models", nargs="+", help="two or more exported .pt files")
    s.add_argument("-o", "--output", required=True, help="the committee file to write (.pt)")
    s.set_defaults(func=_cmd_ensemble)
