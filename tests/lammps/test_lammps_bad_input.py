"""Every way pair_style mlff can be misused or broken ends in a clear LAMMPS error and a
non-zero exit, never a crash.

Input-script mistakes are one table (``CASES``): add a new bad input there. Broken model
files and a broken torch need files made for them and have tests of their own below.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Dict, List, Tuple

import pytest
import torch
from lmp_helpers import run_lmp

from mlff import export_model
from mlff.lammps.plugin import plugin_info


def script(model, pair_args="", elements="Cu", head="units metal", ntypes=1, tail="run 0"):
    return f"""
{head}
atom_style atomic
lattice fcc 3.615
region box block 0 1 0 1 0 1
create_box {ntypes} box
create_atoms 1 box
mass * 63.546
pair_style mlff {model} {pair_args}
pair_coeff * * {elements}
{tail}
"""


def expect_error(tmp_path, text, *needles, nprocs=1, env=None):
    run = run_lmp(text, tmp_path, nprocs=nprocs, env_extra=env, check=False)
    assert run.returncode != 0, run.output[-3000:]
    assert not run.crashed, f"lmp crashed (status {run.returncode}):\n{run.output[-3000:]}"
    assert "ERROR" in run.output, run.output[-3000:]
    for needle in needles:
        assert needle in run.output, f"{needle!r} not in:\n{run.output[-3000:]}"
    return run


# ----------------------------------------------------------------------------- model files


def test_corrupt_model(tmp_path, cu_model):
    bad = tmp_path / "corrupt.pt"
    data = bytearray(Path(cu_model).read_bytes())
    with zipfile.ZipFile(cu_model) as zf:
        # the largest stored weights entry (torch does not check CRCs: it would load)
        info = max((i for i in zf.infolist() if i.compress_type == 0), key=lambda i: i.file_size)
    off = info.header_offset
    start = off + 30 + int.from_bytes(data[off + 26 : off + 28], "little") + int.from_bytes(data[off + 28 : off + 30], "little")
    data[start + info.file_size // 2] ^= 0x5A
    bad.write_bytes(bytes(data))
    expect_error(tmp_path, script(bad), "corrupt.pt is corrupt", "checksum mismatch")


def test_truncated_model(tmp_path, cu_model):
    bad = tmp_path / "truncated.pt"
    data = Path(cu_model).read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    expect_error(tmp_path, script(bad), "truncated.pt is not a readable model archive")


def test_archive_torch_cannot_load(tmp_path, cu_model):
    """Intact archive and metadata, but no loadable TorchScript inside: torch's own
    error is reported with the file name and advice."""
    bad = tmp_path / "hollow.pt"
    with zipfile.ZipFile(cu_model) as src, zipfile.ZipFile(bad, "w", zipfile.ZIP_STORED) as dst:
        meta = next(n for n in src.namelist() if n.endswith("/extra/mlff_metadata.json"))
        dst.writestr("hollow/extra/mlff_metadata.json", src.read(meta))
        dst.writestr("hollow/version", "3\n")
        dst.writestr("hollow/data.pkl", b"\x80\x02garbage")
    expect_error(tmp_path, script(bad), "hollow.pt could not be loaded by torch", "corrupt")


class Exploding(torch.nn.Module):
    """A valid contract model that raises inside forward for any system but export's 6-atom probe."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(1, dtype=torch.float64))

    @torch.jit.unused
    def neighbor_lists(self) -> List[Tuple[str, float]]:
        return [("local", 3.0)]

    @torch.jit.unused
    def contract_info(self):
        return dict(kind="exploding", elements=[29], neighbor_lists=self.neighbor_lists())

    def forward(self, atomic_numbers: torch.Tensor, edge_indices: List[torch.Tensor],
                edge_vectors: List[torch.Tensor], n_local: int,
                system: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        if atomic_numbers.shape[0] != 6:
            raise RuntimeError("exploding test model refuses this system")
        r = torch.linalg.norm(edge_vectors[0], dim=1) * self.w
        e = torch.zeros(atomic_numbers.shape[0], dtype=r.dtype).index_add(0, edge_indices[0][0], r)
        return {"energies": e}


@pytest.mark.parametrize("nprocs", [1, 2])
def test_exception_inside_torch_becomes_lammps_error(tmp_path, nprocs):
    path = tmp_path / "exploding.pt"
    export_model(Exploding(), path)
    expect_error(tmp_path, script(path), "pair mlff:", "exploding test model refuses",
                 nprocs=nprocs)


# ----------------------------------------------------------------------------- input mistakes


def _edited_cutoff(model, tmp):
    """A valid archive whose metadata cutoff was edited by hand."""
    import json

    bad = tmp / "edited.pt"
    with zipfile.ZipFile(model) as zin, zipfile.ZipFile(bad, "w", zipfile.ZIP_STORED) as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename.endswith("/extra/mlff_metadata.json"):
                meta = json.loads(data)
                meta["cutoff"] = 3.0
                meta["neighbor_lists"][0]["cutoff"] = 3.0
                data = json.dumps(meta).encode()
            zout.writestr(item, data)
    return bad


# name -> (script(model, tmp), fragments of the LAMMPS error)
CASES: Dict[str, Tuple] = {
    "element not in model": (lambda m, t: script(m, elements="O"), ["element O (type 1) is not in model", "which knows Cu"]),
    "unknown element symbol": (lambda m, t: script(m, elements="Qq"), ["'Qq' (type 1) is not an element symbol"]),
    "wrong number of elements": (lambda m, t: script(m, elements="Cu Cu"), ["1 types, got 2 words"]),
    "hybrid styles on one pair_coeff line": (
        lambda m, t: script(m, pair_args="", elements="Cu zbl 29 29").replace(
            f"pair_style mlff {m} ", f"pair_style hybrid/overlay mlff {m} zbl 1.0 2.0").replace(
            "pair_coeff * * Cu zbl", "pair_coeff * * mlff Cu zbl"),
        ["every sub-style takes its own pair_coeff line", "'pair_coeff * * mlff Cu'"]),
    "NULL type without hybrid": (
        # LAMMPS's own check (Pair::init) comes first; init_one repeats it for hybrid set-ups
        lambda m, t: script(m, elements="Cu NULL", ntypes=2), ["All pair coeffs are not set", "1      2: is not set"]),
    "newton off": (lambda m, t: script(m, head="units metal\nnewton off"), ["requires newton pair on"]),
    "units lj": (lambda m, t: script(m, head="units lj"), ["'units metal'", "'units real'", "'units lj'"]),
    "units si": (lambda m, t: script(m, head="units si"), ["'units si'"]),
    "units electron": (lambda m, t: script(m, head="units electron"), ["'units electron'"]),
    "unknown keyword": (lambda m, t: script(m, pair_args="precision high"), ["unknown keyword 'precision'"]),
    "bad device": (lambda m, t: script(m, pair_args="device tpu"), ["device must be cpu, cuda or cuda:N"]),
    "keyword without value": (lambda m, t: script(m, pair_args="charge"), ["keyword charge needs a value"]),
    "unknown fidelity": (lambda m, t: script(m, pair_args="fidelity dft"), ["unknown fidelity 'dft'", "0 (the only one)"]),
    "fidelity out of range": (lambda m, t: script(m, pair_args="fidelity 2"), ["fidelity index 2 is out of range"]),
    "charge for a model without charge input": (lambda m, t: script(m, pair_args="charge 1"), ["no charge input"]),
    "charge not a number": (lambda m, t: script(m, pair_args="charge one"), ["Expected floating point"]),
    "compute mlff/atom of an unknown output": (
        lambda m, t: script(m, tail="compute q all mlff/atom charges\ndump d all custom 1 d.txt c_q\nrun 0"),
        ["has no per-atom output 'charges'", "energies only"]),
    "compute mlff/atom without pair mlff": (
        lambda m, t: script(m, tail="pair_style zero 3.0\npair_coeff * *\ncompute q all mlff/atom charges\n"
                                    "dump d all custom 1 d.txt c_q\nrun 0"),
        ["compute mlff/atom needs pair_style mlff"]),
    "metadata edited by hand": (lambda m, t: script(_edited_cutoff(m, t)), ["metadata does not match the model"]),
    "missing model": (lambda m, t: script(t / "nope.pt"), ["nope.pt", "does not exist"]),
    "text file as model": (lambda m, t: script((t / "notes.pt").write_text("not weights\n") and t / "notes.pt"),
                           ["notes.pt is not a readable model archive"]),
    "plain TorchScript file": (
        lambda m, t: script(torch.jit.save(torch.jit.script(torch.nn.Linear(3, 1)), str(t / "lin.pt")) or t / "lin.pt"),
        ["is a TorchScript file but not an mlff model"]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_is_a_clear_lammps_error(name, tmp_path, cu_model):
    make, fragments = CASES[name]
    expect_error(tmp_path, make(cu_model, tmp_path), *fragments)


def test_every_mlff_type_absent_is_a_warning(tmp_path, cu_model):
    """Types mapped to elements but no atom of them: PE from mlff would silently be 0."""
    text = script(cu_model, elements="NULL Cu", ntypes=2).replace(
        f"pair_style mlff {cu_model} ", f"pair_style hybrid/overlay zero 3.0 mlff {cu_model} ").replace(
        "pair_coeff * * NULL Cu", "pair_coeff * * zero\npair_coeff * * mlff NULL Cu")
    run = run_lmp(text, tmp_path)
    assert "WARNING: pair mlff: none of the 4 atoms has a type that pair_coeff maps" in run.output, run.output[-2000:]


def test_close_contact_is_a_warning(tmp_path):
    from mlff.models import PaiNN

    model = PaiNN([29], cutoff=4.0, n_features=8, num_interactions=2).double()
    model.min_distance = 2.4
    path = tmp_path / "md.pt"
    export_model(model, path)
    text = script(path).replace("create_atoms 1 box", "create_atoms 1 box\ndisplace_atoms all random 0.6 0.6 0.6 1")
    run = run_lmp(text, tmp_path)
    assert "WARNING: pair mlff: two atoms are" in run.output, run.output[-2000:]
    assert "zbl" in run.output


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_cuda_without_gpu_is_a_clear_error(tmp_path, cu_model, device):
    expect_error(tmp_path, script(cu_model, pair_args=f"device {device}"), "device cuda requested",
                 "no usable CUDA device", "device cpu")


# ----------------------------------------------------------------------------- wrong torch


def test_plugin_refuses_a_different_torch(tmp_path, cu_model):
    """A libtorch of another version found first (here through LD_LIBRARY_PATH) is refused."""
    build = plugin_info()["build"]
    real_lib = Path(build["torch_lib_dir"])
    fake_torch = tmp_path / "site" / "torch"
    (fake_torch / "lib").mkdir(parents=True)
    for f in real_lib.iterdir():
        os.symlink(f, fake_torch / "lib" / f.name)
    (fake_torch / "version.py").write_text("__version__ = '2.0.0+fake'\n")
    nvidia = real_lib.parent.parent / "nvidia"
    if nvidia.exists():  # libtorch's CUDA dependencies are found relative to it
        os.symlink(nvidia, tmp_path / "site" / "nvidia")
    env = {"LD_LIBRARY_PATH": str(fake_torch / "lib")}
    expect_error(tmp_path, script(cu_model), f"built against torch {build['torch_version']}",
                 "2.0.0+fake", "reinstall mlff", env=env)


def test_python_helpers_raise_one_lammps_error(cu_model):
    """evaluate() and run_md() surface LAMMPS's message as the same exception type."""
    from ase.build import molecule

    from mlff.lammps import LammpsError, evaluate, run_md

    water = molecule("H2O")
    water.center(vacuum=5.0)
    with pytest.raises(LammpsError, match=r"element (H|O) \(type [12]\) is not in model .*which knows Cu"):
        evaluate(cu_model, [water])
    with pytest.raises(LammpsError, match=r"element (H|O) \(type [12]\) is not in model .*which knows Cu"):
        run_md(cu_model, water, 2)
