"""The active-learning driver: explore -> select -> label -> retrain, until converged or out of budget.

Layout of ``output_dir``::

    state.json             finished stages (mlff.learn.state); the only thing a resume reads
    dataset.db             the training store: initial data + every labelled frame
    initial.db             (initial_sampling only) the initial labels, resumable like `mlff label`
    it0/member<m>/         bootstrap training runs (one mlff train output_dir per member)
    it0/committee.pt
    it<k>/frames.npz       explored frames with the previous model's forces and uncertainty
    it<k>/selection.json   the trust-window counts and the chosen frames
    it<k>/member<m>/, it<k>/committee.pt
    report.csv, report.png

Every stage writes its result atomically, then marks itself in ``state.json``; a kill
anywhere makes the next run repeat at most the unfinished stage, and every stage is safe
to repeat:

- exploration and selection are deterministic (seeded per iteration and trajectory) and
  overwrite their file;
- labelling stores frame ``f`` of iteration ``k`` as ``sample_id = "it<k>-<f>"``, one row
  per transaction, and skips ids already stored: nothing is lost or stored twice;
- training resumes each member from its ``last.ckpt`` (mlff train's resume), members
  already finished are skipped;
- the committee and the report are rebuilt from files.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List

import numpy as np

from .. import __version__
from ..atomic import atomic_write
from .config import LearnConfig, check_consistent, is_ace, member_config
from .state import LearnState

STORE_NAME = "dataset.db"


def _say(msg: str) -> None:
    print(msg, flush=True)


@dataclass
class LearnSummary:
    output_dir: Path
    reason: str
    iterations: int  # exploration iterations run (the bootstrap not counted)
    model: str  # the final model (committee .pt, or ACE .yaml)
    dataset: Path
    rows: List[Dict[str, Any]] = field(default_factory=list)


class _Run:
    """One invocation of the loop over a (possibly resumed) state."""

    def __init__(self, cfg: LearnConfig, log: Callable[[str], None]):
        from ..data.label import parse_structure
        from ..data.teachers import make_teacher

        check_consistent(cfg)
        self.cfg = cfg
        self.log = log
        self.out = Path(cfg.output_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.store = self.out / STORE_NAME
        self.ace = is_ace(cfg)
        self.spec = {"name": cfg.teacher.name, "settings": dict(cfg.teacher.settings)}
        # the driver's own teacher: its name, fidelity and coverage describe every row
        self.teacher = make_teacher(cfg.teacher.name, **cfg.teacher.settings)
        self.structures = [a for s in cfg.structures for a in parse_structure(s, cfg.repeat)]
        self.teacher.check_covers({s for a in self.structures for s in a.get_chemical_symbols()})
        self.state = LearnState.open(self.out / "state.json", cfg.fingerprint())

    def dir(self, k: int) -> Path:
        return self.out / f"it{k}"

    def store_metadata(self) -> Dict[str, Any]:
        return {**self.teacher.describe(), "provenance": {"tool": "mlff learn", "mlff_version": __version__}}

    # ------------------------------------------------------------------ bootstrap
    def initial(self) -> Dict[str, Any]:
        from ..data.store import read_metadata, read_records, write_records

        cfg = self.cfg
        if cfg.initial_data is not None:
            source = Path(cfg.initial_data)
            meta = read_metadata(source)
            for key, mine in (("teacher", self.teacher.name), ("fidelity", self.teacher.fidelity)):
                if meta.get(key) is not None and meta[key] != mine:
                    raise ValueError(
                        f"initial_data {source} was labelled by {key} {meta[key]!r}, the loop's teacher is "
                        f"{mine!r}: one training store must hold one potential-energy surface"
                    )
        else:
            from ..data.label import label

            source = self.out / "initial.db"  # mlff label resumes this by sample_id after a kill
            label(source, self.structures, self.teacher, cfg.initial_sampling, progress=False)
        records = read_records(source)
        for rec in records:
            if rec.fidelity is not None and rec.fidelity != self.teacher.fidelity:
                raise ValueError(f"initial_data {source}: structure {rec.id} has fidelity {rec.fidelity!r}, "
                                 f"the teacher labels {self.teacher.fidelity!r}")
            rec.fidelity = self.teacher.fidelity  # untagged rows: the metadata check above vouches for them
        # the store is created whole (renamed into place): repeating this stage after a
        # kill replaces it, and no later stage has written to it yet
        write_records(self.store, records, self.store_metadata(), mode="overwrite")
        self.log(f"[mlff learn] initial data: {len(records)} structures from {source} -> {self.store}")
        return {"n_data": len(records), "source": str(source)}

    # ------------------------------------------------------------------ training
    def train_members(self, k: int) -> Dict[str, Any]:
        from ..training.trainer import train

        progress = dict(self.state.partial(k, "trained"))
        prev = self.state.result(k - 1, "trained")["members"] if k > 0 else None
        for m in range(self.cfg.members):
            if str(m) in progress:
                continue
            mdir = self.dir(k) / f"member{m}"
            init_from = None if prev is None else prev[str(m)]["warm_start"]
            tcfg = member_config(self.cfg, self.store, mdir, m, init_from)
            if not tcfg.run.export:
                tcfg = tcfg.model_copy(update={"run": tcfg.run.model_copy(update={"export": True})})
            resume = (mdir / "checkpoints" / "last.ckpt").exists() and not self.ace
            if not resume and mdir.exists():
                shutil.rmtree(mdir)  # a run killed before its first checkpoint (or an ACE fit) starts again
            self.log(f"[mlff learn] iteration {k}: training member {m} (seed {tcfg.run.seed}"
                     + (f", warm start from {init_from}" if init_from else "")
                     + (", resumed from its checkpoint" if resume else "") + ")")
            summary = train(tcfg, resume=resume)
            if self.ace:
                files = summary["files"]
                if "asi" not in files:
                    raise RuntimeError(f"the ACE fit in {mdir} wrote no active set ({files.get('asi_error')}): "
                                       "the extrapolation grade cannot be computed")
                entry = {"model": files["yaml"], "activeset": files["asi"], "warm_start": files["yaml"]}
            else:
                entry = {"model": summary["model"], "warm_start": summary["best_checkpoint"],
                         "valid_force_rmse": (summary.get("valid") or {}).get("force_rmse")}
            progress[str(m)] = entry
            self.state.save_partial(k, "trained", progress)
        return {"members": progress}

    def committee(self, k: int) -> Dict[str, Any]:
        members = self.state.result(k, "trained")["members"]
        if self.ace:
            only = members["0"]
            return {"model": only["model"], "activeset": only["activeset"]}
        from ..uncertainty.committee import build_committee

        path = self.dir(k) / "committee.pt"
        build_committee([members[str(m)]["model"] for m in range(self.cfg.members)], path)
        self.log(f"[mlff learn] iteration {k}: committee of {self.cfg.members} members -> {path}")
        return {"model": str(path), "activeset": None}

    # ------------------------------------------------------------------ an iteration
    def explore(self, k: int) -> Dict[str, Any]:
        from .explore import explore

        model = self.state.result(k - 1, "committee")
        frames = explore(model["model"], self.structures, self.cfg.explore, k, model.get("activeset"), self.log)
        path = self.dir(k) / "frames.npz"
        frames.save(path)
        return {"frames": str(path), "n_explored": len(frames)}

    def select(self, k: int) -> Dict[str, Any]:
        from .explore import Frames
        from .select import select_frames

        frames = Frames.load(self.state.result(k, "explored")["frames"])
        model = self.state.result(k - 1, "committee")
        cutoff = 5.0
        if not self.ace:
            from ..contract import read_metadata

            cutoff = float(read_metadata(model["model"]).cutoff)
        sel = select_frames(frames, self.cfg.select, self.ace, cutoff)
        text = json.dumps(sel.to_dict(), indent=1)
        atomic_write(self.dir(k) / "selection.json", lambda tmp: Path(tmp).write_text(text))
        self.log(f"[mlff learn] iteration {k}: {sel.n_explored} frames, {sel.n_accurate} accurate, "
                 f"{sel.n_candidates} in [{sel.window[0]:g}, {sel.window[1]:g}), {sel.n_failed} failed "
                 f"(uncertain fraction {sel.uncertain_fraction:.3f}); {len(sel.selected)} selected")
        return sel.to_dict()

    def label(self, k: int) -> Dict[str, Any]:
        from ..data.locking import store_lock
        from ..data.store import read_records, write_records
        from .executor import label_frame, make_executor
        from .explore import Frames

        sel = self.state.result(k, "selected")
        frames = Frames.load(self.state.result(k, "explored")["frames"])
        prefix = f"it{k}-"
        lcfg = self.cfg.label
        t0 = time.perf_counter()
        # one labelling session per store: a second `mlff learn` on this output_dir waits here
        with store_lock(self.store):
            done = {rec.info.get("sample_id") for rec in read_records(self.store)}
            todo = [i for i in sel["selected"] if prefix + frames.ids[i] not in done]
            if todo:
                executor = make_executor(lcfg.executor, lcfg.workers, lcfg.scheduler)
                self.log(f"[mlff learn] iteration {k}: labelling {len(todo)} frames "
                         f"({len(sel['selected']) - len(todo)} already stored) on {executor.describe()}")
                payload = [
                    {"numbers": frames.numbers[i], "positions": frames.positions[i], "cell": frames.cells[i],
                     "pbc": frames.pbc[i], "info": frames.info[i]}
                    for i in todo
                ]
                with executor:
                    # results come back in frame order: the store's row order is the frame
                    # order whatever the executor and the completion order
                    for i, labels in zip(todo, executor.map(label_frame, self.spec, payload)):
                        write_records(self.store, [self._record(k, frames, i, labels)])
            records = read_records(self.store)
        n_new = sum(1 for r in records if str(r.info.get("sample_id", "")).startswith(prefix))
        self.log(f"[mlff learn] iteration {k}: {n_new} labelled frames stored, {len(records)} structures "
                 f"in {self.store} ({time.perf_counter() - t0:.1f} s)")
        return {"n_labelled": n_new, "n_data": len(records)}

    def _record(self, k: int, frames: Any, i: int, labels: Dict[str, Any]):
        from ..data.records import Record

        sample_id = f"it{k}-{frames.ids[i]}"
        info: Dict[str, Any] = {
            "sample_id": sample_id,
            "sample_kind": "learn",
            "iteration": k,
            "frame": frames.ids[i],
            "temperature": frames.temperature[i],
            "uncertainty": frames.deviation[i],
            "teacher": self.teacher.name,
            "teacher_settings": dict(self.teacher.settings),
        }
        if not np.isnan(frames.pressure[i]):
            info["pressure"] = frames.pressure[i]
        rec = Record(
            id=sample_id, numbers=np.asarray(frames.numbers[i]), positions=np.asarray(frames.positions[i]),
            cell=np.asarray(frames.cells[i]), pbc=np.asarray(frames.pbc[i]), energy=labels["energy"],
            forces=labels["forces"], stress=labels["stress"], info=info, charges=labels["charges"],
            fidelity=self.teacher.fidelity,
        )
        if self.teacher.takes_charge:
            from ..data.electronic_state import charge_and_mult

            charge, rec.mult = charge_and_mult(frames.atoms(i))
            rec.charge = float(charge)
        return rec

    # ------------------------------------------------------------------ report
    def report_row(self, k: int) -> Dict[str, Any]:
        from ..data.store import read_records
        from .explore import Frames

        sel = self.state.result(k, "selected")
        row: Dict[str, Any] = {
            "iteration": k,
            **{key: sel[key] for key in ("n_explored", "n_accurate", "n_candidates", "n_failed",
                                         "uncertain_fraction")},
            "n_selected": len(sel["selected"]),
        }
        if not self.state.done(k, "labelled"):
            return row
        lab = self.state.result(k, "labelled")
        row.update(n_labelled=lab["n_labelled"], n_data=lab["n_data"])
        frames = Frames.load(self.state.result(k, "explored")["frames"])
        by_id = {f"it{k}-{fid}": i for i, fid in enumerate(frames.ids)}
        diffs = [r.forces - frames.forces[by_id[r.info["sample_id"]]] for r in read_records(self.store)
                 if r.info.get("sample_id") in by_id and r.forces is not None]
        if diffs:
            row["force_rmse_new"] = float(np.sqrt(np.mean(np.concatenate([d.ravel() for d in diffs]) ** 2)))
        if self.cfg.test_data and self.state.done(k, "committee"):
            row.update(self.test_errors(self.state.result(k, "committee")))
        return row

    def test_errors(self, model: Dict[str, Any]) -> Dict[str, float]:
        from ..calculator import MLFFCalculator
        from ..data.store import read_records

        calc = MLFFCalculator(model["model"], compile=False, activeset=model.get("activeset"))
        df: List[np.ndarray] = []
        de: List[float] = []
        for rec in read_records(self.cfg.test_data):
            atoms = rec.to_atoms()
            atoms.calc = calc
            if rec.forces is not None:
                df.append((atoms.get_forces() - rec.forces).ravel())
            if rec.energy is not None:
                de.append((atoms.get_potential_energy() - rec.energy) / len(atoms))
        out: Dict[str, float] = {}
        if df:
            out["test_force_rmse"] = float(np.sqrt(np.mean(np.concatenate(df) ** 2)))
        if de:
            out["test_energy_rmse_per_atom"] = float(np.sqrt(np.mean(np.square(de))))
        return out

    def _n_data(self, k: int) -> int:
        """Structures in the store after iteration ``k``."""
        if k == 0:
            return int(self.state.result(0, "initial")["n_data"])
        return int(self.state.result(k, "labelled")["n_data"])

    def rows(self) -> List[Dict[str, Any]]:
        rows = [self.state.result(k, "reported") for k in self.state.iterations() if k > 0
                and self.state.done(k, "reported")]
        fin = self.state.finished
        if fin and fin.get("row"):
            rows.append(fin["row"])
        return rows

    def write_report(self) -> None:
        from .report import format_table, write_report

        rows = self.rows()
        if rows:
            write_report(rows, self.out)
            self.log(format_table(rows))

    # ------------------------------------------------------------------ the loop
    def run(self) -> LearnSummary:
        st = self.state
        cfg = self.cfg
        fin = st.finished
        if fin and fin["reason"] == "iteration budget" and cfg.stop.max_iterations > fin["iteration"]:
            self.log(f"[mlff learn] continuing past iteration {fin['iteration']}: the budget is now "
                     f"{cfg.stop.max_iterations}")
            st.reopen()
        if st.finished is None:
            for stage, fn in (("initial", self.initial), ("trained", self.train_members),
                              ("committee", self.committee)):
                if not st.done(0, stage):
                    st.mark(0, stage, fn(0) if stage != "initial" else fn())
            self._iterate()
        fin = st.finished
        return LearnSummary(self.out, fin["reason"], fin["iteration"], fin["model"], self.store, self.rows())

    def _iterate(self) -> None:
        st, cfg = self.state, self.cfg
        k = 1
        while True:
            if k > cfg.stop.max_iterations:
                model = st.result(k - 1, "committee")["model"]
                st.finish("iteration budget", k - 1, model)
                self.log(f"[mlff learn] iteration budget ({cfg.stop.max_iterations}) spent; model: {model}")
                return
            if st.done(k, "reported"):
                k += 1
                continue
            self.log(f"[mlff learn] ---- iteration {k}")
            if not st.done(k, "explored"):
                st.mark(k, "explored", self.explore(k))
            if not st.done(k, "selected"):
                st.mark(k, "selected", self.select(k))
            sel = st.result(k, "selected")
            if sel["uncertain_fraction"] < cfg.stop.uncertain_fraction:
                model = st.result(k - 1, "committee")["model"]
                row = self.report_row(k)
                # converged: the selected frames are not labelled, the store stays as it was
                row.update(n_labelled=0, n_data=self._n_data(k - 1))
                st.data["finished"] = {"reason": "converged", "iteration": k, "model": model, "row": row}
                st.save()
                self.write_report()
                self.log(f"[mlff learn] converged: uncertain fraction {sel['uncertain_fraction']:.3f} < "
                         f"{cfg.stop.uncertain_fraction:g}; model: {model}")
                return
            if not st.done(k, "labelled"):
                st.mark(k, "labelled", self.label(k))
            if not st.done(k, "trained"):
                if st.result(k, "labelled")["n_labelled"] == 0:
                    # nothing new to learn from (every frame failed): keep the previous members
                    st.mark(k, "trained", {**st.result(k - 1, "trained"), "reused": True})
                else:
                    st.mark(k, "trained", self.train_members(k))
            if not st.done(k, "committee"):
                if st.result(k, "trained").get("reused"):
                    st.mark(k, "committee", st.result(k - 1, "committee"))
                else:
                    st.mark(k, "committee", self.committee(k))
            st.mark(k, "reported", self.report_row(k))
            self.write_report()
            k += 1


def learn(cfg: LearnConfig, log: Callable[[str], None] = _say) -> LearnSummary:
    """Run (or resume) the active-learning loop described by ``cfg``; see the module docstring."""
    return _Run(cfg, log).run()


__all__ = ["LearnSummary", "STORE_NAME", "learn"]
