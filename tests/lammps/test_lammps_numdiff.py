"""LAMMPS's own finite differences (fix numdiff, fix numdiff/virial) agree with the
plugin's analytic forces and virial: a triclinic two-element cell on one rank and two."""

from __future__ import annotations

import numpy as np
import pytest
from lmp_helpers import run_lmp

SCRIPT = """
units metal
atom_style atomic
atom_modify map yes
lattice fcc 3.615 orient x 1 0 0 orient y 0 1 0 orient z 0 0 1
region box prism 0 2 0 2 0 2 0.3 -0.2 0.25 units lattice
create_box 2 box
create_atoms 1 box
set type 1 type/fraction 2 0.25 777
mass 1 63.546
mass 2 15.999
displace_atoms all random 0.08 0.08 0.08 999
pair_style mlff {model}
pair_coeff * * Cu O
compute vir all pressure NULL virial
fix nd all numdiff 1 1e-4
fix ndv all numdiff/virial 1 1e-4
thermo_style custom step pe c_vir[*] f_ndv[*]
thermo_modify format float %.15g
run 0
print "VIR $(c_vir[1]:%.15g) $(c_vir[2]:%.15g) $(c_vir[3]:%.15g) $(c_vir[4]:%.15g) $(c_vir[5]:%.15g) $(c_vir[6]:%.15g)"
print "NDV $(f_ndv[1]:%.15g) $(f_ndv[2]:%.15g) $(f_ndv[3]:%.15g) $(f_ndv[4]:%.15g) $(f_ndv[5]:%.15g) $(f_ndv[6]:%.15g)"
write_dump all custom forces.dump id fx fy fz f_nd[1] f_nd[2] f_nd[3] modify sort id format float %.15g
"""


@pytest.mark.parametrize("nprocs", [1, 2])
def test_numdiff_forces_and_virial(tmp_path, cuo_model, nprocs):
    run = run_lmp(SCRIPT.format(model=cuo_model), tmp_path, nprocs=nprocs)
    rows = np.loadtxt(tmp_path / "forces.dump", skiprows=9)
    analytic, numeric = rows[:, 1:4], rows[:, 4:7]
    assert abs(analytic).max() > 0.05
    np.testing.assert_allclose(analytic, numeric, atol=2e-6, rtol=0)
    vir = np.array(run.values("VIR"))  # compute pressure: xx yy zz xy xz yz
    ndv = np.array(run.values("NDV"))[[0, 1, 2, 5, 4, 3]]  # fix numdiff/virial: Voigt xx yy zz yz xz xy
    # pressure units (bar); a few kbar in magnitude here
    assert abs(vir).max() > 100.0
    np.testing.assert_allclose(vir, ndv, atol=1e-3 * abs(vir).max(), rtol=0)
