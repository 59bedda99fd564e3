"""vesin-backed neighbour lists agree with ASE's reference list for every boundary kind."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, fcc111, molecule
from ase.neighborlist import primitive_neighbor_list

from mlff.neighbors import graph_from_atoms, neighbor_list


def _pairs(i, j, S):
    return sorted(zip(i.tolist(), j.tolist(), map(tuple, np.asarray(S).tolist())))


def _cases():
    slab = fcc111("Cu", size=(2, 2, 3), vacuum=None, a=3.6)
    slab.pbc = [True, True, False]
    slab.cell[2] = [0, 0, 0]  # open direction without a cell vector
    slab2 = fcc111("Cu", size=(3, 3, 2), vacuum=6.0)  # pbc (T, T, F) with a vacuum cell
    wire = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((1, 1, 3))
    wire.pbc = [False, False, True]
    tric = Atoms("Cu5", scaled_positions=np.random.default_rng(0).random((5, 3)),
                 cell=[[4.1, 0, 0], [1.9, 3.7, 0], [-1.2, 0.8, 4.4]], pbc=True)
    return {
        "molecule": molecule("C6H6"),
        "cubic": bulk("Cu", "fcc", a=3.6, cubic=True).repeat(2),
        "triclinic": tric,
        "tiny_cell": bulk("Cu", "fcc", a=3.6),  # 1 atom, cell << 2 cutoff
        "slab_no_cell": slab,
        "slab_vacuum": slab2,
        "wire": wire,
    }


@pytest.mark.parametrize("name", list(_cases()))
def test_matches_ase_primitive_list(name):
    atoms = _cases()[name]
    atoms.rattle(0.03, seed=1)
    cutoff = 5.0
    ei, S = neighbor_list(atoms.positions, atoms.cell[:], atoms.pbc, cutoff)
    i, j, S_ref = primitive_neighbor_list("ijS", atoms.pbc, atoms.cell[:], atoms.positions, cutoff,
                                          self_interaction=False)
    assert len(i) > 0
    assert _pairs(ei[0], ei[1], S) == _pairs(i, j, S_ref)


def test_small_cell_has_several_images_of_one_atom():
    atoms = bulk("Cu", "fcc", a=3.6)  # one atom
    g = graph_from_atoms(atoms, 5.0)
    assert g.n_atoms == 1
    assert g.edge_indices[0].shape[1] == 42  # fcc shells at 2.55, 3.6, 4.41 Å: 12 + 6 + 24
    d = g.edge_vectors()[0].norm(dim=1)
    assert float(d.max()) < 5.0 and float(d.min()) > 2.5


def test_degenerate_cell_is_refused():
    atoms = Atoms("Cu2", positions=[[0, 0, 0], [1, 1, 1]], cell=[[3, 0, 0], [6, 0, 0], [0, 0, 3]], pbc=True)
    with pytest.raises(ValueError, match="degenerate cell"):
        neighbor_list(atoms.positions, atoms.cell[:], atoms.pbc, 4.0)
