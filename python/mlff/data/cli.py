"""`mlff label`, `mlff data` (check, convert) and `mlff sae`."""

from __future__ import annotations

import argparse
import json
from typing import List, Sequence


def _teacher_settings(items) -> dict:
    settings = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--teacher-option wants KEY=VALUE, got {item!r}")
        try:
            settings[key] = json.loads(value)
        except json.JSONDecodeError:
            settings[key] = value
    return settings


def _cmd_label(args: argparse.Namespace) -> int:
    from .label import label, parse_structure
    from .records import fidelity_name
    from .sampling import SamplingConfig
    from .teachers import make_teacher

    bases = []
    for spec in args.structure:
        bases.extend(parse_structure(spec, args.repeat))
    cfg = SamplingConfig(
        temperatures=args.temperatures,
        md_frames=args.md_frames,
        md_interval=args.md_interval,
        md_equilibration=args.md_equilibration,
        timestep_fs=args.timestep,
        rattle=args.rattle,
        rattle_amplitude=args.rattle_amplitude,
        strain=args.strain,
        max_strain=args.max_strain,
        seed=args.seed,
        as_is=args.as_is,
    )
    teacher = make_teacher(args.teacher, **_teacher_settings(args.teacher_option))
    if args.fidelity is not None:
        teacher.fidelity = fidelity_name(args.fidelity)
    s = label(args.output, bases, teacher, cfg, progress=not args.no_progress, max_new=args.max_new)
    print(
        f"{s.path}: {s.labelled} new structures labelled by {teacher.name} ({teacher.fidelity}) in {s.seconds:.1f} s "
        f"({s.already_done} already there, {s.planned} planned)"
    )
    return 0


def _element_numbers(symbols: Sequence[str]) -> List[int]:
    from ase.data import atomic_numbers, chemical_symbols

    unknown = [s for s in symbols if s not in chemical_symbols[1:]]  # [0] is ASE's dummy "X"
    if unknown:
        raise ValueError(
            f"{', '.join(repr(s) for s in unknown)} "
            f"{'is not an element symbol' if len(unknown) == 1 else 'are not element symbols'} "
            "(--elements wants symbols such as Cu H O, capitalised as in the periodic table)"
        )
    return [atomic_numbers[s] for s in symbols]


def _cmd_check(args: argparse.Namespace) -> int:
    from .store import read_records
    from .validate import validate_records

    elements = _element_numbers(args.elements) if args.elements else None
    records = read_records(args.dataset)
    report = validate_records(
        records, elements, on_invalid="skip" if args.skip_invalid else "refuse",
        min_structures=args.min_structures, source=args.dataset, require_forces=not args.energies_only,
    )
    print(f"{args.dataset}: {len(report.kept)} valid structures of {report.n_total}")
    print(report.contents())
    return 0


def _cmd_convert(args: argparse.Namespace) -> int:
    from .store import convert

    mode = "append" if args.append else "overwrite" if args.overwrite else "create"
    n = convert(args.source, args.destination, mode=mode, fidelity=args.fidelity)
    done = {"append": "appended", "overwrite": "replaced by", "create": "wrote"}[mode]
    print(f"{args.destination}: {done} {n} structures from {args.source}")
    return 0


def _cmd_sae(args: argparse.Namespace) -> int:
    from .sae import fit_sae_report, group_by_fidelity, write_sae_yaml
    from .store import read_records

    records = []
    for path in args.datasets:
        records.extend(read_records(path))
    elements = _element_numbers(args.elements) if args.elements else None
    fits = {
        name: fit_sae_report(recs, elements, tuple(args.percentiles), where=f"fidelity {name!r}")
        for name, recs in group_by_fidelity(records, args.fidelity).items()
    }
    notes = [f"Data: {', '.join(args.datasets)}."] + [f"{name}: {fit.describe()}." for name, fit in fits.items()]
    write_sae_yaml(args.output, {name: fit.energies for name, fit in fits.items()}, notes, tuple(args.percentiles))
    for name, fit in fits.items():
        print(f"{name}: {fit.describe()}")
        for el, e in fit.energies.items():
            print(f"  {el:<3} {e:18.8f} eV")
    print(f"wrote {args.output}")
    return 0


def register(subparsers) -> None:
    s = subparsers.add_parser(
        "label", help="sample structures and label them with a teacher calculator",
        description="Sample (teacher MD at several temperatures, rattling, strain) and label "
        "with any ASE calculator into an ASE database; re-running resumes.",
    )
    s.add_argument("structure", nargs="+", help="structure file, g2 molecule name or element (bulk)")
    s.add_argument("-o", "--output", required=True, help="ASE SQLite database (.db)")
    s.add_argument("--teacher", default="emt", help="emt, lammps-snap, lammps-eam, tblite, pyscf or module:factory")
    s.add_argument("--teacher-option", action="extend", nargs="+", metavar="KEY=VALUE",
                   help="teacher settings (one or more, repeatable), e.g. method=GFN1-xTB (tblite), "
                   "xc=PBE basis=def2-SVP (pyscf)")
    s.add_argument("--fidelity", metavar="NAME",
                   help="the level-of-theory tag of the labels (default: the teacher's, e.g. gfn2-xtb, pbe/def2-svp)")
    s.add_argument("--repeat", type=int, nargs=3, default=[1, 1, 1], help="supercell of periodic structures")
    s.add_argument("--temperatures", type=float, nargs="*", default=[300.0, 600.0, 900.0])
    s.add_argument("--md-frames", type=int, default=20, help="frames per temperature")
    s.add_argument("--md-interval", type=int, default=10, help="MD steps between frames")
    s.add_argument("--md-equilibration", type=int, default=0)
    s.add_argument("--timestep", type=float, default=2.0, help="fs")
    s.add_argument("--rattle", type=int, default=20)
    s.add_argument("--rattle-amplitude", type=float, default=0.1, help="Å")
    s.add_argument("--strain", type=int, default=20, help="periodic structures only")
    s.add_argument("--max-strain", type=float, default=0.04)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--max-new", type=int, help="stop after this many new structures")
    s.add_argument("--as-is", action="store_true",
                   help="label the structures as given (every frame of the file), no MD, rattling or strain: "
                        "e.g. the queue of LAMMPS fix mlff/extrapolation; re-running labels only new frames")
    s.add_argument("--no-progress", action="store_true")
    s.set_defaults(func=_cmd_label)

    d = subparsers.add_parser("data", help="check or convert datasets (.db, .xyz, .h5)")
    dsub = d.add_subparsers(dest="data_command", required=True)
    c = dsub.add_parser("check", help="validate a dataset and report invalid rows")
    c.add_argument("dataset")
    c.add_argument("--elements", nargs="*", help="the elements a model will know (e.g. Cu)")
    c.add_argument("--skip-invalid", action="store_true")
    c.add_argument("--min-structures", type=int, default=1)
    c.add_argument("--energies-only", action="store_true",
                   help="structures without forces are valid (the cheap level of a multi-fidelity set)")
    c.set_defaults(func=_cmd_check)
    v = dsub.add_parser(
        "convert", help="copy structures and metadata between formats (.db, .xyz, .h5)",
        description="Copy every structure and the store metadata from SOURCE to DESTINATION (formats by "
        "suffix). An existing DESTINATION is refused unless --append or --overwrite is given; a failed "
        "conversion leaves no (or the old) DESTINATION.",
    )
    v.add_argument("source")
    v.add_argument("destination")
    how = v.add_mutually_exclusive_group()
    how.add_argument("--append", action="store_true",
                     help="add to an existing destination (structures already there are refused)")
    how.add_argument("--overwrite", action="store_true", help="replace an existing destination (atomically)")
    v.add_argument("--fidelity", metavar="NAME",
                   help="tag the structures that carry no fidelity with this level of theory (e.g. gfn1-xtb)")
    v.set_defaults(func=_cmd_convert)

    a = subparsers.add_parser(
        "sae", help="fit self-atomic energies per fidelity and write them as YAML",
        description="Least squares of total energies on element counts, one fit per fidelity tag, refitted "
        "without outliers (residuals outside the percentile band, and gross errors). Refuses elements "
        "whose energies the compositions cannot separate.",
    )
    a.add_argument("datasets", nargs="+", help="stores (.db, .xyz, .h5); their structures are pooled by fidelity")
    a.add_argument("-o", "--output", required=True, help="YAML file {fidelity: {element: eV}} (replaced atomically)")
    a.add_argument("--fidelity", metavar="NAME", help="fidelity of structures that carry no fidelity tag")
    a.add_argument("--elements", nargs="*", help="fit exactly these elements (default: those in the data)")
    a.add_argument("--percentiles", type=float, nargs=2, default=[2.0, 98.0], metavar=("LOW", "HIGH"),
                   help="residual band kept in the refit (default 2 98)")
    a.set_defaults(func=_cmd_sae)
