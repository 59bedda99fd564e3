"""`mlff lammps-plugin`: where the LAMMPS plugin is and what it was built against."""

from __future__ import annotations

import argparse
import json
import subprocess


def _cmd_plugin(args: argparse.Namespace) -> int:
    from .plugin import lmp_command, plugin_info

    info = plugin_info()
    if args.check:
        info["lmp_check"] = _lmp_check(lmp_command())
        if not info["lmp_check"]["ok"]:
            info["problems"].append("lmp did not list pair style mlff: " + info["lmp_check"]["output"][-500:])
    if args.json:
        print(json.dumps(info, indent=1))
    else:
        build = info.get("build", {})
        print(f"plugin folder:      {info['plugin_dir']}")
        print(f"plugin:             {info['plugin']}  ({'present' if info['built'] else 'MISSING'})")
        print(f"torch backend:      {info['backend']}")
        print(f"entry point:        lammps.plugins -> {'registered' if info['entry_point_registered'] else 'NOT registered'}")
        if build:
            print(f"built for LAMMPS:   {build['lammps_version']}  (headers {build['lammps_include_dir']})")
            print(f"built for torch:    {build['torch_version']}  ({build['torch_lib_dir']})")
            print(f"torch installed:    {info.get('installed_torch_version')}")
            print(f"CUDA (torch build): {build['torch_cuda'] or 'none'}")
            print(f"compiler:           {build['compiler']}, C++11 ABI {build['cxx11_abi']}")
            print(f"mlff version:       {build['mlff_version']}")
        if "lmp_check" in info:
            print(f"lmp check:          {'pair style mlff available' if info['lmp_check']['ok'] else 'FAILED'}")
        for p in info["problems"]:
            print(f"problem: {p}")
        if not info["problems"]:
            print("status:             ok")
    return 1 if info["problems"] else 0


def _lmp_check(cmd) -> dict:
    """Start the real lmp and ask it which plugins it loaded."""
    from .plugin import subprocess_env

    proc = subprocess.run(
        cmd + ["-log", "none", "-nocite"], input="plugin list\n", capture_output=True, text=True,
        env=subprocess_env(), timeout=120,
    )
    out = proc.stdout + proc.stderr
    return {"ok": proc.returncode == 0 and "pair style plugin mlff" in out, "output": out}


def register(subparsers) -> None:
    s = subparsers.add_parser(
        "lammps-plugin", help="show where the LAMMPS pair_style mlff plugin is and what it was built against"
    )
    s.add_argument("--json", action="store_true", help="print the report as JSON")
    s.add_argument("--check", action="store_true", help="also start lmp and confirm it loads pair style mlff")
    s.set_defaults(func=_cmd_plugin)
