"""Run-time fidelity in exported files: terms that apply to some fidelities only, and
single-fidelity views of a multi-fidelity model.

One exported file holds every fidelity of a multi-fidelity model; engines pick one at
run time through the ``fidelity`` system input. A physics term may belong to some
fidelities only: D3 dispersion is added to a DFT fidelity (PBE/def2-SVP) and never to
GFN1/GFN2-xTB, which already contain dispersion. :class:`FidelityGatedTerm` applies a
term for its fidelities and gives exactly zero (and zero gradient) for the others.
Tools that want one file per level get :class:`FixedFidelity`: the model with its
fidelity fixed, whose metadata lists that fidelity alone.
"""

from __future__ import annotations

from typing import Any, Dict, List, Sequence, Tuple

import torch
from torch import nn


def per_atom_fidelity(n_atoms: int, system: Dict[str, torch.Tensor], device: torch.device) -> torch.Tensor:
    """The fidelity index of every atom: 0-d in engines, ``[B]`` with ``batch`` in training."""
    if "fidelity" not in system:
        return torch.zeros(n_atoms, dtype=torch.long, device=device)
    fid = system["fidelity"].to(torch.long)
    if "batch" in system:
        return fid[system["batch"]]
    return fid.expand(n_atoms)


class FidelityGatedTerm(nn.Module):
    """``term`` for the fidelities in ``active`` (indices into ``fidelities``), zero otherwise."""

    def __init__(self, term: nn.Module, fidelities: Sequence[str], active: Sequence[str]):
        super().__init__()
        unknown = sorted(set(active) - set(fidelities))
        if unknown:
            raise ValueError(
                f"the {term.contract_info()['kind']} term is assigned to fidelities {unknown}, which the "
                f"model does not have; its fidelities are {list(fidelities)}"
            )
        if not active:
            raise ValueError("a fidelity-gated term needs at least one fidelity")
        self.term = term
        self.fidelities = list(fidelities)
        self.active = [name for name in fidelities if name in set(active)]
        mask = torch.tensor([name in set(active) for name in fidelities], dtype=torch.bool)
        self.register_buffer("mask", mask)

    @torch.jit.unused
    def neighbor_lists(self) -> List[Tuple[Any, ...]]:
        return self.term.neighbor_lists()

    @torch.jit.unused
    def contract_info(self) -> Dict[str, Any]:
        info = dict(self.term.contract_info())
        info["hyperparameters"] = {**info.get("hyperparameters", {}), "fidelities": list(self.active)}
        return info

    def forward(
        self,
        atomic_numbers: torch.Tensor,
        edge_indices: List[torch.Tensor],
        edge_vectors: List[torch.Tensor],
        n_local: int,
        system: Dict[str, torch.Tensor],
    ) -> Dict[str, torch.Tensor]:
        energies = self.term(atomic_numbers, edge_indices, edge_vectors, n_local, system)["energies"]
        on = self.mask[per_atom_fidelity(atomic_numbers.shape[0], system, atomic_numbers.device)]
        # where, not a product: the term's gradient is exactly zero for the other fidelities
        return {"energies": torch.where(on, energies, torch.zeros_like(energies))}


class FixedFidelity(nn.Module):
    """A multi-fidelity model with its fidelity fixed: what ``mlff export --fidelity`` writes.

    Engines pass fidelity 0 (the file lists one fidelity); the wrapper hands the model
    the chosen index instead. Whole-system sums pass through with the same override.
    """

    def __init__(self, model: nn.Module, fidelity: str):
        super().__init__()
        names = list(model.contract_info().get("fidelities", []))
        if fidelity not in names:
            raise ValueError(f"unknown fidelity {fidelity!r}; the model has {names}")
        self.model = model
        self.index = names.index(fidelity)
        self.name = fidelity

    @torch.jit.unused
    def neighbor_lists(self) -> List[Tuple[Any, ...]]:
        return self.model.neighbor_lists()

    @torch.jit.unused
    def contract_info(self) -> Dict[str, Any]:
        info = dict(self.model.contract_info())
        info["fidelities"] = [self.name]
        info["kind"] = f"{info['kind']}[{self.name}]"
        return info

    def _system(self, system: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        fixed: Dict[str, torch.Tensor] = {}
        for key, value in system.items():
            fixed[key] = value
        device = system["charge"].device if "charge" in system else torch.device("cpu")
        if "batch" in system:
            fixed["fidelity"] = torch.full_like(system["fidelity"], self.index)
        else:
            fixed["fidelity"] = torch.full((), self.index, dtype=torch.long, device=device)
        return fixed

    def forward(
        self,
        atomic_numbers: torch.Tensor,
        edge_indices: List[torch.Tensor],
        edge_vectors: List[torch.Tensor],
        n_local: int,
        system: Dict[str, torch.Tensor],
    ) -> Dict[str, torch.Tensor]:
        return self.model(atomic_numbers, edge_indices, edge_vectors, n_local, self._system(system))


class FixedFidelityGlobal(FixedFidelity):
    """:class:`FixedFidelity` of a model with whole-system sums (TorchScript needs the
    method only where the wrapped model has one)."""

    @torch.jit.export
    def global_sums(
        self,
        atomic_numbers: torch.Tensor,
        edge_indices: List[torch.Tensor],
        edge_vectors: List[torch.Tensor],
        n_local: int,
        system: Dict[str, torch.Tensor],
    ) -> torch.Tensor:
        return self.model.global_sums(atomic_numbers, edge_indices, edge_vectors, n_local, self._system(system))


def fix_fidelity(model: nn.Module, fidelity: str) -> FixedFidelity:
    """``model`` as a single-fidelity model for ``fidelity`` (a name of its fidelities)."""
    cls = FixedFidelityGlobal if hasattr(model, "global_sums") else FixedFidelity
    return cls(model, fidelity)
