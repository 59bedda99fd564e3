"""The self-atomic-energy term (kind ``sae``): a constant per atom by element and fidelity,
TorchScript-able, rebuilt from its spec, sharing the network's neighbour list."""

from __future__ import annotations

import pytest
import torch

from mlff.contract import evaluate, make_system, metadata_for
from mlff.models import PaiNN
from mlff.models.composite import AdditiveModel
from mlff.physics.sae_term import AtomicEnergies
from mlff.physics.terms import build_term, term_spec

TABLES = {"dft": {"H": -13.6, "O": -2040.5}, "xtb": {"H": -10.7, "O": -50.25}, "unused": {"H": 1.0}}


def _term():
    return AtomicEnergies([1, 8], TABLES, ["dft", "xtb"], list_name="local", cutoff=3.0)


def _water_graph():
    z = torch.tensor([8, 1, 1, 8, 1, 1])
    edges = torch.tensor([[0, 1, 0, 2, 3, 4], [1, 0, 2, 0, 4, 3]])
    vec = torch.randn(6, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    return z, edges, vec


@pytest.mark.parametrize("scripted", [False, True])
def test_per_atom_energy_by_element_and_fidelity(scripted):
    term = torch.jit.script(_term()) if scripted else _term()
    z, edges, vec = _water_graph()
    ev = vec.clone().requires_grad_(True)
    for fid, table in enumerate(("dft", "xtb")):
        out = evaluate(term, z, [edges], [ev], 6, make_system(0.0, fid))
        want = [TABLES[table]["O" if int(k) == 8 else "H"] for k in z]
        assert out["energies"].detach().tolist() == want
        assert out["forces"].abs().max().item() == 0.0 and out["virial"].abs().max().item() == 0.0
    # a training batch: two structures of different fidelities
    system = {"charge": torch.zeros(2, dtype=torch.float64), "fidelity": torch.tensor([1, 0]),
              "batch": torch.tensor([0, 0, 0, 1, 1, 1])}
    e = term(z, [edges], [vec], 6, system)["energies"]
    assert e.tolist() == [-50.25, -10.7, -10.7, -2040.5, -13.6, -13.6]
    with pytest.raises(Exception, match="fidelity index out of range"):
        term(z, [edges], [vec], 6, make_system(0.0, 2))
    assert term(z, [edges], [vec.float()], 6, make_system())["energies"].dtype == torch.float32


def test_spec_contract_info_and_refusals():
    term = _term()
    spec = term_spec(term)
    assert spec == {"kind": "sae", "energies": {k: TABLES[k] for k in ("dft", "xtb")}, "fidelity_names": ["dft", "xtb"],
                    "list_name": "local", "cutoff": 3.0}
    assert term_spec(build_term(spec, [1, 8])) == spec
    info = term.contract_info()
    assert info["kind"] == "sae" and info["neighbor_lists"] == [("local", 3.0, 0.0)] and info["locality"] == "local"
    with pytest.raises(ValueError, match=r"no self-atomic energy for xtb: C"):
        AtomicEnergies([1, 6, 8], {"dft": {"H": 0, "C": 0, "O": 0}, "xtb": {"H": 0, "O": 0}}, ["dft", "xtb"])
    with pytest.raises(ValueError, match="distinct"):
        AtomicEnergies([1], {"a": {"H": 0}}, ["a", "a"])


def test_the_composite_shares_the_network_list():
    """The term declares the network's list (reach 0) and reads none: one list for engines."""
    torch.manual_seed(0)
    net = PaiNN([1, 8], cutoff=3.0, n_features=8, num_interactions=2).double()
    model = AdditiveModel(net, [_term()])
    meta = metadata_for(model)
    assert [(nl.name, nl.cutoff, nl.reach) for nl in meta.neighbor_lists] == [("local", 3.0, 3.0)]
    assert meta.interaction_range == pytest.approx(6.0) and meta.kind == "painn+sae"
    torch.jit.script(model)
