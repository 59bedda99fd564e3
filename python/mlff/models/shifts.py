"""Per-element reference energies by least squares: E_total ~ sum_el n_el * e_el."""

from __future__ import annotations

from typing import Sequence

import numpy as np


def fit_atomic_energies(
    elements: Sequence[int], numbers_list: Sequence[np.ndarray], energies: Sequence[float]
) -> np.ndarray:
    """Least-squares per-element energies (eV) in the order of ``elements``.

    With a single element (or collinear compositions) the problem is rank-deficient in
    a harmless way: lstsq returns the minimum-norm solution, which is the mean energy
    per atom for one element.
    """
    elements = list(elements)
    index = {z: k for k, z in enumerate(elements)}
    counts = np.zeros((len(numbers_list), len(elements)))
    for row, numbers in enumerate(numbers_list):
        for z in numbers:
            counts[row, index[int(z)]] += 1
    sol, *_ = np.linalg.lstsq(counts, np.asarray(energies, dtype=np.float64), rcond=None)
    return sol
