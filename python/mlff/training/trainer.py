"""The distillation trainer: resumable after a kill, data-parallel under torchrun.

Any model kind: the trainer knows a model only through the interface of
:mod:`mlff.models.base` (built from the config's ``model:`` block, its own data-driven
initialisation, its neighbour lists, its weight-decay exemptions). Physics terms of the
config (``sae:``, ``dispersion:``, ``terms:``) are subtracted from the labels once
(:mod:`mlff.training.residual`); the network learns the rest and the export adds them back.

Multi-fidelity data: each structure's level of theory is its index in the run's
fidelities (``system["fidelity"]`` of the batch), batches hold one level each and are
drawn by fidelity weight (:mod:`mlff.training.sampler`), validation reports every level
and early stopping follows the weighted sum of the levels' losses. Labels are optional
per structure; the loss uses those a structure has (:mod:`mlff.training.metrics`).

Resumption is exact: a checkpoint holds the model, optimizer, schedule state, step,
epoch and position in the epoch, RNG states and the best-checkpoint list; the data
order of an epoch is a pure function of (seed, epoch). A run killed at any moment
restarts from its last checkpoint and then follows the uninterrupted trajectory.

Data parallelism: with ``WORLD_SIZE > 1`` (torchrun) each rank takes every
``world``-th batch and gradients are averaged with one all-reduce per step. That is
what DistributedDataParallel does; it is done by hand because force training needs
a double backward (forces are a gradient), which DDP's reducer hooks do not support.
"""

from __future__ import annotations

import copy
import csv
import io
import json
import os
import random
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from .. import __version__
from ..atomic import atomic_write
from ..checkpoint import read_checkpoint, save_checkpoint, with_terms
from ..data.store import dataset_hash
from ..data.validate import elements_of
from ..models import model_from_options
from ..models.composite import AdditiveModel
from ..physics.terms import build_term, term_spec
from .batching import Sample, build_samples, collate, list_cutoffs, pack, pack_by_fidelity, shortest_distance
from .config import TrainConfig
from .data import load_split, resolve_elements
from .metrics import (
    CHARGE_METRIC_NAMES,
    METRIC_NAMES,
    ErrorAccumulator,
    fidelity_validation_loss,
    loss_terms,
    predict,
    validation_loss,
    weighted,
)
from .optim import Schedule, build_optimizer, clip_gradients, freeze_parameters, set_learning_rate
from .residual import residual_samples
from .sae_baseline import sae_term
from .sampler import FidelitySampler
from .transfer import load_matching_weights

#: the columns of metrics.csv every run writes (charges and per-fidelity columns are added
#: when the run has them, see :meth:`Trainer.csv_fields`)
CSV_FIELDS = ("step", "epoch", "time_s", "lr", "train_loss", "val_loss") + METRIC_NAMES
#: per-fidelity columns: ``val_<fidelity>_<name>``
FIDELITY_METRIC_NAMES = ("loss", "energy_mae_per_atom", "energy_rmse_per_atom", "force_mae", "force_rmse",
                         "stress_rmse")


def _fmt(value: Any, spec: str, scale: float = 1.0) -> str:
    """A metric for a log line ("n/a" where the validation set has no such label)."""
    return "n/a" if value is None else format(scale * value, spec)


# --------------------------------------------------------------------------- distributed


class _Dist:
    def __init__(self, device: torch.device):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        if self.world > 1:
            import torch.distributed as dist

            if not dist.is_initialized():
                dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        self.main = self.rank == 0

    def all_reduce_(self, t: torch.Tensor) -> torch.Tensor:
        if self.world > 1:
            import torch.distributed as dist

            dist.all_reduce(t)
        return t

    def broadcast_(self, t: torch.Tensor) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.broadcast(t, 0)

    def average_grads(self, params: Sequence[torch.nn.Parameter]) -> None:
        if self.world == 1:
            return
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = torch.cat([g.reshape(-1) for g in grads])
        self.all_reduce_(flat)
        flat /= self.world
        k = 0
        for p, g in zip(params, grads):
            n = g.numel()
            p.grad = flat[k : k + n].view_as(p).clone()
            k += n

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()

    def close(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()


# --------------------------------------------------------------------------- trainer



def _check_geometry_data(parts: Sequence[torch.nn.Module], records: Sequence[Any]) -> None:
    """A model (or term) with an Ewald sum needs every structure periodic in x, y and z."""
    if not any(part.contract_info().get("geometry_inputs") for part in parts):
        return
    open_ = [r.id for r in records if not r.periodic]
    if open_:
        raise ValueError(
            f"the model sums Coulomb energies with Ewald (coulomb: ewald), which needs cells periodic in "
            f"x, y and z, but {len(open_)} structure(s) are not (e.g. {open_[0]!r}); train with coulomb "
            "dsf (or simple for molecules), or only on periodic structures"
        )

class Trainer:
    """Train one model as described by a :class:`TrainConfig`."""

    def __init__(self, cfg: TrainConfig, resume: bool = False, log=print,
                 on_validation: Optional[Callable[[int, Dict[str, Any]], bool]] = None):
        self.cfg = cfg
        self.resume = resume
        # called with (step, metrics row) after every validation; True stops the run there
        # (as a last step: checkpoint, best model, export). For callers that judge a run while
        # it trains, e.g. the pruner of `mlff tune`. Under torchrun every rank must answer alike.
        self.on_validation = on_validation
        self.device = torch.device(cfg.run.device)
        self.dtype = getattr(torch, cfg.run.dtype)
        self.dist = _Dist(self.device)
        self.log = log if self.dist.main else (lambda *a, **k: None)
        self.out = Path(cfg.run.output_dir)
        self.ckpt_dir = self.out / "checkpoints"
        if cfg.run.num_threads:
            torch.set_num_threads(cfg.run.num_threads)
        from ..runtime import tune_allocator

        tune_allocator()  # keeps the double-backward's large temporaries in the heap

    # ------------------------------------------------------------------ setup
    def _setup(self) -> None:
        cfg = self.cfg
        elements = resolve_elements(cfg.model.elements)
        self.fidelities: List[str] = cfg.fidelity_names
        split = load_split(cfg.data, elements, self.fidelities)
        train, valid, test, self.data_meta = split.train, split.valid, split.test, split.provenance()
        self.elements = elements or elements_of(train)
        unseen = set(elements_of(valid + test)) - set(self.elements)
        if unseen:
            raise ValueError(f"validation/test structures contain elements {sorted(unseen)} the model will not know")
        self.data_hash = dataset_hash(train)

        # the model comes first: its neighbour lists (and the terms') decide the graphs
        torch.manual_seed(cfg.run.seed)
        self.model = model_from_options(cfg.model.kind, self.elements, cfg.model.options)
        fidelities = self.fidelities or None
        self.terms = [
            build_term(spec, self.elements, where="dispersion" if spec is cfg.dispersion else f"terms[{k}]",
                       fidelities=fidelities)
            for k, spec in enumerate(cfg.term_specs)
        ]
        _check_geometry_data([self.model, *self.terms], train + valid + test)
        if cfg.sae:
            first = self.model.neighbor_lists()[0]
            term, origin = sae_term(cfg.sae, train, self.elements, self.fidelities, (first[0], float(first[1])),
                                    self.out if self.dist.main else None)
            self.terms.insert(0, term)
            self.log(f"[mlff train] {origin}")
        t0 = time.perf_counter()
        if self.terms:
            composite = AdditiveModel(self.model, self.terms)
            self.train_set, train = residual_samples(train, composite, self.dtype, self.fidelities)
            self.valid_set, _ = residual_samples(valid, composite, self.dtype, self.fidelities)
            self.test_set, _ = residual_samples(test, composite, self.dtype, self.fidelities)
        else:
            cutoffs = list_cutoffs(self.model)
            self.train_set = build_samples(train, cutoffs, self.dtype, self.fidelities)
            self.valid_set = build_samples(valid, cutoffs, self.dtype, self.fidelities)
            self.test_set = build_samples(test, cutoffs, self.dtype, self.fidelities)
        self.log(
            f"[mlff train] {len(train)} train / {len(valid)} valid / {len(test)} test structures, "
            f"elements {self.elements}, graphs built in {time.perf_counter() - t0:.1f} s"
            + (f", {self.dist.world} processes" if self.dist.world > 1 else "")
            + (f"; learning the residual after {', '.join(t.contract_info()['kind'] for t in self.terms)}"
               if self.terms else "")
        )
        if self.fidelities:
            counts = {name: sum(s.fidelity == k for s in self.train_set) for k, name in enumerate(self.fidelities)}
            self.log("[mlff train] fidelities (train structures): "
                     + ", ".join(f"{k} {name!r} ({n})" for k, (name, n) in enumerate(counts.items())))
        self.need_stress = cfg.loss.stress_weight > 0 or any(s.stress is not None for s in self.valid_set)
        outputs = [o["name"] if isinstance(o, dict) else o.name for o in self.model.contract_info().get("outputs", [])]
        self.has_charges = "charges" in outputs
        if cfg.loss.charges_weight > 0 and not self.has_charges:
            raise ValueError(f"loss.charges_weight is {cfg.loss.charges_weight}, but this {self.model.kind} model "
                             "predicts no charges (kind: aimnet2 does); set it to 0")
        if cfg.loss.charges_weight > 0 and not any(s.charges is not None for s in self.train_set):
            self.log("[mlff train] loss.charges_weight is set, but no training structure has partial charges")

        # constants from the labels in the construction dtype, then cast (the same
        # initial model whatever the training dtype); ``train`` is the residual here
        self.model.initialize_from_data(train)
        self.model.min_distance = shortest_distance(self.train_set)
        self.model = self.model.to(device=self.device, dtype=self.dtype)
        self.transfer = None
        if cfg.model.init_from:
            # trained weights (a checkpoint or an exported .pt) replace the fresh ones; their
            # energies are already centred
            self.transfer = load_matching_weights(self.model, cfg.model.init_from)
            self.log("[mlff train] " + self.transfer.describe())
        else:
            self._recenter_energies()
        if cfg.optim.freeze:
            frozen = freeze_parameters(self.model, cfg.optim.freeze)
            self.log(f"[mlff train] frozen: {', '.join(frozen)}")
        for p in self.model.parameters():
            self.dist.broadcast_(p.data)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.opt = build_optimizer(self.model, cfg.optim)
        self.schedule = Schedule(cfg)
        self.fidelity_weights = [cfg.data.fidelity_weights.get(name, 1.0) for name in self.fidelities] or [1.0]
        self.sampler = FidelitySampler(
            [s.n_atoms for s in self.train_set], [s.fidelity for s in self.train_set], cfg.run.batch_atoms,
            cfg.run.seed, dict(enumerate(self.fidelity_weights)),
        )

        self.step = 0
        self.epoch = 0
        self.batch_pos = 0  # optimizer steps already taken in this epoch
        self.best: List[Tuple[float, int, str]] = []  # (val_loss, step, file)
        self.bad_validations = 0
        self.elapsed = 0.0
        self.loss_sum, self.loss_count = 0.0, 0
        self.stopped_early = False
        self.last_metrics: Dict[str, Any] = {}

    def _recenter_energies(self, n_structures: int = 64) -> None:
        """Absorb the untrained model's mean per-atom energy error (``model.shift_energies``).

        The data-fitted constants fit the labels, but a random readout adds an offset of
        the order of its output scale per atom; removing it keeps early energy errors at
        the level of the data's spread instead of that offset. Measured here, in the
        training dtype on the training batches, so every model kind gets it.
        """
        samples = self.train_set[:n_structures]
        with torch.no_grad():
            residual, atoms = 0.0, 0
            for idx in pack(range(len(samples)), [s.n_atoms for s in samples], self.cfg.run.batch_atoms):
                b = collate([samples[k] for k in idx], self.device)
                e = self.model(b.numbers, b.edge_indices, b.edge_vectors, int(b.numbers.shape[0]), b.system())["energies"]
                if b.present["energy"] == "all":
                    residual += float(b.energy.sum() - e.sum())
                    atoms += int(b.numbers.shape[0])
                else:  # only structures with an energy label say how far off the model is
                    per_structure = torch.zeros_like(b.energy).index_add(0, b.batch, e)
                    residual += float((b.energy - per_structure)[b.has_energy].sum())
                    atoms += int(b.n_atoms[b.has_energy].sum())
            if atoms:
                self.model.shift_energies(residual / atoms)

    # ------------------------------------------------------------------ state
    def _trainer_state(self) -> Dict[str, Any]:
        return {
            "step": self.step,
            "epoch": self.epoch,
            "batch_pos": self.batch_pos,
            "optimizer": self.opt.state_dict(),
            "schedule": self.schedule.state_dict(),
            "best": list(self.best),
            "bad_validations": self.bad_validations,
            "elapsed": self.elapsed,
            "loss_sum": self.loss_sum,
            "loss_count": self.loss_count,
            "rng": {
                "torch": torch.get_rng_state(),
                "numpy": np.random.get_state(),
                "python": random.getstate(),
            },
            "config": self.cfg.model_dump(),
            "data_hash": self.data_hash,
            "world": self.dist.world,
        }

    def _provenance(self) -> Dict[str, Any]:
        prov = {
            "data_hash": self.data_hash,
            "data": ", ".join(os.path.basename(s.path) for s in self.cfg.data.train_stores),
            "teacher": self.data_meta.get("teacher", "unknown"),
            "teacher_settings": self.data_meta.get("teacher_settings", {}),
            "n_train": len(self.train_set),
            "trained_with": f"mlff {__version__}",
        }
        if self.fidelities:
            prov["fidelities"] = list(self.fidelities)
            prov["fidelity_weights"] = dict(zip(self.fidelities, self.fidelity_weights))
        if self.transfer is not None:
            # which exact file the weights came from, and how much of it was taken
            t = self.transfer
            prov["init_from"] = {"source": t.source, "format": t.format, "sha256": t.sha256,
                                 "loaded": len(t.loaded), "not_loaded": sorted(t.not_loaded)}
        return prov

    def _save(self, name: str) -> Path:
        return save_checkpoint(
            self.ckpt_dir / name, self.model, self._trainer_state(), self._provenance(), terms=self.terms
        )

    def _settings_changed(self, payload: Dict[str, Any]) -> List[str]:
        """What the checkpoint's model was built with and this run's differ in, one line per setting.

        Loading weights into a model built otherwise fails with a size-mismatch dump (or,
        worse, succeeds and trains something else): compare what matters instead.
        """
        missing = object()

        def show(v: Any) -> str:
            return "not set" if v is missing else repr(v)

        lines = []
        old = {"kind": payload.get("kind"), **payload.get("config", {})}
        new = {"kind": self.model.kind, **self.model.config}
        for key in list(new) + [k for k in old if k not in new]:
            before, now = old.get(key, missing), new.get(key, missing)
            if before != now:
                lines.append(f"model.{key}: {show(before)} in the checkpoint, {show(now)} now")
        old_terms = payload.get("terms", [])
        new_terms = [term_spec(t) for t in self.terms]
        if old_terms != new_terms:
            lines.append(f"physics terms (sae/dispersion/terms): {old_terms or 'none'} in the checkpoint, "
                         f"{new_terms or 'none'} now")
        # the optimizer's groups are restored as saved: other groups cannot take its state
        old_optim = payload.get("trainer_state", {}).get("config", {}).get("optim", {})
        new_optim = self.cfg.optim.model_dump()
        for key in ("param_groups", "freeze"):
            if old_optim.get(key, []) != new_optim[key]:
                lines.append(f"optim.{key}: {old_optim.get(key, [])} in the checkpoint, {new_optim[key]} now")
        if payload.get("dtype") != self.cfg.run.dtype:
            lines.append(f"run.dtype: {payload.get('dtype')!r} in the checkpoint, {self.cfg.run.dtype!r} now")
        return lines

    def _restore(self) -> bool:
        path = self.ckpt_dir / "last.ckpt"
        if not path.exists():
            self.log(f"[mlff train] --resume: no checkpoint in {self.ckpt_dir}; starting from scratch")
            return False
        payload = read_checkpoint(path)
        if self.dist.main:
            # a kill during a write leaves the temporary file (never a half-written checkpoint)
            for stale in self.ckpt_dir.glob(".*.tmp"):
                stale.unlink(missing_ok=True)
        st = payload["trainer_state"]
        if st.get("data_hash") != self.data_hash:
            raise RuntimeError(
                f"{path} was trained on other data (hash {st.get('data_hash')}, now {self.data_hash}); "
                "resuming would mix runs: use another output_dir or restore the data"
            )
        if st.get("world", 1) != self.dist.world:
            raise RuntimeError(
                f"{path} was written by a run with {st.get('world', 1)} processes; resume with the same number"
            )
        changed = self._settings_changed(payload)
        if changed:
            raise RuntimeError(
                f"{path} was trained with other settings than this config's:\n  " + "\n  ".join(changed)
                + "\nRestore these settings to continue that run, or start a new run without --resume "
                "(with another run.output_dir, or after deleting " + str(self.out) + ")"
            )
        self.model.load_state_dict(payload["state_dict"])
        self.opt.load_state_dict(st["optimizer"])
        self.schedule.load_state_dict(st["schedule"])
        self.step, self.epoch, self.batch_pos = st["step"], st["epoch"], st["batch_pos"]
        self.best = [tuple(b) for b in st["best"]]
        self.bad_validations = st["bad_validations"]
        self.elapsed = st["elapsed"]
        self.loss_sum, self.loss_count = st["loss_sum"], st["loss_count"]
        torch.set_rng_state(st["rng"]["torch"])
        np.random.set_state(st["rng"]["numpy"])
        random.setstate(st["rng"]["python"])
        self._truncate_csv(self.step)
        self.log(f"[mlff train] resumed from {path} at step {self.step} (epoch {self.epoch})")
        return True

    # ------------------------------------------------------------------ logging
    @property
    def csv_path(self) -> Path:
        return self.out / "metrics.csv"

    @property
    def metric_names(self) -> Tuple[str, ...]:
        return METRIC_NAMES + (CHARGE_METRIC_NAMES if self.has_charges else ())

    @property
    def csv_fields(self) -> Tuple[str, ...]:
        """CSV_FIELDS, charge metrics for a model that predicts charges, and
        ``val_<fidelity>_<metric>`` for each named fidelity."""
        per_fidelity = FIDELITY_METRIC_NAMES + (CHARGE_METRIC_NAMES if self.has_charges else ())
        return (CSV_FIELDS + (CHARGE_METRIC_NAMES if self.has_charges else ())
                + tuple(f"val_{f}_{m}" for f in self.fidelities for m in per_fidelity))

    def _truncate_csv(self, step: int) -> None:
        """Drop rows logged after the checkpoint (they will be logged again)."""
        if not self.dist.main or not self.csv_path.exists():
            return
        keep = []
        fields = self.csv_fields
        with open(self.csv_path, newline="") as fh:
            for row in csv.DictReader(fh):
                try:
                    if int(row["step"]) <= step and row.get(fields[-1]) is not None:
                        keep.append(row)
                except (TypeError, ValueError):
                    pass  # a line cut by the kill
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=fields)
        w.writeheader()
        w.writerows(keep)
        atomic_write(self.csv_path, lambda tmp: Path(tmp).write_text(buf.getvalue()))

    def _log_row(self, row: Dict[str, Any]) -> None:
        if not self.dist.main:
            return
        new = not self.csv_path.exists()
        with open(self.csv_path, "a", newline="") as fh:
            fields = self.csv_fields
            w = csv.DictWriter(fh, fieldnames=fields)
            if new:
                w.writeheader()
            w.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in fields})
            fh.flush()
        if self.tb is not None:
            for k, v in row.items():
                if k not in ("step", "epoch") and isinstance(v, (int, float)):
                    self.tb.add_scalar(k, v, row["step"])

    def _open_tensorboard(self):
        if not (self.cfg.run.tensorboard and self.dist.main):
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard is optional; the CSV log is always written
            return None
        return SummaryWriter(str(self.out / "tensorboard"))

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, samples: Sequence[Sample], keep: bool = False, shard: bool = True) -> ErrorAccumulator:
        acc = ErrorAccumulator(n_fidelities=max(1, len(self.fidelities)), keep=keep)
        batches = pack_by_fidelity(samples, self.cfg.run.batch_atoms)
        if shard:
            batches = batches[self.dist.rank :: self.dist.world]
        self.model.eval()
        for idx in batches:
            b = collate([samples[k] for k in idx], self.device)
            pred = predict(self.model, b, self.need_stress, create_graph=False)
            acc.add(pred, b)
        self.model.train()
        if shard:
            self.dist.all_reduce_(acc.sums)
        return acc

    def _public(self, m: Dict[str, Any]) -> Dict[str, Any]:
        """The metrics a report shows: no internal sums, no charge errors for a model without charges."""
        return {k: v for k, v in m.items()
                if not k.startswith("_") and (self.has_charges or k not in CHARGE_METRIC_NAMES)}

    def _fidelity_metrics(self, acc: ErrorAccumulator) -> Dict[str, Dict[str, Any]]:
        """Each named fidelity's metrics and loss (fidelities without structures left out)."""
        return {
            name: {"loss": validation_loss(m, self.cfg.loss), **self._public(m)}
            for name, m in zip(self.fidelities, acc.by_fidelity()) if m["_structures"]
        }

    def _validate(self) -> Dict[str, Any]:
        acc = self.evaluate(self.valid_set)
        m = acc.metrics()
        # the weighted sum over fidelities (one unnamed level: its loss)
        val_loss = fidelity_validation_loss(acc.by_fidelity(), self.fidelity_weights, self.cfg.loss)
        train_loss = self.loss_sum / self.loss_count if self.loss_count else None
        self.loss_sum, self.loss_count = 0.0, 0
        row = {
            "step": self.step, "epoch": self.epoch, "time_s": round(self.elapsed, 2),
            "lr": self.schedule.lr(self.step), "train_loss": train_loss, "val_loss": val_loss,
            **{k: m[k] for k in self.metric_names},
        }
        for name, fm in self._fidelity_metrics(acc).items():
            row.update({f"val_{name}_{k}": v for k, v in fm.items()})
        self._log_row(row)
        self.schedule.on_validation(val_loss)
        self.last_metrics = row
        return row

    def _update_best(self, val_loss: float) -> None:
        improved = not self.best or val_loss < min(b[0] for b in self.best)
        self.bad_validations = 0 if improved else self.bad_validations + 1
        k = self.cfg.run.keep_best
        if len(self.best) < k or val_loss < max(b[0] for b in self.best):
            name = f"best_step{self.step:08d}.ckpt"
            self.best.append((val_loss, self.step, name))
            self.best.sort()
            dropped = self.best[k:]
            self.best = self.best[:k]
            if self.dist.main:
                self._save(name)
                for _, _, old in dropped:
                    (self.ckpt_dir / old).unlink(missing_ok=True)

    # ------------------------------------------------------------------ main loop
    def fit(self) -> Dict[str, Any]:
        from tqdm.auto import tqdm

        if not self.resume and (self.ckpt_dir / "last.ckpt").exists():
            raise RuntimeError(
                f"{self.out} already holds a training run; continue it with --resume, or choose another "
                "run.output_dir (or delete that one)"
            )
        self._setup()
        if self.resume:
            self._restore()
        elif self.dist.main and self.csv_path.exists():
            self.csv_path.unlink()  # a log without checkpoints belongs to a run that never saved
        if self.dist.main:
            self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        self.tb = self._open_tensorboard()
        run = self.cfg.run
        ckpt_every = run.checkpoint_every or run.valid_every
        world = self.dist.world
        bar = tqdm(total=run.max_steps, initial=self.step, desc="train", unit="step",
                   disable=not (run.progress and self.dist.main), dynamic_ncols=True)
        t_last = time.perf_counter()
        done = self.step >= run.max_steps
        self.model.train()
        while not done:
            batches = self.sampler.epoch(self.epoch)
            steps_in_epoch = max(1, len(batches) // world)
            if len(batches) < world:
                raise ValueError(f"{len(batches)} batches per epoch cannot feed {world} processes; lower batch_atoms")
            epoch_end = False
            while not (epoch_end or done):
                idx = batches[self.batch_pos * world + self.dist.rank]
                b = collate([self.train_set[k] for k in idx], self.device)
                set_learning_rate(self.opt, self.schedule.lr(self.step))
                pred = predict(self.model, b, self.cfg.loss.stress_weight > 0, create_graph=True)
                loss = weighted(loss_terms(pred, b), self.cfg.loss)
                self.opt.zero_grad(set_to_none=True)
                loss.backward()
                self.dist.average_grads(self.params)
                clip_gradients(self.params, self.cfg.optim)
                self.opt.step()
                self.loss_sum += float(loss.detach())
                self.loss_count += 1
                self.step += 1
                self.batch_pos += 1
                now = time.perf_counter()
                self.elapsed += now - t_last
                t_last = now
                bar.update(1)
                out_of_time = run.max_minutes is not None and self.elapsed >= 60 * run.max_minutes
                if run.max_minutes is not None and world > 1:
                    # clocks differ between ranks: all must stop at the same step or they deadlock
                    flag = torch.tensor([1.0 if out_of_time else 0.0])
                    out_of_time = bool(self.dist.all_reduce_(flag).item() > 0)
                last = self.step >= run.max_steps or out_of_time
                # the checkpoint below must already point at the next batch to take
                epoch_end = self.batch_pos >= steps_in_epoch
                if epoch_end:
                    self.epoch += 1
                    self.batch_pos = 0
                if self.step % run.valid_every == 0 or last:
                    row = self._validate()
                    self._update_best(row["val_loss"])
                    bar.set_postfix(loss=f"{row['train_loss'] or 0:.3g}", f_rmse=_fmt(row["force_rmse"], ".4f"))
                    if run.early_stopping_patience and self.bad_validations >= run.early_stopping_patience:
                        self.log(f"[mlff train] early stop at step {self.step}: no improvement in "
                                 f"{self.bad_validations} validations")
                        self.stopped_early = True
                        last = True
                    if self.on_validation is not None and self.on_validation(self.step, row) and not last:
                        self.log(f"[mlff train] stopped at step {self.step} by the validation callback")
                        self.stopped_early = True
                        last = True
                if self.step % ckpt_every == 0 or last:
                    if self.dist.main:
                        self._save("last.ckpt")
                    self.dist.barrier()
                    t_last = time.perf_counter()  # saving time is not training time
                if last:
                    if out_of_time:
                        self.log(f"[mlff train] time limit of {run.max_minutes} min reached at step {self.step}")
                    done = True
        bar.close()
        self._check_replicas()
        result = self._finish()
        if self.tb is not None:
            self.tb.close()
        self.dist.close()
        return result

    # ------------------------------------------------------------------ end of run
    def _check_replicas(self) -> None:
        """Data-parallel replicas must hold identical weights; a drift means a lost all-reduce."""
        if self.dist.world == 1:
            return
        flat = torch.cat([p.detach().reshape(-1).double() for p in self.params])
        lo, hi = flat.clone(), flat.clone()
        import torch.distributed as dist

        dist.all_reduce(lo, op=dist.ReduceOp.MIN)
        dist.all_reduce(hi, op=dist.ReduceOp.MAX)
        spread = float((hi - lo).abs().max())
        if spread > 0:
            raise RuntimeError(f"data-parallel replicas diverged (max weight difference {spread:.3g})")
        self.log(f"[mlff train] {self.dist.world} data-parallel replicas hold identical weights")

    def _finish(self) -> Dict[str, Any]:
        run = self.cfg.run
        summary: Dict[str, Any] = {"steps": self.step, "train_seconds": round(self.elapsed, 2),
                                   "stopped_early": self.stopped_early, "last": self.last_metrics}
        if not self.dist.main:
            return summary
        best_file = self.ckpt_dir / self.best[0][2] if self.best else self.ckpt_dir / "last.ckpt"
        self.model.load_state_dict(read_checkpoint(best_file)["state_dict"])
        valid_acc = self.evaluate(self.valid_set, keep=True, shard=False)
        summary["best_checkpoint"] = str(best_file)
        summary["valid"] = self._public(valid_acc.metrics())
        if self.fidelities:
            summary["valid_by_fidelity"] = self._fidelity_metrics(valid_acc)
        if self.test_set:
            test_acc = self.evaluate(self.test_set, shard=False)
            summary["test"] = self._public(test_acc.metrics())
            if self.fidelities:
                summary["test_by_fidelity"] = self._fidelity_metrics(test_acc)
        if self.transfer is not None:
            summary["init_from"] = self.transfer.as_dict()
        if run.export:
            from ..contract import export_model

            prov = {**self._provenance(), "valid_metrics": summary["valid"], "train_steps": self.step,
                    "train_seconds": summary["train_seconds"]}
            # the exported file adds the physics terms back to the network's residual
            network = copy.deepcopy(self.model).cpu().eval()
            exported = with_terms(network, self.terms)
            if run.export_compiled:
                from ..compiled import export_compiled

                # model.pt2 for the engines, model.pt beside it (the fallback, and for training tools)
                export_compiled(exported, self.out / "model.pt2", provenance=prov)
                summary["compiled_model"] = str(self.out / "model.pt2")
            else:
                export_model(exported, self.out / "model.pt", provenance=prov)
            summary["model"] = str(self.out / "model.pt")
        if run.plots:
            try:
                from .plots import learning_curve, parity_plot

                learning_curve(self.csv_path, self.out / "learning_curve.png")
                parity_plot(valid_acc.pairs, self.out / "parity.png")
            except ImportError as exc:
                self.log(f"[mlff train] plots skipped ({exc})")
        text = json.dumps(summary, indent=1, default=str)
        atomic_write(self.out / "summary.json", lambda tmp: Path(tmp).write_text(text))
        v = summary["valid"]
        self.log(
            f"[mlff train] done: {self.step} steps in {self.elapsed:.0f} s; best validation: "
            f"force RMSE {_fmt(v['force_rmse'], '.4f')} eV/Å, "
            f"energy RMSE {_fmt(v['energy_rmse_per_atom'], '.2f', 1000)} meV/atom"
            + (f" -> {summary['model']}" if "model" in summary else "")
        )
        return summary


def train(cfg: TrainConfig, resume: bool = False) -> Dict[str, Any]:
    """Run a whole training (what `mlff train` does); returns the summary."""
    if cfg.model.kind == "ace":  # mlff's own ACE fit: L-BFGS on the whole set, see mlff.ace.fit
        from ..ace.fit.train import train_ace

        return train_ace(cfg, resume=resume)
    return Trainer(cfg, resume=resume).fit()
