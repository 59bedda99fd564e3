"""Member outputs of an ensemble: what committees and shallow ensembles return besides the mean.

A model with M members (independently trained networks, or several readout heads on one
backbone) runs on the mean energy; its uncertainty is the members' disagreement. The
contract (see :mod:`mlff.contract`, "Member outputs") lets the model return the members'
*partial* forces and energies, and the engines reduce them (LAMMPS: ghosts to owners,
ranks summed) and apply one deviation rule (:func:`mlff.contract.member_deviation`).
Why partial: under LAMMPS MPI a member's force on an atom has contributions computed on
other ranks, and the deviation is not linear in them, so it can only be taken after the
reverse communication.

Both ensemble kinds call :func:`member_outputs`, so the outputs are one implementation.
"""

from __future__ import annotations

from typing import Dict, List

import torch

from ..contract import OutputSpec, derive_from_energies

#: the partial outputs every ensemble returns, and the derived ones engines compute
MEMBER_FORCES = "member_forces"
MEMBER_ENERGIES = "member_energies"
FORCES_UNCERTAINTY = "forces_uncertainty"
ENERGY_UNCERTAINTY = "energy_uncertainty"


def uncertainty_output_specs(n_members: int) -> List[OutputSpec]:
    """The output specs of an ensemble of ``n_members`` (for ``contract_info()["outputs"]``)."""
    if n_members < 2:
        raise ValueError(f"an ensemble needs at least 2 members to disagree, got {n_members}")
    return [
        OutputSpec(name=MEMBER_FORCES, per_atom=True, unit="eV/Å", shape=[n_members, 3], partial=True,
                   description="each member's forces (partial: ghosts' values belong to their owners)"),
        OutputSpec(name=MEMBER_ENERGIES, per_atom=False, unit="eV", shape=[n_members], partial=True,
                   description="each member's energy of the local atoms (partial: summed over ranks)"),
        OutputSpec(name=FORCES_UNCERTAINTY, per_atom=True, unit="eV/Å", derived_from=MEMBER_FORCES,
                   description="per-atom deviation of the members' forces (DeePMD's model deviation)"),
        OutputSpec(name=ENERGY_UNCERTAINTY, per_atom=False, unit="eV", derived_from=MEMBER_ENERGIES,
                   description="standard deviation of the members' total energies"),
    ]


def member_outputs(
    member_energies: List[torch.Tensor],
    edge_indices: List[torch.Tensor],
    edge_vectors: List[torch.Tensor],
    n_local: int,
) -> Dict[str, torch.Tensor]:
    """Partial member forces ``[N, M, 3]`` and member energies ``[M]`` (TorchScript).

    ``member_energies``: each member's per-atom energies ``[N]``, differentiable with
    respect to ``edge_vectors`` (which require grad, as every engine passes them). Give
    each member's own tensor, not slices of a stacked one: the gradient of one slice
    would run backward through every member (M^2 backward passes for a committee). Each
    member's forces follow the contract's edge rule (F_i += g, F_j -= g) from the energy
    of the local atoms, so ghosts hold contributions for their owners, exactly as the
    engines' own forces do. The graph is retained: the engine differentiates the mean
    energy afterwards. Results are detached (outputs, not trained on here).
    """
    m = len(member_energies)
    first = member_energies[0]
    n = first.shape[0]
    local = torch.arange(n, device=first.device) < n_local
    forces = torch.zeros((n, m, 3), dtype=first.dtype, device=first.device)
    totals = torch.zeros((m,), dtype=first.dtype, device=first.device)
    for k in range(m):
        energies = member_energies[k]
        totals[k] = torch.where(local, energies, torch.zeros_like(energies)).sum().detach()
        if energies.requires_grad:
            # the contract's own rule (one implementation), keeping the graph for the engine
            member = derive_from_energies(energies, edge_indices, edge_vectors, n_local, False, False,
                                          retain_graph=True)
            forces[:, k] = member["forces"]
    # literals: TorchScript cannot read the module-level names
    return {"member_forces": forces.detach(), "member_energies": totals}


__all__ = [
    "ENERGY_UNCERTAINTY",
    "FORCES_UNCERTAINTY",
    "MEMBER_ENERGIES",
    "MEMBER_FORCES",
    "member_outputs",
    "uncertainty_output_specs",
]
