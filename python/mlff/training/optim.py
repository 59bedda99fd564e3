"""The optimizer (AdamW with per-parameter groups), frozen parameters, and the learning-rate schedule.

Parameter groups: by default the model's own split (:meth:`MLFFModel.param_groups`:
decayed weights, and embeddings, reference energies and biases without decay).
``optim.param_groups`` rules select parameters by a regular expression on their name
(``re.search`` on ``named_parameters()`` names; the first matching rule wins) and give
them a learning-rate factor and/or their own weight decay; the other parameters keep
the default split. A rule or freeze pattern that matches no parameter is refused: a
typo would otherwise silently change nothing.

Role aliases: a pattern ``@backbone`` or ``@readout`` (in ``optim.freeze`` or a rule's
``pattern``) stands for the regexes the model kind declares for that role
(:meth:`MLFFModel.parameter_roles`), so a fine-tuning recipe reads the same for every
kind. ``optim.backbone_lr_scale: s`` is a last rule ``{pattern: "@backbone", lr_scale: s}``
(explicit rules come first and win).

Every group carries ``lr_scale``; the trainer sets ``lr = schedule(step) x lr_scale``.
"""

from __future__ import annotations

import math
import re
from typing import Any, Dict, List, Optional, Tuple

import torch

from .config import OptimConfig, ParamGroupRule, TrainConfig


#: role aliases usable where a parameter-name regex is expected
ROLE_PREFIX = "@"


def _unmatched(kind: str, pattern: str, names: List[str]) -> ValueError:
    shown = ", ".join(names[:12]) + (f" and {len(names) - 12} more" if len(names) > 12 else "")
    return ValueError(f"{kind} {pattern!r} matches no parameter of the model; its parameters are {shown}")


def resolve_pattern(model: torch.nn.Module, pattern: str) -> str:
    """``pattern`` itself, or for a role alias (``@backbone``) the kind's regexes as one."""
    if not pattern.startswith(ROLE_PREFIX):
        return pattern
    role = pattern[len(ROLE_PREFIX):]
    roles_of = getattr(model, "parameter_roles", None)
    roles: Dict[str, List[str]] = roles_of() if callable(roles_of) else {}
    if role not in roles:
        kind = getattr(model, "kind", type(model).__name__)
        known = ", ".join(ROLE_PREFIX + r for r in roles) or "none"
        raise ValueError(f"{pattern!r}: a {kind} model declares no parameter role {role!r} (its roles: {known})")
    return "|".join(f"(?:{r})" for r in roles[role])


def _matcher(model: torch.nn.Module, pattern: str):
    return re.compile(resolve_pattern(model, pattern)).search


def freeze_parameters(model: torch.nn.Module, patterns: List[str]) -> List[str]:
    """Stop training the parameters whose name matches one of ``patterns``; their names."""
    names = [name for name, _ in model.named_parameters()]
    frozen: List[str] = []
    for pattern in patterns:
        search = _matcher(model, pattern)
        hits = [name for name in names if search(name)]
        if not hits:
            raise _unmatched("optim.freeze pattern", pattern, names)
        frozen += [name for name in hits if name not in frozen]
    params = dict(model.named_parameters())
    for name in frozen:
        params[name].requires_grad_(False)
    if len(frozen) == len(names):
        raise ValueError(f"optim.freeze {patterns} freezes every parameter: nothing would be trained")
    return frozen


def param_groups(model: torch.nn.Module, o: OptimConfig) -> List[Dict[str, Any]]:
    """AdamW groups of the trainable parameters (see the module docstring)."""
    rule_list = list(o.param_groups)
    if o.backbone_lr_scale is not None:
        rule_list.append(ParamGroupRule(pattern=ROLE_PREFIX + "backbone", lr_scale=o.backbone_lr_scale))
    if not rule_list:
        return [{**group, "lr_scale": 1.0} for group in model.param_groups(o.weight_decay)]
    exempt = model.no_decay_parameters()
    named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    rules: List[Tuple[int, ParamGroupRule]] = list(enumerate(rule_list))
    searches = [_matcher(model, r.pattern) for r in rule_list]
    used = set()
    groups: Dict[Tuple[int, float, float], Dict[str, Any]] = {}
    for name, p in named:
        match: Optional[Tuple[int, ParamGroupRule]] = next(
            ((k, r) for k, r in rules if searches[k](name)), None
        )
        default_decay = 0.0 if name in exempt else o.weight_decay
        if match is None:
            key = (-1, default_decay, 1.0)
        else:
            k, rule = match
            used.add(k)
            key = (k, default_decay if rule.weight_decay is None else rule.weight_decay, rule.lr_scale)
        group = groups.setdefault(key, {"params": [], "weight_decay": key[1], "lr_scale": key[2]})
        group["params"].append(p)
    for k, rule in rules:
        if k not in used:
            where = (f"optim.param_groups[{k}].pattern" if k < len(o.param_groups)
                     else "optim.backbone_lr_scale (after the param_groups rules and freeze):")
            raise _unmatched(where, rule.pattern, [n for n, _ in named])
    return list(groups.values())


def build_optimizer(model: torch.nn.Module, o: OptimConfig) -> torch.optim.AdamW:
    return torch.optim.AdamW(param_groups(model, o), lr=o.lr, betas=tuple(o.betas))


def set_learning_rate(opt: torch.optim.Optimizer, lr: float) -> None:
    for g in opt.param_groups:
        g["lr"] = lr * g.get("lr_scale", 1.0)


def clip_gradients(params: List[torch.nn.Parameter], o: OptimConfig) -> None:
    """By value (each component), then by the norm of all: what the config asks for."""
    if o.grad_clip_value:
        torch.nn.utils.clip_grad_value_(params, o.grad_clip_value)
    if o.grad_clip:
        torch.nn.utils.clip_grad_norm_(params, o.grad_clip)


class Schedule:
    """lr = base * warmup(step) * cosine(step) * plateau_scale; state is a small dict.

    Warm-up (the first ``warmup_steps`` steps, per iteration): ``linear`` rises as
    (step + 1) / W, ``cosine`` as (1 - cos(pi (step + 1) / W)) / 2 (gentler at the start).
    """

    def __init__(self, cfg: TrainConfig):
        self.s = cfg.schedule
        self.base = cfg.optim.lr
        self.max_steps = cfg.run.max_steps
        self.plateau_scale = 1.0
        self.best = math.inf
        self.bad = 0

    def warmup(self, step: int) -> float:
        if self.s.warmup_steps <= 0 or step >= self.s.warmup_steps:
            return 1.0
        t = (step + 1) / self.s.warmup_steps
        return t if self.s.warmup == "linear" else 0.5 * (1.0 - math.cos(math.pi * t))

    def lr(self, step: int) -> float:
        f = self.warmup(step)
        if self.s.kind == "cosine":
            t = min(1.0, max(0, step - self.s.warmup_steps) / max(1, self.max_steps - self.s.warmup_steps))
            f *= self.s.min_lr_ratio + (1 - self.s.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t))
        return self.base * f * self.plateau_scale

    def on_validation(self, val_loss: float) -> None:
        if self.s.kind != "plateau":
            return
        if val_loss < self.best * (1 - 1e-4):
            self.best, self.bad = val_loss, 0
        else:
            self.bad += 1
            if self.bad > self.s.plateau_patience:
                self.plateau_scale *= self.s.plateau_factor
                self.bad = 0

    def state_dict(self) -> Dict[str, float]:
        return {"plateau_scale": self.plateau_scale, "best": self.best, "bad": self.bad}

    def load_state_dict(self, d: Dict[str, float]) -> None:
        self.plateau_scale, self.best, self.bad = d["plateau_scale"], d["best"], int(d["bad"])


__all__ = ["Schedule", "build_optimizer", "clip_gradients", "freeze_parameters", "param_groups", "resolve_pattern",
           "set_learning_rate", "ROLE_PREFIX"]
