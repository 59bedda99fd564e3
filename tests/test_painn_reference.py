"""The optimised PaiNN (issue 14) computes exactly what the straightforward PaiNN did.

``_reference_energies`` below is the model's forward as it was written before the
speed-ups (x[j] gathers, the zero v[j] term kept in the first layer, index_add on
strided slices), kept here as the definition the optimised code must reproduce. Both
run on the same parameters; energies, forces and per-atom virials agree to 1e-12
relative in float64 on random periodic and open structures.

The optimised model also keeps less for its backward pass than the reference (the peak
memory of a step, hence the atoms per rank or GPU): at most 4 [E, 3F] edge tensors per
layer (3 in the first), where the reference keeps 6.
"""

from __future__ import annotations

from typing import List

import numpy as np
import pytest
import torch
from ase import Atoms

from mlff.contract import evaluate
from mlff.elements import element_indices
from mlff.models import PaiNN
from mlff.neighbors import graph_from_atoms


def _reference_interaction(block, s, v, edge_index, rbf, fc, unit):
    f = block.n_features
    i, j = edge_index[0], edge_index[1]
    x = block.phi(s)[j] * (block.filter(rbf) * fc.unsqueeze(1))
    xs, xvv, xvs = torch.split(x, f, dim=-1)
    dv_edge = xvv.unsqueeze(1) * v[j] + xvs.unsqueeze(1) * unit.unsqueeze(2)
    s = s.index_add(0, i, xs)
    v = v.index_add(0, i, dv_edge)
    uv = block.U(v)
    vv = block.V(v)
    vnorm = torch.sqrt(torch.sum(vv * vv, dim=1) + 1e-8)
    a = block.update(torch.cat([s, vnorm], dim=-1))
    avv, asv, ass = torch.split(a, f, dim=-1)
    v = v + avv.unsqueeze(1) * uv
    s = s + asv * torch.sum(uv * vv, dim=1) + ass
    return s, v


def _reference_energies(model: PaiNN, atomic_numbers, edge_index, edge_vectors):
    idx = element_indices(model.z_to_index, atomic_numbers, "PaiNN")
    r = torch.linalg.norm(edge_vectors, dim=1)
    r_safe = torch.clamp(r, min=1e-6)
    fc = model.fcut(r)
    rbf = model.rbf(r_safe)
    unit = edge_vectors / r_safe.unsqueeze(1)
    s = model.embedding(idx).to(edge_vectors.dtype)
    v = torch.zeros((atomic_numbers.shape[0], 3, s.shape[1]), dtype=edge_vectors.dtype)
    for block in model.interactions:
        s, v = _reference_interaction(block, s, v, edge_index, rbf, fc, unit)
    return {"energies": model.readout(s).squeeze(-1) * model.scale + model.atomic_energies[idx]}


class _Reference(torch.nn.Module):
    """The reference forward behind the contract's signature, on ``model``'s parameters."""

    def __init__(self, model: PaiNN):
        super().__init__()
        self.model = model

    def forward(self, atomic_numbers, edge_indices: List[torch.Tensor], edge_vectors: List[torch.Tensor], n_local, system):
        return _reference_energies(self.model, atomic_numbers, edge_indices[0], edge_vectors[0])


def _random_structure(rng, periodic: bool) -> Atoms:
    n = int(rng.integers(6, 24))
    numbers = rng.choice([1, 8, 29], size=n)
    if periodic:
        cell = np.diag(rng.uniform(5.5, 7.5, 3)) + rng.uniform(-0.8, 0.8, (3, 3))  # triclinic
        positions = rng.uniform(0, 1, (n, 3)) @ cell
    else:
        cell = np.zeros((3, 3))
        positions = rng.uniform(0, 4.5, (n, 3))
    return Atoms(numbers=numbers, positions=positions, cell=cell, pbc=periodic)


def _evaluate(module, atoms, cutoff):
    g = graph_from_atoms(atoms, cutoff, torch.float64, "cpu")
    ev = [e.detach().requires_grad_(True) for e in g.edge_vectors()]
    return evaluate(module, g.atomic_numbers, g.edge_indices, ev, g.n_atoms, compute_virial=True)


def _assert_close(new, ref, name):
    scale = max(float(ref.detach().abs().max()), 1e-300)
    err = float((new - ref).detach().abs().max()) / scale
    assert err <= 1e-12, f"{name}: relative difference {err:.2e}"


@pytest.mark.parametrize("cutoff_fn", ["polynomial", "cosine"])
@pytest.mark.parametrize("num_interactions", [1, 3])
def test_optimised_painn_equals_reference(cutoff_fn, num_interactions):
    torch.manual_seed(3)
    model = PaiNN([1, 8, 29], cutoff=3.5, n_features=12, num_interactions=num_interactions, cutoff_fn=cutoff_fn)
    with torch.no_grad():  # non-trivial shifts and scale so every term of the energy shows
        model.atomic_energies.copy_(torch.tensor([-0.5, -2.0, -3.5]))
        model.scale.fill_(1.7)
    model = model.double().eval()
    reference = _Reference(model).eval()
    scripted = torch.jit.script(model)  # what exported files run
    rng = np.random.default_rng(11)
    for k in range(6):
        atoms = _random_structure(rng, periodic=k % 2 == 0)
        ref = _evaluate(reference, atoms, model.cutoff)
        assert float(ref["forces"].detach().abs().max()) > 0
        for candidate in (model, scripted):
            out = _evaluate(candidate, atoms, model.cutoff)
            for key in ("energies", "forces", "atom_virial"):
                _assert_close(out[key], ref[key], key)


def test_painn_keeps_four_edge_tensors_per_layer_for_the_backward_pass():
    from mlff.bench import cu_supercell, saved_for_backward

    torch.manual_seed(0)
    f, layers = 32, 3
    model = PaiNN([29], cutoff=5.0, n_features=f, num_interactions=layers, n_rbf=8).eval()
    atoms = cu_supercell(500)
    new = saved_for_backward(model, atoms, 5.0, torch.float32)
    ref = saved_for_backward(_Reference(model), atoms, 5.0, torch.float32)
    unit = new["edges"] * 3 * f * 4  # one float32 [E, 3F] tensor
    # 4 per layer, 3 in the first (no v[j] there), + node-sized ([N, 3F] with N ~ E / 42 here)
    # and [E, n_rbf] tensors, about 1 in all
    assert new["saved_bytes"] / unit <= 4 * layers - 1 + 1.5, new["saved_bytes"] / unit
    assert ref["saved_bytes"] / unit >= 5.5 * layers, ref["saved_bytes"] / unit
