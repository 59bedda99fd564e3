"""The exported-model contract: export/load round trip, metadata validation, clear errors."""

from __future__ import annotations

import json
import zipfile
from typing import Dict, List

import numpy as np
import pytest
import torch
from ase.build import bulk

import mlff
from mlff.contract import METADATA_ENTRY, MLFFModelError, evaluate, read_metadata
from mlff.neighbors import graph_from_atoms


def _eval(module, atoms, cutoff):
    g = graph_from_atoms(atoms, cutoff)
    ev = [e.detach().requires_grad_(True) for e in g.edge_vectors()]
    with torch.jit.optimized_execution(False):
        return evaluate(module, g.atomic_numbers, g.edge_indices, ev, g.n_atoms)


def test_export_load_bit_identical(make_model, tmp_path):
    model = make_model(elements=(8, 29))
    path = tmp_path / "m.pt"
    meta = mlff.export_model(model, path, provenance={"data_hash": "abc"})
    loaded = mlff.load_model(path)
    assert loaded.metadata == meta
    assert loaded.metadata.provenance["data_hash"] == "abc"
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat(2)
    atoms.symbols[[1, 5]] = "O"
    atoms.rattle(0.05, seed=3)
    ref = _eval(model, atoms, meta.cutoff)
    got = _eval(loaded.module, atoms, meta.cutoff)
    for key in ("energy", "energies", "forces", "virial", "atom_virial"):
        assert torch.equal(ref[key], got[key]), key
    # the calculator, too, reproduces the in-memory model bit for bit
    c_mem, c_file = mlff.MLFFCalculator(model), mlff.MLFFCalculator(path)
    a1, a2 = atoms.copy(), atoms.copy()
    a1.calc, a2.calc = c_mem, c_file
    assert a1.get_potential_energy() == a2.get_potential_energy()
    assert np.array_equal(a1.get_forces(), a2.get_forces())
    assert np.array_equal(a1.get_stress(), a2.get_stress())


def test_metadata_contents(make_model_file):
    meta = read_metadata(make_model_file(elements=(1, 6, 8), num_interactions=3, cutoff=4.5))
    assert meta.contract_version == mlff.CONTRACT_VERSION
    assert meta.kind == "painn"
    assert meta.elements == [1, 6, 8]
    assert meta.symbols == ["H", "C", "O"]
    assert meta.cutoff == 4.5 and meta.num_interactions == 3
    assert meta.interaction_range == pytest.approx(13.5)
    assert meta.dtype == "float64"
    assert meta.torch_version == torch.__version__.split("+")[0]
    assert meta.mlff_version == mlff.__version__


def test_missing_file(tmp_path):
    with pytest.raises(MLFFModelError, match="does not exist"):
        mlff.load_model(tmp_path / "nope.pt")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        mlff.MLFFCalculator(str(tmp_path / "nope.pt"))
    # one exception type for every loader: an MLFFModelError that is also a FileNotFoundError
    with pytest.raises(MLFFModelError, match="does not exist"):
        mlff.MLFFCalculator(str(tmp_path / "nope.pt"))


def test_truncated_file(make_model_file, tmp_path):
    data = make_model_file().read_bytes()
    bad = tmp_path / "truncated.pt"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(MLFFModelError, match="truncated or corrupt"):
        mlff.load_model(bad)


def test_garbage_file(tmp_path):
    bad = tmp_path / "garbage.pt"
    bad.write_bytes(b"this is not a model" * 100)
    with pytest.raises(MLFFModelError, match="truncated or corrupt"):
        mlff.load_model(bad)


def test_corrupt_payload_same_size(make_model_file, tmp_path):
    """Flipped bytes inside the archive: either the zip CRC or torch must refuse it."""
    data = bytearray(make_model_file().read_bytes())
    mid = len(data) // 2
    data[mid : mid + 64] = bytes(64)
    bad = tmp_path / "flipped.pt"
    bad.write_bytes(bytes(data))
    with pytest.raises(MLFFModelError):
        mlff.load_model(bad)


def test_foreign_torchscript(tmp_path):
    class Plain(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * 2

    path = tmp_path / "plain.pt"
    torch.jit.save(torch.jit.script(Plain()), str(path))
    with pytest.raises(MLFFModelError, match="not an mlff model"):
        mlff.load_model(path)


def test_torch_save_file_is_not_an_export(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save({"a": torch.zeros(3)}, path)
    with pytest.raises(MLFFModelError, match="not an exported mlff model"):
        mlff.load_model(path)


def _rewrite_metadata(src, dst, change):
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename.endswith("/extra/" + METADATA_ENTRY):
                meta = json.loads(data)
                change(meta)
                data = json.dumps(meta).encode()
            zout.writestr(item, data)


def test_other_contract_version(make_model_file, tmp_path):
    bad = tmp_path / "v99.pt"
    _rewrite_metadata(make_model_file(), bad, lambda m: m.update(contract_version=99, mlff_version="9.0"))
    with pytest.raises(MLFFModelError, match=r"contract version 99.*reads versions 1, 2"):
        mlff.load_model(bad)


def test_inconsistent_metadata(make_model_file, tmp_path):
    bad = tmp_path / "range.pt"
    _rewrite_metadata(make_model_file(), bad, lambda m: m.update(interaction_range=1.0))
    with pytest.raises(MLFFModelError, match="interaction_range"):
        mlff.load_model(bad)
    bad2 = tmp_path / "dtype.pt"
    _rewrite_metadata(make_model_file(), bad2, lambda m: m.update(dtype="float32"))
    with pytest.raises(MLFFModelError, match="metadata says float32"):
        mlff.load_model(bad2)


def test_export_refuses_wrong_extension(make_model, tmp_path):
    with pytest.raises(ValueError, match=".pt"):
        mlff.export_model(make_model(), tmp_path / "model.bin")


def test_export_is_atomic(make_model, tmp_path, monkeypatch):
    """A failing write leaves neither a partial file nor a stray temporary."""
    path = tmp_path / "m.pt"

    def boom(*args, **kwargs):
        with open(args[1], "wb") as fh:
            fh.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch.jit, "save", boom)
    with pytest.raises(OSError):
        mlff.export_model(make_model(), path)
    assert list(tmp_path.iterdir()) == []


def test_edges_beyond_cutoff_contribute_nothing(make_model):
    """LAMMPS passes its list with the skin: longer edges must change nothing."""
    model = make_model(elements=(29,), cutoff=4.0)
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat(2)
    atoms.rattle(0.05, seed=1)
    g4 = graph_from_atoms(atoms, 4.0)
    g6 = graph_from_atoms(atoms, 6.0)
    assert g6.edge_indices[0].shape[1] > g4.edge_indices[0].shape[1]
    out = []
    for g in (g4, g6):
        ev = [e.detach().requires_grad_(True) for e in g.edge_vectors()]
        out.append(evaluate(model, g.atomic_numbers, g.edge_indices, ev, g.n_atoms))
    assert torch.allclose(out[0]["energies"], out[1]["energies"], atol=1e-12, rtol=0)
    assert torch.allclose(out[0]["forces"], out[1]["forces"], atol=1e-12, rtol=0)
    assert torch.allclose(out[0]["virial"], out[1]["virial"], atol=1e-12, rtol=0)


def test_ghost_atoms_do_not_count(make_model):
    """Atoms >= n_local contribute no energy but receive forces (engines with ghosts)."""
    model = make_model()
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    g = graph_from_atoms(atoms, 4.0)
    ev = [e.detach().requires_grad_(True) for e in g.edge_vectors()]
    full = evaluate(model, g.atomic_numbers, g.edge_indices, ev, g.n_atoms)
    ev2 = [e.detach().requires_grad_(True) for e in g.edge_vectors()]
    part = evaluate(model, g.atomic_numbers, g.edge_indices, ev2, 2)
    assert torch.equal(part["energies"][2:], torch.zeros(2, dtype=torch.float64))
    assert torch.allclose(part["energy"], full["energies"][:2].sum())
    # the local atoms' virial is minus the strain derivative of their energy, checked by
    # finite differences of the edge vectors under a homogeneous strain (independent of
    # the per-atom split it is summed from)
    h = 1e-5
    numeric = torch.zeros(3, 3, dtype=torch.float64)
    base = [e.detach() for e in g.edge_vectors()]
    for a in range(3):
        for b in range(3):
            energy = []
            for sign in (1.0, -1.0):
                strain = torch.eye(3, dtype=torch.float64)
                strain[a, b] += sign * h
                ev3 = [(e @ strain).requires_grad_(True) for e in base]
                energy.append(float(evaluate(model, g.atomic_numbers, g.edge_indices, ev3, 2)["energy"].detach()))
            numeric[a, b] = -(energy[0] - energy[1]) / (2 * h)
    assert float(numeric.abs().max()) > 1e-4
    assert torch.allclose(part["virial"], numeric, atol=1e-7, rtol=0)
    assert torch.allclose(part["atom_virial"].sum(0), numeric, atol=1e-7, rtol=0)


def test_exports_and_checkpoints_respect_the_umask(make_model, tmp_path):
    """Other users on a cluster must be able to read models and checkpoints (umask 022 -> 0644)."""
    import os

    from mlff.checkpoint import save_checkpoint

    old = os.umask(0o022)
    try:
        mlff.export_model(make_model(), tmp_path / "m.pt")
        save_checkpoint(tmp_path / "c.ckpt", make_model())
    finally:
        os.umask(old)
    for name in ("m.pt", "c.ckpt"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o644, name


class _ScriptedEnergyOffset(torch.nn.Module):
    """Scripted and eager differ by a constant energy: identical forces, wrong energies."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(1, dtype=torch.float64))

    @torch.jit.unused
    def neighbor_lists(self):
        return [("local", 3.0)]

    @torch.jit.unused
    def contract_info(self):
        return dict(kind="offset", elements=[29], neighbor_lists=self.neighbor_lists())

    def forward(self, atomic_numbers: torch.Tensor, edge_indices: List[torch.Tensor], edge_vectors: List[torch.Tensor],
                n_local: int, system: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        r = torch.linalg.norm(edge_vectors[0], dim=1) * self.w
        e = torch.zeros(atomic_numbers.shape[0], dtype=r.dtype).index_add(0, edge_indices[0][0], r)
        if torch.jit.is_scripting():
            e = e + 1.0
        return {"energies": e}


def test_export_compares_energies_not_only_forces(tmp_path):
    with pytest.raises(MLFFModelError, match=r"disagrees with the eager model on a probe system \(energies\)"):
        mlff.export_model(_ScriptedEnergyOffset(), tmp_path / "offset.pt")
    assert not (tmp_path / "offset.pt").exists()
