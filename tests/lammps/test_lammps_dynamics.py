"""Dynamics with the fitted Cu student in the real lmp: MPI reproduces the serial
trajectory, NVE conserves energy, NPT is stable."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk

from mlff.lammps import run_md


def test_two_ranks_reproduce_one_rank(fitted_cu_model, tmp_path):
    """100 NVE steps: the thermo table of mpirun -np 2 is identical to the serial one."""
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(3)
    atoms.rattle(0.03, seed=5)
    kw = dict(temperature=600.0, report_interval=10, thermo_format="%.10g")
    serial = run_md(fitted_cu_model, atoms, 100, nprocs=1, **kw)
    parallel = run_md(fitted_cu_model, atoms, 100, nprocs=2, **kw)
    assert "2 by 1 by 1 MPI processor grid" in parallel.log or "1 by 2 by 1" in parallel.log or "1 by 1 by 2" in parallel.log
    assert len(serial.thermo_lines) == 11 + 1
    assert serial.thermo_lines == parallel.thermo_lines, (
        "\n".join(serial.thermo_lines) + "\n---\n" + "\n".join(parallel.thermo_lines)
    )
    # and atoms did move: the trajectory is not trivially identical
    assert np.ptp(serial.potential_energy) > 0.05


def test_nve_conserves_energy(fitted_cu_model):
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(2)
    res = run_md(fitted_cu_model, atoms, 1000, timestep_fs=1.0, temperature=300.0, report_interval=20)
    e = res.total_energy
    assert len(e) == 51
    assert np.ptp(res.potential_energy) > 0.1  # real dynamics
    # energy fluctuates by far less than the kinetic energy it exchanges, without drift
    assert np.abs(e - e[0]).max() < 2e-3
    first, last = e[1:26].mean(), e[26:].mean()
    assert abs(last - first) < 5e-4


def test_npt_is_stable(fitted_cu_model):
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(2)
    res = run_md(fitted_cu_model, atoms, 1000, temperature=300.0, ensemble="npt", pressure=0.0, report_interval=25)
    assert np.all(np.isfinite(res.volume)) and np.all(np.isfinite(res.pressure))
    second = slice(len(res.volume) // 2, None)
    v = res.volume[second]
    # the cell relaxed from the start (the student's lattice constant differs from 3.61)
    # and then fluctuates around its own equilibrium volume at the target pressure
    assert np.std(v) / np.mean(v) < 0.03
    assert abs(np.mean(res.pressure[second])) < 20000.0  # bar; fluctuations are ~4e4 for 32 atoms
    assert abs(res.pressure[0]) > 50000.0 or abs(res.volume[0] - np.mean(v)) / np.mean(v) < 0.02
    assert 150.0 < np.mean(res.temperature[second]) < 450.0
    # the final structure is a valid cell of the same atoms
    assert res.atoms.get_volume() == pytest.approx(res.volume[-1], rel=1e-6)


def test_thermo_pressure_matches_ase(cuo_model):
    """LAMMPS's printed pressure (kinetic + virial) equals the one from ASE's stress."""
    from ase import units
    from lmp_helpers import triclinic_cuo

    from mlff import MLFFCalculator

    atoms = triclinic_cuo()
    sigma = np.sqrt(400 * units.kB / atoms.get_masses())[:, None]
    atoms.set_velocities(np.random.default_rng(3).normal(size=(len(atoms), 3)) * sigma)
    res = run_md(cuo_model, atoms, 0, report_interval=1, thermo_format="%.14g")
    ref = atoms.copy()
    ref.calc = MLFFCalculator(cuo_model)
    virial_trace = -ref.get_stress(voigt=False).trace() * ref.get_volume()
    # LAMMPS's mass-velocity constants differ from ASE's in the 8th digit: take its KE
    ke = res.kinetic_energy[0]
    assert ke == pytest.approx(atoms.get_kinetic_energy(), rel=1e-6)  # velocities arrived intact
    nktv2p = 1.6021765e6  # LAMMPS metal units: eV/Å^3 -> bar
    expected = (2.0 * ke + virial_trace) / (3.0 * ref.get_volume()) * nktv2p
    assert res.pressure[0] == pytest.approx(expected, rel=1e-9)
    assert res.potential_energy[0] == pytest.approx(ref.get_potential_energy(), abs=1e-9)
