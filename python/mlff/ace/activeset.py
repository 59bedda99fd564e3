"""Active sets and extrapolation grades for B-basis ACE potentials (pacemaker's γ).

An atom's extrapolation grade is γ = max_k |(x A⁻¹)_k|, where x is the atom's vector
(its B-projections, or for the non-linear grade dF/dρ_p · B-projections, see
``native/ace_grade.h``) and A is the *active set*: the r atomic environments of the
training data, per element, whose r×r matrix of vectors has (locally) maximal volume. γ ≤ 1
inside the span of the training data, > 1 outside (pacemaker: > ~2 extrapolation, > ~10
unreliable). This module selects A by MaxVol and reads and writes the ``.asi`` file
(numpy ``.npz``, one A⁻¹ per element symbol) that pyace, pacemaker, ML-PACE and mlff's
engines read.

Only numpy is needed to build an active set from given vectors; computing the vectors
of structures needs mlff's native ACE core (``mlff.ace._ace``). pyace is never used.
"""

from __future__ import annotations

import io
import os
import zipfile
from typing import TYPE_CHECKING, Any, Dict, Iterable, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
from ..atomic import atomic_write

if TYPE_CHECKING:  # pragma: no cover
    from ase import Atoms

# A B-basis potential: a path to pacemaker's .yaml, or an already loaded mlff.ace._ace.BBasis.
PotentialLike = Union[str, "os.PathLike[str]", Any]

GAMMA_TOLERANCE = 1.01  # pyace's pace_activeset defaults
MAXVOL_ITERS = 300
# pyace's regularisation of projections that never vary over the data (see _regularise)
_ZERO_VARIANCE_EPS = 1e-16


class ActiveSetError(ValueError):
    """Projections that cannot give an active set, or a malformed .asi file."""


# ---------------------------------------------------------------------------------------
# MaxVol
# ---------------------------------------------------------------------------------------


def _initial_rows(a: np.ndarray) -> np.ndarray:
    """r rows of the n×r matrix with a non-singular block: the pivots of Gaussian
    elimination with partial (row) pivoting, a good start for MaxVol."""
    n, r = a.shape
    work = np.array(a, dtype=np.float64, copy=True)
    used = np.zeros(n, dtype=bool)
    rows = np.empty(r, dtype=np.int64)
    for j in range(r):
        col = np.abs(work[:, j])
        col[used] = -1.0
        i = int(np.argmax(col))
        if not col[i] > 0.0:
            raise ActiveSetError(
                f"the vectors span only {j} of {r} dimensions: more (and more diverse) atomic "
                "environments are needed for an active set"
            )
        rows[j] = i
        used[i] = True
        if j + 1 < r:
            factor = work[:, j] / work[i, j]
            work[:, j + 1 :] -= np.outer(factor, work[i, j + 1 :])
    return rows


def maxvol(
    a: np.ndarray, tol: float = GAMMA_TOLERANCE, max_iters: int = MAXVOL_ITERS
) -> Tuple[np.ndarray, np.ndarray]:
    """Rows of an n×r matrix (n ≥ r) whose r×r block has locally maximal volume.

    Goreinov–Tyrtyshnikov's MaxVol: start from the pivots of row-pivoted elimination,
    then, while some coefficient of ``B = a @ inv(a[rows])`` exceeds ``tol`` in magnitude,
    swap the row with the largest one into the set (each swap multiplies the volume by
    that coefficient). Returns ``(rows, B)``; ``|B| ≤ tol`` unless ``max_iters`` ran out.
    """
    a = np.asarray(a, dtype=np.float64)
    if a.ndim != 2:
        raise ActiveSetError(f"expected a 2-D matrix of vectors, got shape {a.shape}")
    n, r = a.shape
    if n < r:
        raise ActiveSetError(
            f"{n} atomic environments for vectors of length {r}: an active set needs at least "
            f"{r} (the system is under-determined)"
        )
    if not tol >= 1.0:
        raise ActiveSetError(f"the MaxVol tolerance must be >= 1, got {tol}")
    rows = _initial_rows(a)
    b = np.linalg.solve(a[rows].T, a.T).T  # a @ inv(a[rows])
    for _ in range(int(max_iters)):
        flat = int(np.argmax(np.abs(b)))
        i, j = divmod(flat, r)
        pivot = b[i, j]
        if abs(pivot) <= tol:
            break
        # Replace row j of the set by row i; rank-one update of B (Sherman–Morrison).
        row = b[i].copy()
        row[j] -= 1.0
        b -= np.outer(b[:, j] / pivot, row)
        rows[j] = i
    return rows, b


# ---------------------------------------------------------------------------------------
# Active sets from vectors
# ---------------------------------------------------------------------------------------


def _regularise(x: np.ndarray) -> np.ndarray:
    """Vectors whose component never varies over the data (e.g. a B function of an
    element pair absent from it) make the active set singular. Like pyace, add 1e-16 on
    the diagonal of those columns, so the set stays invertible and such a function, once
    it does appear, gives a huge γ (it is an extrapolation)."""
    x = np.array(x, dtype=np.float64, copy=True)
    zero = np.flatnonzero(np.std(x, axis=0) == 0)
    if len(zero):
        k = min(len(zero), len(x))
        x[np.arange(k), zero[:k]] += _ZERO_VARIANCE_EPS
    return x


def select_active_set(
    vectors: Mapping[str, np.ndarray],
    gamma_tolerance: float = GAMMA_TOLERANCE,
    max_iters: int = MAXVOL_ITERS,
) -> Dict[str, np.ndarray]:
    """Indices (into each element's rows of ``vectors``) of the atoms in the active set."""
    out = {}
    for el, x in vectors.items():
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2:
            raise ActiveSetError(f"{el}: expected a 2-D array [atoms, vector], got shape {x.shape}")
        try:
            out[el], _ = maxvol(_regularise(x), tol=gamma_tolerance, max_iters=max_iters)
        except ActiveSetError as exc:
            raise ActiveSetError(f"{el}: {exc}") from None
    return out


def build_active_set(
    vectors: Mapping[str, np.ndarray],
    gamma_tolerance: float = GAMMA_TOLERANCE,
    max_iters: int = MAXVOL_ITERS,
) -> Dict[str, np.ndarray]:
    """The inverted active set A⁻¹ of each element, as an ``.asi`` file stores it.

    ``vectors[element]`` is [atoms of that element, vector length] (B-projections for the
    linear grade; :func:`compute_vectors` gives them). Defaults are pyace's.
    """
    rows = select_active_set(vectors, gamma_tolerance, max_iters)
    out = {}
    for el, x in vectors.items():
        a = _regularise(np.asarray(x, dtype=np.float64))[rows[el]]
        out[el] = np.linalg.pinv(a)  # square and non-singular: the inverse (pyace uses pinv)
    return out


def extrapolation_grades(vectors: np.ndarray, inverse: np.ndarray) -> np.ndarray:
    """γ of each row of ``vectors`` [atoms, r] for one element's A⁻¹ [r, r]."""
    return np.abs(np.asarray(vectors, dtype=np.float64) @ np.asarray(inverse, dtype=np.float64)).max(axis=1)


# ---------------------------------------------------------------------------------------
# .asi files
# ---------------------------------------------------------------------------------------


def save_active_set(path: str | os.PathLike, inverses: Mapping[str, np.ndarray]) -> None:
    """Write an ``.asi`` as pyace does (``np.savez``, one float64 array per element)."""
    arrays = {}
    for el, a in inverses.items():
        a = np.asarray(a, dtype=np.float64)
        if a.ndim != 2 or a.shape[0] != a.shape[1]:
            raise ActiveSetError(f"{el}: an inverted active set is a square matrix, got shape {a.shape}")
        arrays[str(el)] = a
    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:  # a handle: np.savez would append .npz to a path
            np.savez(f, **arrays)

    atomic_write(path, write)  # a resumable workflow never sees half a file


def load_active_set(path: str | os.PathLike) -> Dict[str, np.ndarray]:
    """Read an ``.asi`` into {element: A⁻¹}; a file that is not one raises ActiveSetError."""
    try:
        with np.load(path, allow_pickle=False) as data:
            out = {k: np.asarray(data[k], dtype=np.float64) for k in data.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise ActiveSetError(f"{os.fspath(path)}: not an active-set file (.asi = numpy .npz): {exc}") from None
    for el, a in out.items():
        if a.ndim != 2 or a.shape[0] != a.shape[1]:
            raise ActiveSetError(f"{os.fspath(path)}: the matrix of {el!r} has shape {a.shape}, expected a square one")
    return out


# ---------------------------------------------------------------------------------------
# Vectors and grades of structures (native core)
# ---------------------------------------------------------------------------------------


def _native():
    from .potential import _native as native  # the import error names the fix

    ace = native()
    if not hasattr(ace, "BBasis"):
        raise ImportError(
            "this build of mlff.ace._ace has no B-basis / extrapolation-grade support (bind_grade); rebuild mlff"
        )
    return ace


def load_bbasis(potential: PotentialLike) -> Any:
    """A B-basis potential (pacemaker's ``output_potential.yaml``) as the core's ``BBasis``;
    an already loaded one is returned as is."""
    ace = _native()
    if isinstance(potential, ace.BBasis):
        return potential
    return ace.BBasis.load(os.fspath(potential))


def _edges(atoms: "Atoms", bbasis: Any) -> Tuple[np.ndarray, int, np.ndarray, np.ndarray]:
    from ..neighbors import neighbor_list

    elements = list(bbasis.elements)
    index = {el: k for k, el in enumerate(elements)}
    symbols = atoms.get_chemical_symbols()
    missing = sorted(set(symbols) - set(index))
    if missing:
        raise ActiveSetError(f"the structure has {missing}, which the potential ({', '.join(elements)}) lacks")
    species = np.array([index[s] for s in symbols], dtype=np.int32)
    pos = atoms.get_positions()
    cell = np.asarray(atoms.get_cell())
    cutoff = float(bbasis.energy_model.cutoff)
    edge_index, shifts = neighbor_list(pos, cell, atoms.get_pbc(), cutoff)
    vectors = pos[edge_index[1]] - pos[edge_index[0]] + shifts.astype(np.float64) @ cell
    return species, len(atoms), edge_index, vectors


def compute_vectors(
    potential: PotentialLike, structures: Iterable["Atoms"], nonlinear: bool = False
) -> Dict[str, np.ndarray]:
    """{element: [atoms, vector]} over all atoms of ``structures`` (ASE Atoms), in order:
    B-projections (``nonlinear=False``) or dF/dρ_p · B-projections."""
    ace = _native()
    bbasis = load_bbasis(potential)
    projector = ace.Projector(bbasis, nonlinear)
    rows: Dict[int, list] = {mu: [] for mu in range(len(bbasis.elements))}
    for atoms in structures:
        species, n, edge_index, vectors = _edges(atoms, bbasis)
        for mu, x in zip(species, projector.compute(species, n, edge_index, vectors)):
            rows[int(mu)].append(x)
    out = {}
    for mu, el in enumerate(bbasis.elements):
        size = projector.size(mu)
        out[el] = np.array(rows[mu], dtype=np.float64).reshape(len(rows[mu]), size)
    return out


def active_set_from_structures(
    potential: PotentialLike,
    structures: Iterable["Atoms"],
    output: Optional[str | os.PathLike] = None,
    nonlinear: bool = False,
    gamma_tolerance: float = GAMMA_TOLERANCE,
    max_iters: int = MAXVOL_ITERS,
) -> Dict[str, np.ndarray]:
    """MaxVol active set of a B-basis potential over the atoms of ``structures``; writes
    the ``.asi`` to ``output`` when given and returns {element: A⁻¹}."""
    bbasis = load_bbasis(potential)
    vectors = compute_vectors(bbasis, structures, nonlinear=nonlinear)
    empty = [el for el, x in vectors.items() if len(x) == 0]
    if empty:
        raise ActiveSetError(f"the structures contain no atom of {empty}: no active set for them")
    inverses = build_active_set(vectors, gamma_tolerance=gamma_tolerance, max_iters=max_iters)
    if output is not None:
        save_active_set(output, inverses)
    return inverses


class GradeCalculator:
    """γ per atom of ASE structures for a B-basis potential and an ``.asi`` (native core).

    ``kind``: ``"auto"`` (from the matrix sizes, pyace's rule), ``"linear"`` or
    ``"nonlinear"``. A malformed or mismatched ``.asi`` raises ``ValueError`` saying what
    is wrong.
    """

    def __init__(self, potential: PotentialLike, active_set: str | os.PathLike, kind: str = "auto") -> None:
        ace = _native()
        self.bbasis = load_bbasis(potential)
        self.active_set = ace.ActiveSet.load(os.fspath(active_set))
        self._grade = ace.GradeEvaluator(self.bbasis, self.active_set, kind)

    @property
    def nonlinear(self) -> bool:
        return bool(self._grade.nonlinear)

    def grades(self, atoms: "Atoms") -> np.ndarray:
        """γ of every atom of ``atoms`` (all of its elements must be in the potential)."""
        species, n, edge_index, vectors = _edges(atoms, self.bbasis)
        return np.asarray(self._grade.compute(species, n, edge_index, vectors))


def _npz_bytes(arrays: Mapping[str, np.ndarray]) -> bytes:
    """An in-memory .npz (for tests and tools that hand bytes to ``ActiveSet.from_bytes``)."""
    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(v) for k, v in arrays.items()})
    return buf.getvalue()


__all__: Sequence[str] = (
    "ActiveSetError",
    "GAMMA_TOLERANCE",
    "MAXVOL_ITERS",
    "GradeCalculator",
    "PotentialLike",
    "active_set_from_structures",
    "build_active_set",
    "compute_vectors",
    "extrapolation_grades",
    "load_active_set",
    "load_bbasis",
    "maxvol",
    "save_active_set",
    "select_active_set",
)
