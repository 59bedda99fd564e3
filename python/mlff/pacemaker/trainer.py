"""`PacemakerTrainer`: mlff data in, a `.yace` from pacemaker out.

``train()`` checks everything it can before it creates anything (tools installed, data
labelled and large enough), then works in a fresh directory (kept for inspection):

1. ``data.pckl.gzip`` from the mlff store (:mod:`.dataset`);
2. optional pruning: ``pacemaker --dry-run`` writes the target basis, ``pace_select``
   keeps the most informative structures (D-optimality, MaxVol);
3. ``input.yaml`` from the template (:mod:`.render`);
4. ``pacemaker input.yaml`` (:mod:`.process`: own process group, log streamed to
   ``pacemaker.log``, timeout and Ctrl-C end the group);
5. ``pace_yaml2yace output_potential.yaml``, then exactly one ``.yace`` must exist;
6. optional ``pace_activeset`` for the active set (``.asi``);
7. the final RMSEs (:mod:`.metrics`), then (with the active set) the B-basis ``.yaml``
   and the ``.asi``, and last the ``.yace`` are moved into place atomically. A failure at
   any step leaves no output file.

mlff imports no pacemaker code: the tools run as subprocesses (python-ace is under an
academic licence and optional).
"""

from __future__ import annotations

import datetime as _dt
import json
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from ..atomic import atomic_write
from ..data.errors import DatasetError
from .config import TrainingConfig
from .dataset import records_to_frame, write_frame
from .metrics import final_metrics
from .process import TAIL_LINES, ToolTimeoutError, TrainingError, run_tool
from .render import render_input

__all__ = ["PacemakerTrainer", "Potential", "TrainingError", "TooFewStructuresError", "NoPotentialError"]

DATA_FILE = "data.pckl.gzip"
INPUT_FILE = "input.yaml"
LOG_FILE = "pacemaker.log"
BBASIS_FILE = "output_potential.yaml"


class TooFewStructuresError(DatasetError):
    """Fewer usable structures than ``min_structures``."""


class NoPotentialError(TrainingError):
    """The conversion left no ``.yace``, or several."""


@dataclass
class Potential:
    """A fitted potential: where it is and how good it was on pacemaker's own sets."""

    path: Path
    format: str
    elements: List[str]
    created: _dt.datetime
    metrics: Dict[str, Dict[str, Any]]  # {"train"/"test": {rmse_energy_per_atom, rmse_forces, source}}
    workdir: Path
    activeset: Optional[Path] = None  # the .asi (with ``activeset: true``)
    bbasis: Optional[Path] = None  # the B-basis .yaml the .asi belongs to (the grade needs both)
    n_structures: int = 0
    skipped_structures: int = 0
    seconds: float = 0.0
    extra: Dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> Dict[str, Any]:
        out = asdict(self)
        for key in ("path", "workdir", "activeset", "bbasis"):
            out[key] = None if out[key] is None else str(out[key])
        out["created"] = self.created.isoformat()
        return out


class PacemakerTrainer:
    """Fit an ACE potential with pacemaker from an mlff :class:`TrainingConfig`."""

    def __init__(self, config: TrainingConfig, echo: Optional[Callable[[str], None]] = None) -> None:
        self.config = config
        self.echo = echo

    # -- steps -------------------------------------------------------------------------
    def _tools(self) -> Dict[str, Path]:
        cfg = self.config
        needed = ["pacemaker", "pace_yaml2yace"]
        if cfg.activeset:
            needed.append("pace_activeset")
        if cfg.prune_with_activeset is not None:
            needed.append("pace_select")
        return {tool: cfg.executables.resolve(tool) for tool in needed}

    def _dataset(self):
        from ..data.store import read_records

        cfg = self.config
        records = read_records(cfg.database, cfg.selection)
        conversion = records_to_frame(records, cfg.reference_energies, cfg.missing_forces,
                                      source=Path(cfg.database).name)
        n = len(conversion.frame)
        if n < cfg.min_structures:
            skipped = f" ({conversion.skipped} skipped for missing forces or energy)" if conversion.skipped else ""
            raise TooFewStructuresError(
                f"{cfg.database}: {n} usable structures{skipped}, fewer than min_structures = {cfg.min_structures}; "
                "label more structures or lower min_structures"
            )
        present = sorted({s for atoms in conversion.frame["ase_atoms"] for s in atoms.get_chemical_symbols()})
        elements = cfg.elements or present
        outside = sorted(set(present) - set(elements))
        if outside:
            raise DatasetError(f"{cfg.database}: the data hold {outside}, which are not in elements {elements}")
        return conversion, elements

    def _remaining(self, deadline: Optional[float]) -> Optional[float]:
        if deadline is None:
            return None
        left = deadline - time.monotonic()
        if left <= 0:
            raise ToolTimeoutError(
                f"the timeout of {self.config.timeout:g} s (for the whole run) was spent before the next step")
        return left

    def _run(self, argv: List[Any], workdir: Path, what: str, deadline: Optional[float]) -> None:
        try:
            result = run_tool(argv, workdir, workdir / LOG_FILE, self._remaining(deadline), self.echo)
        except ToolTimeoutError as exc:  # name the configured limit, not what was left of it
            raise ToolTimeoutError(
                f"{what} ran past the timeout of {self.config.timeout:g} s (for the whole run) and was terminated",
                exc.log_tail, exc.log_path) from None
        if result.returncode != 0:
            raise TrainingError(f"{what} failed with exit status {result.returncode}", result.tail,
                                workdir / LOG_FILE)

    def _prune(self, tools: Dict[str, Path], workdir: Path, deadline: Optional[float]) -> int:
        """Keep the D-optimal structures (pace_select on the target basis); returns how many."""
        from .dataset import read_frame

        prune = self.config.prune_with_activeset
        assert prune is not None
        self._run([tools["pacemaker"], INPUT_FILE, "--dry-run", "--no-predict"], workdir,
                  "pacemaker --dry-run (target basis for pruning)", deadline)
        target = workdir / "target_potential.yaml"
        if not target.is_file():
            raise self._failure(workdir, "pacemaker --dry-run wrote no target_potential.yaml to prune with")
        selected = workdir / "selected.pkl.gz"  # pace_select compresses only what pandas infers (.gz)
        self._run([tools["pace_select"], DATA_FILE, "-p", target.name, "-m", prune.max_structures,
                   "-g", prune.gamma_tolerance, "-i", prune.maxvol_iters, "-o", selected.name],
                  workdir, "pace_select (pruning)", deadline)
        if not selected.is_file():
            raise self._failure(workdir, "pace_select wrote no selection")
        frame = read_frame(selected)
        if len(frame) == 0:
            raise self._failure(workdir, "pace_select selected no structures")
        frame = frame[[c for c in frame.columns if c in ("name", "ase_atoms", "energy", "forces",
                                                         "energy_corrected")]]
        write_frame(frame.reset_index(drop=True), workdir / DATA_FILE)
        for stale in ("target_potential.yaml", "fitting_data_info.pckl.gzip", "test_data_info.pckl.gzip"):
            (workdir / stale).unlink(missing_ok=True)
        return len(frame)

    @staticmethod
    def _failure(workdir: Path, message: str, kind: type = TrainingError) -> TrainingError:
        """``kind(message)`` with the last lines of the work directory's log."""
        log = workdir / LOG_FILE
        lines = log.read_text(errors="replace").splitlines()[-TAIL_LINES:] if log.is_file() else []
        return kind(message, lines, log)

    def _place(self, src: Path, dst: Path) -> None:
        atomic_write(dst, lambda tmp: shutil.copyfile(src, tmp))

    # -- the whole run -------------------------------------------------------------------
    def train(self) -> Potential:
        """Fit and return the :class:`Potential`; raises :class:`TrainingError` (with the
        log's last lines) when a tool fails, :class:`~mlff.data.errors.DatasetError` for
        data that cannot be fitted, and leaves no output file on any failure."""
        cfg = self.config
        start = time.monotonic()
        deadline = None if cfg.timeout is None else start + cfg.timeout
        tools = self._tools()
        conversion, elements = self._dataset()
        output = Path(cfg.output)
        parent = Path(cfg.workdir) if cfg.workdir is not None else output.parent
        parent.mkdir(parents=True, exist_ok=True)
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        workdir = Path(tempfile.mkdtemp(prefix=f"{output.stem}-pacemaker-{stamp}-", dir=parent)).resolve()
        if self.echo:
            self.echo(f"mlff: pacemaker work directory {workdir}")

        write_frame(conversion.frame, workdir / DATA_FILE)
        n_structures = len(conversion.frame)
        (workdir / INPUT_FILE).write_text(render_input(cfg, elements, DATA_FILE))
        if cfg.prune_with_activeset is not None:
            n_structures = self._prune(tools, workdir, deadline)

        fit = [tools["pacemaker"], INPUT_FILE, "-o", BBASIS_FILE]
        if not cfg.predict:
            fit.append("--no-predict")
        self._run(fit, workdir, "pacemaker", deadline)
        if not (workdir / BBASIS_FILE).is_file():
            raise self._failure(workdir, f"pacemaker ended without writing {BBASIS_FILE}")

        self._run([tools["pace_yaml2yace"], BBASIS_FILE, "-o", f"{output.stem}.yace"], workdir,
                  "pace_yaml2yace", deadline)
        yace = sorted(workdir.glob("*.yace"))
        if len(yace) != 1:
            found = ", ".join(p.name for p in yace) or "none"
            raise self._failure(workdir, f"expected exactly one .yace in {workdir} after pace_yaml2yace, "
                                f"found {found}", NoPotentialError)

        asi: Optional[Path] = None
        if cfg.activeset:
            self._run([tools["pace_activeset"], BBASIS_FILE, "-d", "fitting_data_info.pckl.gzip"], workdir,
                      "pace_activeset", deadline)
            asi = workdir / "output_potential.asi"
            if not asi.is_file():
                raise self._failure(workdir, "pace_activeset wrote no output_potential.asi")

        try:
            metrics = final_metrics(workdir, workdir / LOG_FILE)
        except (ValueError, KeyError) as exc:
            raise self._failure(workdir, f"cannot read pacemaker's metrics: {exc}") from exc
        if "train" not in metrics:
            raise self._failure(workdir, "pacemaker wrote no training metrics (metrics.txt or log)")

        # the active set goes with the B-basis it was made for (the grade needs its B functions,
        # which a .yace merges); both before the .yace, which exists only when all succeeded
        placed: List[Path] = []
        try:
            if asi is not None:
                for src, dst in ((workdir / BBASIS_FILE, output.with_suffix(".yaml")),
                                 (asi, output.with_suffix(".asi"))):
                    self._place(src, dst)
                    placed.append(dst)
            self._place(yace[0], output)
        except BaseException:
            for path in placed:
                path.unlink(missing_ok=True)
            raise
        potential = Potential(
            path=output, format="yace", elements=list(elements), created=_dt.datetime.now(_dt.timezone.utc),
            metrics=metrics, workdir=workdir, activeset=output.with_suffix(".asi") if placed else None,
            bbasis=output.with_suffix(".yaml") if placed else None, n_structures=n_structures,
            skipped_structures=conversion.skipped, seconds=time.monotonic() - start,
            # what the energies mean: the potential predicts energy minus these references
            extra={"kappa": cfg.loss.kappa, "reference_energies": cfg.reference_energies,
                   "log": str(workdir / LOG_FILE)},
        )
        (workdir / "potential.json").write_text(json.dumps(potential.to_dict(), indent=2) + "\n")
        return potential
