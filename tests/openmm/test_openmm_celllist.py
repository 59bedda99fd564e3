"""The in-module cell list finds exactly vesin's pairs (and vectors)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mlff.neighbors import neighbor_list
from mlff.openmm.celllist import grid_shape, neighbor_pairs, open_box, perpendicular_widths, search_range
from mlff.openmm.module import static_sizes

scripted = torch.jit.script(neighbor_pairs)


def _pairs(positions, cell, periodic, cutoff, static=False, max_candidates=1 << 20):
    pos = torch.tensor(positions)
    box = torch.tensor(cell) if periodic else open_box(pos, cutoff)[0]
    widths = perpendicular_widths(box)
    shape = grid_shape(widths, cutoff, len(positions))
    reach = search_range(widths, shape, cutoff).tolist()
    per_cell, capacity = -1, -1
    if static:
        shape, reach, per_cell, capacity, _ = static_sizes(pos, box if periodic else None, cutoff)
    ei, images, frac, valid, overflow = scripted(pos, box, cutoff, shape, reach, per_cell, capacity, max_candidates)
    assert not bool(overflow)
    ei, images = ei[:, valid], images[valid]
    vec = (frac[ei[1]] - frac[ei[0]] + images) @ box if periodic else pos[ei[1]] - pos[ei[0]]
    return {(i, j, tuple(np.round(v, 8))) for i, j, v in zip(ei[0].tolist(), ei[1].tolist(), vec.numpy())}


def _reference(positions, cell, periodic, cutoff):
    ei, shifts = neighbor_list(positions, cell, periodic, cutoff)
    vec = positions[ei[1]] - positions[ei[0]] + shifts @ np.asarray(cell)
    return {(i, j, tuple(np.round(v, 8))) for i, j, v in zip(ei[0].tolist(), ei[1].tolist(), vec)}


CASES = {
    "open": (np.zeros((3, 3)), False, (-3.0, 9.0), 60),
    "cubic-unwrapped": (np.eye(3) * 12.0, True, (-30.0, 40.0), 150),
    "triclinic": (np.array([[10.0, 0, 0], [3.0, 9.0, 0], [-2.0, 4.0, 9.5]]), True, (-5.0, 15.0), 150),
    "smaller-than-cutoff": (np.array([[3.6, 0, 0], [1.0, 3.4, 0], [0.5, 1.2, 3.5]]), True, (0.0, 3.0), 4),
    "thin-slab": (np.array([[25.0, 0, 0], [0, 25.0, 0], [0, 0, 5.0]]), True, (0.0, 25.0), 120),
}


@pytest.mark.parametrize("static", [False, True], ids=["dynamic", "static"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_pairs_equal_vesin(case, static):
    cell, periodic, (lo, hi), n = CASES[case]
    positions = np.random.default_rng(len(case)).uniform(lo, hi, (n, 3))
    got = _pairs(positions, cell, periodic, 4.0, static)
    ref = _reference(positions, cell, periodic, 4.0)
    assert len(ref) > 0
    assert got == ref


def test_chunked_search_on_a_crystal():
    """Many chunks (tiny candidate budget) still give every pair exactly once."""
    from ase.build import bulk

    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(5)
    atoms.rattle(0.05, seed=0)
    cell = np.asarray(atoms.cell)
    got = _pairs(atoms.positions, cell, True, 5.0, max_candidates=5000)
    assert got == _reference(atoms.positions, cell, True, 5.0)


def test_grid_follows_atom_count_not_volume():
    """A few atoms in a huge box must not allocate a huge cell grid."""
    widths = torch.tensor([1000.0, 1000.0, 1000.0], dtype=torch.float64)
    shape = grid_shape(widths, 4.0, 10)
    assert shape[0] * shape[1] * shape[2] <= 2 * 10 + 27


def test_memory_stays_linear_at_10k_atoms():
    """~11k atoms: the search's extra peak memory is far below one N x N float64 matrix."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(
        """
        import resource, numpy as np, torch
        from ase.build import bulk
        from mlff.neighbors import neighbor_list
        from mlff.openmm.celllist import grid_shape, neighbor_pairs, perpendicular_widths, search_range
        atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(14)
        atoms.rattle(0.05, seed=0)
        pos, box = torch.tensor(atoms.positions), torch.tensor(np.asarray(atoms.cell))
        w = perpendicular_widths(box)
        shape = grid_shape(w, 5.0, len(atoms))
        reach = search_range(w, shape, 5.0).tolist()
        nl = torch.jit.script(neighbor_pairs)
        nl(pos[:100], box, 5.0, shape, reach)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # a high-water mark
        pairs = nl(pos, box, 5.0, shape, reach)[0].shape[1]
        extra = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
        ref = neighbor_list(atoms.positions, np.asarray(atoms.cell), True, 5.0)[0].shape[1]
        print(len(atoms), pairs, ref, extra)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    n, pairs, ref, extra_mib = proc.stdout.split()
    assert int(n) == 10976 and int(pairs) == int(ref)
    n_squared_mib = int(n) ** 2 * 8 / 2**20  # 919 MiB
    assert float(extra_mib) < 0.4 * n_squared_mib, extra_mib
