"""Delta learning: the network learns the labels minus the physics terms.

The terms (self-atomic energies, D3 dispersion, ZBL, ...) are evaluated once per structure, through the
contract (:func:`mlff.training.metrics.predict`, i.e. :func:`mlff.contract.evaluate`)
on the structure's own graph with each term's own neighbour lists, and subtracted
from energy, forces and stress. Export adds them back
(:class:`mlff.models.composite.AdditiveModel`), so the exported model reproduces the
labels, not the residual.

The graphs are built once with the union of the lists of network and terms (as
``AdditiveModel`` requests them from an engine); after the subtraction the samples keep
only the network's lists, since a 15 Å dispersion list would otherwise be batched at
every training step for nothing. Terms are evaluated in float64 whatever the training
dtype (their energies are added to eV-scale labels).
"""

from __future__ import annotations

import dataclasses
from typing import List, Sequence, Tuple

import numpy as np
import torch

from ..data.records import Record
from ..models.composite import AdditiveModel
from .batching import Sample, build_samples, collate, list_cutoffs, relabel
from .metrics import predict

#: records whose term contributions are evaluated in one batch (bounds the memory that
#: the long term lists take before they are dropped)
CHUNK = 64


def term_contributions(composite: AdditiveModel, samples: Sequence[Sample]) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Energy ``[B]``, forces ``[N, 3]`` and stress ``[B, 3, 3]`` (ASE sign) of the terms, float64.

    ``samples`` carry the lists of ``composite.neighbor_lists()``; every term after the
    network is evaluated on its own lists.
    """
    b = collate(samples, torch.device("cpu"))
    energy = np.zeros(b.n_structures)
    forces = np.zeros((int(b.numbers.shape[0]), 3))
    stress = np.zeros((b.n_structures, 3, 3))
    for k in range(1, len(composite.parts)):
        lists = composite.list_maps[k]
        view = dataclasses.replace(
            b,
            edge_indices=[b.edge_indices[m] for m in lists],
            edge_vectors=[b.edge_vectors[m].double() for m in lists],
            volume=b.volume.double(),
            positions=None if b.positions is None else b.positions.double(),
            cell=None if b.cell is None else b.cell.double(),
        )
        out = predict(composite.parts[k], view, need_stress=True, create_graph=False)
        energy += out["energy"].detach().numpy()
        forces += out["forces"].detach().numpy()
        stress += out["stress"].detach().numpy()
    return energy, forces, stress


def minus_terms(rec: Record, energy: float, forces: np.ndarray, stress: np.ndarray) -> Record:
    """``rec`` with the term contributions subtracted from the labels it has (absent ones stay absent)."""
    from ase.stress import full_3x3_to_voigt_6_stress

    residual_stress = rec.stress  # a stress label of a non-periodic structure is never trained on
    if rec.stress is not None and rec.periodic:
        residual_stress = np.asarray(rec.stress, dtype=np.float64) - full_3x3_to_voigt_6_stress(stress)
    return dataclasses.replace(
        rec,
        energy=None if rec.energy is None else float(rec.energy) - float(energy),
        forces=None if rec.forces is None else np.asarray(rec.forces, dtype=np.float64) - forces,
        stress=residual_stress,
    )


def residual_samples(
    records: Sequence[Record], composite: AdditiveModel, dtype: torch.dtype, fidelities: Sequence[str] = ()
) -> Tuple[List[Sample], List[Record]]:
    """Training samples (network lists only) and records whose labels are minus the terms.

    ``fidelities`` (the run's level names) give each structure its fidelity index, which
    the terms read like the network does (per-fidelity self-atomic energies).
    """
    cutoffs = list_cutoffs(composite)
    network_lists = composite.list_maps[0]
    samples: List[Sample] = []
    residual: List[Record] = []
    for start in range(0, len(records), CHUNK):
        part = list(records[start : start + CHUNK])
        full = build_samples(part, cutoffs, dtype, fidelities)
        energy, forces, stress = term_contributions(composite, full)
        offset = 0
        for k, (rec, sample) in enumerate(zip(part, full)):
            n = sample.n_atoms
            rec = minus_terms(rec, energy[k], forces[offset : offset + n], stress[k])
            offset += n
            residual.append(rec)
            samples.append(relabel(sample, rec, network_lists))
    return samples, residual
