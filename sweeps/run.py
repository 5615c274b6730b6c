"""``python -m sweeps.run GRID.yaml``: run a grid (or Optuna) sweep on Ray Tune with every trial in MLflow.

Order of work (:class:`SweepDriver`): validate and resolve the grid and plan its bundles, once (exit 2 on any
error), probe the tracking store (exit 3 if it does not answer within 10 s), start or join Ray on a background
thread, create the experiment and open the sweep's parent run, match existing child runs by (config_id, seed) to
decide what runs (an :class:`~sweeps.protocol.Action` per cell), prepare each dataset once with the grid's task, wait
for Ray, run the trials with the driver-side MLflow callback, then close the parent and print the results table.
Exit status: 0 all cells finished (or pruned), 1 some failed, 2 bad grid or options, 3 tracking store unreachable,
130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console

from equitrack.task import get_task
from sweeps.protocol import Action, Status
from sweeps.ray_local import RayBoot, gpus_per_trial
from sweeps.schema import Cell, GridError, GridFile, distinct_names, grid_overrides, load_grid, resolve

log = logging.getLogger("sweeps")

EXIT_OK, EXIT_FAILED, EXIT_CONFIG, EXIT_TRACKING, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m sweeps.run", description=__doc__.splitlines()[0])
    p.add_argument("grid", type=Path, help="grid YAML file (see docs/sweeps.md)")
    p.add_argument("--tracking-uri", default=None,
                   help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else the grid's mlflow.tracking_uri)")
    p.add_argument("--address", default=None,
                   help="Ray cluster to join, e.g. auto or ray://head:10001 (default: $RAY_ADDRESS, else local Ray)")
    p.add_argument("--dry-run", action="store_true", help="print the trial table and totals; run nothing")
    p.add_argument("--rerun-failed", action="store_true",
                   help="run only cells whose existing run FAILED or was KILLED (no new cells)")
    p.add_argument("--skip-failed", action="store_true", help="leave cells whose run FAILED alone")
    p.add_argument("--fresh", action="store_true", help="start a new sweep (new parent run and sweep id)")
    p.add_argument("--sweep-id", default=None, help="resume (or create) the sweep with this id")
    p.add_argument("--max-concurrent", type=int, default=None, help="override resources.max_concurrent")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a grid-file key (YAML value), e.g. --set train.epochs=1 --set seeds=1; a grid "
                        "axis is grid.AXIS (--set grid.model.hidden=[8,16]; grid.N.AXIS: block N only; =null "
                        "removes it), a search dimension search.space.KEY (see docs/sweeps.md)")
    p.add_argument("--quiet", action="store_true", help="no per-epoch lines")
    p.add_argument("--timings", type=Path, default=None, help=argparse.SUPPRESS)  # benchmarks: per-trial times
    return p


# ------------------------------------------------------------------------------------------------ planning


def check_grid(grid: GridFile, source: str) -> None:
    if grid.search.type == "optuna":
        if len(grid_overrides(grid)) != 1:
            raise GridError(f"{source}: search.type optuna needs a grid with exactly one combination (got "
                            f"{len(grid_overrides(grid))}); put varying keys into search.space")
        bad = [k for k in grid.search.space if k.startswith("data.")]
        if bad:
            raise GridError(f"{source}: search.space keys {bad} vary the dataset; the dataset is prepared once, "
                            "put data.* keys into a grid sweep instead")
    epoch_metrics = get_task(grid.task).epoch_metrics
    if grid.scheduler.type == "asha" and grid.scheduler.metric not in epoch_metrics:
        raise GridError(f"{source}: scheduler.metric {grid.scheduler.metric!r} is not a per-epoch metric of task "
                        f"{grid.task!r}; allowed: {', '.join(epoch_metrics)}")


def select(cells: list[Cell], existing: dict[tuple[str, int], Any], *, rerun_failed: bool,
           skip_failed: bool) -> list[tuple[Cell, Action]]:
    """(cell, action) for every cell, from the MLflow status of the run an earlier invocation left for it."""
    return [(cell, Action.choose(getattr(existing.get(cell.key), "status", None), rerun_failed=rerun_failed,
                                 skip_failed=skip_failed)) for cell in cells]


def _rows(grid: GridFile, plan: list[tuple[Cell, Action]], gpus: float) -> list[dict[str, Any]]:
    return [{"config_id": c.config_id, "seed": c.seed, "run_name": c.run_name, "cpus": grid.resources.cpus_per_trial,
             "gpus": gpus, "action": str(a)} for c, a in plan]


def _dry_run(console: Console, grid: GridFile, cells: list[Cell], bundles: list[list[Cell]] | None, uri: str,
             address: str | None, max_concurrent: int | None, args: argparse.Namespace) -> None:
    from sweeps.display import plan_table
    from sweeps.tracking import SweepTracker, TrackingUnreachable, probe

    existing: dict[tuple[str, int], Any] = {}
    sqlite_file = Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None
    if not args.fresh and grid.search.type == "grid" and (sqlite_file is None or sqlite_file.is_file()):
        try:  # read-only: what a real run would skip; an unreachable or empty store means "run everything"
            probe(uri, timeout=8.0)
            existing = SweepTracker.existing_children(tracking_uri=uri, experiment=grid.experiment,
                                                      sweep_name=grid.name, sweep_id=args.sweep_id)
        except TrackingUnreachable as err:
            console.print(f"(tracking store not reachable: {err}; showing every cell as 'run')")

    if grid.search.type == "optuna":
        console.print(f"Optuna search: {grid.search.n_trials} trials x {len(grid.seeds)} seed(s) over "
                      f"{', '.join(grid.search.space)}; objectives "
                      f"{', '.join(f'{o.mode} {o.metric}' for o in grid.search.objectives)}. "
                      "Cells below are the corners of the space (validated).")
    cells = distinct_names(cells, {c.run_name: cid for (cid, _), c in existing.items()})
    plan = select(cells, existing, rerun_failed=args.rerun_failed, skip_failed=args.skip_failed)
    console.print(plan_table(_rows(grid, plan, grid.resources.gpus_per_trial),
                  title=f"{grid.name}: {grid.experiment}"))
    n_trials = grid.search.n_trials * len(grid.seeds) if grid.search.type == "optuna" else len(cells)
    configs = len({c.config_id for c in cells})
    datasets = len({json.dumps(c.trial["data"], sort_keys=True) for c in cells})
    epochs = sum(c.trial["train"]["epochs"] for c in cells) if grid.search.type == "grid" else None
    console.print(f"totals: {n_trials} trial runs, {configs} configurations x {len(grid.seeds)} seeds, "
                  f"{datasets} dataset(s), cpus/trial {grid.resources.cpus_per_trial:g}, "
                  f"gpus/trial {grid.resources.gpus_per_trial:g}, max concurrent "
                  f"{max_concurrent or grid.resources.max_concurrent or 'unlimited'}"
                  + (f", at most {epochs} epochs in all" if epochs else ""))
    console.print(f"scheduler {grid.scheduler.type}, max_retries {grid.max_retries}, MLflow {uri}, "
                  f"Ray {address or 'local'}")
    if bundles is not None:
        from sweeps.bundling import bundle_axes

        console.print(f"bundles: {len(bundles)} Ray trial(s) of up to {max(len(b) for b in bundles)} cell(s) "
                      f"(axes: {', '.join(bundle_axes(grid)) or 'none'}; strategy {grid.bundle_strategy})")


# ------------------------------------------------------------------------------------------------ the driver


@dataclass(frozen=True)
class DriverHooks:
    """Test and benchmark hooks, passed in explicitly (never read from the environment).

    ``fault``: cells whose run name contains ``match`` raise at ``epoch`` (``times`` attempts), to test retries;
    ``timings``: a file that gets one JSON line of driver times per Ray trial (benchmarks/sweep_e2e.py).
    """

    fault: list[dict[str, Any]] | None = None
    timings: Path | None = None


def main(argv: Sequence[str] | None = None, *, console: Console | None = None, hooks: DriverHooks | None = None) -> int:
    args = build_parser().parse_args(argv)
    from sweeps.display import make_console

    console = console or make_console()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    source = str(args.grid)
    try:
        grid = load_grid(args.grid, overrides=args.set)
        check_grid(grid, source)
        cells = resolve(grid, source=source)
        from sweeps.bundling import bundle_axes, plan_bundles

        bundle_axes(grid, source=source)  # bad bundle keys exit 2 before anything starts
        bundles = plan_bundles(cells, grid, source=source) if grid.search.type == "grid" else None
        if args.rerun_failed and args.skip_failed:
            raise GridError("--rerun-failed and --skip-failed contradict each other")
        if args.max_concurrent is not None and args.max_concurrent < 1:
            raise GridError(f"--max-concurrent must be >= 1 (got {args.max_concurrent})")
    except GridError as err:
        print(f"error: {err}", file=sys.stderr)  # once, on stderr (the console is stdout's)
        return EXIT_CONFIG

    from sweeps.tracking import absolute_tracking_uri

    uri = absolute_tracking_uri(args.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or grid.mlflow.tracking_uri)
    address = args.address or os.environ.get("RAY_ADDRESS") or grid.ray.address
    max_concurrent = args.max_concurrent or grid.resources.max_concurrent
    if args.dry_run:
        _dry_run(console, grid, cells, bundles, uri, address, max_concurrent, args)
        return EXIT_OK
    hooks = hooks or DriverHooks(timings=args.timings)
    driver = SweepDriver(args=args, console=console, grid=grid, cells=cells, bundles=bundles, uri=uri,
                         address=address, max_concurrent=max_concurrent, hooks=hooks)
    return driver.run()


class SweepDriver:
    """One invocation of a sweep on the driver: the validated grid, its cells and bundles (planned once), the
    tracking store, Ray, and the state of every cell it runs.

    :meth:`run` probes the store, starts Ray behind the set-up, opens the sweep's parent run, decides what runs,
    prepares the data, fits, and closes the parent run whatever happens (KILLED on Ctrl-C or SIGTERM, FAILED on
    an error), so that a re-run resumes: finished runs are kept, never duplicated.
    """

    def __init__(self, *, args: argparse.Namespace, console: Console, grid: GridFile, cells: list[Cell],
                 bundles: list[list[Cell]] | None, uri: str, address: str | None, max_concurrent: int | None,
                 hooks: DriverHooks) -> None:
        self.args, self.console, self.grid, self.cells, self.bundles = args, console, grid, cells, bundles
        self.uri, self.address, self.max_concurrent, self.hooks = uri, address, max_concurrent, hooks
        self.optuna = grid.search.type == "optuna"
        self.task = get_task(grid.task)
        self.tracker: Any = None
        self.existing: dict[tuple[str, int], Any] = {}
        self.states: dict[str, Any] = {}  # cell_key -> sweeps.callback.CellState of every cell this invocation runs

    # -- the invocation --------------------------------------------------------------------------------------------
    def run(self) -> int:
        from sweeps.tracking import TrackingUnreachable, probe

        t_probe = time.time()
        try:
            probe(self.uri, timeout=8.0)
        except TrackingUnreachable as err:
            print(f"error: {err} (after {time.time() - t_probe:.1f} s); nothing was started", file=sys.stderr)
            return EXIT_TRACKING
        ray_boot = RayBoot(self.grid, self.address).start()  # Ray starts while MLflow and the data are set up
        saved_cache = os.environ.get("EQUITRACK_CACHE")
        try:
            self._open()
            return self._run_cells(ray_boot)
        finally:
            ray_boot.close()
            # the cache folder is set for this sweep only (callers such as tests keep their environment)
            if saved_cache is None:
                os.environ.pop("EQUITRACK_CACHE", None)
            else:
                os.environ["EQUITRACK_CACHE"] = saved_cache

    def _open(self) -> None:
        """The sweep's MLflow tracker (the first MLflow import), its parent run and the runs it already holds."""
        from sweeps.tracking import (
            SweepTracker,
            absolute_artifact_location,
            git_commit,
            is_local_store,
            package_versions,
        )

        grid, uri = self.grid, self.uri
        os.environ.pop("MLFLOW_EXPERIMENT_ID", None)  # never let a stale env var pick the experiment
        artifact_location = absolute_artifact_location(grid.mlflow.artifact_location) if is_local_store(uri) else None
        self.tracker = tracker = SweepTracker(tracking_uri=uri, experiment=grid.experiment,
                                              artifact_location=artifact_location)
        meta = {"git_commit": git_commit(Path(__file__).resolve().parent),
                **{f"version.{k}": v for k, v in package_versions().items()}}
        grid_path = Path(self.args.grid)
        parent = tracker.open_parent(sweep_name=grid.name, sweep_id=self.args.sweep_id, fresh=self.args.fresh,
                                     tags={**meta, "task": grid.task, "grid_file": str(grid_path),
                                           "mlflow.source.git.commit": meta["git_commit"].replace("+dirty", "")})
        self.console.print(f"sweep [bold]{tracker.sweep_id}[/] (parent run {parent}) in experiment "
                           f"[bold]{grid.experiment}[/] at {uri}")
        tracker.describe(grid.description)
        tracker.parent_artifact(grid_path)
        tracker.parent_text(yaml.safe_dump(grid.model_dump(mode="json"), sort_keys=False), "grid_resolved.yaml")
        self.existing = tracker.children()
        renamed = distinct_names(self.cells, {c.run_name: cid for (cid, _), c in self.existing.items()})
        if renamed != self.cells:  # a changed configuration gets its own run name: the bundles carry the new names
            names = {c.key: c for c in renamed}
            self.cells = renamed
            if self.bundles is not None:
                self.bundles = [[names[c.key] for c in b] for b in self.bundles]
        tracker.parent_text(yaml.safe_dump([{"run_name": c.run_name, "config_id": c.config_id, "seed": c.seed,
                                             "trial": c.trial} for c in self.cells], sort_keys=False), "cells.yaml")

    def _prepare_data(self, cells: list[Cell]) -> list[str]:
        """Build each distinct dataset once on the driver, with the grid's task (trials only read the cache)."""
        keys: list[str] = []
        seen: set[str] = set()
        for cell in cells:
            blob = json.dumps(cell.trial["data"], sort_keys=True)
            if blob in seen:
                continue
            seen.add(blob)
            t0 = time.time()
            key = self.task.prepare_data(cell.config)
            self.console.print(f"dataset {key} ready ({time.time() - t0:.1f} s)")
            keys.append(key)
        return keys

    def _decide(self, writer: Any) -> tuple[list[list[Cell]], int, dict[str, dict[str, float]]]:
        """The bundles to run, the number of Ray trials (Optuna: suggestions) and, for Optuna, the finished cells'
        final metrics; a grid's child runs are created (or rescheduled) here, behind, on ``writer``."""
        from sweeps.callback import CellState
        from sweeps.trainable import cell_key

        grid, console, existing = self.grid, self.console, self.existing
        if self.optuna:
            finished = {k: v for k, v in existing.items() if v.status == "FINISHED"}
            done = {f"{cid}/{seed}": v.metrics for (cid, seed), v in finished.items()}
            n_done = len({cid for cid, _ in finished})
            remaining = 0 if self.args.rerun_failed else max(0, grid.search.n_trials - n_done)
            console.print(f"optuna: {n_done} configuration(s) already finished, {remaining} trial(s) to run")
            return [], remaining, done
        plan_rows = select(self.cells, existing, rerun_failed=self.args.rerun_failed,
                           skip_failed=self.args.skip_failed)
        running = {c.key for c, a in plan_rows if a.runs}
        for cell, action in plan_rows:
            if not action.runs:
                continue
            old = existing.get(cell.key)
            if old is None:
                run: Any = writer.submit(self.tracker.create_child, cell)
            else:
                writer.submit(self.tracker.reschedule, old.run_id)
                run = old.run_id
            self.states[cell_key(cell)] = CellState(cell, run, last_step=old.last_step if old else 0)
        # the bundles planned at validation, less their members that do not run
        bundles = [kept for b in self.bundles or [] if (kept := [c for c in b if c.key in running])]
        n_skip = len(plan_rows) - len(running)
        console.print(f"{len(self.cells)} cells: {len(running)} to run in {len(bundles)} Ray trial(s), "
                      f"{n_skip} skipped ({sum(a == Action.SKIP_FINISHED for _, a in plan_rows)} already finished)")
        return bundles, len(bundles), {}

    def _run_cells(self, ray_boot: RayBoot) -> int:
        from sweeps.display import results_table
        from sweeps.fit import fit
        from sweeps.tracking import WriteBehind
        from sweeps.trainable import Plan

        grid, tracker, console = self.grid, self.tracker, self.console
        status = Status.KILLED
        # child runs are created, and trial events written, on one background thread while Ray starts and trials
        # run; the driver drains it before it writes itself (closing the parent run)
        writer = WriteBehind()
        try:
            # one absolute cache folder for the driver and every worker (Ray runs trials in other folders)
            cache = str(Path(os.environ.get("EQUITRACK_CACHE") or Path.cwd() / ".equitrack" / "cache").resolve())
            os.environ["EQUITRACK_CACHE"] = cache
            data_keys = self._prepare_data(self.cells[:1] if self.optuna else self.cells)
            tracker.set_tags(tracker.parent_id, {"dataset_key": ",".join(data_keys)})
            bundles, remaining, done = self._decide(writer)
            if remaining == 0:
                status = Status.FINISHED
                writer.close()
                tracker.close_parent(status, summary={"cells": len(self.cells), "ran": 0})
                return EXIT_OK
            workdir_root = str((Path(grid.ray.workdir) / str(tracker.sweep_id)).resolve())
            plan = Plan(grid=grid, bundles=bundles, workdir_root=workdir_root, done=done, fault=self.hooks.fault,
                        env={"EQUITRACK_CACHE": cache})
            ray_boot.wait()  # started in run() after the grid was valid
            try:
                status, counts = fit(grid, plan, tracker, self.states, self.existing, console,
                                     gpus=gpus_per_trial(grid, console), max_concurrent=self.max_concurrent,
                                     num_samples=remaining, quiet=self.args.quiet, optuna=self.optuna, writer=writer,
                                     timings=self.hooks.timings)
            finally:
                ray_boot.close()  # shutdown_ray() if this driver started Ray
            writer.close()
            if self.optuna:
                log_importances(grid, tracker, console)
            console.print(results_table(self.states.values(), title=f"{grid.name}: results ({tracker.sweep_id})",
                                        headline=self.task.headline_metrics))
            tracker.close_parent(status, summary={"cells": len(self.cells), **{str(k): v for k, v in counts.items()}})
            if status == Status.KILLED:
                console.print("[magenta]interrupted[/]: finished runs are kept; run the same command again to resume")
                return EXIT_INTERRUPTED
            return EXIT_FAILED if counts.get(Status.FAILED) else EXIT_OK
        except KeyboardInterrupt:
            _close_quietly(writer)
            tracker.close_parent(Status.KILLED, summary={})
            return EXIT_INTERRUPTED
        except BaseException:
            _close_quietly(writer)
            tracker.close_parent(Status.FAILED, summary={})
            raise


def _close_quietly(writer: Any) -> None:
    """Finish the queued MLflow writes on the way out of a failed sweep without hiding the error that ended it."""
    try:
        writer.close()
    except BaseException as err:  # noqa: BLE001 — the original error is the one to raise
        logging.getLogger(__name__).warning("MLflow writes queued before the sweep stopped failed: %s", err)


def log_importances(grid: GridFile, tracker: Any, console: Console) -> None:
    """After an Optuna search: hyperparameter importances per objective, on the parent run."""
    from sweeps.optuna_search import importances
    from sweeps.tracking import KIND, retry

    flt = f"tags.`{KIND}` = 'trial' and tags.sweep_id = '{tracker.sweep_id}'"
    runs = retry(lambda: tracker.client.search_runs([tracker.experiment_id], flt, max_results=5000),
                 what="search children")
    imp = importances(grid, runs)
    if not imp:
        console.print("optuna: not enough finished configurations for importances")
        return
    tracker.parent_text(json.dumps(imp, indent=2), "importances.json")
    tracker.parent_metrics({f"importance.{obj}.{k}": v for obj, vals in imp.items() for k, v in vals.items()})
    for obj, vals in imp.items():
        console.print(f"importances for {obj}: " + ", ".join(f"{k} {v:.2f}" for k, v in vals.items()))


if __name__ == "__main__":
    sys.exit(main())
