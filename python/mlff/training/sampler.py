"""Which batch each training step takes: fidelity-weighted draws of single-fidelity batches.

Every batch holds structures of one fidelity (level of theory), packed up to
``batch_atoms`` atoms as always. A fidelity's weight changes how *often* its batches are
drawn, never their size (aimnet2mult turns a weight into bigger batches, which changes
the step's gradient noise and memory instead of the level's share of the steps):

- epoch ``e`` packs each fidelity's structures in a shuffled order into ``n_f`` batches;
- its ``L = sum_f n_f`` steps (fidelities of weight > 0) each draw fidelity ``f`` with
  probability ``w_f n_f / sum_g w_g n_g``, then take that fidelity's next batch; a
  fidelity drawn more than ``n_f`` times in the epoch cycles through a fresh shuffle.

With equal weights a fidelity is drawn as often as it has batches, as in an ordinary
epoch. Everything is a pure function of ``(seed, epoch)``, so the step ``k`` of an epoch
is the same batch after a ``--resume`` (the trainer checkpoints ``epoch`` and the
position in it) and on every data-parallel rank.

A run with one fidelity takes exactly the batches it took before fidelities existed:
fidelity 0 is shuffled with the key ``(seed, epoch)`` of that time and no draw is made.
"""

from __future__ import annotations

from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np

from .batching import pack

#: the third entry of the random keys ``[seed, epoch, tag, ...]`` of an epoch's fidelity
#: draws and of its shuffles (other than fidelity 0's first): distinct tags, distinct streams
DRAW_KEY = 1
SHUFFLE_KEY = 2


class FidelitySampler:
    """The batches of every epoch (lists of sample indices), see the module docstring.

    ``sizes[k]`` and ``fidelities[k]`` are the atom count and fidelity index of sample
    ``k``; ``weights[f]`` the weight of fidelity ``f`` (missing: 1).
    """

    def __init__(
        self,
        sizes: Sequence[int],
        fidelities: Sequence[int],
        batch_atoms: int,
        seed: int,
        weights: Optional[Mapping[int, float]] = None,
    ):
        if len(sizes) != len(fidelities):
            raise ValueError(f"{len(sizes)} sizes but {len(fidelities)} fidelities")
        self.sizes = [int(n) for n in sizes]
        self.batch_atoms = int(batch_atoms)
        self.seed = int(seed)
        members: Dict[int, List[int]] = {}
        for k, f in enumerate(fidelities):
            members.setdefault(int(f), []).append(k)
        self.groups: Dict[int, np.ndarray] = {f: np.asarray(idx, dtype=np.int64) for f, idx in sorted(members.items())}
        self.weights = {f: float((weights or {}).get(f, 1.0)) for f in self.groups}
        if not any(w > 0 for w in self.weights.values()):
            raise ValueError("every fidelity with training structures has weight 0: nothing to draw")

    def _key(self, epoch: int, fidelity: int, cycle: int) -> List[int]:
        if fidelity == 0 and cycle == 0:
            return [self.seed, epoch]  # the single-fidelity key: one-level runs are unchanged
        # + 1: numpy's seed sequence ignores trailing zeros ([s, e, 0] seeds like [s, e])
        return [self.seed, epoch, SHUFFLE_KEY, fidelity + 1, cycle + 1]

    def packing(self, epoch: int, fidelity: int, cycle: int) -> List[List[int]]:
        """The batches of ``fidelity``'s ``cycle``-th shuffle in ``epoch`` (cycle 0 fixes its draw weight)."""
        group = self.groups[fidelity]
        order = group[np.random.default_rng(self._key(epoch, fidelity, cycle)).permutation(len(group))]
        return pack(order.tolist(), self.sizes, self.batch_atoms)

    def epoch(self, epoch: int) -> List[List[int]]:
        """The batches of ``epoch`` in the order the steps take them."""
        drawable = [f for f in self.groups if self.weights[f] > 0]
        first = {f: self.packing(epoch, f, 0) for f in drawable}
        if len(drawable) == 1:
            return first[drawable[0]]
        counts = np.array([len(first[f]) for f in drawable], dtype=np.float64)
        p = counts * np.array([self.weights[f] for f in drawable])
        cumulative = np.cumsum(p / p.sum())
        u = np.random.default_rng([self.seed, epoch, DRAW_KEY]).random(int(counts.sum()))
        # searchsorted on the cumulative distribution: an explicit, numpy-version-stable draw
        picks = np.minimum(np.searchsorted(cumulative, u, side="right"), len(drawable) - 1)
        return self._take(epoch, first, [drawable[k] for k in picks])

    def _take(self, epoch: int, first: Dict[int, List[List[int]]], draws: List[int]) -> List[List[int]]:
        """Each drawn fidelity's next batch; past its last one, a new shuffle of the fidelity."""
        queues = {f: list(batches) for f, batches in first.items()}
        cycles = {f: 1 for f in first}
        used = {f: 0 for f in first}
        out = []
        for f in draws:
            if used[f] == len(queues[f]):
                queues[f] += self.packing(epoch, f, cycles[f])
                cycles[f] += 1
            out.append(queues[f][used[f]])
            used[f] += 1
        return out


__all__ = ["FidelitySampler", "DRAW_KEY", "SHUFFLE_KEY"]
