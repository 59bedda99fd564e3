"""Fidelity-weighted batch draws: a weight changes how often a level's batches come, never
their size; batches hold one level; everything is a function of (seed, epoch)."""

from __future__ import annotations

import math

import numpy as np

from mlff.training.batching import pack
from mlff.training.sampler import FidelitySampler

BATCH_ATOMS = 16


def _three_levels(seed: int = 0):
    rng = np.random.default_rng(seed)
    fidelities = [0] * 40 + [1] * 70 + [2] * 120
    sizes = rng.integers(2, 13, size=len(fidelities)).tolist()
    return sizes, fidelities


def test_draw_frequencies_follow_weight_times_batches():
    sizes, fids = _three_levels()
    weights = {0: 1.0, 1: 3.0, 2: 0.5}
    sampler = FidelitySampler(sizes, fids, BATCH_ATOMS, seed=11, weights=weights)
    drawn = np.zeros(3)
    expected = np.zeros(3)
    variance = np.zeros(3)
    atoms_per_batch = {0: [], 1: [], 2: []}
    for epoch in range(300):
        batches = sampler.epoch(epoch)
        n = np.array([len(sampler.packing(epoch, f, 0)) for f in range(3)], dtype=float)
        p = n * np.array([weights[f] for f in range(3)])
        p /= p.sum()
        assert len(batches) == n.sum()  # an epoch has as many steps as batches
        expected += len(batches) * p
        variance += len(batches) * p * (1 - p)
        for b in batches:
            levels = {fids[k] for k in b}
            assert len(levels) == 1  # one level per batch
            f = levels.pop()
            drawn[f] += 1
            atoms_per_batch[f].append(sum(sizes[k] for k in b))
    sigma = np.sqrt(variance)
    print(f"\ndraws {drawn}, expected {expected.round(1)}, sigma {sigma.round(1)}")
    assert np.all(np.abs(drawn - expected) < 5 * sigma)
    # the weight did not change the batch size: every level packs up to batch_atoms alike
    for f, atoms in atoms_per_batch.items():
        assert max(atoms) <= BATCH_ATOMS
    mean_atoms = [np.mean(a) for a in atoms_per_batch.values()]
    assert max(mean_atoms) - min(mean_atoms) < 1.5


def test_a_heavily_drawn_level_cycles_through_all_its_structures_before_repeating():
    sizes, fids = _three_levels(1)
    sampler = FidelitySampler(sizes, fids, BATCH_ATOMS, seed=5, weights={0: 8.0})
    batches = sampler.epoch(2)
    level0 = [b for b in batches if fids[b[0]] == 0]
    first_pass = len(sampler.packing(2, 0, 0))
    assert len(level0) > first_pass  # drawn more often than it has batches
    seen = [k for b in level0[:first_pass] for k in b]
    assert sorted(seen) == [k for k, f in enumerate(fids) if f == 0]  # each structure once
    second = [k for b in level0[first_pass : 2 * first_pass] for k in b]
    assert len(set(second)) == len(second)  # the next pass is a fresh shuffle, no repeats within it


def test_deterministic_in_seed_and_epoch():
    sizes, fids = _three_levels()
    a = FidelitySampler(sizes, fids, BATCH_ATOMS, seed=3, weights={1: 2.0})
    b = FidelitySampler(sizes, fids, BATCH_ATOMS, seed=3, weights={1: 2.0})
    assert a.epoch(7) == b.epoch(7)
    assert a.epoch(7) != a.epoch(8)
    assert a.epoch(7) != FidelitySampler(sizes, fids, BATCH_ATOMS, seed=4, weights={1: 2.0}).epoch(7)


def test_one_level_takes_the_batches_it_always_took():
    sizes = np.random.default_rng(2).integers(1, 9, size=53).tolist()
    sampler = FidelitySampler(sizes, [0] * len(sizes), BATCH_ATOMS, seed=9)
    for epoch in range(4):
        rng = np.random.default_rng([9, epoch])  # the key of the single-fidelity trainer
        assert sampler.epoch(epoch) == pack(rng.permutation(len(sizes)).tolist(), sizes, BATCH_ATOMS)


def test_a_zero_weight_level_is_never_drawn():
    sizes, fids = _three_levels()
    sampler = FidelitySampler(sizes, fids, BATCH_ATOMS, seed=0, weights={2: 0.0})
    for epoch in range(5):
        batches = sampler.epoch(epoch)
        assert all(fids[b[0]] != 2 for b in batches)
        assert len(batches) == sum(len(sampler.packing(epoch, f, 0)) for f in (0, 1))
    assert math.isclose(sampler.weights[0], 1.0)
