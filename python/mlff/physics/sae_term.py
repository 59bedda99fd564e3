"""Self-atomic energies (SAE) as a contract-v2 term: a constant energy per atom, by element
and by the system's fidelity (level of theory).

Absolute energies of different levels of theory differ by orders of magnitude, so a
multi-fidelity network learns each level's energy minus that level's SAE baseline
(fitted by :mod:`mlff.data.sae`) and the exported file adds the baseline back, like any
other additive term (:class:`mlff.models.composite.AdditiveModel`). Forces and stress
of the term are zero.

Neighbour lists: the term reads none, but :class:`~mlff.models.composite.AdditiveModel`
and :func:`mlff.contract.metadata_for` take a part's first list for its range, so a part
must declare at least one. The term declares one with the network's name and cutoff
(``list_name``, ``cutoff``) and reach 0: the composite then shares the network's list
(one list for the engine to build, no wider ghost shell) and the term ignores it.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Sequence, Tuple

import torch

from ..models.fidelity import per_atom_fidelity
from ..elements import element_indices, element_table
from .base import PhysicsTerm


class AtomicEnergies(PhysicsTerm):
    """E_i = energies[fidelity][element of atom i] (eV), see the module docstring.

    ``energies``: ``{fidelity name: {element symbol: eV}}`` (the layout of an SAE YAML
    file); ``fidelity_names``: the model's level names in index order, each of which
    must have an energy for every element. Tables of other names are ignored.
    (Not ``fidelities``: in a term spec that key assigns a term to some fidelities of
    the model, see :func:`mlff.physics.terms.build_term`.)
    """

    kind = "sae"

    def __init__(
        self,
        elements: Sequence[int],
        energies: Mapping[str, Mapping[str, float]],
        fidelity_names: Sequence[str],
        list_name: str = "local",
        cutoff: float = 5.0,
    ):
        super().__init__()
        from ase.data import chemical_symbols

        elements = sorted({int(z) for z in elements})
        if not elements or min(elements) < 1 or max(elements) > 118:
            raise ValueError(f"elements must be atomic numbers 1..118, got {elements}")
        fidelities = [str(f) for f in fidelity_names]
        if not fidelities or len(set(fidelities)) != len(fidelities):
            raise ValueError(f"fidelity_names must be distinct names (at least one), got {fidelities}")
        if not cutoff > 0:
            raise ValueError(f"cutoff must be > 0 Å, got {cutoff}")
        symbols = [chemical_symbols[z] for z in elements]
        missing = [f"{f}: {el}" for f in fidelities for el in symbols if el not in energies.get(f, {})]
        if missing:
            raise ValueError(
                f"no self-atomic energy for {', '.join(missing)} (the tables have "
                f"{ {f: sorted(t) for f, t in energies.items()} }); every fidelity needs every element of the model"
            )
        self.elements: List[int] = elements
        self.fidelities: List[str] = fidelities
        self.list_name = str(list_name)
        self.cutoff = float(cutoff)
        self.n_tables = len(fidelities)
        # only what the term uses: the spec that rebuilds it names nothing else
        self.energies: Dict[str, Dict[str, float]] = {
            f: {el: float(energies[f][el]) for el in symbols} for f in fidelities
        }
        self.register_buffer("z_to_index", element_table(elements))
        # float64 whatever the model dtype: the values are eV-scale totals (hundreds of eV
        # per atom at DFT level); forward casts to the edge dtype, as the network's output is
        table = torch.tensor([[self.energies[f][el] for el in symbols] for f in fidelities], dtype=torch.float64)
        self.register_buffer("table", table)

    @torch.jit.unused
    def neighbor_lists(self) -> List[Tuple[str, float, float]]:
        return [(self.list_name, self.cutoff, 0.0)]  # not read; see the module docstring

    @torch.jit.unused
    def hyperparameters(self) -> Dict[str, Any]:
        """Constructor arguments that rebuild this term: ``AtomicEnergies(**hyperparameters())``."""
        return dict(
            elements=list(self.elements),
            energies={f: dict(t) for f, t in self.energies.items()},
            fidelity_names=list(self.fidelities),
            list_name=self.list_name,
            cutoff=self.cutoff,
        )

    @torch.jit.unused
    def interaction_range(self) -> float:
        return self.cutoff

    @torch.jit.unused
    def extra_contract_info(self) -> Dict[str, Any]:
        return {"fidelities": list(self.fidelities)}

    def forward(
        self,
        atomic_numbers: torch.Tensor,
        edge_indices: List[torch.Tensor],
        edge_vectors: List[torch.Tensor],
        n_local: int,
        system: Dict[str, torch.Tensor],
    ) -> Dict[str, torch.Tensor]:
        species = element_indices(self.z_to_index, atomic_numbers, "SAE")
        ev = edge_vectors[0]
        n_atoms = atomic_numbers.shape[0]
        if self.n_tables == 1:  # one level: every index engines may pass means it
            fid = torch.zeros(n_atoms, dtype=torch.long, device=atomic_numbers.device)
        else:
            fid = per_atom_fidelity(n_atoms, system, atomic_numbers.device)
            if fid.device.type == "cpu" and n_atoms > 0 and bool(((fid < 0) | (fid >= self.n_tables)).any()):
                raise RuntimeError("mlff SAE: fidelity index out of range for this term")
        energies = self.table.to(ev.dtype)[fid, species]
        # a zero-weight dependence on the edges: the term alone (the trainer evaluates each
        # term by itself to subtract it from the labels) then has a gradient, of zeros,
        # instead of an energy that autograd refuses to differentiate
        return {"energies": energies + 0.0 * ev.sum()}


__all__ = ["AtomicEnergies"]
