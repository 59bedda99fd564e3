"""Radial bases and smooth cutoff functions shared by the message-passing models."""

from __future__ import annotations

import math

import torch
from torch import nn


class SineBasis(nn.Module):
    """sin(n pi r / rc) / r, n = 1..n_rbf (PaiNN's basis)."""

    def __init__(self, n_rbf: int, cutoff: float):
        super().__init__()
        self.register_buffer("freqs", torch.arange(1, n_rbf + 1, dtype=torch.float64) * math.pi / cutoff)

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        freqs = self.freqs.to(r.dtype)
        return torch.sin(r.unsqueeze(-1) * freqs) / r.unsqueeze(-1)


class CosineCutoff(nn.Module):
    """0.5 (cos(pi r / rc) + 1) inside rc, exactly 0 outside; value and slope vanish at rc."""

    def __init__(self, cutoff: float):
        super().__init__()
        self.cutoff = float(cutoff)

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        inside = r < self.cutoff
        f = 0.5 * (torch.cos(r * (math.pi / self.cutoff)) + 1.0)
        return torch.where(inside, f, torch.zeros_like(r))


class PolynomialCutoff(nn.Module):
    """Smooth polynomial envelope (p = 6): value and first two derivatives vanish at rc."""

    def __init__(self, cutoff: float, p: int = 6):
        super().__init__()
        self.cutoff = float(cutoff)
        self.p = float(p)

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        p = self.p
        x = r / self.cutoff
        f = (
            1.0
            - (p + 1.0) * (p + 2.0) / 2.0 * torch.pow(x, p)
            + p * (p + 2.0) * torch.pow(x, p + 1.0)
            - p * (p + 1.0) / 2.0 * torch.pow(x, p + 2.0)
        )
        return torch.where(x < 1.0, f, torch.zeros_like(r))
