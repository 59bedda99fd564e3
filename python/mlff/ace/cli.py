"""ACE on the command line: ``mlff info`` and ``mlff export`` of ACE files, ``mlff activeset``.

Imports stay inside the functions: the CLI starts without torch or the native core.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .formats import is_ace_path


def print_ace_info(path: str, as_json: bool = False) -> int:
    from .potential import load_potential

    model = load_potential(path)
    summary = model.summary()
    if as_json:
        from .potential import _jsonable

        print(json.dumps(_jsonable(summary), indent=1, sort_keys=True))
        return 0
    print(f"file:              {path}")
    print(f"kind:              ACE ({model.format} file), evaluated by mlff's native ACE core")
    print(f"elements:          {' '.join(model.elements)}")
    print(f"cutoff:            {model.cutoff:g} Å  (interaction range; ACE is local)")
    for key, value in summary.items():
        if key in ("elements",):
            continue
        print(f"{key + ':':<19}{_fmt(value)}")
    return 0


def _fmt(value) -> str:
    if isinstance(value, dict):
        return "; ".join(f"{k} {_fmt(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return " ".join(_fmt(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def export_ace(args: argparse.Namespace) -> int:
    """``mlff export Cu.yace -o Cu.pt``: the TorchScript ACE module under the contract."""
    import torch

    from ..contract import export_model
    from .torch_module import ace_module_from_file

    extra = [name for name in ("dispersion", "functional", "dispersion_cutoff", "cn_cutoff", "switch_width",
                               "dispersion_fidelities", "fidelity") if getattr(args, name, None)]
    if extra:
        raise ValueError(f"--{extra[0].replace('_', '-')} is for trained mlff checkpoints, not ACE files")
    module, _ = ace_module_from_file(args.checkpoint)
    if args.dtype:
        module = module.to(getattr(torch, args.dtype))
    meta = export_model(module, args.output, provenance={"source": str(Path(args.checkpoint).resolve())})
    print(f"wrote {args.output}: ACE from {args.checkpoint}, elements {meta.symbols}, "
          f"cutoff {meta.cutoff} Å, {meta.dtype}")
    return 0


def _cmd_activeset(args: argparse.Namespace) -> int:
    from ..data.store import read_records
    from .activeset import active_set_from_structures

    structures = [record.to_atoms() for record in read_records(args.data)]
    if not structures:
        raise ValueError(f"{args.data} holds no structures")
    inverses = active_set_from_structures(
        args.potential, structures, args.output, nonlinear=args.nonlinear,
        gamma_tolerance=args.gamma_tolerance, max_iters=args.max_iterations,
    )
    sizes = ", ".join(f"{el} {m.shape[0]}" for el, m in inverses.items())
    kind = "non-linear" if args.nonlinear else "linear"
    print(f"wrote {args.output}: {kind} active set of {len(structures)} structures ({sizes} per element)")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser(
        "activeset",
        help="select an ACE active set (MaxVol) from data and write its inverse (.asi)",
        description="Computes the B-basis projections of every atom of the data with the potential, "
        "selects per element the most linearly independent atoms by MaxVol, and writes the inverse "
        "active-set matrices as a .asi file that mlff (extrapolation_grade) and pyace read.",
    )
    s.add_argument("data", help="structures: an mlff store (ASE database, extxyz, HDF5)")
    s.add_argument("potential", help="the B-basis potential (pacemaker's .yaml)")
    s.add_argument("-o", "--output", required=True, help="the .asi file to write")
    s.add_argument("--nonlinear", action="store_true",
                   help="non-linear vectors dE/dc (default: linear B-projections, as pace_activeset)")
    s.add_argument("--gamma-tolerance", type=float, default=1.01)
    s.add_argument("--max-iterations", type=int, default=300)
    s.set_defaults(func=_cmd_activeset)
