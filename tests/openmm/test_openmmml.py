"""openmm-ml registration: MLPotential("mlff", modelPath=...) and ML/MM with createMixedSystem."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms

from mlff.contract import MLFFModelError

from omm_helpers import KJ_PER_EV, alanine_dipeptide_pdb, ase_reference, energy_forces

openmmml = pytest.importorskip("openmmml")
HCNO = (1, 6, 7, 8)


@pytest.fixture(scope="module")
def dipeptide(tmp_path_factory):
    """Alanine dipeptide with hydrogens from amber14's templates: (topology, positions nm)."""
    import openmm.app as app

    path = tmp_path_factory.mktemp("ala") / "ala2_heavy.pdb"
    alanine_dipeptide_pdb(path)
    pdb = app.PDBFile(str(path))
    ff = app.ForceField("amber14-all.xml", "amber14/tip3p.xml")
    modeller = app.Modeller(pdb.topology, pdb.positions)
    modeller.addHydrogens(ff)
    return modeller, ff


def _atoms_of(topology, positions_nm, indices) -> Atoms:
    numbers = [a.element.atomic_number for a in topology.atoms()]
    return Atoms(numbers=[numbers[i] for i in indices], positions=np.asarray(positions_nm)[indices] * 10.0)


def test_entry_point_is_registered():
    from openmmml import MLPotential

    assert "mlff" in MLPotential._implFactories


@pytest.mark.parametrize("backend", ["torch", "python"])
def test_create_system_matches_ase(make_model_file, dipeptide, backend):
    from openmm import unit
    from openmmml import MLPotential

    modeller, _ = dipeptide
    model = make_model_file(elements=HCNO)
    system = MLPotential("mlff", modelPath=str(model), backend=backend).createSystem(modeller.topology)
    pos = np.asarray(modeller.positions.value_in_unit(unit.nanometer))
    e, f = energy_forces(system, pos, "CPU")
    e_ref, f_ref = ase_reference(model, _atoms_of(modeller.topology, pos, range(len(pos))))
    assert e == pytest.approx(e_ref, rel=1e-6)
    assert np.abs(f - f_ref).max() <= 1e-6 * np.abs(f_ref).max()


def test_mixed_system_solvated_dipeptide(make_model_file, dipeptide):
    """ML peptide in TIP3P water (amber14, PME): 100 steps; the ML energy equals ASE's."""
    import openmm
    import openmm.app as app
    from openmm import unit
    from openmmml import MLPotential

    base, ff = dipeptide
    modeller = app.Modeller(base.topology, base.positions)
    modeller.addSolvent(ff, model="tip3p", boxSize=openmm.Vec3(2.0, 2.0, 2.0) * unit.nanometer)
    topology = modeller.topology
    mm_system = ff.createSystem(
        topology, nonbondedMethod=app.PME, nonbondedCutoff=0.8 * unit.nanometer, constraints=app.HBonds
    )
    ml_atoms = [a.index for a in topology.atoms() if a.residue.name in ("ACE", "ALA", "NME")]
    assert len(ml_atoms) == 22
    model = make_model_file(elements=HCNO)
    potential = MLPotential("mlff", modelPath=str(model))
    system = potential.createMixedSystem(topology, mm_system, ml_atoms, forceGroup=1)

    integrator = openmm.LangevinMiddleIntegrator(300 * unit.kelvin, 1.0 / unit.picosecond, 0.0005 * unit.picoseconds)
    integrator.setRandomNumberSeed(1)
    ctx = openmm.Context(system, integrator, openmm.Platform.getPlatformByName("CPU"))
    ctx.setPositions(modeller.positions)
    openmm.LocalEnergyMinimizer.minimize(ctx, 10.0, 50)  # relax the solvent around the peptide
    ctx.setVelocitiesToTemperature(300 * unit.kelvin, 1)

    def ml_energy_matches():
        state = ctx.getState(getPositions=True, getEnergy=True, groups={1})
        pos = np.asarray(state.getPositions(asNumpy=True).value_in_unit(unit.nanometer))
        e_ml = state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
        e_ref, _ = ase_reference(model, _atoms_of(topology, pos, ml_atoms))
        assert e_ml == pytest.approx(e_ref, rel=1e-6)

    ml_energy_matches()
    integrator.step(100)
    total = ctx.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
    assert np.isfinite(total)
    ml_energy_matches()


def test_unknown_topology_element(make_model_file, dipeptide):
    from openmmml import MLPotential

    modeller, _ = dipeptide
    potential = MLPotential("mlff", modelPath=str(make_model_file(elements=(1, 6, 8))))
    with pytest.raises(MLFFModelError, match=r"\['N'\]"):
        potential.createSystem(modeller.topology)


def test_missing_or_corrupt_model(tmp_path):
    from openmmml import MLPotential

    with pytest.raises(MLFFModelError, match="does not exist"):
        MLPotential("mlff", modelPath=str(tmp_path / "missing.pt"))
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a model")
    with pytest.raises(MLFFModelError, match="corrupt"):
        MLPotential("mlff", modelPath=str(bad))
    with pytest.raises(ValueError, match="modelPath"):
        MLPotential("mlff")


def test_interpolated_mixed_system(make_model_file, dipeptide, caplog):
    """interpolate=True: lambda 0 is the MM System, lambda 1 the ML/MM one.

    openmm-ml deep-copies the ML force there, which a TorchForce does not survive with
    openmm 8.6.x, so mlff switches to its PythonForce backend and says so.
    """
    import logging

    import openmm
    import openmm.app as app
    from openmm import unit
    from openmmml import MLPotential

    modeller, ff = dipeptide
    topology = modeller.topology
    mm_system = ff.createSystem(topology, nonbondedMethod=app.NoCutoff)
    ml_atoms = list(range(topology.getNumAtoms()))
    potential = MLPotential("mlff", modelPath=str(make_model_file(elements=HCNO)))
    with caplog.at_level(logging.WARNING, logger="mlff.openmm"):
        mixed = potential.createMixedSystem(topology, mm_system, ml_atoms, interpolate=True)
    assert "PythonForce backend" in caplog.text
    plain = potential.createMixedSystem(topology, mm_system, ml_atoms)
    pos = np.asarray(modeller.positions.value_in_unit(unit.nanometer))
    # Reference: double precision throughout, so the comparison at 1e-6 is not at the mercy
    # of the CPU platform's single-precision nonbonded sums (seen to differ by 1.03e-6)
    e_mm, _ = energy_forces(mm_system, pos, "Reference")
    e_mixed, _ = energy_forces(plain, pos, "Reference")

    ctx = openmm.Context(mixed, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    ctx.setPositions(pos)
    energies = {}
    for lam in (0.0, 1.0):
        ctx.setParameter("lambda_interpolate", lam)
        energies[lam] = ctx.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
    assert energies[0.0] == pytest.approx(e_mm, rel=1e-6)
    assert energies[1.0] == pytest.approx(e_mixed, rel=1e-6)
