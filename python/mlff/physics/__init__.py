"""Additive physics terms as TorchScript modules under contract v2.

Each term is an ``nn.Module`` with ``kind``, ``neighbor_lists()``, ``contract_info()`` and
the contract-v2 ``forward(atomic_numbers, edge_indices, edge_vectors, n_local, system)``
returning ``{"energies": [N]}`` in eV; compose them with a network through
:class:`mlff.models.composite.AdditiveModel`.

- :class:`D3BJ`: two-body DFT-D3 with Becke-Johnson damping (reference data from
  tad-dftd3 at build time, parameters from simple-dftd3's table).
- :class:`ZBL`: Ziegler-Biersack-Littmark screened nuclear repulsion with LAMMPS'
  ``pair_style zbl inner outer`` switching.
- :class:`FixedChargeCoulomb`: Coulomb between fixed per-element charges (simple or
  damped shifted force); :mod:`mlff.physics.coulomb` also has the functions models with
  predicted charges call.
"""

from .coulomb import FixedChargeCoulomb
from .d3 import D3BJ
from .zbl import ZBL

__all__ = ["D3BJ", "ZBL", "FixedChargeCoulomb"]
