"""Learning-curve and parity plots (PNG, headless)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Dict, List

import torch


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # no display on training machines
    import matplotlib.pyplot as plt

    return plt


def learning_curve(csv_path: Path, out: Path) -> None:
    plt = _pyplot()
    rows = list(csv.DictReader(open(csv_path, newline="")))
    def col(name: str) -> List[float]:
        return [float(r[name]) if r.get(name) not in (None, "") else float("nan") for r in rows]
    steps = col("step")
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    axes[0].semilogy(steps, col("train_loss"), label="train loss")
    axes[0].semilogy(steps, col("val_loss"), label="validation loss")
    axes[0].set_xlabel("step")
    axes[0].legend()
    axes[1].semilogy(steps, col("force_rmse"), label="force RMSE (eV/Å)")
    axes[1].semilogy(steps, col("energy_rmse_per_atom"), label="energy RMSE (eV/atom)")
    axes[1].set_xlabel("step")
    axes[1].legend()
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def parity_plot(pairs: Dict[str, List[torch.Tensor]], out: Path) -> None:
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.5))
    for ax, key, label in ((axes[0], "e", "energy per atom (eV)"), (axes[1], "f", "force component (eV/Å)")):
        ref = torch.cat(pairs[f"{key}_ref"]).numpy() if pairs[f"{key}_ref"] else None
        if ref is None or not ref.size:  # e.g. a validation set of energies only
            ax.set_title(f"no {label.split(' (')[0]} labels")
            continue
        pred = torch.cat(pairs[f"{key}_pred"]).numpy()
        ax.scatter(ref, pred, s=3, alpha=0.5)
        lo, hi = float(min(ref.min(), pred.min())), float(max(ref.max(), pred.max()))
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
        ax.set_xlabel(f"teacher {label}")
        ax.set_ylabel(f"student {label}")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
