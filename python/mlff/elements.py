"""Atomic numbers -> a model's own element indices, shared by every network and term.

Each module keeps a ``[119]`` table (``-1`` for elements it has no parameters for) and
looks atoms up through :func:`element_indices`, which refuses unknown elements instead
of silently reading the last row (index -1).
"""

from __future__ import annotations

from typing import List, Sequence

import torch


def element_table(elements: Sequence[int]) -> torch.Tensor:
    """``[119]`` int64: the position of each atomic number in ``elements``, -1 elsewhere."""
    table = torch.full((119,), -1, dtype=torch.long)
    for k, z in enumerate(elements):
        table[int(z)] = k
    return table


_EXPORT_TRACING = [False]


class export_tracing:
    """Context manager: models are being traced for a compiled (.pt2) export, so their
    data-dependent input checks are skipped (the engines check inputs at set-up)."""

    def __enter__(self) -> None:
        _EXPORT_TRACING[0] = True

    def __exit__(self, *exc) -> None:
        _EXPORT_TRACING[0] = False


def tracing_for_export() -> bool:
    return _EXPORT_TRACING[0] or torch.compiler.is_exporting()


def element_indices(table: torch.Tensor, atomic_numbers: torch.Tensor, owner: str) -> torch.Tensor:
    """Indices of ``atomic_numbers`` in a module's elements (TorchScript-compatible).

    The check reads back from the device; on CUDA the engines have already validated
    elements at set-up, and a read-back would forbid CUDA graphs, so it runs on the CPU only.
    """
    idx = table[atomic_numbers]
    if not torch.jit.is_scripting():
        if tracing_for_export():
            # a .pt2 export traces without data-dependent branches; the engines that load
            # .pt2 files check the elements at set-up (ModelMetadata.check_elements)
            return idx
    if not atomic_numbers.is_cuda and bool((idx < 0).any()):
        bad: List[int] = torch.unique(atomic_numbers[idx < 0]).tolist()
        raise RuntimeError("mlff " + owner + ": atomic numbers " + str(bad) + " are not among its elements")
    return idx
