"""Driver-side Ray Tune callback: turns trial events into MLflow writes and terminal progress.

Ray calls these hooks in the driver's Tune loop, one at a time, and lets a trial go on only after they return.
The hooks therefore only read results and queue MLflow writes on :class:`~sweeps.tracking.WriteBehind`, whose one
thread is the only MLflow writer while Tune runs, in the order the events came. Per-epoch results become metrics
with ``step=epoch`` (epochs already logged by an earlier attempt are skipped); a bundle sends all its members'
epochs of a round in one ``epochs`` report; a ``finish`` report logs the final metrics, and its checkpoint (the
trainer's artifacts) is copied aside and uploaded in :meth:`on_checkpoint`; a ``fail`` report (a bundle member
that failed while the others go on) and errors after the last retry mark the cell's run FAILED with the error.

With ``timings`` (a benchmark's hook, ``--timings FILE``), one JSON line per Ray trial is appended to that file:
driver times of the trial's start, its first epoch report (a bundle's first round) with the cells it held and the
worker's pid, its end, and its number of cells (benchmarks/sweep_e2e.py reads them).
"""

from __future__ import annotations

import csv
import json
import logging
import shutil
import tempfile
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ray import tune

from equitrack.task import get_task
from sweeps.protocol import Event, Status
from sweeps.schema import Cell
from sweeps.tracking import SweepTracker, WriteBehind, resolve_run_id
from sweeps.trainable import Plan, cell_key, read_state

log = logging.getLogger(__name__)


@dataclass
class CellState:
    cell: Cell
    run: str | Future[str]  # the child run's id, or the writer's future of it (created behind, WriteBehind)
    last_step: int = 0  # epochs 1..last_step were logged by an earlier invocation
    status: Status = Status.SCHEDULED
    final: dict[str, float] | None = None
    artifacts: bool = False
    started: float = 0.0
    logged: set[int] = field(default_factory=set)  # epochs logged by this invocation

    @property
    def run_id(self) -> str:
        """The child run's id (waits for its creation when it was created behind)."""
        return resolve_run_id(self.run)


class SweepCallback(tune.Callback):
    """Receives ``on_trial_*`` events on the driver and writes them to MLflow through ``tracker``."""

    def __init__(self, *, tracker: SweepTracker, plan: Plan, states: dict[str, CellState], display: Any,
                 existing: dict[tuple[str, int], Any] | None = None, writer: WriteBehind | None = None,
                 timings: Path | None = None) -> None:
        self.tracker, self.plan, self.states, self.display = tracker, plan, states, display
        self.existing = existing or {}
        self.trial_cells: dict[str, list[str]] = {}
        self.timings = timings
        self._times: dict[str, dict[str, Any]] = {}
        self.writer = writer if writer is not None else WriteBehind()
        self.epoch_keys = get_task(plan.grid.task).epoch_metrics  # the per-epoch metrics logged with step=epoch

    def __getstate__(self) -> dict[str, Any]:
        """Tune pickles its run config into the experiment state; the live writer stays on this driver."""
        return {"trial_cells": self.trial_cells, "timings": self.timings, "_times": {}}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    # helpers -----------------------------------------------------------------------------------------------

    def _write(self, st: CellState, method: str, *args: Any, **kwargs: Any) -> None:
        """Queue ``tracker.<method>(run_id, ...)`` for the cell's run (its id is known by the time it runs)."""
        run = st.run
        fn = getattr(self.tracker, method)
        self.writer.submit(lambda: fn(resolve_run_id(run), *args, **kwargs))

    def _cells(self, trial: Any) -> list[CellState]:
        keys = self.trial_cells.get(trial.trial_id)
        if keys is None:
            keys = []
            for cell in self.plan.cells_for(trial.config):
                k = cell_key(cell)
                if k not in self.states:  # Optuna: the cell is only known now
                    old = self.existing.get(cell.key)
                    if old is not None and old.status == "FINISHED":
                        continue
                    if old is not None:
                        self.writer.submit(self.tracker.reschedule, old.run_id)
                        run: str | Future[str] = old.run_id
                    else:
                        run = self.writer.submit(self.tracker.create_child, cell)
                    self.states[k] = CellState(cell, run, last_step=getattr(old, "last_step", 0))
                keys.append(k)
            self.trial_cells[trial.trial_id] = keys
        return [self.states[k] for k in keys]

    def _end(self, st: CellState, status: Status, *, error: str | None = None) -> None:
        if st.status.ended:
            return
        if status == Status.FINISHED and not st.artifacts:
            self._write(st, "set_tags", {"artifacts": "missing"})
        self._write(st, "end_child", status, error=error)
        st.status = status
        self.display.cell_end(st, status, error=error)

    # Tune hooks --------------------------------------------------------------------------------------------

    def _timing(self, trial: Any) -> dict[str, Any]:
        return self._times.setdefault(trial.trial_id, {"trial_id": trial.trial_id, "start": None,
                                                       "first_epoch": None, "first_cell_key": None, "end": None})

    def _flush_timing(self, trial: Any) -> None:
        if self.timings is None:
            return
        t = self._timing(trial)
        t["end"] = time.time()
        t["cells"] = len(self.trial_cells.get(trial.trial_id, []))
        with open(self.timings, "a") as fh:
            fh.write(json.dumps(t) + "\n")

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        t = self._timing(trial)
        t["start"] = time.time() if t["start"] is None else t["start"]
        attempt = int(getattr(trial, "num_failures", 0)) + 1
        for st in self._cells(trial):
            if st.status in (Status.FINISHED, Status.PRUNED):
                continue
            self._write(st, "start_child", attempt=attempt, ray_trial_id=trial.trial_id)
            st.status, st.started = Status.RUNNING, time.time()
            self.display.cell_start(st, attempt)

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        for st in self._cells(trial):
            if st.status == Status.RUNNING:
                self._write(st, "set_tags", {"retries": str(int(getattr(trial, "num_failures", 0)))})
        self.display.note(f"[yellow]retrying[/] {trial.trial_id} from its last checkpoint "
                          f"(failure {getattr(trial, 'num_failures', '?')})")

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        event = result.get("event")
        if event in (Event.EPOCH, Event.EPOCHS):
            t = self._timing(trial)
            if t["first_epoch"] is None:
                keys = [m.get("cell_key") for m in (result.get("members") or [result])]
                t["first_epoch"], t["first_cell_key"], t["first_cell_keys"] = time.time(), keys[0], keys
                t["pid"] = result.get("pid")  # the worker process (Tune fills it in): reused or fresh
        if event == Event.EPOCHS:  # a bundle's round: every member's epoch in one report
            for member in result.get("members") or []:
                self._epoch(member)
            return
        key = result.get("cell_key")
        st = self.states.get(key) if key else None
        if st is None:
            return
        if event == Event.EPOCH:
            self._epoch(result)
        elif event == Event.FAIL:  # a bundle member; the bundle goes on
            self._end(st, Status.FAILED, error=str(result.get("error", "member failed")))
        elif event == Event.FINISH:
            st.final = dict(result.get("final") or {})
            self._write(st, "log_metrics", st.final, step=0)

    def _epoch(self, result: dict) -> None:
        st = self.states.get(result.get("cell_key", ""))
        if st is None:
            return
        epoch = int(result["epoch"])
        if epoch > st.last_step and epoch not in st.logged:
            self._write(st, "log_epoch", {k: result[k] for k in self.epoch_keys if k in result}, step=epoch,
                        tags={"last_epoch": str(epoch), "ray_node_id": str(result.get("node_id", ""))})
            st.logged.add(epoch)
        self.display.cell_epoch(st, epoch, result)

    def on_checkpoint(self, iteration: int, trials: list, trial: Any, checkpoint: Any, **info: Any) -> None:
        with checkpoint.as_directory() as folder:
            state = read_state(Path(folder))
            if not state or state.get("kind") != "final":
                return
            st = self.states.get(state["cell_key"])
            if st is None or st.status in (Status.FINISHED, Status.FAILED):
                return
            if st.final is None:
                st.final = dict(state.get("final") or {})
                self._write(st, "log_metrics", st.final, step=0)
            self._backfill(st, Path(folder) / "artifacts" / "history.csv")
            # the checkpoint folder may be temporary: the writer uploads a copy, then removes it
            staged = Path(tempfile.mkdtemp(prefix="equitrack-upload-"))
            shutil.copytree(Path(folder) / "artifacts", staged, dirs_exist_ok=True)
            self._write(st, "log_artifacts", staged)
            self.writer.submit(shutil.rmtree, staged, ignore_errors=True)
            st.artifacts = True
        self._end(st, Status.FINISHED)

    def _backfill(self, st: CellState, history: Path) -> None:
        """Log epochs the driver never received (a crash between the trainer's checkpoint and its report)."""
        if not history.is_file():
            return
        with history.open() as fh:
            for row in csv.DictReader(fh):
                try:
                    epoch = int(float(row["epoch"]))
                except (KeyError, ValueError):
                    continue
                if epoch > st.last_step and epoch not in st.logged:
                    values = {}
                    for k in self.epoch_keys:
                        try:
                            values[k] = float(row[k])
                        except (KeyError, TypeError, ValueError):
                            pass
                    self._write(st, "log_metrics", values, step=epoch)
                    st.logged.add(epoch)
        if st.logged:
            self._write(st, "set_tags", {"last_epoch": str(max(st.logged))})

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        for st in self._cells(trial):
            if st.status.ended:
                continue
            # the trial ended without this cell's artifacts: final metrics mean finished, none mean pruned
            self._end(st, Status.FINISHED if st.final is not None else Status.PRUNED)
        self._flush_timing(trial)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        error = _error_text(trial)
        for st in self._cells(trial):
            if not st.status.ended:
                self._end(st, Status.FAILED, error=error)
        self._flush_timing(trial)

    def kill_unfinished(self) -> int:
        """After an interrupted ``fit``: every cell this sweep started or scheduled but did not end -> KILLED."""
        n = 0
        for st in self.states.values():
            if not st.status.ended:
                self._write(st, "end_child", Status.KILLED)
                st.status = Status.KILLED
                n += 1
        return n


def _error_text(trial: Any) -> str:
    text = None
    try:
        text = trial.get_error()
    except Exception:
        text = None
    if not text and getattr(trial, "error_file", None):
        try:
            text = Path(trial.error_file).read_text()
        except OSError:
            text = None
    return str(text or f"trial {trial.trial_id} failed (no error text recorded by Ray)")
