"""Selection: which explored frames the teacher labels.

Trust window (DP-GEN): a frame whose uncertainty ``u`` (the committee's largest
per-atom force deviation, or the largest ACE extrapolation grade γ) is below ``lo`` is
*accurate* (the model knows it), in ``[lo, hi)`` a *candidate* (uncertain but physical:
worth a teacher call), from ``hi`` on *failed* (so far outside the data that the MD
itself is suspect: such frames are unphysical and are not labelled). The uncertain
fraction that stops the loop counts candidates and failed frames: a model whose runs
all fail is not converged.

Cap and de-duplication: consecutive MD frames are alike, so when there are more
candidates than ``max_per_iteration`` the cap is filled by farthest-point sampling,
starting from the most uncertain candidate, on a cheap structural descriptor: per
element pair, a Gaussian-smeared histogram of interatomic distances up to the model's
cutoff, per atom. It is invariant to translation, rotation and atom order, sees what
the teacher labels add (thermal disorder, compression, local environments) and costs
one neighbour list per frame. Sorted per-atom deviations were rejected as descriptor:
they describe the model's confusion, not the structure, so two copies of one geometry
at different committee states would look different and two different geometries with
similar confusion alike. SOAP would be sharper but needs an extra package and far more
time per frame than the MD step that made it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np
from ase import Atoms

from .config import SelectConfig
from .explore import Frames

#: descriptor: histogram bins between 0 and the cutoff, and their Gaussian width (Å)
DESCRIPTOR_BINS = 48
DESCRIPTOR_WIDTH = 0.1


@dataclass
class Selection:
    """Counts of the trust window and the chosen frames (indices into the frames, in frame order)."""

    n_explored: int
    n_accurate: int
    n_candidates: int
    n_failed: int
    uncertain_fraction: float
    selected: List[int] = field(default_factory=list)
    selected_ids: List[str] = field(default_factory=list)
    window: Tuple[float, float] = (0.0, 0.0)
    measure: str = "force_deviation"

    def to_dict(self) -> Dict[str, Any]:
        d = asdict(self)
        d["window"] = list(self.window)
        return d

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "Selection":
        d = dict(d)
        d["window"] = tuple(d.get("window", (0.0, 0.0)))
        return cls(**d)


def radial_descriptor(atoms: Atoms, elements: Sequence[int], cutoff: float,
                      bins: int = DESCRIPTOR_BINS, width: float = DESCRIPTOR_WIDTH) -> np.ndarray:
    """Per element pair (i <= j), the smeared distance histogram up to ``cutoff``, divided by the atom count."""
    from ase.neighborlist import neighbor_list

    i, j, d = neighbor_list("ijd", atoms, cutoff)
    z = atoms.numbers
    index = {int(e): k for k, e in enumerate(elements)}
    n_el = len(elements)
    pair_of = {}
    p = 0
    for a in range(n_el):
        for b in range(a, n_el):
            pair_of[(a, b)] = pair_of[(b, a)] = p
            p += 1
    centres = np.linspace(0.0, cutoff, bins)
    out = np.zeros((p, bins))
    if len(d):
        ei = np.array([index[int(v)] for v in z[i]])
        ej = np.array([index[int(v)] for v in z[j]])
        pairs = np.array([pair_of[(a, b)] for a, b in zip(ei, ej)])
        weights = np.exp(-0.5 * ((d[:, None] - centres[None, :]) / width) ** 2)  # [pairs, bins]
        np.add.at(out, pairs, weights)
    return (out / max(len(atoms), 1)).ravel()


def farthest_point(descriptors: np.ndarray, start: int, k: int, min_distance: float = 0.0) -> List[int]:
    """Greedy farthest-point sampling of ``k`` rows, from row ``start``; ties go to the lower index.

    Stops early when the farthest remaining row is closer than ``min_distance`` to a chosen one.
    """
    n = len(descriptors)
    if n == 0 or k <= 0:
        return []
    chosen = [start]
    dist = np.linalg.norm(descriptors - descriptors[start], axis=1)
    while len(chosen) < min(k, n):
        dist[chosen] = -np.inf
        nxt = int(np.argmax(dist))  # argmax returns the first of equal maxima: deterministic
        if dist[nxt] < min_distance or not np.isfinite(dist[nxt]):
            break
        chosen.append(nxt)
        dist = np.minimum(dist, np.linalg.norm(descriptors - descriptors[nxt], axis=1))
    return chosen


def select_frames(frames: Frames, cfg: SelectConfig, ace: bool = False, cutoff: float = 5.0) -> Selection:
    """Apply the trust window, then the cap (farthest-point or most uncertain) to ``frames``."""
    lo, hi = (cfg.gamma_lo, cfg.gamma_hi) if ace else (cfg.lo, cfg.hi)
    if lo is None or hi is None:
        raise ValueError("the trust window needs both bounds (select.lo/hi, or gamma_lo/gamma_hi for ACE)")
    u = np.asarray(frames.deviation, dtype=np.float64)
    accurate = int(np.sum(u < lo))
    in_window = np.flatnonzero((u >= lo) & (u < hi))
    failed = int(np.sum(u >= hi))
    n = len(u)
    chosen: List[int]
    if len(in_window) <= cfg.max_per_iteration and cfg.dedup_min_distance <= 0:
        chosen = [int(v) for v in in_window]
    elif cfg.dedup == "none":
        # the most uncertain ones; a stable sort keeps frame order among equal values
        order = np.argsort(-u[in_window], kind="stable")
        chosen = [int(in_window[k]) for k in order[: cfg.max_per_iteration]]
    else:
        elements = sorted({int(z) for k in in_window for z in frames.numbers[k]})
        desc = np.array([radial_descriptor(frames.atoms(int(k)), elements, cutoff) for k in in_window])
        start = int(np.argsort(-u[in_window], kind="stable")[0])
        picked = farthest_point(desc, start, cfg.max_per_iteration, cfg.dedup_min_distance)
        chosen = [int(in_window[k]) for k in picked]
    chosen.sort()  # labelled (and stored) in frame order
    return Selection(
        n_explored=n, n_accurate=accurate, n_candidates=int(len(in_window)), n_failed=failed,
        uncertain_fraction=float((len(in_window) + failed) / n) if n else 1.0,
        selected=chosen, selected_ids=[frames.ids[k] for k in chosen], window=(float(lo), float(hi)),
        measure="extrapolation_grade" if ace else "force_deviation",
    )
