"""The AIMNet2-style model (``kind: aimnet2``) on its own: charges that sum to the total
charge (single structures and batches), forces and stress as gradients with every
Coulomb option, per-fidelity heads on one backbone, TorchScript export, and the
whole-system sums that make it exact on several LAMMPS ranks (emulated here in Python)."""

from __future__ import annotations

from typing import Dict, List, Sequence

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import molecule

import mlff
from mlff.contract import evaluate, make_system, metadata_for, read_metadata
from mlff.models import MODEL_REGISTRY, model_from_options
from mlff.models.aimnet2 import AIMNet2
from mlff.neighbors import batch_graphs, graph_from_atoms

ELEMENTS = (1, 6, 7, 8)
FIDELITIES = ["pbe-def2svp", "gfn2", "gfn1"]
#: small and fast, but every part of the model is on: 3 passes, per-fidelity heads
SMALL = dict(cutoff=3.5, n_features=16, n_passes=3, n_gaussians=8, coulomb_cutoff=8.0, sr_cutoff=2.5)


def small_model(coulomb: str = "dsf", fidelities: Sequence[str] = FIDELITIES, seed: int = 0, **kw) -> AIMNet2:
    torch.manual_seed(seed)
    options = {**SMALL, "coulomb": coulomb, **kw}
    if fidelities:
        options.update(use_fidelity_readouts=True, fidelities=list(fidelities))
    model = AIMNet2(list(ELEMENTS), **options)
    with torch.no_grad():  # distinct shifts per fidelity and element, as fitted ones would be
        model.atomic_energies.copy_(-torch.arange(model.atomic_energies.numel(), dtype=torch.float32).view_as(
            model.atomic_energies))
    return model.double().eval()


def water_box(n: int = 2, spacing: float = 3.1, seed: int = 3) -> Atoms:
    """n^3 randomly oriented water molecules on a cubic grid (about liquid density)."""
    rng = np.random.default_rng(seed)
    base = molecule("H2O")
    base.positions -= base.positions[0]
    atoms = Atoms(cell=np.eye(3) * n * spacing, pbc=True)
    for idx in np.ndindex(n, n, n):
        w = base.copy()
        w.rotate(rng.uniform(0, 360), rng.normal(size=3), center=(0, 0, 0))
        w.positions += (np.array(idx) + 0.5) * spacing + rng.normal(scale=0.1, size=3)
        atoms += w
    return atoms


def charged_molecules() -> List[Atoms]:
    """Small molecules with a total charge each in ``info["charge"]``."""
    mols = []
    for name, charge in (("CH3CH2OH", 0.0), ("CH3CONH2", 1.0), ("H2O", -2.0), ("HCOOH", -1.0)):
        m = molecule(name)
        m.rattle(0.02, seed=len(mols))
        m.info["charge"] = charge
        mols.append(m)
    return mols


def run(model, atoms: Atoms, charge: float = 0.0, fidelity: int = 0, extra: Dict[str, torch.Tensor] = None):
    """The model through the contract on one structure (what every single-process engine does)."""
    g = graph_from_atoms(atoms, metadata_for(model).list_cutoffs, torch.float64)
    evs = [ev.detach().requires_grad_(True) for ev in g.edge_vectors()]
    system = {**make_system(charge, fidelity), **(extra or {})}
    return evaluate(model, g.atomic_numbers, g.edge_indices, evs, g.n_atoms, system)


# ----------------------------------------------------------------------------- options and metadata


def test_registered_with_options_and_refusals():
    assert MODEL_REGISTRY["aimnet2"] is AIMNet2
    model = model_from_options("aimnet2", [1, 8], {})
    assert model.config["cutoff"] == 5.0 and model.config["n_passes"] == 3 and model.config["n_gaussians"] == 16
    assert model.config["coulomb"] == "dsf" and model.config["coulomb_cutoff"] == 15.0
    assert model.config["dsf_alpha"] == 0.2 and model.config["sr_cutoff"] == 4.6
    centres = model.basis.centres
    assert centres[0] == pytest.approx(0.8) and centres[-1] == pytest.approx(5.0) and len(centres) == 16
    rebuilt = type(model)(**model.config)  # config rebuilds the model (checkpoints)
    assert rebuilt.config == model.config
    with pytest.raises(ValueError, match="model.n_layers: unknown option"):
        model_from_options("aimnet2", [1, 8], {"n_layers": 2})
    with pytest.raises(ValueError, match="needs the fidelity names"):
        model_from_options("aimnet2", [1, 8], {"use_fidelity_readouts": True})
    with pytest.raises(ValueError, match="need use_fidelity_readouts: true"):
        model_from_options("aimnet2", [1, 8], {"fidelities": ["a", "b"]})
    with pytest.raises(ValueError, match="model.coulomb"):
        model_from_options("aimnet2", [1, 8], {"coulomb": "pppm"})
    with pytest.raises(ValueError, match="sr_cutoff"):
        model_from_options("aimnet2", [1, 8], {"coulomb_cutoff": 4.0})


@pytest.mark.parametrize("coulomb", ["none", "dsf"])
def test_metadata_lists_reach_and_range(coulomb):
    """Charges reach P hops; Coulomb partners Rc away need their own network edges."""
    meta = metadata_for(small_model(coulomb))
    p, rc, big = 3, SMALL["cutoff"], SMALL["coulomb_cutoff"]
    if coulomb == "none":
        assert [(nl.name, nl.cutoff, nl.reach) for nl in meta.neighbor_lists] == [("local", rc, (p - 1) * rc)]
        assert meta.interaction_range == pytest.approx(p * rc)
    else:
        assert [(nl.name, nl.cutoff, nl.reach) for nl in meta.neighbor_lists] == [
            ("local", rc, big + (p - 1) * rc), ("coulomb", big, 0.0)]
        assert meta.interaction_range == pytest.approx(big + p * rc)
    assert meta.num_interactions == p
    assert meta.locality == "global" and meta.global_sums == 2 and meta.uses_charge
    assert meta.fidelities == FIDELITIES
    assert meta.output("charges").unit == "e" and meta.output("charges").per_atom


# ----------------------------------------------------------------------------- charges


@pytest.mark.parametrize("charge", [0.0, 1.0, -2.0])
def test_charges_sum_to_the_total_charge(charge):
    model = small_model("simple")
    for atoms in charged_molecules()[:2] + [water_box()]:
        q = run(model, atoms, charge, fidelity=1)["charges"].detach()
        assert float(q.sum()) == pytest.approx(charge, abs=1e-6)
        assert torch.isfinite(q).all()


def test_batch_normalises_each_structure_and_equals_single_runs():
    """A training batch ("batch", [B] charges and fidelities): per-structure sums."""
    model = small_model("dsf")
    mols = charged_molecules()
    fids = [0, 2, 1, 2]
    cutoffs = metadata_for(model).list_cutoffs
    graph, batch = batch_graphs([graph_from_atoms(m, cutoffs, torch.float64) for m in mols])
    evs = [ev.detach().requires_grad_(True) for ev in graph.edge_vectors()]
    charges = torch.tensor([m.info["charge"] for m in mols], dtype=torch.float64)
    system = {"charge": charges, "fidelity": torch.tensor(fids), "batch": batch}
    sums = model.global_sums(graph.atomic_numbers, graph.edge_indices, evs, graph.n_atoms, system)
    assert sums.shape == (len(mols), 2)
    out = evaluate(model, graph.atomic_numbers, graph.edge_indices, evs, graph.n_atoms, system)
    q = out["charges"].detach()
    per_structure = torch.zeros(len(mols), dtype=q.dtype).index_add(0, batch, q)
    np.testing.assert_allclose(per_structure.numpy(), charges.numpy(), atol=1e-6)
    start = 0
    for m, fid in zip(mols, fids):
        single = run(model, m, m.info["charge"], fid)
        sl = slice(start, start + len(m))
        start += len(m)
        for key in ("energies", "charges", "forces"):
            np.testing.assert_allclose(out[key][sl].detach().numpy(), single[key].detach().numpy(), rtol=0,
                                       atol=1e-10, err_msg=key)


# ----------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("coulomb", ["none", "simple", "dsf"])
def test_forces_and_stress_are_energy_gradients(coulomb):
    """Central finite differences, float64: through charges, their normalisation and Coulomb."""
    model = small_model(coulomb)
    h = 1e-5
    for atoms, charge in ((charged_molecules()[1], 1.0), (water_box(), -1.0)):
        calc = mlff.MLFFCalculator(model, charge=charge, fidelity="gfn2")
        atoms.calc = calc
        forces = atoms.get_forces()

        def energy(a: Atoms) -> float:
            a = a.copy()
            a.calc = calc
            return a.get_potential_energy()

        for a, c in [(0, 0), (2, 1), (len(atoms) - 1, 2)]:
            plus, minus = atoms.copy(), atoms.copy()
            plus.positions[a, c] += h
            minus.positions[a, c] -= h
            assert -(energy(plus) - energy(minus)) / (2 * h) == pytest.approx(forces[a, c], abs=1e-6)
        if atoms.pbc.all():
            stress = atoms.get_stress(voigt=False)
            cell = atoms.get_cell()
            for i, j in [(0, 0), (1, 2)]:
                e = []
                for sign in (1, -1):
                    eps = np.zeros((3, 3))
                    eps[i, j] = eps[j, i] = sign * h / (2 if i != j else 1)
                    strained = atoms.copy()
                    strained.set_cell(cell @ (np.eye(3) + eps), scale_atoms=True)
                    e.append(energy(strained))
                assert (e[0] - e[1]) / (2 * h) / atoms.get_volume() == pytest.approx(stress[i, j], abs=1e-6)


def test_edges_past_the_cutoffs_carry_nothing():
    """LAMMPS passes its lists with a skin: longer edges must have exactly zero weight."""
    model = small_model("simple")
    atoms = water_box()
    g = graph_from_atoms(atoms, [SMALL["cutoff"], SMALL["coulomb_cutoff"]], torch.float64)
    wide = graph_from_atoms(atoms, [SMALL["cutoff"] + 1.0, SMALL["coulomb_cutoff"] + 1.0], torch.float64)
    ref = model(g.atomic_numbers, g.edge_indices, g.edge_vectors(), len(atoms), make_system(1.0, 2))
    got = model(wide.atomic_numbers, wide.edge_indices, wide.edge_vectors(), len(atoms), make_system(1.0, 2))
    for key in ("energies", "charges"):
        torch.testing.assert_close(got[key], ref[key], rtol=0, atol=1e-12)


# ----------------------------------------------------------------------------- fidelities


def test_fidelity_heads_share_one_backbone():
    model = small_model("none")
    atoms = charged_molecules()[0]
    energies = [run(model, atoms, 0.0, k)["energy"].item() for k in range(len(FIDELITIES))]
    assert len(set(energies)) == len(FIDELITIES)
    # one set of message-passing weights; embeddings, heads and shifts per fidelity
    assert len(model.heads) == len(FIDELITIES) and model.atomic_energies.shape == (len(FIDELITIES), len(ELEMENTS))
    assert model.embedding.num_embeddings == len(FIDELITIES) * len(ELEMENTS)
    plain = small_model("none", fidelities=())
    def backbone(m: AIMNet2) -> set:
        return {n for n, _ in m.named_parameters() if not n.startswith(("heads.", "embedding", "atomic_"))}

    assert backbone(model) == backbone(plain)
    # fidelity 1 trains the shared backbone and its own head only
    model.zero_grad()
    g = graph_from_atoms(atoms, metadata_for(model).list_cutoffs, torch.float64)
    out = model(g.atomic_numbers, g.edge_indices, g.edge_vectors(), len(atoms), make_system(0.0, 1))
    out["energies"].sum().backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    others = [g for n, g in grads.items() if n.startswith(("heads.0.", "heads.2."))]
    assert others and all(g is None or float(g.abs().max()) == 0.0 for g in others)
    assert float(grads["heads.1.0.weight"].abs().max()) > 0
    assert float(grads["first.conv.filter.weight"].abs().max()) > 0
    assert float(grads["passes.1.conv.filter.weight"].abs().max()) > 0
    shift_grad = grads["atomic_energies"]
    assert float(shift_grad[1].abs().sum()) > 0 and float(shift_grad[[0, 2]].abs().sum()) == 0


def test_initialize_from_data_fits_shifts_per_fidelity():
    from mlff.data.records import Record
    from mlff.models.shifts import fit_atomic_energies

    model = small_model("none")
    rng = np.random.default_rng(0)
    records = []
    for k, atoms in enumerate(charged_molecules() * 2):
        fid = FIDELITIES[k % 2]
        offset = {"pbe-def2svp": -1000.0, "gfn2": -5.0}[fid]
        records.append(Record(id=str(k), numbers=atoms.numbers, positions=atoms.positions, cell=np.zeros((3, 3)),
                              pbc=np.zeros(3, bool), energy=offset * len(atoms) + rng.normal(),
                              forces=rng.normal(size=(len(atoms), 3)), fidelity=fid))
    model.initialize_from_data(records)
    for k in (0, 1):
        group = [r for r in records if r.fidelity == FIDELITIES[k]]
        expected = fit_atomic_energies(ELEMENTS, [r.numbers for r in group], [r.energy for r in group])
        np.testing.assert_allclose(model.atomic_energies[k].detach().numpy(), expected, rtol=1e-12)
    # no gfn1 records: the fit over all records
    everything = fit_atomic_energies(ELEMENTS, [r.numbers for r in records], [r.energy for r in records])
    np.testing.assert_allclose(model.atomic_energies[2].detach().numpy(), everything, rtol=1e-12)
    before = model.atomic_energies.detach().clone()
    model.shift_energies(0.5)
    torch.testing.assert_close(model.atomic_energies.detach(), before + 0.5)
    assert "atomic_energies" in model.no_decay_parameters() and "heads.0.0.bias" in model.no_decay_parameters()


# ----------------------------------------------------------------------------- export


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_torchscript_export_equals_eager(tmp_path, dtype):
    model = small_model("dsf").to(getattr(torch, dtype))
    path = tmp_path / f"aimnet2_{dtype}.pt"
    mlff.export_model(model, path)
    meta = read_metadata(path)
    assert meta.dtype == dtype and meta.kind == "aimnet2" and meta.global_sums == 2
    tol = 1e-10 if dtype == "float64" else 1e-5
    for atoms, charge in ((charged_molecules()[1], 1.0), (water_box(), 0.0)):
        for fid in ("gfn1", "pbe-def2svp"):
            res = []
            for spec in (path, model):
                a = atoms.copy()
                a.calc = mlff.MLFFCalculator(spec, charge=charge, fidelity=fid)
                res.append({k: a.calc.get_property(k, a) for k in ("energy", "forces", "charges")})
            for key in ("energy", "forces", "charges"):
                np.testing.assert_allclose(res[0][key], res[1][key], rtol=0, atol=tol * max(1.0, abs(res[1]["energy"]))
                                           if key == "energy" else tol, err_msg=key)


# ----------------------------------------------------------------------------- whole-system sums


def test_given_global_sums_are_bit_identical():
    """forward with system["global_sums"] = the model's own sums == forward without them.

    Energies and charges bit for bit; the forces then back-propagate through two copies
    of pass 0 (the sums' and the forward's) instead of one, so they agree to rounding."""
    model = small_model("dsf")
    atoms = water_box()
    g = graph_from_atoms(atoms, metadata_for(model).list_cutoffs, torch.float64)
    evs = [ev.detach().requires_grad_(True) for ev in g.edge_vectors()]
    system = make_system(-1.0, 2)
    sums = model.global_sums(g.atomic_numbers, g.edge_indices, evs, len(atoms), system)
    assert sums.shape == (2,)
    ref = evaluate(model, g.atomic_numbers, g.edge_indices, evs, len(atoms), system)
    got = evaluate(model, g.atomic_numbers, g.edge_indices, evs, len(atoms), {**system, "global_sums": sums})
    for key in ("energy", "energies", "charges"):
        assert torch.equal(got[key], ref[key]), key
    for key in ("forces", "virial"):
        torch.testing.assert_close(got[key], ref[key], rtol=0, atol=1e-13)


def _rank_graph(atoms: Atoms, owned: np.ndarray, cutoffs: Sequence[float]):
    """One emulated MPI rank: owned atoms first (n_local), every other atom a ghost."""
    order = np.concatenate([owned, np.setdiff1d(np.arange(len(atoms)), owned)])
    return graph_from_atoms(atoms[order], cutoffs, torch.float64), order


def test_two_rank_decomposition_is_exact():
    """The contract's multi-rank algorithm, in Python: partial sums all-reduced, the
    model run per rank with the total, dE/dsums all-reduced and back-propagated through
    each rank's partial sums. Total energy, per-atom energies, charges and forces equal
    the single-process run."""
    model = small_model("simple")
    atoms = charged_molecules()[1]
    charge, fid = 1.0, 1
    ref = run(model, atoms, charge, fid)
    cutoffs = metadata_for(model).list_cutoffs
    system = make_system(charge, fid)
    ranks = []
    for owned in np.array_split(np.random.default_rng(1).permutation(len(atoms)), 2):
        g, order = _rank_graph(atoms, owned, cutoffs)
        evs = [ev.detach().requires_grad_(True) for ev in g.edge_vectors()]
        partial = model.global_sums(g.atomic_numbers, g.edge_indices, evs, len(owned), system)
        ranks.append((g, order, evs, partial, len(owned)))
    total = sum(r[3] for r in ranks).detach().requires_grad_(True)  # all-reduce of the partial sums
    outs = []
    for g, order, evs, partial, n_local in ranks:
        out = model(g.atomic_numbers, g.edge_indices, evs, n_local, {**system, "global_sums": total})
        outs.append(out)
    energy = sum(out["energies"][:r[4]].sum() for out, r in zip(outs, ranks))
    adjoint = torch.autograd.grad(energy, total, retain_graph=True)[0]  # all-reduce of dE/dsums
    forces = np.zeros((len(atoms), 3))
    energies = np.zeros(len(atoms))
    charges = np.zeros(len(atoms))
    for out, (g, order, evs, partial, n_local) in zip(outs, ranks):
        e_rank = out["energies"][:n_local].sum()
        grads = torch.autograd.grad([e_rank, partial], evs, [torch.ones_like(e_rank), adjoint],
                                    retain_graph=True, allow_unused=True)
        f = torch.zeros((len(atoms), 3), dtype=torch.float64)
        for ei, gr in zip(g.edge_indices, grads):
            if gr is not None:
                f = f.index_add(0, ei[0], gr).index_add(0, ei[1], -gr)
        forces[order] += f.numpy()  # ghost forces are reverse-communicated to their owners
        energies[order[:n_local]] = out["energies"][:n_local].detach().numpy()
        charges[order[:n_local]] = out["charges"][:n_local].detach().numpy()
    assert float(energy.detach()) == pytest.approx(float(ref["energy"].detach()), abs=1e-10)
    np.testing.assert_allclose(energies, ref["energies"].detach().numpy(), rtol=0, atol=1e-10)
    np.testing.assert_allclose(charges, ref["charges"].detach().numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(forces, ref["forces"].detach().numpy(), rtol=0, atol=1e-10)
    assert charges.sum() == pytest.approx(charge, abs=1e-12)


def test_checkpoint_round_trip(tmp_path):
    """The trainer's checkpoints rebuild the model from ``config`` and the state dict."""
    from mlff.checkpoint import load_checkpoint, save_checkpoint

    model = small_model("simple")
    path = save_checkpoint(tmp_path / "aimnet2.ckpt", model)
    loaded = load_checkpoint(path)
    atoms = charged_molecules()[1]
    for a, b in zip(run(model, atoms, 1.0, 2).values(), run(loaded, atoms, 1.0, 2).values()):
        assert torch.equal(a, b)
