"""A network plus additive physics terms (D3 dispersion, ZBL, ...) as one contract model.

Trained networks learn the residual of the reference data after the terms; export
adds the terms back by wrapping network and terms in :class:`AdditiveModel`. Each part
declares its own neighbour lists; the composite asks the engine for their union (a
list shared by name and cutoff is built once) and hands every part its own lists.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from ..contract import NeighborListSpec, derive_from_energies


class AdditiveModel(nn.Module):
    """``energies = network + sum(terms)``; other outputs come from the network.

    A network with member outputs (a shallow ensemble) gets the terms' energy and forces
    added to every member's, so that each member is a whole model like a committee's.

    The interaction range is the largest of the parts' (each part's own range already
    covers its lists and hops), and the composite is global if any part is.
    """

    # TorchScript compiles properties unless told not to; ``network`` is Python-side only
    __jit_unused_properties__ = ["network"]

    def __init__(self, network: nn.Module, terms: Sequence[nn.Module]):
        super().__init__()
        parts = [network, *terms]
        lists: List[NeighborListSpec] = []
        maps: List[List[int]] = []
        for part in parts:
            idx: List[int] = []
            for item in part.neighbor_lists():
                spec = NeighborListSpec.of(item)
                for k, old in enumerate(lists):
                    if old.name == spec.name:
                        if abs(old.cutoff - spec.cutoff) > 1e-12:
                            raise ValueError(
                                f"two parts ask for a neighbour list named {spec.name!r} with different "
                                f"cutoffs ({old.cutoff} and {spec.cutoff} Å); give them different names"
                            )
                        # a shared list is needed as far as the farther-reaching part needs it
                        reach = None if old.reach is None or spec.reach is None else max(old.reach, spec.reach)
                        lists[k] = old.model_copy(update={"reach": reach})
                        idx.append(k)
                        break
                else:
                    lists.append(spec)
                    idx.append(len(lists) - 1)
            maps.append(idx)
        self.parts = nn.ModuleList(parts)
        self.list_maps: List[List[int]] = maps
        self._lists = lists
        net_info = network.contract_info()
        net_elements = set(net_info["elements"])
        for term in terms:
            missing = net_elements - set(term.contract_info()["elements"])
            if missing:
                raise ValueError(
                    f"the {term.contract_info()['kind']} term has no parameters for elements "
                    f"{sorted(missing)} of the network"
                )

    @property
    def network(self) -> nn.Module:
        return self.parts[0]

    @torch.jit.unused
    def neighbor_lists(self) -> List[Tuple[str, float, Optional[float]]]:
        return [(nl.name, nl.cutoff, nl.reach) for nl in self._lists]

    @torch.jit.unused
    def contract_info(self) -> Dict[str, Any]:
        infos = [p.contract_info() for p in self.parts]
        net = dict(infos[0])
        ranges = []
        for part, info in zip(self.parts, infos):
            specs = [NeighborListSpec.of(item) for item in part.neighbor_lists()]
            first = specs[0].cutoff
            largest = max(nl.cutoff for nl in specs)
            ranges.append(info.get("interaction_range", max(first * info.get("num_interactions", 1), largest)))
        net["kind"] = "+".join(info["kind"] for info in infos)
        net["neighbor_lists"] = self.neighbor_lists()
        net["interaction_range"] = max(ranges)
        net["locality"] = "global" if any(i.get("locality") == "global" for i in infos) else "local"
        # positions/cell (an Ewald term) if any part needs them; every part gets the same system
        geometry = {g for i in infos for g in i.get("geometry_inputs", [])}
        if geometry:
            net["geometry_inputs"] = [g for g in ("positions", "cell") if g in geometry]
        net["hyperparameters"] = {
            "network": {"kind": infos[0]["kind"], **infos[0].get("hyperparameters", {})},
            "terms": [{"kind": i["kind"], **i.get("hyperparameters", {})} for i in infos[1:]],
        }
        return net

    def forward(
        self,
        atomic_numbers: torch.Tensor,
        edge_indices: List[torch.Tensor],
        edge_vectors: List[torch.Tensor],
        n_local: int,
        system: Dict[str, torch.Tensor],
    ) -> Dict[str, torch.Tensor]:
        result: Dict[str, torch.Tensor] = {}
        energies = torch.zeros(atomic_numbers.shape[0], dtype=edge_vectors[0].dtype, device=atomic_numbers.device)
        terms = torch.zeros_like(energies)
        for k, part in enumerate(self.parts):
            idx = self.list_maps[k]
            eis = [edge_indices[m] for m in idx]
            evs = [edge_vectors[m] for m in idx]
            out = part(atomic_numbers, eis, evs, n_local, system)
            # the literal, not ENERGY_KEY: TorchScript cannot read a module-level str
            energies = energies + out["energies"]
            if k == 0:
                for key, value in out.items():
                    if key != "energies":
                        result[key] = value
            else:
                terms = terms + out["energies"]
        result["energies"] = energies
        if len(self.parts) > 1 and "member_forces" in result and "member_energies" in result:
            self._add_terms_to_members(result, terms, edge_indices, edge_vectors, n_local, system)
        return result

    def _add_terms_to_members(
        self,
        result: Dict[str, torch.Tensor],
        terms: torch.Tensor,
        edge_indices: List[torch.Tensor],
        edge_vectors: List[torch.Tensor],
        n_local: int,
        system: Dict[str, torch.Tensor],
    ) -> None:
        """Add the terms' energy and forces to every member of a network's ensemble.

        A shallow ensemble's members are network heads; each member is the head *plus
        the terms*, so its energy and forces must be comparable with the composite's
        (the deviation is unchanged: a common part cancels). The forces follow the
        contract's rule, edge gradients and, for geometry inputs, -dE/dpos; the graph
        is retained for the engine's own backward pass.
        """
        n = terms.shape[0]
        local = torch.arange(n, device=terms.device) < n_local
        total = torch.where(local, terms, torch.zeros_like(terms)).sum()
        result["member_energies"] = result["member_energies"] + total.detach()
        if not terms.requires_grad:
            return
        # the contract's rule (edge gradients, and -dE/dpos for geometry inputs), graph kept
        derived = derive_from_energies(terms, edge_indices, edge_vectors, n_local, False, False,
                                       system.get("positions"), None, None, True)
        result["member_forces"] = result["member_forces"] + derived["forces"].detach().unsqueeze(1)


class GlobalAdditiveModel(AdditiveModel):
    """An :class:`AdditiveModel` whose network has whole-system sums (``global_sums``).

    The sums are the network's alone (terms are local); the engine's complete sums reach
    the network through ``system``, which ``forward`` hands every part unchanged. A
    class of its own because TorchScript compiles every exported method, and a local
    network has no ``global_sums`` to call.
    """

    @torch.jit.export
    def global_sums(
        self,
        atomic_numbers: torch.Tensor,
        edge_indices: List[torch.Tensor],
        edge_vectors: List[torch.Tensor],
        n_local: int,
        system: Dict[str, torch.Tensor],
    ) -> torch.Tensor:
        idx = self.list_maps[0]
        return self.parts[0].global_sums(
            atomic_numbers, [edge_indices[m] for m in idx], [edge_vectors[m] for m in idx], n_local, system
        )


def compose(network: nn.Module, terms: Sequence[nn.Module]) -> AdditiveModel:
    """Network + terms as one contract model, keeping the network's whole-system sums."""
    cls = GlobalAdditiveModel if hasattr(network, "global_sums") else AdditiveModel
    return cls(network, terms)
