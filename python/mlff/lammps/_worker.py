"""Runs in a subprocess (``python _worker.py job.json``, possibly under mpirun).

Deliberately imports neither mlff nor torch: LAMMPS loads the plugin, which loads
libtorch. Evaluates each structure of the job with ``run 0`` and writes the results as
one .npz (rank 0). Exit status 1 with the LAMMPS error on stderr if anything fails.
"""

import json
import sys

import numpy as np
from lammps import LMP_STYLE_GLOBAL, LMP_TYPE_SCALAR, LMP_TYPE_VECTOR, lammps


def main(job_file: str) -> int:
    with open(job_file) as fh:
        job = json.load(fh)
    lmp = lammps(cmdargs=["-log", "none", "-screen", "none", "-nocite"])
    me = lmp.extract_setting("world_rank")
    out = {}
    pair = f"pair_style mlff {job['model']} device {job['device']} graph {job['graph']} {job.get('pair_options', '')}"
    outputs = job.get("outputs", [])
    # global scalar outputs (a committee's energy_uncertainty): compute pair mlff's vector
    global_outputs = job.get("global_outputs", [])
    for k, s in enumerate(job["structures"]):
        lmp.command("clear")
        lmp.commands_list(
            [
                f"units {job['units']}",
                "atom_style atomic",
                "atom_modify map yes",
                f"boundary {s['boundary']}",
                f"read_data {s['data']}",
                pair,
                "pair_coeff * * " + " ".join(s["symbols"]),
                "compute pe all pe/atom",
                "compute st all stress/atom NULL",
                "compute cst all centroid/stress/atom NULL",
                "compute vir all pressure NULL virial",
                *[f"compute out_{name} all mlff/atom {name}" for name in outputs],
                *(["compute pairout all pair mlff"] if global_outputs else []),
                "thermo_style custom step pe vol c_vir[*]" + (" c_pairout[*]" if global_outputs else ""),
                "run 0",
            ]
        )
        energy = lmp.extract_compute("thermo_pe", LMP_STYLE_GLOBAL, LMP_TYPE_SCALAR)
        pv = lmp.extract_compute("vir", LMP_STYLE_GLOBAL, LMP_TYPE_VECTOR)
        pv = np.array([pv[c] for c in range(6)])
        n = lmp.get_natoms()
        forces = np.array(lmp.gather_atoms("f", 1, 3), dtype=float).reshape(n, 3)
        pe = np.array(lmp.gather("c_pe", 1, 1), dtype=float).reshape(n)
        st = np.array(lmp.gather("c_st", 1, 6), dtype=float).reshape(n, 6)
        cst = np.array(lmp.gather("c_cst", 1, 9), dtype=float).reshape(n, 9)
        out[f"{k}/energy"] = np.array(energy)
        out[f"{k}/pressure_virial"] = pv
        out[f"{k}/volume"] = np.array(lmp.get_thermo("vol"))
        out[f"{k}/nktv2p"] = np.array(lmp.extract_global("nktv2p"))
        out[f"{k}/forces"] = forces
        out[f"{k}/energies"] = pe
        out[f"{k}/stress_atom"] = st
        out[f"{k}/centroid_stress_atom"] = cst
        for name in outputs:
            out[f"{k}/out/{name}"] = np.array(lmp.gather(f"c_out_{name}", 1, 1), dtype=float).reshape(n)
        for c, name in enumerate(global_outputs):
            out[f"{k}/out/{name}"] = np.array(lmp.extract_compute("pairout", LMP_STYLE_GLOBAL, LMP_TYPE_VECTOR)[c])
    if me == 0:
        np.savez(job["output"], **out)
    # finalize MPI on every rank (collective) before exiting: under mpirun a rank that
    # exits without MPI_Finalize counts as a crash, and mpiexec then SIGKILLs any rank
    # still running (the occasional 'EXIT CODE: 9' of a finished job)
    lmp.finalize()
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1]))
    except Exception as exc:  # report LAMMPS's message to the parent process
        print(f"mlff lammps worker: {exc}", file=sys.stderr)
        sys.exit(1)
