"""Predictions through the contract, the loss, and error metrics."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import torch

from ..contract import derive_from_energies
from ..units import stress_from_virial
from .batching import Batch, Presence
from .config import LossConfig

METRIC_NAMES = (
    "energy_mae_per_atom",
    "energy_rmse_per_atom",
    "force_mae",
    "force_rmse",
    "stress_rmse",
)
#: reported too when the model predicts per-atom charges
CHARGE_METRIC_NAMES = ("charge_mae", "charge_rmse")


#: the undeclared output of a shallow ensemble in training mode: each head's per-atom
#: energies ``[N, M]`` (see :class:`mlff.models.painn.PaiNN`, ``n_heads``)
HEAD_ENERGIES = "head_energies"


def _wants_named_outputs(model: torch.nn.Module) -> bool:
    """Whether the trainer needs the model's named outputs: only charges are trained on.

    Other named outputs (an ensemble's member forces, M extra backward passes) are
    skipped through the contract's ``system["outputs"] = 0``.
    """
    info = getattr(model, "contract_info", None)
    if info is None:
        return True
    names = [o["name"] if isinstance(o, dict) else o.name for o in info().get("outputs", [])]
    return "charges" in names or not names


def _structure_sums(out: Dict[str, torch.Tensor], b: Batch, need_stress: bool) -> Dict[str, torch.Tensor]:
    """Energy per structure, forces and stress from :func:`derive_from_energies`'s result."""
    energy = torch.zeros(b.n_structures, dtype=out["energies"].dtype, device=out["energies"].device).index_add(
        0, b.batch, out["energies"]
    )
    result = {"energy": energy, "forces": out["forces"]}
    if need_stress:
        virial = torch.zeros((b.n_structures, 3, 3), dtype=energy.dtype, device=energy.device).index_add(
            0, b.batch, out["atom_virial"]
        )
        result["stress"] = stress_from_virial(virial, b.volume.view(-1, 1, 1))
    return result


def predict(model: torch.nn.Module, b: Batch, need_stress: bool, create_graph: bool) -> Dict[str, torch.Tensor]:
    """Energy per structure, forces and (optionally) stress, by the contract's rule.

    Forces come from the same edge-gradient rule every engine uses
    (:func:`mlff.contract.derive_from_energies`, as :func:`mlff.contract.evaluate`
    applies it), so the model is trained on exactly the forces it will be run with.

    A shallow ensemble in training mode also returns its heads' energies: then every
    head's energy, forces and stress are derived separately (``heads``: ``{"energy":
    [H, B], "forces": [H, N, 3], "stress": [H, B, 3, 3]}`` for :func:`loss_terms`), and
    the prediction itself is their mean, which equals that of the mean energy (the rule
    is linear) and saves one backward pass.
    """
    evs = [ev.detach().requires_grad_(True) for ev in b.edge_vectors]
    n = int(b.numbers.shape[0])
    system = b.system()
    for key in ("positions", "cell"):  # geometry inputs (Ewald): gradients by the same rule
        if key in system:
            system[key] = system[key].detach().to(evs[0].dtype).requires_grad_(True)
    if not _wants_named_outputs(model):
        system["outputs"] = torch.zeros((), dtype=torch.long, device=b.numbers.device)
    out = model(b.numbers, b.edge_indices, evs, n, system)
    geometry = (system.get("positions"), system.get("cell"), system.get("batch"))
    heads = out.get(HEAD_ENERGIES)
    if heads is None:
        derived = derive_from_energies(out["energies"], b.edge_indices, evs, n, need_stress, create_graph, *geometry)
        result = _structure_sums(derived, b, need_stress)
    else:
        # create_graph for every head: the graph must outlive the first head's backward
        per_head = [
            _structure_sums(
                derive_from_energies(heads[:, k], b.edge_indices, evs, n, need_stress, True, *geometry),
                b, need_stress,
            )
            for k in range(heads.shape[1])
        ]
        stacked = {key: torch.stack([h[key] for h in per_head]) for key in per_head[0]}
        result = {key: value.mean(dim=0) for key, value in stacked.items()}
        result["heads"] = stacked  # type: ignore[assignment]
    if "charges" in out:
        result["charges"] = out["charges"]
    return result


def _mean_square(diff: torch.Tensor, mask: Optional[torch.Tensor], present: Presence) -> torch.Tensor:
    """Mean of ``diff**2`` over the entries ``mask`` selects (rows of ``diff``).

    ``present`` ("all" | "some" | "none", known on the CPU) picks the formula: with every
    entry present it is the plain mean (bit for bit what training computed before labels
    were optional); with none it is a zero that stays in the graph, so a batch without
    one label still back-propagates the others and never gives NaN.
    """
    if present == "all" or mask is None:
        return (diff**2).mean()
    if present == "none":
        return diff.sum() * 0.0
    return (diff[mask] ** 2).mean()


def _label_terms(pred: Dict[str, torch.Tensor], b: Batch) -> Dict[str, torch.Tensor]:
    """Energy, forces and stress mean squared errors of one prediction."""
    n = b.n_atoms.to(pred["energy"].dtype)
    terms = {
        "energy": _mean_square((pred["energy"] - b.energy) / n, b.has_energy, b.present.get("energy", "all")),
        "forces": _mean_square(pred["forces"] - b.forces, b.has_forces, b.present.get("forces", "all")),
    }
    if "stress" in pred and bool(b.has_stress.any()):
        diff = (pred["stress"] - b.stress)[b.has_stress]
        terms["stress"] = (diff**2).mean()
    return terms


def loss_terms(pred: Dict[str, torch.Tensor], b: Batch) -> Dict[str, torch.Tensor]:
    """Mean squared errors of the labels each structure has (see :func:`_mean_square`).

    A shallow ensemble (``pred["heads"]``, see :func:`predict`) is trained on the mean
    over heads of each head's own energy/forces/stress errors, not on the error of the
    heads' mean. Why: the mean's loss constrains only the average, so the heads could
    compensate one another (one high, one low) with no cost, and their spread would
    reflect that arbitrary split rather than how well the data pin each head down;
    with each head fitted to the labels on its own, the heads agree where data constrain
    them and disagree (each its own random init) where they do not, which is what
    makes their spread an uncertainty. The metrics stay those of the mean prediction.
    """
    heads = pred.get("heads")
    if heads is None:
        terms = _label_terms(pred, b)
    else:
        count = int(heads["energy"].shape[0])  # type: ignore[union-attr]
        per_head = [_label_terms({key: value[k] for key, value in heads.items()}, b)  # type: ignore[union-attr]
                    for k in range(count)]
        terms = {key: torch.stack([t[key] for t in per_head]).mean() for key in per_head[0]}
    if "charges" in pred and b.charges is not None and b.present.get("charges", "none") != "none":
        terms["charges"] = _mean_square(pred["charges"] - b.charges, b.has_charges, b.present["charges"])
    return terms


def weighted(terms: Dict[str, torch.Tensor], w: LossConfig) -> torch.Tensor:
    total = w.energy_weight * terms["energy"] + w.forces_weight * terms["forces"]
    if "stress" in terms and w.stress_weight > 0:
        total = total + w.stress_weight * terms["stress"]
    if "charges" in terms and w.charges_weight > 0:
        total = total + w.charges_weight * terms["charges"]
    return total


#: columns of an accumulator row: sums and counts of each error
_E_ABS, _E_SQ, _E_N, _F_ABS, _F_SQ, _F_N, _S_SQ, _S_N, _Q_ABS, _Q_SQ, _Q_N, _STRUCTURES = range(12)
N_SUMS = 12


def _select(x: torch.Tensor, mask: Optional[torch.Tensor], present: Presence) -> torch.Tensor:
    return x if present == "all" or mask is None else x[mask]


@dataclass
class ErrorAccumulator:
    """Sums of errors over a data set, one row per fidelity (all-reducible: one tensor of
    sums and counts)."""

    n_fidelities: int = 1
    keep: bool = False
    sums: torch.Tensor = field(init=False)
    pairs: Dict[str, List[torch.Tensor]] = field(
        default_factory=lambda: {"e_ref": [], "e_pred": [], "f_ref": [], "f_pred": []}
    )

    def __post_init__(self) -> None:
        self.sums = torch.zeros((max(1, self.n_fidelities), N_SUMS), dtype=torch.float64)

    def add(self, pred: Dict[str, torch.Tensor], b: Batch) -> None:
        if len(b.fidelities) == 1:
            self._add(pred, b, b.fidelities[0], None)
        else:  # a mixed batch: each fidelity's structures into its own row
            for f in b.fidelities:
                self._add(pred, b, f, b.fidelity == f)

    def _add(self, pred: Dict[str, torch.Tensor], b: Batch, f: int, structures: Optional[torch.Tensor]) -> None:
        """Errors of the structures ``structures`` selects (None: all) into row ``f``."""
        def pick(x: torch.Tensor, label: str, mask: Optional[torch.Tensor], per_atom: bool) -> torch.Tensor:
            present = b.present.get(label, "all")
            if structures is not None:
                chosen = structures[b.batch] if per_atom else structures
                mask = chosen if mask is None or present == "all" else mask & chosen
                present = "some"
            return _select(x, mask, present)

        n = b.n_atoms.double()
        s = self.sums[f]
        s[_STRUCTURES] += b.n_structures if structures is None else int(structures.sum())
        de = pick((pred["energy"].detach().double() - b.energy.double()) / n, "energy", b.has_energy, False)
        s[_E_ABS] += de.abs().sum()
        s[_E_SQ] += (de**2).sum()
        s[_E_N] += de.numel()
        df = pick(pred["forces"].detach().double() - b.forces.double(), "forces", b.has_forces, True)
        s[_F_ABS] += df.abs().sum()
        s[_F_SQ] += (df**2).sum()
        s[_F_N] += df.numel()
        has_stress = b.has_stress if structures is None else b.has_stress & structures
        if "stress" in pred and bool(has_stress.any()):
            ds = (pred["stress"].detach().double() - b.stress.double())[has_stress]
            s[_S_SQ] += (ds**2).sum()
            s[_S_N] += ds.numel()
        if "charges" in pred and b.charges is not None and b.present.get("charges", "none") != "none":
            dq = pick(pred["charges"].detach().double() - b.charges.double(), "charges", b.has_charges, True)
            s[_Q_ABS] += dq.abs().sum()
            s[_Q_SQ] += (dq**2).sum()
            s[_Q_N] += dq.numel()
        if self.keep:
            self.pairs["e_ref"].append(pick(b.energy.double() / n, "energy", b.has_energy, False).cpu())
            self.pairs["e_pred"].append(pick(pred["energy"].detach().double() / n, "energy", b.has_energy, False).cpu())
            self.pairs["f_ref"].append(pick(b.forces.detach().double(), "forces", b.has_forces, True).flatten().cpu())
            self.pairs["f_pred"].append(
                pick(pred["forces"].detach().double(), "forces", b.has_forces, True).flatten().cpu())

    def metrics(self) -> Dict[str, Optional[float]]:
        """Errors over every fidelity together."""
        return _metrics(self.sums.sum(0).tolist())

    def by_fidelity(self) -> List[Dict[str, Optional[float]]]:
        """Errors of each fidelity (row ``f``: fidelity index ``f``)."""
        return [_metrics(row) for row in self.sums.tolist()]


def _metrics(s: Sequence[float]) -> Dict[str, Optional[float]]:
    def safe(x: float, c: float) -> Optional[float]:
        return x / c if c > 0 else None

    def root(x: Optional[float]) -> Optional[float]:
        return None if x is None else x**0.5

    e_mse, f_mse, s_mse, q_mse = (safe(s[_E_SQ], s[_E_N]), safe(s[_F_SQ], s[_F_N]), safe(s[_S_SQ], s[_S_N]),
                                  safe(s[_Q_SQ], s[_Q_N]))
    return {
        "energy_mae_per_atom": safe(s[_E_ABS], s[_E_N]),
        "energy_rmse_per_atom": root(e_mse),
        "force_mae": safe(s[_F_ABS], s[_F_N]),
        "force_rmse": root(f_mse),
        "stress_rmse": root(s_mse),
        "charge_mae": safe(s[_Q_ABS], s[_Q_N]),
        "charge_rmse": root(q_mse),
        "_energy_mse": e_mse,
        "_force_mse": f_mse,
        "_stress_mse": s_mse,
        "_charge_mse": q_mse,
        "_structures": s[_STRUCTURES],
    }


def validation_loss(m: Dict[str, Optional[float]], w: LossConfig) -> float:
    """The training loss's weighting applied to validation mean-squared errors."""
    total = w.energy_weight * (m["_energy_mse"] or 0.0) + w.forces_weight * (m["_force_mse"] or 0.0)
    if w.stress_weight > 0 and m["_stress_mse"] is not None:
        total += w.stress_weight * m["_stress_mse"]
    if w.charges_weight > 0 and m.get("_charge_mse") is not None:
        total += w.charges_weight * m["_charge_mse"]
    return float(total)


def fidelity_validation_loss(
    by_fidelity: Sequence[Dict[str, Optional[float]]], weights: Sequence[float], w: LossConfig
) -> float:
    """sum_f weight_f x the validation loss of fidelity f (fidelities without validation data
    left out): the number early stopping and the best checkpoints follow."""
    return float(sum(wf * validation_loss(m, w) for m, wf in zip(by_fidelity, weights) if m["_structures"]))
