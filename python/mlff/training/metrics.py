"""Predictions through the contract, the loss, and error metrics."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional

import torch

from ..contract import evaluate
from ..units import stress_from_virial
from .batching import Batch
from .config import LossConfig

METRIC_NAMES = (
    "energy_mae_per_atom",
    "energy_rmse_per_atom",
    "force_mae",
    "force_rmse",
    "stress_rmse",
)


def predict(model: torch.nn.Module, b: Batch, need_stress: bool, create_graph: bool) -> Dict[str, torch.Tensor]:
    """Energy per structure, forces and (optionally) stress, via mlff.contract.evaluate.

    Forces come from the same edge-gradient rule every engine uses, so the model is
    trained on exactly the forces it will be run with.
    """
    evs = [ev.detach().requires_grad_(True) for ev in b.edge_vectors]
    n = int(b.numbers.shape[0])
    out = evaluate(
        model, b.numbers, b.edge_indices, evs, n, b.system(), compute_virial=need_stress, create_graph=create_graph
    )
    ev = evs[0]
    energy = torch.zeros(b.n_structures, dtype=out["energies"].dtype, device=ev.device).index_add(
        0, b.batch, out["energies"]
    )
    result = {"energy": energy, "forces": out["forces"]}
    if need_stress:
        virial = torch.zeros((b.n_structures, 3, 3), dtype=ev.dtype, device=ev.device).index_add(
            0, b.batch, out["atom_virial"]
        )
        result["stress"] = stress_from_virial(virial, b.volume.view(-1, 1, 1))
    return result


def loss_terms(pred: Dict[str, torch.Tensor], b: Batch) -> Dict[str, torch.Tensor]:
    n = b.n_atoms.to(pred["energy"].dtype)
    terms = {
        "energy": (((pred["energy"] - b.energy) / n) ** 2).mean(),
        "forces": ((pred["forces"] - b.forces) ** 2).mean(),
    }
    if "stress" in pred and bool(b.has_stress.any()):
        diff = (pred["stress"] - b.stress)[b.has_stress]
        terms["stress"] = (diff**2).mean()
    return terms


def weighted(terms: Dict[str, torch.Tensor], w: LossConfig) -> torch.Tensor:
    total = w.energy_weight * terms["energy"] + w.forces_weight * terms["forces"]
    if "stress" in terms and w.stress_weight > 0:
        total = total + w.stress_weight * terms["stress"]
    return total


@dataclass
class ErrorAccumulator:
    """Sums of errors over a data set (all-reducible: plain tensors of sums and counts)."""

    sums: torch.Tensor = field(default_factory=lambda: torch.zeros(8, dtype=torch.float64))
    keep: bool = False
    pairs: Dict[str, List[torch.Tensor]] = field(default_factory=lambda: {"e_ref": [], "e_pred": [], "f_ref": [], "f_pred": []})

    def add(self, pred: Dict[str, torch.Tensor], b: Batch) -> None:
        n = b.n_atoms.double()
        de = (pred["energy"].detach().double() - b.energy.double()) / n
        df = pred["forces"].detach().double() - b.forces.double()
        s = self.sums
        s[0] += de.abs().sum()
        s[1] += (de**2).sum()
        s[2] += de.numel()
        s[3] += df.abs().sum()
        s[4] += (df**2).sum()
        s[5] += df.numel()
        if "stress" in pred and bool(b.has_stress.any()):
            ds = (pred["stress"].detach().double() - b.stress.double())[b.has_stress]
            s[6] += (ds**2).sum()
            s[7] += ds.numel()
        if self.keep:
            self.pairs["e_ref"].append((b.energy.double() / n).cpu())
            self.pairs["e_pred"].append((pred["energy"].detach().double() / n).cpu())
            self.pairs["f_ref"].append(b.forces.detach().double().flatten().cpu())
            self.pairs["f_pred"].append(pred["forces"].detach().double().flatten().cpu())

    def metrics(self) -> Dict[str, Optional[float]]:
        s = self.sums.tolist()
        def safe(x: float, c: float) -> Optional[float]:
            return x / c if c > 0 else None
        e_mse, f_mse, s_mse = safe(s[1], s[2]), safe(s[4], s[5]), safe(s[6], s[7])
        return {
            "energy_mae_per_atom": safe(s[0], s[2]),
            "energy_rmse_per_atom": None if e_mse is None else e_mse**0.5,
            "force_mae": safe(s[3], s[5]),
            "force_rmse": None if f_mse is None else f_mse**0.5,
            "stress_rmse": None if s_mse is None else s_mse**0.5,
            "_energy_mse": e_mse,
            "_force_mse": f_mse,
            "_stress_mse": s_mse,
        }


def validation_loss(m: Dict[str, Optional[float]], w: LossConfig) -> float:
    """The training loss's weighting applied to validation mean-squared errors."""
    total = w.energy_weight * (m["_energy_mse"] or 0.0) + w.forces_weight * (m["_force_mse"] or 0.0)
    if w.stress_weight > 0 and m["_stress_mse"] is not None:
        total += w.stress_weight * m["_stress_mse"]
    return float(total)
