"""LAMMPS workflows around pair_style mlff: restart files, rerun, minimize, hybrid/overlay
with NULL types, units real, the ghost-shell cutoff under MPI, and the type-map table."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from lmp_helpers import cu_box_script, cubic_cuo, run_lmp, triclinic_cuo

from mlff import MLFFCalculator
from mlff.lammps import evaluate
from mlff.lammps.data import EV_IN_KCAL_PER_MOL

PE = 'print "PE $(pe:%.15g)"'


def test_type_map_table_and_no_plugin_load_line(tmp_path, cuo_model):
    script = cu_box_script(cuo_model, elements="O Cu", ntypes=2, extra="run 0")
    assert "plugin" not in script
    out = run_lmp(script, tmp_path).output
    assert "Loaded 1 plugins from" in out
    assert "pair mlff: type map for" in out
    lines = out.splitlines()
    k = next(i for i, ln in enumerate(lines) if ln.startswith("pair mlff: type map"))
    assert lines[k + 2].split() == ["1", "O", "8"]
    assert lines[k + 3].split() == ["2", "Cu", "29"]


def test_restart_rerun_minimize(tmp_path, fitted_cu_model):
    """minimize, MD with a dump, write_restart; then read_restart (pair style
    re-specified) continues with the same energy, and rerun reproduces the dumped run."""
    first = cu_box_script(fitted_cu_model, extra=f"""
thermo_modify format float %.15g
minimize 1e-12 1e-6 200 2000
{PE.replace('PE', 'MINPE')}
reset_timestep 0
velocity all create 500 11 mom yes rot no
fix 1 all nve
compute pe all pe
dump d all custom 5 traj.dump id type x y z
dump_modify d format float %.17g
thermo_style custom step pe
thermo 5
run 20
{PE.replace('PE', 'ENDPE')}
write_restart state.restart
""")
    run1 = run_lmp(first, tmp_path)
    assert "Minimization stats" in run1.output
    _, thermo = run1.output.split("ENDPE")[0].rsplit("Step", 1)
    md_pe = [float(ln.split()[1]) for ln in thermo.splitlines()[1:] if ln.strip() and ln.split()[0].isdigit()]
    assert len(md_pe) == 5

    second = f"""
read_restart state.restart
pair_style mlff {fitted_cu_model}
pair_coeff * * Cu
run 0
{PE.replace('PE', 'RESTARTPE')}
thermo_style custom step pe
thermo_modify format float %.15g
thermo 5
rerun traj.dump dump x y z
"""
    run2 = run_lmp(second, tmp_path)
    assert run2.values("RESTARTPE")[0] == pytest.approx(run1.values("ENDPE")[0], abs=1e-9)
    rerun_table = run2.output.rsplit("Step", 1)[1].split("Loop time")[0]
    rerun_pe = [float(ln.split()[1]) for ln in rerun_table.splitlines()[1:] if ln.strip() and ln.split()[0].isdigit()]
    np.testing.assert_allclose(rerun_pe, md_pe, atol=1e-8)
    # minimize lowered the energy of the rattled crystal
    start = run_lmp(cu_box_script(fitted_cu_model, extra=f"run 0\n{PE}"), tmp_path / "." ).values("PE")[0]
    assert run1.values("MINPE")[0] < start - 0.01


def test_hybrid_overlay_with_null(tmp_path, cuo_model):
    """pair_style hybrid/overlay mlff + zbl, O left to zbl only (NULL for mlff): the mlff
    part equals ASE on the Cu atoms alone."""
    atoms = cubic_cuo()
    cu_only = atoms[[s == "Cu" for s in atoms.get_chemical_symbols()]]
    cu_only.calc = MLFFCalculator(cuo_model)
    ref = cu_only.get_potential_energy()
    from mlff.lammps.data import write_data

    write_data(tmp_path / "s.data", atoms, ["O", "Cu"])
    script = f"""
units metal
atom_style atomic
atom_modify map yes
read_data s.data
pair_style hybrid/overlay mlff {cuo_model} zbl 2.0 2.5
pair_coeff * * mlff NULL Cu
pair_coeff 1 1 zbl 8 8
pair_coeff 1 2 zbl 8 29
pair_coeff 2 2 zbl 29 29
compute pm all pair mlff
compute pz all pair zbl
thermo_style custom step pe c_pm c_pz
run 0
print "PARTS $(c_pm:%.15g) $(c_pz:%.15g) $(pe:%.15g)"
"""
    run = run_lmp(script, tmp_path)
    e_mlff, e_zbl, pe = run.values("PARTS")
    assert e_mlff == pytest.approx(ref, abs=1e-9)
    assert pe == pytest.approx(e_mlff + e_zbl, abs=1e-9)
    assert "NULL       -  (not handled by mlff)" in run.output


def test_units_real(cuo_model):
    atoms = triclinic_cuo()
    metal, real = evaluate(cuo_model, [atoms], units="metal")[0], evaluate(cuo_model, [atoms], units="real")[0]
    for key in ("energy", "forces", "virial", "energies"):
        np.testing.assert_allclose(real[key], metal[key], atol=1e-9 * max(1.0, np.abs(metal[key]).max()), rtol=0)
    assert EV_IN_KCAL_PER_MOL == 23.060549


def test_real_units_energy_is_in_kcal_per_mol(tmp_path, cu_model):
    e_metal = run_lmp(cu_box_script(cu_model, extra=f"run 0\n{PE}"), tmp_path).values("PE")[0]
    e_real = run_lmp(cu_box_script(cu_model, units="real", extra=f"run 0\n{PE}"), tmp_path).values("PE")[0]
    assert e_real == pytest.approx(e_metal * 23.060549, rel=1e-12)


def test_small_comm_cutoff_is_raised_with_a_warning(tmp_path, cuo_model):
    # the deep ghost shell (version-2 files; here forced with exchange no)
    script = cu_box_script(cuo_model, reps=3, elements="Cu", pair_args="exchange no",
                           extra=f"comm_modify cutoff 3.0\nrun 0\n{PE}")
    serial = run_lmp(script.replace("comm_modify cutoff 3.0", ""), tmp_path).values("PE")[0]
    run = run_lmp(script, tmp_path, nprocs=2)
    assert "comm_modify cutoff 3 is smaller than the ghost shell" in run.output
    assert run.values("PE")[0] == pytest.approx(serial, abs=1e-9)
    # layer exchange needs cutoff + skin only, which LAMMPS's own comm cutoff covers
    run = run_lmp(script.replace("exchange no", ""), tmp_path, nprocs=2)
    assert "smaller than the ghost shell" not in run.output and "graph mode: layer exchange" in run.output
    assert run.values("PE")[0] == pytest.approx(serial, abs=1e-9)
