"""Layer exchange (contract v3, issue 14): a message-passing model that exposes its layers
runs in LAMMPS with a ghost shell of one cutoff, the ghosts' node states exchanged between
the layers (forward communication) and their gradients sent home (reverse communication).

Exactness: 1, 2 and 4 ranks agree to 1e-10 (float64) on a triclinic cell, a slab and a box
with empty subdomains, and with the deep-shell run of the same weights; LAMMPS's finite
differences agree with the forces. Files without the extension (version 2) keep the deep
shell, and the log says which mode runs.
"""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
import torch
from ase.build import bulk, fcc111
from ase.neighborlist import neighbor_list
from lmp_helpers import cluster_in_periodic_box, cu_box_script, run_lmp, triclinic_cuo
from test_lammps_numdiff import SCRIPT as NUMDIFF_SCRIPT

from mlff.contract import (
    MLFFModelError,
    ModelMetadata,
    evaluate_layers,
    export_model,
    load_model,
    make_system,
    read_metadata,
)
from mlff import MLFFCalculator
from mlff.lammps import evaluate
from mlff.lammps.data import lammps_frame, type_symbols, write_data
from mlff.models.painn import PaiNN

TOL = 1e-10
LAYERS = 3


def _painn(n_heads: int = 1) -> PaiNN:
    torch.manual_seed(7)
    model = PaiNN([8, 29], cutoff=3.6, n_features=8, num_interactions=LAYERS, n_rbf=6, n_heads=n_heads)
    with torch.no_grad():
        model.atomic_energies.copy_(torch.tensor([-1.5, -3.0]))
    return model.double().eval()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("exchange")
    model = _painn()
    export_model(model, root / "v3.pt")
    export_model(model, root / "v2.pt", layer_exchange=False)
    return {"v3": root / "v3.pt", "v2": root / "v2.pt", "model": model}


def slab():
    a = fcc111("Cu", size=(3, 4, 4), a=3.61, vacuum=6.0, orthogonal=True)
    a.pbc = (True, True, False)
    a.rattle(0.05, seed=5)
    a.symbols[[0, 9, 30]] = "O"
    return a


def big_triclinic():
    a = bulk("Cu", "fcc", a=3.61).repeat((4, 4, 4))
    a.set_cell(a.cell[:] + np.array([[0.2, 0.3, -0.2], [0.0, 0.3, 0.1], [0.3, -0.1, 0.1]]), scale_atoms=True)
    a.rattle(0.05, seed=6)
    a.symbols[[1, 7, 20, 33]] = "O"
    return a


STRUCTURES = {
    "triclinic": big_triclinic,
    "small-triclinic": triclinic_cuo,
    "slab": slab,
    "empty-subdomains": cluster_in_periodic_box,
}


# ----------------------------------------------------------------------------- Python side


def test_metadata_declares_layers(files):
    meta = read_metadata(files["v3"])
    assert meta.contract_version == 3
    assert meta.message_passing.layers == LAYERS and meta.message_passing.width == 4 * 8
    old = read_metadata(files["v2"])
    assert old.contract_version == 2 and old.message_passing is None


def test_forward_equals_layer_composition(files):
    """forward == readout_energies(layer(L-1, ... layer(0, embed(z)))), eager and scripted."""
    atoms = big_triclinic()
    loaded = load_model(files["v3"]).module
    z = torch.as_tensor(atoms.numbers)
    i, j, S = neighbor_list("ijS", atoms, 3.6)
    vec = atoms.positions[j] - atoms.positions[i] + S @ atoms.cell[:]
    ei = torch.as_tensor(np.stack([i, j]))
    ev = torch.as_tensor(vec)
    for module in (files["model"], loaded):
        ref = module(z, [ei], [ev], len(atoms), make_system())["energies"]
        got = evaluate_layers(module, z, ei, ev)
        torch.testing.assert_close(got, ref, rtol=0, atol=1e-12)


def test_layer_updates_only_the_owned_rows(files):
    """layer(k, x, edges, e, n_local) = the first n_local rows of layer(k, x, edges, e, N)
    when every edge is centred on one of them (what LAMMPS passes: owned atoms first, ghosts
    after), and an edge centred on a ghost is refused rather than dropped."""
    atoms = big_triclinic()
    z = torch.as_tensor(atoms.numbers)
    i, j, S = neighbor_list("ijS", atoms, 3.6)
    n_local = 40
    keep = i < n_local
    vec = atoms.positions[j] - atoms.positions[i] + S @ atoms.cell[:]
    ei = torch.as_tensor(np.stack([i[keep], j[keep]]))
    for module in (files["model"], load_model(files["v3"]).module):
        e = module.edge_features(torch.as_tensor(vec[keep]))
        x = module.embed(z)
        for k in range(LAYERS):
            full = module.layer(k, x, ei, e, len(atoms))
            owned = module.layer(k, x, ei, e, n_local)
            assert owned.shape == (n_local, x.shape[1])
            torch.testing.assert_close(owned, full[:n_local], rtol=0, atol=1e-13)
            x = torch.cat([owned, full[n_local:]])  # ghosts' rows would come from their owners
        all_edges = torch.as_tensor(np.stack([i, j]))
        with pytest.raises(Exception, match="index"):
            module.layer(0, module.embed(z), all_edges, module.edge_features(torch.as_tensor(vec)), n_local)


class _GhostsFirst(PaiNN):
    """A broken layer: the right shape for n_local owned nodes, but the last rows."""

    @torch.jit.export
    def layer(
        self, k: int, x: torch.Tensor, edge_index: torch.Tensor, edge_features: torch.Tensor, n_local: int
    ) -> torch.Tensor:
        n, f = x.shape[0], x.shape[1] // 4
        s, v = x[:, :f].contiguous(), x[:, f:].reshape(n, 3, f).contiguous()
        fc, rbf_fc, unit = torch.split(edge_features, [1, edge_features.shape[1] - 4, 3], dim=1)
        for i, block in enumerate(self.interactions):
            if i == k:
                s, v = block(s, v, edge_index, rbf_fc, fc.squeeze(1), unit, i == 0)
        return torch.cat([s, v.reshape(n, 3 * f)], dim=1)[n - n_local:]  # every node updated, the last rows


def test_export_refuses_layers_that_do_not_keep_the_owned_rows(tmp_path):
    torch.manual_seed(7)
    model = _GhostsFirst([8, 29], cutoff=3.6, n_features=8, num_interactions=LAYERS, n_rbf=6).double().eval()
    with pytest.raises(MLFFModelError, match="first n_local rows"):
        export_model(model, tmp_path / "bad.pt")
    assert not (tmp_path / "bad.pt").exists()


def test_shallow_ensemble_offers_no_layers(tmp_path):
    model = _painn(n_heads=3)
    assert model.layer_exchange_info() is None
    meta = export_model(model, tmp_path / "heads.pt")
    assert meta.contract_version == 2 and meta.message_passing is None
    with pytest.raises(RuntimeError, match="several heads"):
        model.embed(torch.tensor([29]))


def test_message_passing_needs_version_3(files):
    data = read_metadata(files["v3"]).model_dump()
    data["contract_version"] = 2
    with pytest.raises(ValueError, match="version 3 extension"):
        ModelMetadata(**data)


# ----------------------------------------------------------------------------- LAMMPS


@pytest.fixture(scope="module")
def structures():
    return {k: f() for k, f in STRUCTURES.items()}


EVAL = """
units metal
atom_style atomic
atom_modify map yes
boundary {boundary}
read_data {data}
pair_style mlff {model} {pair_args}
pair_coeff * * {symbols}
compute pe all pe/atom
compute cst all centroid/stress/atom NULL
compute vir all pressure NULL virial
thermo_style custom step pe
run 0
print "PE $(pe:%.17g) $(vol:%.17g)"
print "VIR $(c_vir[1]:%.17g) $(c_vir[2]:%.17g) $(c_vir[3]:%.17g) $(c_vir[4]:%.17g) $(c_vir[5]:%.17g) $(c_vir[6]:%.17g)"
write_dump all custom out.dump id fx fy fz c_pe c_cst[*] modify sort id format float %.17g
"""


def lmp_eval(model, atoms, nprocs, workdir, pair_args=""):
    """Energy, virial, forces, per-atom energies and virials (eV) from `lmp` itself.

    (`lmp` rather than mlff.lammps.evaluate's Python worker: under 4 MPI ranks that
    worker is sometimes killed while tearing down after it wrote its results, with the
    deep shell as well.)"""
    workdir.mkdir(parents=True, exist_ok=True)
    symbols = type_symbols(atoms)
    frame = write_data(workdir / "s.data", atoms, symbols)
    script = EVAL.format(boundary=frame.boundary, data=workdir / "s.data", model=model, pair_args=pair_args,
                         symbols=" ".join(symbols))
    run = run_lmp(script, workdir, nprocs=nprocs)
    pe, vol = run.values("PE")
    nktv2p = 1.6021765e6  # LAMMPS's pressure*volume per energy in metal units
    rows = np.loadtxt(workdir / "out.dump", skiprows=9)
    return {
        "energy": pe,
        "virial": np.array(run.values("VIR")) * vol / nktv2p,
        "forces": rows[:, 1:4],
        "energies": rows[:, 4],
        "atom_virial": rows[:, 5:14] / nktv2p,
        "log": run.output,
    }


@pytest.fixture(scope="module")
def one_rank(files, structures, tmp_path_factory):
    root = tmp_path_factory.mktemp("np1")
    return {name: lmp_eval(files["v3"], atoms, 1, root / name) for name, atoms in structures.items()}


def _agree(got, ref, tol=TOL):
    assert got["energy"] == pytest.approx(ref["energy"], abs=tol * max(1.0, abs(ref["energy"])))
    for key in ("forces", "energies", "virial", "atom_virial"):
        np.testing.assert_allclose(got[key], ref[key], atol=tol, rtol=0, err_msg=key)


def test_one_rank_matches_ase(files, structures, one_rank):
    """The one-rank reference itself is the ASE calculator's numbers."""
    for name, atoms in structures.items():
        a = atoms.copy()
        a.calc = MLFFCalculator(files["v3"])
        assert one_rank[name]["energy"] == pytest.approx(a.get_potential_energy(), abs=1e-9)
        forces = one_rank[name]["forces"] @ lammps_frame(atoms).rotation.T
        np.testing.assert_allclose(forces, a.get_forces(), atol=1e-9, rtol=0)


@pytest.mark.parametrize("nprocs", [2, 4])
def test_ranks_agree(files, structures, one_rank, nprocs, tmp_path):
    for name, atoms in structures.items():
        got = lmp_eval(files["v3"], atoms, nprocs, tmp_path / name)
        assert "graph mode: layer exchange" in got["log"]
        assert abs(one_rank[name]["forces"]).max() > 1e-2, name
        _agree(got, one_rank[name])


def test_ranks_agree_python_worker(files, structures, one_rank):
    """mlff.lammps.evaluate (2 ranks) too."""
    names = list(structures)
    res = evaluate(files["v3"], [structures[n] for n in names], nprocs=2)
    for name, got in zip(names, res):
        rot = lammps_frame(structures[name]).rotation
        assert got["energy"] == pytest.approx(one_rank[name]["energy"], abs=TOL * max(1.0, abs(got["energy"])))
        np.testing.assert_allclose(got["forces"], one_rank[name]["forces"] @ rot.T, atol=TOL, rtol=0)


def test_deep_shell_file_agrees(files, structures, one_rank, tmp_path):
    """The version-2 file of the same weights (deep ghost shell) gives the same numbers."""
    for name in ("triclinic", "slab"):
        got = lmp_eval(files["v2"], structures[name], 2, tmp_path / name)
        assert "graph mode: deep ghost shell" in got["log"]
        _agree(got, one_rank[name])


def test_finite_differences(tmp_path, files):
    run = run_lmp(NUMDIFF_SCRIPT.format(model=files["v3"]), tmp_path, nprocs=2)
    assert "graph mode: layer exchange" in run.output
    rows = np.loadtxt(tmp_path / "forces.dump", skiprows=9)
    analytic, numeric = rows[:, 1:4], rows[:, 4:7]
    assert abs(analytic).max() > 0.05
    np.testing.assert_allclose(analytic, numeric, atol=2e-6, rtol=0)
    vir = np.array(run.values("VIR"))
    ndv = np.array(run.values("NDV"))[[0, 1, 2, 5, 4, 3]]
    np.testing.assert_allclose(vir, ndv, atol=1e-3 * abs(vir).max(), rtol=0)


RUN = """
thermo_style custom step pe
run 0
print "PE $(pe:%.15g)"
"""


def test_log_states_mode(tmp_path, files):
    modes = {}
    for tag, model, args, nprocs in [
        ("exchange", files["v3"], "", 2),
        ("deep-v2", files["v2"], "", 2),
        ("deep-no", files["v3"], "exchange no", 2),
        ("one-rank", files["v3"], "", 1),
        ("ghosts", files["v3"], "graph ghosts", 1),
    ]:
        run = run_lmp(cu_box_script(model, reps=3, pair_args=args, extra=RUN), tmp_path, nprocs=nprocs)
        line = next(line for line in run.output.splitlines() if "pair mlff: graph mode:" in line)
        modes[tag] = (line, run.values("PE")[0])
    assert "layer exchange" in modes["exchange"][0] and "one cutoff" in modes["exchange"][0]
    assert "deep ghost shell" in modes["deep-v2"][0] and "contract v2" in modes["deep-v2"][0]
    assert "deep ghost shell" in modes["deep-no"][0] and "exchange no" in modes["deep-no"][0]
    assert "periodic graph" in modes["one-rank"][0]
    assert "layer exchange" in modes["ghosts"][0]
    energies = [pe for _, pe in modes.values()]
    assert max(energies) - min(energies) < 1e-10 * max(1.0, abs(energies[0]))


def test_a_new_pair_style_with_a_wider_model_reallocates_the_exchange_buffers(tmp_path, files):
    """`pair_style mlff` issued again on the same pair instance with a model of another
    node-state width (16 -> 4 * 8 features here): the per-atom exchange buffers follow the
    width, and the energy is that of a fresh run of the second model."""
    torch.manual_seed(3)
    wide = PaiNN([8, 29], cutoff=3.6, n_features=16, num_interactions=LAYERS, n_rbf=6).double().eval()
    narrow = PaiNN([8, 29], cutoff=3.6, n_features=4, num_interactions=LAYERS, n_rbf=6).double().eval()
    export_model(wide, tmp_path / "wide.pt")
    export_model(narrow, tmp_path / "narrow.pt")
    fresh = run_lmp(cu_box_script(tmp_path / "wide.pt", reps=3, extra=RUN), tmp_path, nprocs=2).values("PE")[0]
    again = cu_box_script(tmp_path / "narrow.pt", reps=3, extra="run 0\n") + (
        f"pair_style mlff {tmp_path / 'wide.pt'}\npair_coeff * * Cu\n{RUN}")
    run = run_lmp(again, tmp_path, nprocs=2)
    assert run.values("PE")[0] == pytest.approx(fresh, abs=1e-10 * max(1.0, abs(fresh)))


def test_bad_exchange_keyword(tmp_path, files):
    run = run_lmp(cu_box_script(files["v3"], reps=2, pair_args="exchange maybe", extra=RUN), tmp_path, check=False)
    assert run.returncode != 0 and "exchange must be auto or no" in run.output


def test_future_version_refused(tmp_path, files):
    """A plugin refuses files newer than it reads with its version message (as a version-2
    plugin refuses version-3 files)."""
    src, dst = files["v3"], tmp_path / "v4.pt"
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename.endswith("/extra/mlff_metadata.json"):
                meta = json.loads(data)
                meta["contract_version"] = 4
                data = json.dumps(meta).encode()
            zout.writestr(item, data)
    run = run_lmp(cu_box_script(dst, reps=2, extra=RUN), tmp_path, check=False)
    assert run.returncode != 0
    assert "contract version 4" in run.output and "reads versions 1, 2 and 3" in run.output
    with pytest.raises(MLFFModelError, match="contract version 4"):
        read_metadata(dst)
