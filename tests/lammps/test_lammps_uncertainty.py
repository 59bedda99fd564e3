"""A committee in LAMMPS the way users run it: `lmp` input scripts with compute mlff/atom,
compute reduce, fix halt, fix mlff/extrapolation (the trust-window labelling queue),
compute pair mlff and outputs_every, on 1 and 2 MPI ranks."""

from __future__ import annotations

import numpy as np
import pytest
from ase.io import read
from lmp_helpers import cu_box_script, run_lmp

from mlff.calculator import MLFFCalculator

MONITOR = """
compute dev all mlff/atom forces_uncertainty
compute maxdev all reduce max c_dev
compute pp all pair mlff
velocity all create 600 4928459 loop geom
fix nve all nve
timestep 0.002
"""


def max_deviations(run, tag="DEV"):
    """{step: max deviation} from `fix print` lines `DEV step value`."""
    out = {}
    for line in run.output.splitlines():
        if line.startswith(tag + " "):
            _, step, value = line.split()
            out[int(step)] = float(value)
    return out


@pytest.mark.parametrize("nprocs", [1, 2])
def test_extrapolation_queue_holds_exactly_the_frames_in_the_trust_window(light_committee_file, tmp_path, nprocs):
    committee_file = light_committee_file
    # 1. the run's per-step max deviation, printed every 5 steps
    base = cu_box_script(committee_file, reps=3, pair_args="outputs_every 5", extra=MONITOR)
    probe = run_lmp(base + 'fix p all print 5 "DEV $(step) $(c_maxdev:%.17g)"\nrun 60\n', tmp_path, nprocs=nprocs)
    devs = max_deviations(probe)
    values = np.array([devs[s] for s in sorted(devs) if s > 0])
    assert len(values) == 12
    # a window with frames below, inside and above it
    lo, hi = (float(q) for q in np.quantile(values, [0.25, 0.7]))
    inside = sorted(s for s, v in devs.items() if s > 0 and lo <= v < hi)
    above = sorted(s for s, v in devs.items() if s > 0 and v >= hi)
    assert inside and above and len(inside) + len(above) < len(values)
    # 2. the same (deterministic) run with the queue
    queue = tmp_path / "queue.xyz"
    script = base + (f"fix ext all mlff/extrapolation 5 {queue.name} lo {lo!r} hi {hi!r}\n"
                     'fix p all print 5 "DEV $(step) $(c_maxdev:%.17g)"\n'
                     "thermo 5\nthermo_style custom step pe c_maxdev f_ext[*]\nrun 60\n"
                     'print "COUNTS $(f_ext[2]) $(f_ext[3]) $(f_ext[4])"\n')
    run = run_lmp(script, tmp_path, nprocs=nprocs)
    assert max_deviations(run) == devs
    frames = read(queue, ":")
    assert [int(f.info["step"]) for f in frames] == inside
    assert run.values("COUNTS") == [len(inside), len(above), 12]
    # every queued frame is a whole structure whose deviations ASE reproduces
    for frame in frames:
        assert len(frame) == 108 and frame.pbc.all()
        calc = MLFFCalculator(str(committee_file))
        frame.calc = calc
        frame.get_potential_energy()
        np.testing.assert_allclose(frame.arrays["forces_uncertainty"], calc.results["forces_uncertainty"],
                                   rtol=0, atol=1e-9)
        assert frame.info["max_forces_uncertainty"] == pytest.approx(devs[frame.info["step"]], abs=1e-12)
    if nprocs == 1:
        # the queue is a labelling job: `mlff label --as-is` labels its frames, once each
        import subprocess
        import sys

        from mlff.data.store import read_records

        cmd = [sys.executable, "-m", "mlff.cli", "label", str(queue), "--as-is", "-o", str(tmp_path / "q.db"),
               "--teacher", "emt", "--no-progress"]
        first = subprocess.run(cmd, capture_output=True, text=True)
        assert first.returncode == 0, first.stderr
        again = subprocess.run(cmd, capture_output=True, text=True)
        assert f"0 new structures" in again.stdout and f"{len(frames)} already there" in again.stdout
        records = read_records(tmp_path / "q.db")
        assert len(records) == len(frames)
        for rec, frame in zip(records, frames):
            np.testing.assert_allclose(rec.positions, frame.positions, rtol=0, atol=1e-12)
            assert rec.forces is not None


def test_two_runs_sharing_one_queue_never_interleave_frames(light_committee_file, tmp_path):
    """Two LAMMPS runs (108 and 32 atoms) append to one queue at the same time, a frame
    every step: the file holds every frame of both, each whole (the fix writes a frame
    under an exclusive lock)."""
    from concurrent.futures import ThreadPoolExecutor

    queue = tmp_path / "shared.xyz"
    steps = 40

    def one(reps: int):
        cwd = tmp_path / f"run{reps}"
        cwd.mkdir()
        script = cu_box_script(light_committee_file, reps=reps, extra=MONITOR) + (
            f"fix ext all mlff/extrapolation 1 {queue} lo 0.0 hi 1e9\nrun {steps}\n"
            'print "COUNTS $(f_ext[2]) $(f_ext[3]) $(f_ext[4])"\n')
        return run_lmp(script, cwd).values("COUNTS")

    with ThreadPoolExecutor(2) as pool:  # subprocess.run releases the GIL: both lmp run at once
        counts = list(pool.map(one, [3, 2]))
    frames = read(queue, ":")
    by_size = {n: [int(f.info["step"]) for f in frames if len(f) == n] for n in (108, 32)}
    assert len(frames) == len(by_size[108]) + len(by_size[32])  # no frame of another size
    for (queued, _, checked), n in zip(counts, (108, 32)):
        assert queued == checked == steps and by_size[n] == list(range(1, steps + 1))


def test_fix_halt_stops_a_run_whose_deviation_exceeds_the_threshold(light_committee_file, tmp_path):
    base = cu_box_script(light_committee_file, reps=2, extra=MONITOR)
    first = run_lmp(base + 'run 0\nprint "START $(c_maxdev:%.17g) $(c_pp[1]:%.17g)"\n', tmp_path)
    start, energy_dev = first.values("START")
    assert start > 0 and energy_dev > 0
    # below the deviation: halts at the first check; far above: runs to the end
    halt = "variable m equal c_maxdev\nfix h all halt 10 v_m > {limit} error soft\nrun 50\nprint \"END $(step)\"\n"
    stopped = run_lmp(base + halt.format(limit=0.5 * start), tmp_path)
    assert stopped.values("END") == [10.0]
    full = run_lmp(base + halt.format(limit=100 * start), tmp_path)
    assert full.values("END") == [50.0]


def test_energy_uncertainty_in_compute_pair_matches_ase(committee_file, tmp_path):
    base = cu_box_script(committee_file, reps=2, extra="compute pp all pair mlff\nthermo_style custom step pe c_pp[1]\n"
                         "run 0\nprint \"EU $(c_pp[1]:%.17g)\"\nwrite_data out.data\n")
    for nprocs in (1, 2):
        run = run_lmp(base, tmp_path, nprocs=nprocs)
        atoms = read(tmp_path / "out.data", format="lammps-data", atom_style="atomic")
        atoms.set_chemical_symbols(["Cu"] * len(atoms))
        calc = MLFFCalculator(str(committee_file))
        atoms.calc = calc
        atoms.get_potential_energy()
        assert run.values("EU")[0] == pytest.approx(calc.results["energy_uncertainty"], abs=1e-9)


def test_outputs_every_keeps_the_forces_and_refuses_other_steps(committee_file, tmp_path):
    every = cu_box_script(committee_file, reps=2, pair_args="outputs_every 4", extra=MONITOR)
    plain = cu_box_script(committee_file, reps=2, extra=MONITOR)
    tail = 'run 8\nprint "PE $(pe:%.17g) $(c_maxdev:%.17g)"\n'
    a = run_lmp(every + tail, tmp_path).values("PE")
    b = run_lmp(plain + tail, tmp_path).values("PE")
    assert a == pytest.approx(b, abs=1e-10)  # the energy-only steps move the atoms the same way
    bad = run_lmp(every + "dump d all custom 3 d.txt id c_dev\nrun 3\n", tmp_path, check=False)
    assert bad.returncode != 0 and not bad.crashed
    assert "every 4 steps" in bad.output


@pytest.mark.parametrize(
    "line, message",
    [
        ("fix ext all mlff/extrapolation 5 q.xyz lo 0.5 hi 0.1", "0 <= lo < hi"),
        ("fix ext all mlff/extrapolation 5 q.xyz low 0.1 high 0.5", "expected fix ID group"),
        ("fix ext all mlff/extrapolation 3 q.xyz lo 0.1 hi 0.5", "not a multiple"),
        ("fix ext all mlff/extrapolation 4 q.xyz lo 0.1 hi 0.5 output charges", "no per-atom output 'charges'"),
        ("fix ext all mlff/extrapolation 4 /nonexistent/dir/q.xyz lo 0.1 hi 0.5", "cannot open"),
        ("compute c all mlff/atom member_forces", "numbers per atom"),
    ],
)
def test_bad_uncertainty_commands_give_clear_errors(committee_file, tmp_path, line, message):
    script = cu_box_script(committee_file, reps=2, pair_args="outputs_every 4", extra=line + "\nrun 4\n")
    run = run_lmp(script, tmp_path, check=False)
    assert run.returncode != 0 and not run.crashed
    assert message in run.output


def test_a_model_without_uncertainty_is_refused_by_the_queue(cu_model, tmp_path):
    script = cu_box_script(cu_model, reps=2, extra="fix ext all mlff/extrapolation 5 q.xyz lo 0.1 hi 0.5\nrun 5\n")
    run = run_lmp(script, tmp_path, check=False)
    assert run.returncode != 0 and not run.crashed
    assert "no uncertainty output" in run.output and "mlff ensemble" in run.output
    run = run_lmp(cu_box_script(cu_model, reps=2, pair_args="outputs_every 5", extra="run 0\n"), tmp_path, check=False)
    assert run.returncode != 0 and "has none" in run.output
