"""What every physics term shares: its description under the contract.

A term declares ``kind``, its elements, its neighbour lists, how far an atom's energy
reaches (``interaction_range``) and the constructor arguments that rebuild it
(``hyperparameters``); :meth:`PhysicsTerm.contract_info` assembles them the way
:func:`mlff.contract.metadata_for` and :mod:`mlff.physics.terms` read them.
"""

from __future__ import annotations

from typing import Any, Dict, List, Tuple

import torch
from torch import nn


class PhysicsTerm(nn.Module):
    """Base of the additive terms (D3, ZBL, Coulomb, self-atomic energies)."""

    kind = "term"

    @torch.jit.unused
    def neighbor_lists(self) -> List[Tuple[Any, ...]]:
        raise NotImplementedError

    @torch.jit.unused
    def hyperparameters(self) -> Dict[str, Any]:
        """Constructor arguments that rebuild this term: ``type(term)(**hyperparameters())``."""
        raise NotImplementedError

    @torch.jit.unused
    def interaction_range(self) -> float:
        """How far (Å) the energy of an atom depends on other atoms."""
        raise NotImplementedError

    @torch.jit.unused
    def extra_contract_info(self) -> Dict[str, Any]:
        """Further metadata a term declares (e.g. the fidelities it knows)."""
        return {}

    @torch.jit.unused
    def contract_info(self) -> Dict[str, Any]:
        return dict(
            kind=self.kind,
            elements=list(self.elements),
            neighbor_lists=self.neighbor_lists(),
            interaction_range=self.interaction_range(),
            locality="local",
            hyperparameters=self.hyperparameters(),
            **self.extra_contract_info(),
        )
