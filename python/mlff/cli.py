"""The `mlff` command line."""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional


def _cmd_info(args: argparse.Namespace) -> int:
    from .ace.cli import print_ace_info
    from .ace.formats import is_ace_path
    from .contract import read_metadata

    if is_ace_path(args.model):
        return print_ace_info(args.model, as_json=args.json)
    meta = read_metadata(args.model)
    if args.json:
        print(meta.to_json())
        return 0
    print(f"file:              {args.model}")
    print(f"kind:              {meta.kind}")
    print(f"contract version:  {meta.contract_version}")
    print(f"elements:          {' '.join(meta.symbols)}  (Z = {meta.elements})")
    lists = ", ".join(f"{nl.name} {nl.cutoff:g} Å" for nl in meta.neighbor_lists)
    print(f"neighbour lists:   {lists}")
    print(f"interactions:      {meta.num_interactions}")
    print(f"interaction range: {meta.interaction_range} Å  (ghost shell for exact MPI runs)")
    if meta.locality == "global":
        how = (f"{meta.global_sums} whole-system sums, all-reduced under LAMMPS MPI" if meta.global_sums
               else "whole-system terms: one LAMMPS rank only")
        print(f"locality:          global ({how})")
    else:
        print("locality:          local")
    print(f"dtype:             {meta.dtype}")
    def describe(o) -> str:
        parts = ["per atom" if o.per_atom else "global"]
        if o.shape:
            parts.append("x".join(map(str, o.shape)))
        if o.unit:
            parts.append(o.unit)
        if o.partial:
            parts.append("partial")
        if o.derived_from:
            parts.append(f"deviation of {o.derived_from}")
        return f"{o.name} [{', '.join(parts)}]"

    outputs = ", ".join(describe(o) for o in meta.outputs)
    print(f"outputs:           {outputs}")
    print(f"total charge:      {'input (charge=...)' if meta.uses_charge else 'not used (neutral only)'}")
    if meta.fidelities:
        print(f"fidelities:        {', '.join(f'{k}={name}' for k, name in enumerate(meta.fidelities))}")
    if meta.min_distance is not None:
        print(f"min distance:      {meta.min_distance:.3f} Å in the training data")
    print(f"written by:        mlff {meta.mlff_version}, torch {meta.torch_version}")
    if meta.compiled:
        from .compiled import isa_runs_here

        c = meta.compiled
        runs = "runs here" if isa_runs_here(c.get("cpu_isa", "none")) else "NOT supported by this CPU"
        print(f"compiled:          AOTInductor for {', '.join(c.get('devices', []))}; CPU kernels for "
              f"{c.get('cpu_isa')} ({runs}); torch {c.get('torch_version')}"
              + (f"; fallback {c['fallback']}" if c.get("fallback") else ""))
    for k, v in meta.hyperparameters.items():
        print(f"  {k}: {v}")
    for k, v in meta.provenance.items():
        print(f"  provenance.{k}: {v}")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    import torch

    from .checkpoint import load_network, load_terms, read_checkpoint, with_terms
    from .contract import export_model
    from .physics.terms import build_term, check_dispersion_addable, dispersion_spec
    from .ace.cli import export_ace
    from .ace.formats import is_ace_path

    if is_ace_path(args.checkpoint):
        return export_ace(args)
    payload = read_checkpoint(args.checkpoint)
    network = load_network(payload)
    if args.dtype:
        # only the network: the physics terms keep their float64 tables and follow the input dtype
        network = network.to(getattr(torch, args.dtype))
    terms = load_terms(payload)
    if args.dispersion:
        if any(t.kind == args.dispersion for t in terms):
            raise ValueError(
                f"{args.checkpoint} was trained with a {args.dispersion} term, which the export adds already; "
                "drop --dispersion"
            )
        check_dispersion_addable(payload.get("provenance"), where=f"{args.checkpoint}: ")
        options = {"functional": args.functional, "cutoff": args.dispersion_cutoff,
                   "cn_cutoff": args.cn_cutoff, "switch_width": args.switch_width}
        spec = dispersion_spec({"kind": args.dispersion, **{k: v for k, v in options.items() if v is not None}},
                               where="--dispersion")
        if args.dispersion_fidelities:
            spec["fidelities"] = list(args.dispersion_fidelities)
        terms.append(build_term(spec, network.config["elements"], where="--dispersion",
                                fidelities=network.config.get("fidelities") or None))
    elif any(v is not None for v in (args.functional, args.dispersion_cutoff, args.cn_cutoff, args.switch_width,
                                     args.dispersion_fidelities)):
        raise ValueError("--functional, --dispersion-cutoff, --cn-cutoff, --switch-width and "
                         "--dispersion-fidelities need --dispersion d3bj")
    model = with_terms(network, terms)
    if args.fidelity:
        from .models.fidelity import fix_fidelity

        model = fix_fidelity(model, args.fidelity)
    if args.output.endswith(".pt2"):
        from .compiled import export_compiled

        meta = export_compiled(model, args.output, provenance=payload.get("provenance"),
                               devices=args.devices, fallback=not args.no_fallback)
        where = f"AOTInductor for {', '.join(meta.compiled['devices'])} ({meta.compiled['cpu_isa']})"
        if meta.compiled.get("fallback"):
            where += f"; TorchScript fallback {meta.compiled['fallback']} beside it"
    else:
        meta = export_model(model, args.output, provenance=payload.get("provenance"),
                            layer_exchange=not args.no_layer_exchange)
        where = f"TorchScript, contract version {meta.contract_version}"
        if meta.message_passing is not None:
            where += f" (layer exchange: {meta.message_passing.layers} layers)"
    added = f", with {' + '.join(t.kind for t in terms)} added to the network" if terms else ""
    print(f"wrote {args.output}: {meta.kind}, elements {meta.symbols}, cutoff {meta.cutoff} Å, {meta.dtype}{added}; "
          f"{where}")
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    import torch

    from .bench import format_rows, rows_to_json, run_bench

    if args.threads:
        torch.set_num_threads(args.threads)
    rows = run_bench(args.model, args.sizes, args.steps, args.device, args.dtype, args.engines)
    print(f"# mlff bench {' '.join(sys.argv[2:])}")
    print(format_rows(rows))
    if args.json:
        with open(args.json, "w") as fh:
            fh.write(rows_to_json(rows))
    return 0


#: modules that add their own subcommands through ``register(subparsers)``; each
#: feature area owns its commands (data: label, training: train, lammps: plugin info)
COMMAND_MODULES = ("mlff.data.cli", "mlff.training.cli", "mlff.lammps.cli", "mlff.ace.cli", "mlff.pacemaker.cli",
                   "mlff.uncertainty.cli", "mlff.learn.cli")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mlff", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("info", help="print the metadata of an exported model or an ACE file")
    s.add_argument("model")
    s.add_argument("--json", action="store_true", help="print the raw metadata JSON")
    s.set_defaults(func=_cmd_info)

    s = sub.add_parser(
        "export", help="export a training checkpoint or an ACE file (.yace, .ace) to TorchScript (.pt) or AOTInductor (.pt2)",
        description="Export the network of a checkpoint plus the physics terms it was trained with; "
        "--dispersion adds a D3(BJ) term to any checkpoint (e.g. one trained on dispersion-free labels). "
        "An ACE file becomes the TorchScript ACE module (for CUDA and tools that take .pt).",
    )
    s.add_argument("checkpoint", help="training checkpoint, or ACE potential (.yace, .ace)")
    s.add_argument("-o", "--output", default="model.pt",
                   help="model.pt (TorchScript) or model.pt2 (AOTInductor, compiled for this machine's CPU "
                        "and GPU; the .pt is written beside it as the fallback)")
    s.add_argument("--devices", nargs="+", choices=["cpu", "cuda"],
                   help=".pt2: devices to compile for (default: cpu, and cuda where a GPU is present)")
    s.add_argument("--no-fallback", action="store_true", help=".pt2: do not write the TorchScript .pt beside it")
    s.add_argument("--no-layer-exchange", action="store_true",
                   help="write a contract-version-2 file without the layer-exchange methods (for engines older than "
                        "version 3; LAMMPS then runs it on several ranks with the deep ghost shell)")
    s.add_argument("--dtype", choices=["float32", "float64"], help="cast the network before export")
    d = s.add_argument_group("dispersion added at export")
    d.add_argument("--dispersion", choices=["d3bj"], help="add this dispersion correction to the model")
    # defaults are the term's own (mlff.physics.d3), so they are not repeated here
    d.add_argument("--functional", help="damping parameters of this functional, e.g. pbe (default), b3lyp, wb97m")
    d.add_argument("--dispersion-cutoff", type=float, metavar="Å", help="pair cutoff")
    d.add_argument("--cn-cutoff", type=float, metavar="Å", help="coordination-number cutoff")
    d.add_argument("--switch-width", type=float, metavar="Å",
                   help="width of the smooth switch to zero at both cutoffs (0 = hard cutoffs)")
    d.add_argument("--dispersion-fidelities", nargs="+", metavar="NAME",
                   help="add the dispersion to these fidelities only (e.g. the DFT level, not GFN-xTB ones)")
    s.add_argument("--fidelity", metavar="NAME",
                   help="write a single-fidelity file for this fidelity of a multi-fidelity model")
    s.set_defaults(func=_cmd_export)

    s = sub.add_parser("bench", help="time the raw model (and engines) per atom-step")
    s.add_argument("--model", help="exported model or checkpoint (default: an untrained Cu PaiNN)")
    s.add_argument("--sizes", type=int, nargs="+", default=[256, 1024, 4096])
    s.add_argument("--steps", type=int, default=5)
    s.add_argument("--device", default="cpu")
    s.add_argument("--dtype", choices=["float32", "float64"])
    s.add_argument("--engines", nargs="*", default=[], help="also time these engines")
    s.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice)")
    s.add_argument("--json", help="write the rows as JSON here")
    s.set_defaults(func=_cmd_bench)

    import importlib

    # a broken feature area must fail loudly here, not vanish from the CLI
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (FileNotFoundError, RuntimeError, ValueError) as exc:
        print(f"mlff {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
