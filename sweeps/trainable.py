"""The Ray Tune function trainable: one Ray trial trains one or more cells with the grid's task (``run_trial``).

Nothing here talks to MLflow. Every epoch is sent to the driver with ``ray.tune.report`` together with a
checkpoint (the trainer's checkpoint folder plus ``state.json`` saying which cell and epoch it belongs to);
each cell's end is a ``finish`` report whose checkpoint holds the trainer's artifacts, which the driver uploads.
A retried trial (``FailureConfig``) reads ``tune.get_checkpoint()``, skips the cells already finished and
restores the interrupted cell's trainer checkpoint, so training continues from the last reported epoch.

A trial's ``config`` is ``{"bundle": i}`` for a grid (cells = ``plan.bundles[i]``) or the values Optuna
suggested (cells = one per seed). Several pending cells of one Ray trial are trained together by
:func:`train_bundle` (``bundle:`` in the grid), else one after another; the report protocol is the
same either way.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from equitrack.task import get_task
from sweeps.protocol import Event
from sweeps.schema import Cell, GridFile, grid_overrides, make_cells

STATE_FILE = "state.json"


@dataclass
class Plan:
    """Everything a trial needs, shipped once to the workers with ``tune.with_parameters``."""

    grid: GridFile
    bundles: list[list[Cell]]
    workdir_root: str  # absolute; per cell: <root>/<config_id>-s<seed>
    done: dict[str, dict[str, float]] = field(default_factory=dict)  # "config_id/seed" -> final metrics (optuna)
    fault: list[dict[str, Any]] | None = None  # test hook (sweeps.run.DriverHooks.fault)
    env: dict[str, str] = field(default_factory=dict)  # set in the worker before training (e.g. EQUITRACK_CACHE)

    def cells_for(self, config: Mapping[str, Any]) -> list[Cell]:
        """The cells of one Ray trial, from its config (same answer on driver and worker)."""
        if "bundle" in config:
            return list(self.bundles[int(config["bundle"])])
        base = grid_overrides(self.grid)[0]
        values = {k: _plain(v) for k, v in config.items()}
        return make_cells(self.grid, {**base, **values}, source=self.grid.name, check_model=False)

    def workdir(self, cell: Cell) -> Path:
        return Path(self.workdir_root) / f"{cell.config_id}-s{cell.seed}"


def _plain(v: Any) -> Any:
    """numpy scalars from samplers -> Python scalars (stable hashes and YAML)."""
    return v.item() if hasattr(v, "item") else v


def cell_key(cell: Cell) -> str:
    return f"{cell.config_id}/{cell.seed}"


class _Injected(RuntimeError):
    """A fault raised on purpose by the test hook ``DriverHooks.fault``."""


class TuneReporter:
    """A task's trial reporter (``equitrack.reporter.Reporter`` protocol) that forwards a cell's life to Ray Tune."""

    def __init__(self, *, index: int, cell: Cell, workdir: Path, scratch: Path,
                 fault: list[dict[str, Any]] | None = None) -> None:
        self.index, self.cell, self.workdir, self.scratch = index, cell, workdir, scratch
        self.n_params = 0
        self.last: dict[str, float] = {}
        self.last_epoch = 0
        self.artifacts: list[Path] = []
        self.fault = fault

    def start(self, *, config: Mapping[str, Any], n_params: int) -> None:
        self.n_params = int(n_params)

    def epoch(self, *, epoch: int, metrics: Mapping[str, float], checkpoint_dir: Path | None) -> None:
        from ray import tune

        result = self.epoch_result(epoch, metrics)
        if checkpoint_dir is None:
            tune.report(result)
            return
        staged = self._stage("epoch", epoch)
        rel = _relative(Path(checkpoint_dir), self.workdir)
        shutil.copytree(checkpoint_dir, staged / "train")
        _write_state(staged, {"cell": self.index, "cell_key": cell_key(self.cell), "kind": "epoch", "epoch": int(epoch),
                              "rel": rel})
        tune.report(result, checkpoint=tune.Checkpoint.from_directory(staged))
        shutil.rmtree(staged, ignore_errors=True)

    def epoch_result(self, epoch: int, metrics: Mapping[str, float]) -> dict[str, Any]:
        """Record the epoch (the fault hook may raise here) and return the ``epoch`` event the driver logs
        (sweeps.callback): its metrics and the cell's identity."""
        self._maybe_fail(epoch)
        self.last = {k: float(v) for k, v in metrics.items()}
        self.last_epoch = int(epoch)
        return {**self.last, "epoch": int(epoch), "n_params": self.n_params, "cell": self.index,
                "cell_key": cell_key(self.cell), "event": Event.EPOCH, "node_id": _node_id()}

    def artifact(self, path: Path) -> None:
        self.artifacts.append(Path(path))

    def finish(self, *, metrics: Mapping[str, float]) -> None:
        from ray import tune

        final = {k: float(v) for k, v in metrics.items()}
        staged = self._stage("final", self.last_epoch)
        art = staged / "artifacts"
        art.mkdir()
        for p in self.artifacts:
            if p.is_file():
                shutil.copy2(p, art / p.name)
        _write_state(staged, {"cell": self.index, "cell_key": cell_key(self.cell), "kind": "final",
                              "epoch": self.last_epoch, "final": final})
        result = {**self.last, **final, "epoch": self.last_epoch, "cell": self.index, "cell_key": cell_key(self.cell),
                  "event": Event.FINISH, "final": final}
        tune.report(result, checkpoint=tune.Checkpoint.from_directory(staged))
        shutil.rmtree(staged, ignore_errors=True)

    def fail(self, *, error: BaseException) -> None:
        """A cell run alone raises instead (the Ray trial fails); a bundle member reports it
        (sweeps.bundling's ``MemberReporter``)."""

    def _stage(self, kind: str, epoch: int) -> Path:
        path = Path(tempfile.mkdtemp(prefix=f"{kind}-{epoch:04d}-", dir=self.scratch))
        return path

    def _maybe_fail(self, epoch: int) -> None:
        for f in self.fault or []:
            if f.get("match", "") not in self.cell.run_name or epoch < int(f.get("epoch", 1)):
                continue
            counter = self.workdir / ".injected_faults"
            n = int(counter.read_text()) if counter.exists() else 0
            if n < int(f.get("times", 1)):
                counter.write_text(str(n + 1))
                raise _Injected(f"injected fault #{n + 1} in {self.cell.run_name} at epoch {epoch} (test hook)")


def _node_id() -> str:
    """The Ray node this runs on; "" outside Ray (asking Ray's runtime context there would start a local Ray)."""
    try:
        import ray

        if not ray.is_initialized():
            return ""
        return str(ray.get_runtime_context().get_node_id())
    except Exception:
        return ""


def _relative(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path.resolve())


def _write_state(folder: Path, state: dict[str, Any]) -> None:
    (folder / STATE_FILE).write_text(json.dumps(state))


def read_state(folder: Path) -> dict[str, Any] | None:
    path = Path(folder) / STATE_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def _restore(plan: Plan, cells: list[Cell]) -> int:
    """Apply ``tune.get_checkpoint()``: return the first cell index still to train (its trainer state restored)."""
    from ray import tune

    ckpt = tune.get_checkpoint()
    if ckpt is None:
        return 0
    with ckpt.as_directory() as folder:
        state = read_state(Path(folder))
        if state is None:
            return 0
        index = int(state["cell"])
        if state["kind"] == "final":
            return index + 1
        target = Path(state["rel"])
        if not target.is_absolute():
            target = plan.workdir(cells[index]) / target
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(Path(folder) / "train", target)
        return index


def train_bundle(members: Sequence[tuple[int, Cell]], *, plan: Any, scratch: Path) -> list[dict[str, float]]:
    """Train ``(index, cell)`` pairs of one Ray trial together; every member reports as its own cell.

    Members' epoch reports carry no Ray checkpoint: each member's resumable state is its trainer checkpoint in its
    own workdir (``plan.workdir(cell)``, on the driver's file system or shared storage), which a retried bundle
    resumes from; only each member's final report carries a checkpoint (its artifacts, uploaded by the driver).
    The members' epochs of one round go to the driver as one ``epochs`` report (Ray holds the trial until the
    driver has taken each report, so K reports per epoch would cost K round trips); a member's ``fail`` or
    ``finish`` report first sends the epochs before it. Returns the final metrics of the members that finished.
    """
    from ray import tune

    task = get_task(plan.grid.task)
    run_bundle = task.bundling.run  # type: ignore[union-attr]

    pending: list[dict[str, Any]] = []  # the round's epoch results, in the order the members reported them

    def flush() -> None:
        if pending:
            tune.report({"event": Event.EPOCHS, "members": list(pending), "epoch": max(r["epoch"] for r in pending)})
            pending.clear()

    class MemberReporter(TuneReporter):
        """A cell's TuneReporter inside a bundle: buffered epoch reports without Ray checkpoints, member failures."""

        def epoch(self, *, epoch: int, metrics: Any, checkpoint_dir: Path | None) -> None:
            pending.append(self.epoch_result(epoch, metrics))

        def finish(self, *, metrics: Any) -> None:
            flush()
            super().finish(metrics=metrics)

        def fail(self, *, error: BaseException) -> None:
            flush()
            tune.report({"event": Event.FAIL, "cell": self.index, "cell_key": cell_key(self.cell),
                         "error": f"{type(error).__name__}: {error}", "epoch": self.last_epoch})

    configs, reporters, workdirs = [], [], []
    for index, cell in members:
        wd = plan.workdir(cell)
        wd.mkdir(parents=True, exist_ok=True)
        configs.append(cell.config)
        reporters.append(MemberReporter(index=index, cell=cell, workdir=wd, scratch=scratch, fault=plan.fault))
        workdirs.append(wd)

    def log(line: str) -> None:  # how the bundle runs (strategy, final evaluation, CUDA graph), beside each member
        stamp = datetime.now().isoformat(sep=" ", timespec="milliseconds")
        for wd in workdirs:
            with (wd / "bundle.log").open("a") as fh:
                fh.write(f"{stamp} {line}\n")

    results = run_bundle(configs, reporters, workdirs=workdirs, strategy=plan.grid.bundle_strategy, resume=True,
                         log=log, final_eval=plan.grid.bundle_final_eval, on_round_end=flush,
                         cuda_graphs=plan.grid.bundle_cuda_graphs)
    flush()
    return [dict(r.metrics) for r in results if r.status == "FINISHED"]


def sweep_trainable(config: dict[str, Any], *, plan: Plan) -> None:
    """Ray Tune entry point (wrapped with ``tune.with_parameters(sweep_trainable, plan=plan)``)."""
    from ray import tune

    task = get_task(plan.grid.task)
    os.environ.update(plan.env)
    _limit_threads()
    cells = plan.cells_for(config)
    start = _restore(plan, cells)
    finals: list[dict[str, float]] = []
    scratch = Path(tempfile.mkdtemp(prefix="equitrack-trial-"))
    try:
        pending = [(i, c) for i, c in enumerate(cells) if cell_key(c) not in plan.done]
        if len(pending) > 1 and _bundled(plan):
            for index, cell in enumerate(cells):
                if cell_key(cell) in plan.done:
                    final = plan.done[cell_key(cell)]
                    tune.report({**final, "cell": index, "cell_key": cell_key(cell), "event": Event.KNOWN,
                                 "final": final})
                    finals.append(final)
            finals += train_bundle(pending, plan=plan, scratch=scratch)  # resumes each member from its workdir
        sequential = [] if len(pending) > 1 and _bundled(plan) else cells
        for index, cell in enumerate(sequential):
            if index < start:
                continue
            if cell_key(cell) in plan.done:  # an Optuna suggestion that repeats a finished run
                final = plan.done[cell_key(cell)]
                tune.report({**final, "cell": index, "cell_key": cell_key(cell), "event": Event.KNOWN,
                             "final": final})
                finals.append(final)
                continue
            workdir = plan.workdir(cell)
            workdir.mkdir(parents=True, exist_ok=True)
            reporter = TuneReporter(index=index, cell=cell, workdir=workdir, scratch=scratch, fault=plan.fault)
            result = task.run_trial(cell.config, reporter, workdir=workdir, resume=True)
            finals.append(dict(result.metrics))
        if len(cells) > 1 and finals:
            keys = set.intersection(*(set(f) for f in finals))
            mean = {k: sum(f[k] for f in finals) / len(finals) for k in keys}
            tune.report({**mean, "event": Event.SUMMARY, "cell": -1})
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _bundled(plan: Plan) -> bool:
    """Whether this grid trains the cells of a Ray trial together (``bundle:`` not ``none``)."""
    from sweeps.bundling import bundle_axes

    return bool(bundle_axes(plan.grid))


def _limit_threads() -> None:
    """Match torch's intra-op threads to the CPUs Ray gave this trial (avoid oversubscription)."""
    try:
        import ray
        import torch

        cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1)
        torch.set_num_threads(max(1, int(cpus)))
    except Exception:
        pass
