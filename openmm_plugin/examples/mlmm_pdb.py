"""ML/MM with openmm-ml: part of a PDB structure with an mlff model, the rest with amber14.

    python openmm_plugin/examples/mlmm_pdb.py protein_ligand.pdb model.pt --ml-residues LIG [--steps 1000]

The ML atoms are those of the named residues; their elements must be known to the
model. The structure is solvated in TIP3P if it has no box yet.
"""

import argparse

import openmm
import openmm.app as app
from openmm import unit
from openmmml import MLPotential


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("pdb")
    p.add_argument("model")
    p.add_argument("--ml-residues", nargs="+", required=True)
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--platform", default="CPU")
    args = p.parse_args()

    pdb = app.PDBFile(args.pdb)
    ff = app.ForceField("amber14-all.xml", "amber14/tip3p.xml")
    modeller = app.Modeller(pdb.topology, pdb.positions)
    modeller.addHydrogens(ff)
    if modeller.topology.getPeriodicBoxVectors() is None:
        modeller.addSolvent(ff, model="tip3p", padding=1.0 * unit.nanometer)
    mm_system = ff.createSystem(modeller.topology, nonbondedMethod=app.PME,
                                nonbondedCutoff=1.0 * unit.nanometer, constraints=app.HBonds)
    ml_atoms = [a.index for a in modeller.topology.atoms() if a.residue.name in args.ml_residues]
    if not ml_atoms:
        raise SystemExit(f"no atoms in residues {args.ml_residues}")
    system = MLPotential("mlff", modelPath=args.model).createMixedSystem(
        modeller.topology, mm_system, ml_atoms, forceGroup=1)

    integrator = openmm.LangevinMiddleIntegrator(300 * unit.kelvin, 1 / unit.picosecond, 0.001 * unit.picoseconds)
    simulation = app.Simulation(modeller.topology, system, integrator, openmm.Platform.getPlatformByName(args.platform))
    simulation.context.setPositions(modeller.positions)
    simulation.minimizeEnergy(maxIterations=200)
    simulation.reporters.append(app.StateDataReporter(
        __import__("sys").stdout, 100, step=True, potentialEnergy=True, temperature=True, speed=True))
    simulation.step(args.steps)
    ml = simulation.context.getState(getEnergy=True, groups={1}).getPotentialEnergy()
    print(f"ML part ({len(ml_atoms)} atoms): {ml}")


if __name__ == "__main__":
    main()
