"""Per-element reference energies by least squares: E_total ~ sum_el n_el * e_el.

This is the starting value of a model's per-element shifts, which training then adjusts,
so an underdetermined fit is harmless here (the minimum-norm answer). The SAE baseline of
a multi-fidelity set, which must be determined, is :mod:`mlff.data.sae`; both count atoms
with :func:`mlff.data.sae.composition_matrix`.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..data.sae import composition_matrix


def fit_atomic_energies(
    elements: Sequence[int], numbers_list: Sequence[np.ndarray], energies: Sequence[float]
) -> np.ndarray:
    """Least-squares per-element energies (eV) in the order of ``elements``.

    With collinear compositions the problem is rank-deficient in a harmless way: lstsq
    returns the minimum-norm solution.
    """
    counts = composition_matrix(numbers_list, list(elements))
    sol, *_ = np.linalg.lstsq(counts, np.asarray(energies, dtype=np.float64), rcond=None)
    return sol
