"""NVE molecular dynamics of an fcc Cu crystal with an mlff model in OpenMM.

    python openmm_plugin/examples/nve_copper.py model.pt [--steps 500] [--platform CPU]

The model must know Cu. Prints the energies every 50 steps and the backend in use.
"""

import argparse

import numpy as np
from ase.build import bulk
from ase.md.velocitydistribution import thermalize_momenta

from mlff.openmm import run_md


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model")
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--platform", default="CPU")
    p.add_argument("--repeat", type=int, default=3, help="cubic cells per direction")
    args = p.parse_args()

    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(args.repeat)
    thermalize_momenta(atoms, temperature_K=300, rng=np.random.default_rng(0))
    result = run_md(args.model, atoms, args.steps, timestep_fs=1.0, report_interval=50, platform=args.platform)
    print(f"backend {result.backend} on {result.platform}: {result.seconds_per_step * 1e3:.1f} ms/step")
    for t, e_pot, e_tot in zip(result.time_ps, result.potential_energy, result.total_energy):
        print(f"{t:8.3f} ps  E_pot {e_pot:14.6f} eV  E_tot {e_tot:14.6f} eV")


if __name__ == "__main__":
    main()
