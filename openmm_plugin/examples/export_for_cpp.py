"""Write the TorchScript module an OpenMM TorchForce runs, for C++ OpenMM applications.

    python openmm_plugin/examples/export_for_cpp.py model.pt structure.pdb -o mlff_openmm.pt [--atoms 0-21]

In C++ (openmm-torch linked against the same libtorch):

    TorchForce* force = new TorchForce("mlff_openmm.pt");
    force->setOutputsForces(true);
    force->setUsesPeriodicBoundaryConditions(true);   // as printed by this script
    system.addForce(force);
"""

import argparse

from mlff.openmm import save_torchforce_module


def _ranges(spec: str):
    out = []
    for part in spec.split(","):
        lo, _, hi = part.partition("-")
        out.extend(range(int(lo), int(hi or lo) + 1))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model")
    p.add_argument("structure", help="PDB (OpenMM topology) or any file ase.io reads")
    p.add_argument("-o", "--output", default="mlff_openmm.pt")
    p.add_argument("--atoms", help="ML atom indices, e.g. 0-21,30 (default: all)")
    args = p.parse_args()

    if args.structure.endswith(".pdb"):
        import openmm.app as app

        topology = app.PDBFile(args.structure).topology
        periodic = topology.getPeriodicBoxVectors() is not None
    else:
        import ase.io

        topology = ase.io.read(args.structure)
        periodic = bool(topology.pbc.all())
    atoms = _ranges(args.atoms) if args.atoms else None
    meta = save_torchforce_module(args.output, args.model, topology, atoms=atoms, periodic=periodic)
    print(f"wrote {args.output}: {meta.kind} {meta.symbols}, periodic={periodic}, "
          f"{'all' if atoms is None else len(atoms)} ML atoms; setOutputsForces(true)")


if __name__ == "__main__":
    main()
