"""Deep ensembles (committees) of exported models, written as one contract file.

``mlff ensemble m1.pt m2.pt ... -o committee.pt`` wraps independently trained models
(they may differ in architecture, cutoff and depth, but know the same elements) in a
:class:`Committee`: it returns the mean of the members' per-atom energies, which every
engine runs dynamics on, and the members' partial forces and energies, from which the
engines derive ``forces_uncertainty`` (per atom) and ``energy_uncertainty`` (see
:mod:`mlff.uncertainty.members`). Because the members are whole exported modules,
their physics terms (D3, ZBL) come with them.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from ..contract import (
    LoadedModel,
    ModelMetadata,
    NeighborListSpec,
    export_model,
    load_model,
    wants_outputs,
)
from .members import member_outputs, uncertainty_output_specs

COMMITTEE_KIND = "committee"


def _union_lists(metas: Sequence[ModelMetadata]) -> Tuple[List[NeighborListSpec], List[List[int]]]:
    """The committee's neighbour lists and, per member, the indices of its own lists.

    Lists equal in name and cutoff are shared (built once by the engine); a name reused
    with another cutoff (members trained with different cutoffs) gets a suffix, since
    the contract identifies lists by name.
    """
    lists: List[NeighborListSpec] = []
    origins: List[str] = []  # each list's name in the member that brought it
    maps: List[List[int]] = []
    for meta in metas:
        idx: List[int] = []
        for spec in meta.neighbor_lists:
            for k, old in enumerate(lists):
                if abs(old.cutoff - spec.cutoff) <= 1e-12 and origins[k] == spec.name:
                    reach = None if old.reach is None or spec.reach is None else max(old.reach, spec.reach)
                    lists[k] = old.model_copy(update={"reach": reach})
                    idx.append(k)
                    break
            else:
                name = spec.name
                taken = {nl.name for nl in lists}
                n = 2
                while name in taken:
                    name = f"{spec.name}_{n}"
                    n += 1
                lists.append(spec.model_copy(update={"name": name}))
                origins.append(spec.name)
                idx.append(len(lists) - 1)
        maps.append(idx)
    return lists, maps


def _check_members(metas: Sequence[ModelMetadata], names: Sequence[str]) -> None:
    """Refuse members that cannot form one model, naming the member and the difference."""
    first, first_name = metas[0], names[0]
    for meta, name in zip(metas[1:], names[1:]):
        for what, a, b in (
            ("elements", first.symbols, meta.symbols),
            ("dtype", first.dtype, meta.dtype),
            ("fidelities", first.fidelities, meta.fidelities),
            ("total-charge input", first.uses_charge, meta.uses_charge),
        ):
            if a != b:
                raise ValueError(
                    f"committee members must agree in {what}: {first_name} has {a}, {name} has {b}"
                    + ("; export both with the same --dtype" if what == "dtype" else "")
                )
    for meta, name in zip(metas, names):
        if meta.locality == "global":
            raise ValueError(
                f"{name} is a whole-system model (locality global: charge normalisation or Ewald); "
                "committees of such models are not supported: their member forces would need the "
                "members' whole-system sums under MPI. Use models with local terms (coulomb dsf "
                "without charge normalisation) or evaluate the members separately"
            )
        if meta.contract_version < 2:
            raise ValueError(f"{name} is a contract-version-1 file; re-export it with this mlff (`mlff export`)")
        if meta.kind == COMMITTEE_KIND:
            raise ValueError(f"{name} is a committee already; give its members instead")


class Committee(nn.Module):
    """Mean energy of M contract models plus their partial member forces and energies."""

    __jit_unused_properties__ = ["metadatas"]

    def __init__(self, members: Sequence[nn.Module], metadatas: Sequence[ModelMetadata],
                 names: Optional[Sequence[str]] = None):
        super().__init__()
        if len(members) != len(metadatas):
            raise ValueError("give one metadata per member")
        names = list(names) if names is not None else [f"member {k}" for k in range(len(members))]
        if len(members) < 2:
            raise ValueError(f"a committee needs at least 2 members, got {len(members)}")
        _check_members(metadatas, names)
        self.members = nn.ModuleList(members)
        lists, maps = _union_lists(metadatas)
        self.list_maps: List[List[int]] = maps
        self._lists = lists
        self._metas = list(metadatas)
        self._names = names

    @property
    def metadatas(self) -> List[ModelMetadata]:
        return self._metas

    @torch.jit.unused
    def neighbor_lists(self) -> List[Tuple[str, float, Optional[float]]]:
        return [(nl.name, nl.cutoff, nl.reach) for nl in self._lists]

    @torch.jit.unused
    def contract_info(self) -> Dict[str, Any]:
        first = self._lists[0].cutoff
        # hop pruning in LAMMPS counts hops over the first list: enough hops for every member
        hops = max(int(-(-m.interaction_range // first)) if m.num_interactions > 1 else 1 for m in self._metas)
        info: Dict[str, Any] = {
            "kind": COMMITTEE_KIND,
            "elements": list(self._metas[0].elements),
            "neighbor_lists": self.neighbor_lists(),
            "num_interactions": max(1, hops),
            "interaction_range": max(m.interaction_range for m in self._metas),
            "outputs": uncertainty_output_specs(len(self._metas)),
            "fidelities": list(self._metas[0].fidelities),
            "uses_charge": self._metas[0].uses_charge,
            "hyperparameters": {
                "members": [
                    {"name": name, "kind": m.kind, "interaction_range": m.interaction_range,
                     **({"hyperparameters": m.hyperparameters} if m.hyperparameters else {})}
                    for name, m in zip(self._names, self._metas)
                ]
            },
        }
        shortest = [m.min_distance for m in self._metas if m.min_distance is not None]
        if shortest:
            info["min_distance"] = max(shortest)  # where any member stops having data
        return info

    def forward(
        self,
        atomic_numbers: torch.Tensor,
        edge_indices: List[torch.Tensor],
        edge_vectors: List[torch.Tensor],
        n_local: int,
        system: Dict[str, torch.Tensor],
    ) -> Dict[str, torch.Tensor]:
        energies: List[torch.Tensor] = []
        for k, member in enumerate(self.members):
            idx = self.list_maps[k]
            out = member(atomic_numbers, [edge_indices[m] for m in idx], [edge_vectors[m] for m in idx],
                         n_local, system)
            energies.append(out["energies"])
        stacked = torch.stack(energies, dim=1)  # [N, M]
        result: Dict[str, torch.Tensor] = {"energies": stacked.mean(dim=1)}
        if wants_outputs(system):
            for key, value in member_outputs(energies, edge_indices, edge_vectors, n_local).items():
                result[key] = value
        return result


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_members(paths: Sequence[str | os.PathLike]) -> List[LoadedModel]:
    """Load and validate the member files (every load check of :func:`mlff.load_model`)."""
    if len(paths) < 2:
        raise ValueError(f"a committee needs at least 2 member files, got {len(paths)}")
    resolved = [Path(p).resolve() for p in paths]
    if len(set(resolved)) != len(resolved):
        raise ValueError("the same member file is given twice: its copies would always agree")
    return [load_model(p) for p in paths]


def build_committee(
    paths: Sequence[str | os.PathLike], output: str | os.PathLike
) -> ModelMetadata:
    """Write the committee of the exported models ``paths`` to ``output`` (a ``.pt``).

    The file records each member's name and sha256 in its provenance.
    """
    loaded = load_members(paths)
    names = [Path(p).name for p in paths]
    committee = Committee([m.module for m in loaded], [m.metadata for m in loaded], names)
    provenance = {
        "committee_members": [
            {"file": str(Path(p)), "sha256": _sha256(Path(p)), "kind": m.metadata.kind}
            for p, m in zip(paths, loaded)
        ]
    }
    return export_model(committee, output, provenance=provenance)


__all__ = ["COMMITTEE_KIND", "Committee", "build_committee", "load_members"]
