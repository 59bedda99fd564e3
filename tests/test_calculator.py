"""ASE calculator behaviour: inputs it accepts, batching, dtypes, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase.build import bulk, molecule

from mlff import MLFFCalculator, MLFFModelError
from mlff.checkpoint import load_checkpoint, save_checkpoint
from mlff.contract import make_system


def _cu(n=2, seed=0):
    a = bulk("Cu", "fcc", a=3.6, cubic=True).repeat(n)
    a.rattle(0.05, seed=seed)
    return a


def test_module_file_and_checkpoint_agree(make_model, make_model_file, tmp_path):
    model = make_model()
    ckpt = tmp_path / "model.ckpt"
    save_checkpoint(ckpt, model, provenance={"note": "test"})
    assert load_checkpoint(ckpt).provenance == {"note": "test"}
    results = []
    for spec in (model, make_model_file(), ckpt, str(ckpt)):
        atoms = _cu()
        atoms.calc = MLFFCalculator(spec)
        results.append((atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()))
    for e, f, s in results[1:]:
        assert e == pytest.approx(results[0][0], abs=1e-12)
        np.testing.assert_allclose(f, results[0][1], atol=1e-12)
        np.testing.assert_allclose(s, results[0][2], atol=1e-14)


def test_evaluate_batch_equals_single_calls(make_model_file):
    calc = MLFFCalculator(make_model_file(elements=(1, 6, 8, 29)))
    structures = [_cu(2, 1), molecule("H2O"), _cu(1, 2), molecule("CH3OH")]
    structures[1].center(vacuum=3.0)
    batch = calc.evaluate_batch(structures)
    assert calc.n_calls == 1
    assert len(batch) == 4
    for atoms, res in zip(structures, batch):
        atoms.calc = calc
        assert res["energy"] == pytest.approx(atoms.get_potential_energy(), abs=1e-10)
        np.testing.assert_allclose(res["forces"], atoms.get_forces(), atol=1e-10)
        np.testing.assert_allclose(res["energies"], atoms.get_potential_energies(), atol=1e-10)
        if atoms.pbc.all():
            np.testing.assert_allclose(res["stress"], atoms.get_stress(), atol=1e-12)
        else:
            assert "stress" not in res
    assert calc.evaluate_batch([]) == []


def test_n_calls_counts_model_evaluations(make_model_file):
    calc = MLFFCalculator(make_model_file())
    atoms = _cu()
    atoms.calc = calc
    atoms.get_potential_energy()
    atoms.get_forces()  # cached: same positions
    assert calc.n_calls == 1
    atoms.positions[0, 0] += 0.01
    atoms.get_forces()
    assert calc.n_calls == 2


def test_float32_model_and_dtype_override(make_model_file):
    f32 = MLFFCalculator(make_model_file(dtype="float32"))
    f64 = MLFFCalculator(make_model_file(dtype="float64"))
    up = MLFFCalculator(make_model_file(dtype="float32"), dtype="float64")
    assert f32.dtype == torch.float32 and up.dtype == torch.float64
    a, b, c = _cu(), _cu(), _cu()
    a.calc, b.calc, c.calc = f32, f64, up
    assert a.get_potential_energy() == pytest.approx(b.get_potential_energy(), rel=1e-5)
    np.testing.assert_allclose(a.get_forces(), b.get_forces(), atol=1e-4)
    assert c.get_potential_energy() == pytest.approx(b.get_potential_energy(), rel=1e-6)


def test_unknown_element_is_named(make_model_file):
    calc = MLFFCalculator(make_model_file(elements=(29,)))
    atoms = molecule("H2O")
    atoms.calc = calc
    with pytest.raises(MLFFModelError, match=r"\['O', 'H'\]|\['H', 'O'\].*trained on \['Cu'\]"):
        atoms.get_potential_energy()


def test_model_itself_refuses_unknown_atomic_numbers(make_model):
    """Engines that skip the Python check (LAMMPS, OpenMM) still get a clear error."""
    model = make_model(elements=(29,))
    z = torch.tensor([29, 8])
    ei = torch.tensor([[0, 1], [1, 0]])
    ev = torch.tensor([[2.0, 0, 0], [-2.0, 0, 0]], dtype=torch.float64)
    with pytest.raises(RuntimeError, match=r"atomic numbers \[8\] are not among"):
        model(z, [ei], [ev], 2, make_system())


def test_not_a_model_file(tmp_path):
    bad = tmp_path / "notes.pt"
    bad.write_text("hello")
    with pytest.raises(MLFFModelError, match="neither an exported mlff model nor an mlff checkpoint"):
        MLFFCalculator(bad)


def test_cuda_request_without_gpu(make_model_file):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present; the CPU-only error path cannot be shown")
    with pytest.raises(RuntimeError, match="no CUDA device"):
        MLFFCalculator(make_model_file(), device="cuda")


def test_torch_compile_matches_eager(make_model):
    """torch.compile (inductor on CPU) gives the same forces as the eager model."""
    model = make_model()
    atoms = _cu(1)
    atoms.calc = MLFFCalculator(model)
    ref = atoms.get_forces()
    compiled = atoms.copy()
    compiled.calc = MLFFCalculator(make_model(), compile=True)
    np.testing.assert_allclose(compiled.get_forces(), ref, atol=1e-9)


def test_compile_refuses_torchscript(make_model_file):
    with pytest.raises(ValueError, match="eager model"):
        MLFFCalculator(make_model_file(), compile=True)


def test_per_atom_stresses_equal_the_per_atom_formula(make_model):
    """The vectorised per-atom stresses are the former per-atom loop's, bit for bit."""
    from ase.stress import full_3x3_to_voigt_6_stress

    from mlff.contract import evaluate
    from mlff.neighbors import graph_from_atoms
    from mlff.units import stress_from_virial

    model = make_model()
    atoms = _cu(2, 3)
    atoms.set_cell(atoms.cell[:] + np.array([[0, 0.3, 0], [0, 0, 0.2], [0.1, 0, 0]]), scale_atoms=True)
    atoms.calc = MLFFCalculator(model, compile=False)
    stresses = atoms.get_stresses()
    g = graph_from_atoms(atoms, model.cutoff, torch.float64, "cpu")
    ev = [e.detach().requires_grad_(True) for e in g.edge_vectors()]
    w = evaluate(model, g.atomic_numbers, g.edge_indices, ev, g.n_atoms)["atom_virial"].detach().numpy()
    volume = atoms.get_volume()
    expected = np.array([full_3x3_to_voigt_6_stress(stress_from_virial(x, volume)) for x in w])
    assert stresses.shape == (len(atoms), 6)
    assert np.array_equal(stresses, expected)


def _count_compiles(monkeypatch):
    calls = []
    real = torch.compile

    def spy(module, **kwargs):
        calls.append(kwargs)
        return real(module, **kwargs)

    monkeypatch.setattr(torch, "compile", spy)
    return calls


def test_auto_compile_waits_until_the_warm_up_is_repaid(make_model, monkeypatch):
    """Default compile="auto": eager for the first AUTO_COMPILE_AFTER_ATOMS atoms, then
    compiled, with forces equal to the eager model's at round-off."""
    monkeypatch.setenv("MLFF_COMPILE_AFTER_ATOMS", "40")
    calls = _count_compiles(monkeypatch)
    atoms = _cu(2)  # 32 atoms: the first call stays eager, the second compiles
    eager = atoms.copy()
    eager.calc = MLFFCalculator(make_model(), compile=False)
    atoms.calc = calc = MLFFCalculator(make_model())
    f0 = atoms.get_forces()
    assert not calc.compiled and calls == []
    assert np.array_equal(f0, eager.get_forces())  # bit-identical while eager
    for seed in (1, 2):
        atoms.rattle(0.01, seed=seed)
        eager.positions = atoms.positions
        np.testing.assert_allclose(atoms.get_forces(), eager.get_forces(), atol=1e-9)
        np.testing.assert_allclose(atoms.get_stresses(), eager.get_stresses(), atol=1e-11)
    assert calc.compiled and len(calls) == 1


def test_auto_compile_opt_outs_and_exclusions(make_model, make_model_file, monkeypatch):
    monkeypatch.setenv("MLFF_COMPILE_AFTER_ATOMS", "0")
    calls = _count_compiles(monkeypatch)

    def calc_after_two_calls(spec, **kwargs):
        atoms = _cu(1)
        atoms.calc = calc = MLFFCalculator(spec, **kwargs)
        atoms.get_forces()
        atoms.rattle(0.01, seed=1)
        atoms.get_forces()
        return calc

    assert not calc_after_two_calls(make_model(), compile=False).compiled
    # TorchScript files cannot be torch.compile'd; "auto" leaves them as they are
    assert not calc_after_two_calls(make_model_file()).compiled
    monkeypatch.setenv("MLFF_NO_COMPILE", "1")
    assert not calc_after_two_calls(make_model()).compiled
    assert calls == []
    with pytest.raises(ValueError, match="True, False or 'auto'"):
        MLFFCalculator(make_model(), compile="yes")


def test_one_off_evaluation_is_never_compiled(make_model, monkeypatch):
    monkeypatch.delenv("MLFF_COMPILE_AFTER_ATOMS", raising=False)
    calls = _count_compiles(monkeypatch)
    atoms = _cu(2)
    atoms.calc = calc = MLFFCalculator(make_model())
    atoms.get_potential_energy()
    assert not calc.compiled and calls == []


def test_auto_compile_failure_falls_back_to_eager(make_model, monkeypatch):
    """A failing compilation (no C++ compiler, say) warns once and leaves the run eager."""
    monkeypatch.setenv("MLFF_COMPILE_AFTER_ATOMS", "0")

    def broken(module, **kwargs):
        def fail(*args, **kw):
            raise RuntimeError("no working C++ compiler")

        return fail

    monkeypatch.setattr(torch, "compile", broken)
    atoms = _cu(1)
    eager = atoms.copy()
    eager.calc = MLFFCalculator(make_model(), compile=False)
    atoms.calc = calc = MLFFCalculator(make_model())
    with pytest.warns(RuntimeWarning, match="no working C.. compiler"):
        forces = atoms.get_forces()
    assert not calc.compiled
    assert np.array_equal(forces, eager.get_forces())
    atoms.rattle(0.01, seed=1)
    eager.positions = atoms.positions
    assert np.array_equal(atoms.get_forces(), eager.get_forces())
