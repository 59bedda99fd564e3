"""`mlff tune config.yaml`: hyper-parameter search over `mlff train` runs with Optuna.

A tune config names a training config (``base:``), a search space of dotted paths into
it (``space:``) and a study (``study:``). Each trial trains the base config with the
sampled values in ``<output_dir>/trial_<number>``; the trainer reports the chosen
validation metric after every validation, and the pruner may stop a poor trial there.

Resuming and sharing: the study lives in an RDB storage (SQLite by default), so a
re-run of the same command continues it. Trials that ended COMPLETE or PRUNED count
toward ``n_trials`` and are never run again; several processes on one storage share
that budget (:class:`optuna.study.MaxTrialsCallback`). A trial left RUNNING by a killed
process is found through Optuna's heartbeat: once its heartbeat is older than
``grace_period`` it is marked FAIL and a copy with the same parameters is queued
(:class:`optuna.storages.RetryHeartbeatStaleTrialCallback`), which the next free worker
runs under a new trial number (its partial ``trial_<old number>`` folder is left as it
was). A re-run started within ``grace_period`` of the kill cannot tell a dead worker
from a live one yet; the stale trial is then failed and retried by the first trial
start after the grace period has passed (or by the next re-run).

Failures: a trial whose metric is NaN (a diverged run) is recorded as FAIL and the search
goes on; a trial that raises (a bug, a sampled combination the model cannot build)
stops the search with that error. Neither counts toward ``n_trials``.

Outputs, rewritten atomically after every trial: ``trials.csv``, ``best_config.yaml``
(the best trial's complete train config, for ``mlff train``) and ``tune.png``.
"""

from __future__ import annotations

import csv
import io
import math
import os
import re
import sys
import time
import warnings
from pathlib import Path
from typing import Annotated, Any, Dict, List, Literal, Optional, Sequence, Tuple, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..atomic import atomic_write
from .config import ACE_FIT_KIND, TrainConfig, read_yaml

#: the trainer's validation loss (metrics.csv column): what it picks its best checkpoint by
DEFAULT_METRIC = "val_loss"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FloatSpace(_Strict):
    """A real parameter in ``[low, high]``; ``log`` samples its logarithm uniformly."""

    type: Literal["float"]
    low: float
    high: float
    log: bool = False
    step: Optional[float] = Field(None, gt=0, description="discretisation step (not with log)")

    @model_validator(mode="after")
    def _range(self) -> "FloatSpace":
        _check_range(self.low, self.high, self.log, self.step)
        return self


class IntSpace(_Strict):
    """An integer parameter in ``[low, high]`` (both included)."""

    type: Literal["int"]
    low: int
    high: int
    log: bool = False
    step: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _range(self) -> "IntSpace":
        _check_range(self.low, self.high, self.log, None if self.step == 1 else self.step)
        return self


class CategoricalSpace(_Strict):
    """One of a list of values."""

    type: Literal["categorical"]
    choices: List[Union[None, bool, int, float, str]] = Field(min_length=1)


def _check_range(low: float, high: float, log: bool, step: Optional[float]) -> None:
    if low > high:
        raise ValueError(f"low ({low}) is greater than high ({high}); swap them")
    if log and low <= 0:
        raise ValueError(f"log: true needs low > 0 (got {low}); raise low or set log: false")
    if log and step is not None:
        raise ValueError("step and log: true do not go together (Optuna samples one or the other); drop one")


#: told apart by ``type`` (so an error is about the named distribution, not about all three)
Space = Annotated[Union[FloatSpace, IntSpace, CategoricalSpace], Field(discriminator="type")]


class StudyConfig(_Strict):
    name: Optional[str] = Field(None, description="study name in the storage (default: the config file's stem)")
    storage: Optional[str] = Field(
        None, description="RDB URL; relative sqlite paths are relative to this file (default <output_dir>/study.db)"
    )
    direction: Literal["minimize", "maximize"] = "minimize"
    metric: str = Field(DEFAULT_METRIC, description="validation metric of the trainer (a metrics.csv column)")
    n_trials: int = Field(20, ge=1, description="COMPLETE + PRUNED trials of the whole study (all workers)")
    timeout_minutes: Optional[float] = Field(None, gt=0, description="this process stops starting trials after it")
    sampler: Literal["tpe", "random"] = "tpe"
    seed: Optional[int] = Field(0, description="sampler seed (plus the number of trials already in the study)")
    pruner: Literal["median", "none"] = "median"
    n_startup_trials: int = Field(5, ge=0, description="median pruner: trials that are never pruned")
    n_warmup_steps: int = Field(0, ge=0, description="median pruner: steps of a trial before it may be pruned")
    heartbeat_interval: int = Field(60, ge=1, description="seconds between a running trial's heartbeats")
    grace_period: Optional[int] = Field(
        None, ge=1, description="a RUNNING trial without heartbeat for this long is failed and retried "
        "(default 2 x heartbeat_interval)"
    )
    max_retry: Optional[int] = Field(3, ge=0, description="retries of a trial whose worker died (null: unlimited)")


class TuneConfig(_Strict):
    base: Union[str, Dict[str, Any]] = Field(description="an mlff train config file, or the config inline")
    study: StudyConfig = Field(default_factory=StudyConfig)
    space: Dict[str, Space] = Field(min_length=1, description="dotted train-config path -> distribution")
    output_dir: str = "tune_output"

    @model_validator(mode="before")
    @classmethod
    def _space_types(cls, raw: Any) -> Any:
        # pick the distribution by its ``type`` here, so an error names the key and the known types
        # instead of listing why the value fits none of the three models
        if isinstance(raw, dict) and isinstance(raw.get("space"), dict):
            kinds = {"float": FloatSpace, "int": IntSpace, "categorical": CategoricalSpace}
            for key, spec in raw["space"].items():
                kind = spec.get("type") if isinstance(spec, dict) else None
                if kind not in kinds:
                    raise ValueError(
                        f"space.{key}: type must be one of {', '.join(kinds)} (got {kind!r}), e.g. "
                        "{type: float, low: 1.0e-4, high: 1.0e-2, log: true}"
                    )
        return raw


def _format_errors(path: Path, exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"] if p not in ("float", "int", "categorical"))
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key; remove it (see `mlff tune --help` and the README for the keys)"
        lines.append(f"  {loc}: {msg}" if loc else f"  {msg}")
    return f"{path}: invalid tune config:\n" + "\n".join(lines)


# --------------------------------------------------------------------------- the train configs


def _set_path(raw: Dict[str, Any], dotted: str, value: Any) -> None:
    node = raw
    parts = dotted.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value


#: paths the tuner owns or that would change the meaning of the other keys
_UNTUNABLE = {"run.output_dir": "each trial trains in <output_dir>/trial_<number>",
              "model.kind": "each kind has its own options; run one study per kind"}


def _check_path(dotted: str, base_cfg: TrainConfig) -> None:
    """Refuse a space key that is not a setting of the base train config (before any trial)."""
    from ..models import model_class

    where = f"space.{dotted}"
    if dotted in _UNTUNABLE:
        raise ValueError(f"{where}: cannot be tuned ({_UNTUNABLE[dotted]})")
    parts = dotted.split(".")
    model: Any = TrainConfig
    for k, part in enumerate(parts):
        sub = ".".join(parts[:k + 1])
        if model is TrainConfig.model_fields["model"].annotation:  # ModelConfig: the kind's own options
            options = model_class(base_cfg.model.kind).Options  # type: ignore[attr-defined]
            fields = {**options.model_fields, **{n: f for n, f in model.model_fields.items() if n != "kind"}}
        else:
            fields = model.model_fields
        if part not in fields:
            raise ValueError(
                f"{where}: {sub!r} is not a setting of the train config"
                + (f" (model kind {base_cfg.model.kind!r})" if parts[0] == "model" else "")
                + f"; known keys here: {', '.join(sorted(fields))}"
            )
        annotation = fields[part].annotation
        is_section = isinstance(annotation, type) and issubclass(annotation, BaseModel)
        if k < len(parts) - 1 and not is_section:
            raise ValueError(f"{where}: {sub!r} is a value, not a section; give the path up to {sub!r}")
        if k == len(parts) - 1 and is_section:
            raise ValueError(f"{where}: {sub!r} is a section; name one of its keys, e.g. {sub}.<key>")
        model = annotation


def _suggest(trial: Any, name: str, spec: Space) -> Any:
    if isinstance(spec, FloatSpace):
        return trial.suggest_float(name, spec.low, spec.high, log=spec.log, step=spec.step)
    if isinstance(spec, IntSpace):
        return trial.suggest_int(name, spec.low, spec.high, log=spec.log, step=spec.step)
    return trial.suggest_categorical(name, spec.choices)


class Tuner:
    """One study: the tune config, its base train config, the storage and the objective."""

    def __init__(self, cfg: TuneConfig, config_path: Path):
        self.cfg = cfg
        self.root = config_path.resolve().parent
        if isinstance(cfg.base, str):
            base_path = Path(cfg.base) if os.path.isabs(cfg.base) else self.root / cfg.base
            if not base_path.exists():
                raise FileNotFoundError(f"{config_path}: base: train config {str(base_path)!r} does not exist")
            raw = read_yaml(base_path) or {}
            self.base_dir = base_path.resolve().parent
            where = str(base_path)
        else:
            raw, self.base_dir, where = cfg.base, self.root, f"{config_path}: base"
        if not isinstance(raw, dict):
            raise ValueError(f"{where}: the train config must be a mapping of sections (data, model, ...)")
        self.base_raw: Dict[str, Any] = raw
        try:
            base_cfg = TrainConfig(**raw)
        except ValidationError as exc:
            raise ValueError(f"{where}: invalid training config:\n{exc}") from None
        if base_cfg.model.kind == ACE_FIT_KIND:
            raise ValueError(f"{where}: model.kind {ACE_FIT_KIND!r} is fitted in one L-BFGS solve without "
                             "validation steps; mlff tune searches gradient-trained kinds")
        self.out = Path(cfg.output_dir) if os.path.isabs(cfg.output_dir) else self.root / cfg.output_dir
        self.study_name = cfg.study.name or config_path.stem
        self.metric = cfg.study.metric
        self._check_metric(base_cfg)
        for dotted in cfg.space:
            _check_path(dotted, base_cfg)
        self._check_extremes()
        weights = [k for k in cfg.space if k.startswith("loss.")]
        if weights and self.metric == DEFAULT_METRIC:
            # val_loss is weighted by the loss weights: trials with other weights are not comparable
            print(f"[mlff tune] note: space varies {', '.join(weights)}, which scale val_loss itself; "
                  "compare trials by a fixed metric instead (study.metric: force_rmse, energy_rmse_per_atom)",
                  file=sys.stderr)

    # ------------------------------------------------------------------ configuration
    def _check_metric(self, base_cfg: TrainConfig) -> None:
        from .metrics import CHARGE_METRIC_NAMES, METRIC_NAMES
        from .trainer import FIDELITY_METRIC_NAMES

        known = [DEFAULT_METRIC, *METRIC_NAMES, *CHARGE_METRIC_NAMES]
        known += [f"val_{f}_{m}" for f in base_cfg.fidelity_names for m in FIDELITY_METRIC_NAMES + CHARGE_METRIC_NAMES]
        if self.metric not in known:
            raise ValueError(f"study.metric: {self.metric!r} is not a validation metric of the trainer; "
                             f"use one of {', '.join(known)}")

    def train_config(self, params: Dict[str, Any], output_dir: Path) -> TrainConfig:
        """The base train config with ``params`` (dotted path -> value) set, training in ``output_dir``."""
        import copy

        raw = copy.deepcopy(self.base_raw)
        for dotted, value in params.items():
            _set_path(raw, dotted, value)
        _set_path(raw, "run.output_dir", str(output_dir.resolve()))
        try:
            cfg = TrainConfig(**raw)
        except ValidationError as exc:
            bad = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
            raise ValueError(f"the train config with {params} is invalid: {bad}") from None
        return cfg.resolve_paths(self.base_dir)

    def _check_extremes(self) -> None:
        """Build the configs at both ends of every range, so a value the train config refuses
        (e.g. ``n_features: 1``) is found now, not in trial 17."""
        for dotted, spec in self.cfg.space.items():
            values = spec.choices if isinstance(spec, CategoricalSpace) else [spec.low, spec.high]
            for value in values:
                try:
                    self.train_config({dotted: value}, self.out / "check")
                except ValueError as exc:
                    what = "choice" if isinstance(spec, CategoricalSpace) else "value"
                    raise ValueError(f"space.{dotted}: the {what} {value!r} is refused by the train config: "
                                     f"{exc}; {'drop it' if what == 'choice' else 'narrow the range'}") from None

    @property
    def storage_url(self) -> str:
        """The storage URL with a relative SQLite path made relative to the tune config's folder."""
        url = self.cfg.study.storage
        if url is None:
            return f"sqlite:///{(self.out / 'study.db').resolve()}"
        m = re.match(r"^sqlite:///(?!/)(.+)$", url)
        if m and m.group(1) != ":memory:":
            return f"sqlite:///{(self.root / m.group(1)).resolve()}"
        return url

    def storage(self):
        import optuna

        s = self.cfg.study
        m = re.match(r"^sqlite:///(.+)$", self.storage_url)
        if m and m.group(1) != ":memory:":
            Path(m.group(1)).parent.mkdir(parents=True, exist_ok=True)  # SQLite creates the file, not its folder
        with warnings.catch_warnings():  # the heartbeat is "experimental" since Optuna 2.9
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(
                self.storage_url, heartbeat_interval=s.heartbeat_interval, grace_period=s.grace_period,
                heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=s.max_retry),
            )

    def _sampler(self, n_existing: int):
        import optuna

        s = self.cfg.study
        # a fresh process restarts the sampler's random stream: offset the seed by the trials
        # already stored, or a resumed run would draw the first trials' parameters again
        seed = None if s.seed is None else s.seed + n_existing
        if s.sampler == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        # constant_liar: workers sharing the storage do not all pick the point a running trial holds
        return optuna.samplers.TPESampler(seed=seed, constant_liar=True)

    def _pruner(self):
        import optuna

        s = self.cfg.study
        if s.pruner == "none":
            return optuna.pruners.NopPruner()
        return optuna.pruners.MedianPruner(n_startup_trials=s.n_startup_trials, n_warmup_steps=s.n_warmup_steps)

    def load_study(self):
        import optuna

        storage = self.storage()
        n_existing = 0
        try:
            n_existing = len(optuna.load_study(study_name=self.study_name, storage=storage).trials)
        except KeyError:  # a new study
            pass
        return optuna.create_study(
            study_name=self.study_name, storage=storage, direction=self.cfg.study.direction,
            sampler=self._sampler(n_existing), pruner=self._pruner(), load_if_exists=True,
        )

    # ------------------------------------------------------------------ one trial
    def objective(self, trial: Any) -> float:
        import optuna

        from .trainer import Trainer

        params = {dotted: _suggest(trial, dotted, spec) for dotted, spec in self.cfg.space.items()}
        out = self.out / f"trial_{trial.number}"
        trial.set_user_attr("output_dir", str(out))
        cfg = self.train_config(params, out)
        reported: List[Tuple[int, Dict[str, Any]]] = []
        pruned_at: List[int] = []

        def on_validation(step: int, row: Dict[str, Any]) -> bool:
            reported.append((step, row))
            value = row.get(self.metric)
            if value is None or not math.isfinite(value):
                return False  # nothing to compare (no such label); a NaN run fails at the end
            trial.report(float(value), step)
            if trial.should_prune():
                pruned_at.append(step)
                return True
            return False

        print(f"[mlff tune] trial {trial.number}: {params}", flush=True)
        summary = Trainer(cfg, on_validation=on_validation).fit()
        if pruned_at:
            raise optuna.TrialPruned(f"pruned at step {pruned_at[0]}")
        value = self._value(reported, summary)
        trial.set_user_attr("best_checkpoint", summary.get("best_checkpoint"))
        return value

    def _value(self, reported: Sequence[Tuple[int, Dict[str, Any]]], summary: Dict[str, Any]) -> float:
        """The metric at the validation with the lowest val_loss: the checkpoint the trainer
        keeps as best and exports, so the study ranks the models a trial actually produced."""
        rows = [r for _, r in reported if r.get("val_loss") is not None and math.isfinite(r["val_loss"])]
        if not rows:
            return float("nan")  # Optuna records the trial as FAIL
        best = min(rows, key=lambda r: r["val_loss"])
        value = best.get(self.metric)
        if value is None and self.metric in summary.get("valid", {}):
            value = summary["valid"][self.metric]
        if value is None:
            raise ValueError(f"study.metric {self.metric!r} was not computed: the validation set has no such "
                             "label; choose another metric")
        return float(value)

    # ------------------------------------------------------------------ the search
    def run(self) -> Any:
        """Run trials until the study holds ``n_trials`` COMPLETE + PRUNED ones (all workers)."""
        import optuna
        from optuna.trial import TrialState

        s = self.cfg.study
        self.out.mkdir(parents=True, exist_ok=True)
        study = self.load_study()
        counted = (TrialState.COMPLETE, TrialState.PRUNED)
        done = len(study.get_trials(deepcopy=False, states=counted))
        remaining = s.n_trials - done
        print(f"[mlff tune] study {self.study_name!r} in {self.storage_url}: {done} of {s.n_trials} trials "
              f"finished" + (f", running {remaining} more" if remaining > 0 else ""), flush=True)
        if remaining > 0:
            # n_trials bounds this process; MaxTrialsCallback stops it once all workers together
            # have finished the budget (a trial already running elsewhere may still end after it)
            study.optimize(
                self.objective, n_trials=remaining,
                timeout=None if s.timeout_minutes is None else 60 * s.timeout_minutes,
                callbacks=[optuna.study.MaxTrialsCallback(s.n_trials, states=counted),
                           lambda st, _t: self.write_outputs(st)],
                gc_after_trial=True,
            )
        self.write_outputs(study)
        return study

    # ------------------------------------------------------------------ outputs
    def write_outputs(self, study: Any) -> None:
        """trials.csv, best_config.yaml and tune.png, each replaced atomically."""
        trials = study.get_trials(deepcopy=False)
        names = list(self.cfg.space)
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["number", "state", "value", "duration_s", *names, "retry_of"])
        for t in trials:
            dur = t.duration.total_seconds() if t.duration is not None else None
            w.writerow([t.number, t.state.name, "" if t.value is None else t.value,
                        "" if dur is None else round(dur, 2), *[t.params.get(n, "") for n in names],
                        t.system_attrs.get("failed_trial", "")])
        atomic_write(self.out / "trials.csv", lambda tmp: Path(tmp).write_text(buf.getvalue()))
        best = _best_trial(study)
        if best is not None:
            self._write_best_config(best)
        try:
            self._plot(trials)
        except ImportError as exc:  # matplotlib is optional, the CSV is always written
            print(f"[mlff tune] plot skipped ({exc})")

    def _write_best_config(self, best: Any) -> None:
        import yaml

        # a fresh output folder: the trial's own folder already holds that run, which
        # `mlff train` would refuse to overwrite
        cfg = self.train_config(dict(best.params), self.out / "best_run")
        head = (f"# mlff tune: best trial {best.number} of study {self.study_name!r}, "
                f"{self.metric} = {best.value:.6g}; trained in {best.user_attrs.get('output_dir')}\n")
        text = head + yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
        atomic_write(self.out / "best_config.yaml", lambda tmp: Path(tmp).write_text(text))

    def _plot(self, trials: Sequence[Any]) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from optuna.trial import TrialState

        fig, ax = plt.subplots(figsize=(6, 4))
        done = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
        pruned = [t for t in trials if t.state == TrialState.PRUNED and t.intermediate_values]
        ax.plot([t.number for t in done], [t.value for t in done], "o", label="complete")
        if pruned:
            last = [t.intermediate_values[max(t.intermediate_values)] for t in pruned]
            ax.plot([t.number for t in pruned], last, "x", color="grey", label="pruned (last report)")
        if done:
            pick = min if self.cfg.study.direction == "minimize" else max
            xs, ys, cur = [], [], None
            for t in done:
                cur = t.value if cur is None else pick(cur, t.value)
                xs.append(t.number)
                ys.append(cur)
            ax.step(xs, ys, where="post", color="C3", label="best so far")
        values = [t.value for t in done]
        if values and min(values) > 0 and max(values) / min(values) > 20:
            ax.set_yscale("log")
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("trial")
        ax.set_ylabel(self.metric)
        ax.set_title(f"mlff tune: {self.study_name}")
        ax.legend()
        fig.tight_layout()
        atomic_write(self.out / "tune.png", lambda tmp: fig.savefig(tmp, format="png", dpi=100))
        plt.close(fig)


def _best_trial(study: Any) -> Optional[Any]:
    try:
        return study.best_trial
    except ValueError:  # no complete trial yet
        return None


def format_table(study: Any, metric: str, names: Sequence[str]) -> str:
    """The trials as a text table, best marked with ``*``."""
    best = _best_trial(study)
    rows = [["#", "state", metric, "time s", *names]]
    for t in study.get_trials(deepcopy=False):
        dur = t.duration.total_seconds() if t.duration is not None else None
        value = "" if t.value is None else f"{t.value:.5g}"
        mark = "*" if best is not None and t.number == best.number else ""
        rows.append([f"{t.number}{mark}", t.state.name, value, "" if dur is None else f"{dur:.1f}",
                     *[_short(t.params.get(n, "")) for n in names]])
    widths = [max(len(r[k]) for r in rows) for k in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(wd) for c, wd in zip(r, widths)).rstrip() for r in rows)


def _short(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def load_tune_config(path: Union[str, os.PathLike]) -> TuneConfig:
    """Read and validate a tune config; errors name the file and the keys."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"tune config {str(path)!r} does not exist")
    raw = read_yaml(path) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: the tune config must be a mapping (base, study, space, output_dir)")
    try:
        return TuneConfig(**raw)
    except ValidationError as exc:
        raise ValueError(_format_errors(path, exc)) from None


def prepare(path: Union[str, os.PathLike]) -> Tuner:
    """Read the tune config and check it whole (paths, ranges, metric) before any trial runs."""
    return Tuner(load_tune_config(path), Path(path))


def tune(path: Union[str, os.PathLike]) -> Any:
    """Run (or continue) the study of a tune config; prints the table and returns the study."""
    tuner = prepare(path)
    t0 = time.perf_counter()
    study = tuner.run()
    print(format_table(study, tuner.metric, list(tuner.cfg.space)))
    best = _best_trial(study)
    if best is not None:
        print(f"[mlff tune] best: trial {best.number}, {tuner.metric} = {best.value:.6g} "
              f"-> {tuner.out / 'best_config.yaml'} ({time.perf_counter() - t0:.0f} s)")
    return study
