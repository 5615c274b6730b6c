"""``python -m sweeps.run GRID.yaml``: run a grid (or Optuna) sweep on Ray Tune with every trial in MLflow.

Order of work: validate and resolve the grid (exit 2 on any error), probe the tracking store (exit 3 if it does
not answer within 10 s), start or join Ray on a background thread, create the experiment and open the sweep's
parent run, match existing child runs by (config_id, seed) to decide what runs, prepare each dataset once, wait for
Ray, run the trials with the driver-side MLflow callback, then close the parent and print the results table.
Exit status: 0 all cells finished (or pruned), 1 some failed, 2 bad grid or options, 3 tracking store unreachable,
130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console

from equitrack.task import get_task
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
    return p


# ------------------------------------------------------------------------------------------------ planning


def _check_grid(grid: GridFile, source: str) -> None:
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
           skip_failed: bool) -> list[tuple[Cell, str]]:
    """(cell, action) for every cell; action: skip (FINISHED), new, retry (FAILED), resume (KILLED/stale)."""
    out = []
    for cell in cells:
        old = existing.get(cell.key)
        if old is None:
            action = "skip (not failed)" if rerun_failed else "new"
        elif old.status == "FINISHED":
            action = "skip (finished)"
        elif old.status == "FAILED":
            action = "skip (failed)" if skip_failed else "retry"
        else:
            action = "resume"
        out.append((cell, action))
    return out


def _rows(grid: GridFile, plan: list[tuple[Cell, str]], gpus: float) -> list[dict[str, Any]]:
    return [{"config_id": c.config_id, "seed": c.seed, "run_name": c.run_name, "cpus": grid.resources.cpus_per_trial,
             "gpus": gpus, "action": a} for c, a in plan]


def _dry_run(console: Console, grid: GridFile, cells: list[Cell], uri: str, address: str | None,
             max_concurrent: int | None, args: argparse.Namespace) -> None:
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
    if grid.search.type == "grid":
        from sweeps.bundling import bundle_axes, plan_bundles

        bundles = plan_bundles(cells, grid)
        console.print(f"bundles: {len(bundles)} Ray trial(s) of up to {max(len(b) for b in bundles)} cell(s) "
                      f"(axes: {', '.join(bundle_axes(grid)) or 'none'}; strategy {grid.bundle_strategy})")


# ------------------------------------------------------------------------------------------------ ray


def init_ray(grid: GridFile, address: str | None, env_vars: dict[str, str]) -> bool:
    """Join ``address`` or start a local Ray capped to this machine; return whether we started it."""
    import ray

    if ray.is_initialized():
        return False
    runtime_env = {"env_vars": env_vars} if env_vars else None
    if address:
        ray.init(address=address, runtime_env=runtime_env, log_to_driver=False)
        return True
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # loopback-only local Ray (docs/cluster.md for clusters)
    ray.init(num_cpus=grid.ray.num_cpus or os.cpu_count() or 1, num_gpus=grid.ray.num_gpus,
             object_store_memory=grid.ray.object_store_mb * 2**20, include_dashboard=False,
             runtime_env=runtime_env, log_to_driver=False, configure_logging=True, logging_level=logging.WARNING)
    return True


def shutdown_ray() -> None:
    """``ray.shutdown()`` after freeing the garbage that still holds Ray object references.

    Tune leaves reference cycles (exceptions with their tracebacks, trial state) that hold ``ObjectRef``s. If the
    cyclic garbage collector frees one after ``ray.shutdown()``, in whichever thread allocates next (the MLflow
    writer draining its queue, say), Ray ends the whole process with status 1 and no traceback ("The core worker
    has already been shutdown"), losing the writes not yet made. Collecting while Ray is up frees them safely.
    """
    import gc

    import ray

    gc.collect()
    ray.shutdown()


class RayBoot:
    """:func:`init_ray` on a background thread, so that Ray starts while the driver sets up MLflow and the data
    (Ray's start takes ~5 s; the driver's set-up between a valid grid and the first trial about as long).

    The thread lives on until :meth:`close`: Ray starts its GCS and raylet with a parent-death signal, which Linux
    sends when the *thread* that started them ends, so a thread that returned would take the local Ray with it.
    While the thread runs, SIGTERM ends the driver with ``sys.exit``, the handler ``ray.init`` installs when it runs
    on the main thread (on another thread it cannot, and says so; that warning is dropped).

    A local Ray it starts is guarded by a :class:`sweeps.ray_watchdog.RayWatchdog` (started just before
    ``ray.init``), which ends every process of that Ray once the driver is gone, however it ended (``kill -9`` too:
    the parent-death signal reaches the GCS and raylet only, not the raylet's agents), or once :meth:`close` shut it
    down.
    """

    def __init__(self, grid: GridFile, address: str | None) -> None:
        self._args = (grid, address, {})  # init_ray's arguments; no runtime-env variables
        self._ready = threading.Event()
        self._release = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = False
        self._error: BaseException | None = None
        self._sigterm: Any = None
        self._watchdog: Any = None  # RayWatchdog of a local Ray this driver starts

    def start(self) -> RayBoot:
        logging.getLogger("ray._private.worker").addFilter(_not_main_thread_warning)
        if threading.current_thread() is threading.main_thread():
            self._sigterm = signal.getsignal(signal.SIGTERM)
            if self._sigterm in (signal.SIG_DFL, None):
                signal.signal(signal.SIGTERM, _exit_on_sigterm)
        self._thread = threading.Thread(target=self._main, name="ray-init", daemon=True)
        self._thread.start()
        return self

    def _main(self) -> None:
        try:
            import ray

            if not self._args[1] and not ray.is_initialized():  # a local Ray of this driver's own
                from sweeps.ray_watchdog import RayWatchdog

                self._watchdog = RayWatchdog()
            self._started = init_ray(*self._args)
            if self._watchdog is not None:
                self._watchdog.session(ray._private.worker._global_node.get_session_dir_path())
        except BaseException as err:  # noqa: BLE001 — raised again by wait() on the driver's thread
            self._error = err
        finally:
            self._ready.set()
        self._release.wait()

    def wait(self) -> bool:
        """Block until Ray is up; return whether this driver started it (raise what ``ray.init`` raised)."""
        self._ready.wait()
        if self._error is not None:
            raise self._error
        return self._started

    def close(self) -> None:
        """Shut down the Ray this driver started (after it is up, even if nothing ran) and end the thread."""
        if self._thread is None:
            return
        self._ready.wait()
        try:
            if self._started:
                shutdown_ray()
                self._started = False
        finally:
            self._release.set()
            self._thread.join(timeout=10)
            self._thread = None
            if self._watchdog is not None:  # it reaps what the shutdown left, then exits
                self._watchdog.close()
                self._watchdog = None
            if self._sigterm in (signal.SIG_DFL, None) and signal.getsignal(signal.SIGTERM) is _exit_on_sigterm:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    sys.exit(signum)


def _not_main_thread_warning(record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith("SIGTERM handler is not set")


def _gpus_per_trial(grid: GridFile, console: Console) -> float:
    import ray

    want = grid.resources.gpus_per_trial
    have = float(ray.cluster_resources().get("GPU", 0))
    if want > 0 and have == 0:
        console.print(f"[yellow]warning:[/] resources.gpus_per_trial={want:g} but Ray has no GPU; trials run on CPU")
        return 0.0
    return want


def _prepare_data(cells: list[Cell], console: Console) -> list[str]:
    """Build each distinct dataset once on the driver, with the cells' task (trials only read the cache)."""
    from equitrack.task import get_task

    keys: list[str] = []
    seen: set[str] = set()
    for cell in cells:
        blob = json.dumps(cell.trial["data"], sort_keys=True)
        if blob in seen:
            continue
        seen.add(blob)
        t0 = time.time()
        task = get_task(cell.task)
        key = task.prepare_data(task.config_type.model_validate(cell.trial))
        console.print(f"dataset {key} ready ({time.time() - t0:.1f} s)")
        keys.append(key)
    return keys


# ------------------------------------------------------------------------------------------------ main


def main(argv: Sequence[str] | None = None, *, console: Console | None = None) -> int:
    args = build_parser().parse_args(argv)
    from sweeps.display import make_console

    console = console or make_console()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    source = str(args.grid)
    try:
        grid = load_grid(args.grid, overrides=args.set)
        _check_grid(grid, source)
        cells = resolve(grid, source=source)
        from sweeps.bundling import bundle_axes, plan_bundles

        bundle_axes(grid, source=source)  # bad bundle keys exit 2 before anything starts
        if grid.search.type == "grid":
            plan_bundles(cells, grid, source=source)
        if args.rerun_failed and args.skip_failed:
            raise GridError("--rerun-failed and --skip-failed contradict each other")
        if args.max_concurrent is not None and args.max_concurrent < 1:
            raise GridError(f"--max-concurrent must be >= 1 (got {args.max_concurrent})")
    except GridError as err:
        print(f"error: {err}", file=sys.stderr)  # once, on stderr (the console is stdout's)
        return EXIT_CONFIG

    from sweeps.tracking import TrackingUnreachable, absolute_tracking_uri, probe

    uri = absolute_tracking_uri(args.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or grid.mlflow.tracking_uri)
    address = args.address or os.environ.get("RAY_ADDRESS") or grid.ray.address
    max_concurrent = args.max_concurrent or grid.resources.max_concurrent
    if args.dry_run:
        _dry_run(console, grid, cells, uri, address, max_concurrent, args)
        return EXIT_OK

    t_probe = time.time()
    try:
        probe(uri, timeout=8.0)
    except TrackingUnreachable as err:
        print(f"error: {err} (after {time.time() - t_probe:.1f} s); nothing was started", file=sys.stderr)
        return EXIT_TRACKING
    ray_boot = RayBoot(grid, address).start()  # Ray starts while MLflow and the data are set up
    try:
        return _tracked(args, console, grid, cells, uri=uri, max_concurrent=max_concurrent, ray_boot=ray_boot)
    finally:
        ray_boot.close()


def _tracked(args: argparse.Namespace, console: Console, grid: GridFile, cells: list[Cell], *, uri: str,
             max_concurrent: int | None, ray_boot: RayBoot) -> int:
    """Open the sweep's MLflow tracker (the first MLflow import and database set-up) and run the sweep."""
    from sweeps.tracking import (
        SweepTracker,
        absolute_artifact_location,
        git_commit,
        is_local_store,
        package_versions,
    )

    os.environ.pop("MLFLOW_EXPERIMENT_ID", None)  # never let a stale env var pick the experiment
    artifact_location = absolute_artifact_location(grid.mlflow.artifact_location) if is_local_store(uri) else None
    tracker = SweepTracker(tracking_uri=uri, experiment=grid.experiment, artifact_location=artifact_location)
    return _run(args, console, grid, cells, tracker, uri=uri, ray_boot=ray_boot, max_concurrent=max_concurrent,
                meta={"git_commit": git_commit(Path(__file__).resolve().parent),
                      **{f"version.{k}": v for k, v in package_versions().items()}})


def _run(args: argparse.Namespace, console: Console, grid: GridFile, cells: list[Cell], tracker: Any, *, uri: str,
         ray_boot: RayBoot, max_concurrent: int | None, meta: dict[str, str]) -> int:
    grid_path = Path(args.grid)
    parent = tracker.open_parent(sweep_name=grid.name, sweep_id=args.sweep_id, fresh=args.fresh,
                                 tags={**meta, "grid_file": str(grid_path), "mlflow.source.git.commit":
                                       meta["git_commit"].replace("+dirty", "")})
    console.print(f"sweep [bold]{tracker.sweep_id}[/] (parent run {parent}) in experiment "
                  f"[bold]{grid.experiment}[/] at {uri}")
    tracker.describe(grid.description)
    tracker.parent_artifact(grid_path)
    tracker.parent_text(yaml.safe_dump(grid.model_dump(mode="json"), sort_keys=False), "grid_resolved.yaml")
    existing = tracker.children()
    cells = distinct_names(cells, {c.run_name: cid for (cid, _), c in existing.items()})
    tracker.parent_text(yaml.safe_dump([{"run_name": c.run_name, "config_id": c.config_id, "seed": c.seed,
                                         "trial": c.trial} for c in cells], sort_keys=False), "cells.yaml")
    saved_cache = os.environ.get("EQUITRACK_CACHE")
    try:
        return _run_cells(args, console, grid, cells, tracker, existing, ray_boot=ray_boot,
                          max_concurrent=max_concurrent)
    finally:  # the cache folder is set for this sweep only (callers such as tests keep their environment)
        if saved_cache is None:
            os.environ.pop("EQUITRACK_CACHE", None)
        else:
            os.environ["EQUITRACK_CACHE"] = saved_cache


def _run_cells(args: argparse.Namespace, console: Console, grid: GridFile, cells: list[Cell], tracker: Any,
               existing: dict[tuple[str, int], Any], *, ray_boot: RayBoot, max_concurrent: int | None) -> int:
    from sweeps.callback import CellState
    from sweeps.display import results_table
    from sweeps.tracking import WriteBehind
    from sweeps.trainable import FAULT_ENV, Plan, cell_key

    optuna = grid.search.type == "optuna"
    status = "killed"
    # child runs are created, and trial events written, on one background thread while Ray starts and trials run;
    # the driver drains it before it writes itself (closing the parent run)
    writer = WriteBehind()
    try:
        # one absolute cache folder for the driver and every worker (Ray runs trials in other folders)
        cache = str(Path(os.environ.get("EQUITRACK_CACHE") or Path.cwd() / ".equitrack" / "cache").resolve())
        os.environ["EQUITRACK_CACHE"] = cache
        data_keys = _prepare_data(cells[:1] if optuna else cells, console)
        tracker.set_tags(tracker.parent_id, {"dataset_key": ",".join(data_keys)})

        states: dict[str, CellState] = {}
        plan_rows: list[tuple[Cell, str]] = []
        done: dict[str, dict[str, float]] = {}
        if optuna:
            finished = {k: v for k, v in existing.items() if v.status == "FINISHED"}
            done = {f"{cid}/{seed}": v.metrics for (cid, seed), v in finished.items()}
            n_done = len({cid for cid, _ in finished})
            remaining = 0 if args.rerun_failed else max(0, grid.search.n_trials - n_done)
            console.print(f"optuna: {n_done} configuration(s) already finished, {remaining} trial(s) to run")
            bundles: list[list[Cell]] = []
        else:
            plan_rows = select(cells, existing, rerun_failed=args.rerun_failed, skip_failed=args.skip_failed)
            for cell, action in plan_rows:
                if action.startswith("skip"):
                    continue
                old = existing.get(cell.key)
                if old is None:
                    run: Any = writer.submit(tracker.create_child, cell)
                else:
                    writer.submit(tracker.reschedule, old.run_id)
                    run = old.run_id
                states[cell_key(cell)] = CellState(cell, run, last_step=old.last_step if old else 0)
            from sweeps.bundling import plan_bundles

            bundles = plan_bundles([c for c, a in plan_rows if not a.startswith("skip")], grid, source=args.grid.name)
            remaining = len(bundles)
            n_skip = sum(a.startswith("skip") for _, a in plan_rows)
            console.print(f"{len(cells)} cells: {sum(len(b) for b in bundles)} to run in {remaining} Ray trial(s), "
                          f"{n_skip} skipped "
                          f"({sum(a == 'skip (finished)' for _, a in plan_rows)} already finished)")
        if remaining == 0:
            status = "finished"
            writer.close()
            tracker.close_parent(status, summary={"cells": len(cells), "ran": 0})
            return EXIT_OK

        workdir_root = str((Path(grid.ray.workdir) / str(tracker.sweep_id)).resolve())
        fault = os.environ.get(FAULT_ENV)
        plan = Plan(grid=grid, bundles=bundles, workdir_root=workdir_root, done=done,
                    fault=_fault_specs(fault), env={"EQUITRACK_CACHE": cache})
        ray_boot.wait()  # started in main() after the grid was valid
        try:
            gpus = _gpus_per_trial(grid, console)
            status, counts = _fit(grid, plan, tracker, states, existing, console, gpus=gpus,
                                  max_concurrent=max_concurrent, num_samples=remaining, quiet=args.quiet,
                                  optuna=optuna, writer=writer)
        finally:
            ray_boot.close()  # shutdown_ray() if this driver started Ray
        writer.close()
        if optuna:
            _log_importances(grid, tracker, console)
        console.print(results_table(states.values(), title=f"{grid.name}: results ({tracker.sweep_id})"))
        tracker.close_parent(status, summary={"cells": len(cells), **counts})
        if status == "killed":
            console.print("[magenta]interrupted[/]: finished runs are kept; run the same command again to resume")
            return EXIT_INTERRUPTED
        return EXIT_FAILED if counts.get("failed") else EXIT_OK
    except KeyboardInterrupt:
        _close_quietly(writer)
        tracker.close_parent("killed", summary={})
        return EXIT_INTERRUPTED
    except BaseException:
        _close_quietly(writer)
        tracker.close_parent("failed", summary={})
        raise


def _close_quietly(writer: Any) -> None:
    """Finish the queued MLflow writes on the way out of a failed sweep without hiding the error that ended it."""
    try:
        writer.close()
    except BaseException as err:  # noqa: BLE001 — the original error is the one to raise
        logging.getLogger(__name__).warning("MLflow writes queued before the sweep stopped failed: %s", err)


def _fit(grid: GridFile, plan: Any, tracker: Any, states: dict[str, Any], existing: dict[tuple[str, int], Any],
         console: Console, *, gpus: float, max_concurrent: int | None, num_samples: int, quiet: bool,
         optuna: bool, writer: Any) -> tuple[str, dict[str, int]]:
    """Run the Tuner; SIGTERM is treated like Ctrl-C (Tune stops, unfinished runs become KILLED)."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    from sweeps.bundling import callback_class
    from sweeps.display import Display
    from sweeps.optuna_search import searcher
    from sweeps.trainable import sweep_trainable

    os.environ["TUNE_DISABLE_STRICT_METRIC_CHECKING"] = "1"  # epoch and final reports carry different metrics
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")  # MLflow is the record, not CSV/TensorBoard
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # with verbose=0: Ray prints no tables; rich shows progress
    for name in ("ray.tune", "ray.train", "ray.tune.analysis.experiment_analysis"):
        logging.getLogger(name).setLevel(logging.ERROR)
    resources = {"cpu": grid.resources.cpus_per_trial, "gpu": gpus}
    trainable = tune.with_resources(tune.with_parameters(sweep_trainable, plan=plan), resources)
    scheduler = None
    if grid.scheduler.type == "asha":
        max_t = grid.scheduler.max_t or max(int(c.trial["train"]["epochs"]) for b in plan.bundles for c in b) \
            if plan.bundles else (grid.scheduler.max_t or int(grid.train.get("epochs", 200)))
        scheduler = ASHAScheduler(time_attr="epoch", metric=grid.scheduler.metric, mode=grid.scheduler.mode,
                                  max_t=max_t, grace_period=min(grid.scheduler.grace_period, max_t),
                                  reduction_factor=grid.scheduler.reduction_factor,
                                  stop_last_trials=False)  # never cut a trial before its final report
    if optuna:
        tune_config = tune.TuneConfig(search_alg=searcher(grid), scheduler=scheduler, num_samples=num_samples,
                                      max_concurrent_trials=max_concurrent, reuse_actors=grid.ray.reuse_actors,
                                      trial_dirname_creator=lambda t: f"trial_{t.trial_id}")
        param_space = None
    else:
        tune_config = tune.TuneConfig(scheduler=scheduler, num_samples=1, max_concurrent_trials=max_concurrent,
                                      reuse_actors=grid.ray.reuse_actors,
                                      trial_dirname_creator=lambda t: f"trial_{t.trial_id}")
        param_space = {"bundle": tune.grid_search(list(range(len(plan.bundles))))}
    total = num_samples * len(grid.seeds) if optuna else sum(len(b) for b in plan.bundles)
    display = Display(total=total, console=console, epoch_every=10**9 if quiet else 1)
    callback = callback_class()(tracker=tracker, plan=plan, states=states, display=display, existing=existing,
                                writer=writer)
    storage = Path(grid.ray.storage_path)
    storage_path = grid.ray.storage_path if "://" in grid.ray.storage_path else str(storage.resolve())
    run_config = tune.RunConfig(
        name=f"{tracker.sweep_id}-{time.strftime('%Y%m%d-%H%M%S')}", storage_path=storage_path,
        callbacks=[callback], verbose=0,
        failure_config=tune.FailureConfig(max_failures=grid.max_retries),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=2))
    tuner = tune.Tuner(trainable, param_space=param_space, tune_config=tune_config, run_config=run_config)

    interrupted = {"flag": False}
    previous = signal.getsignal(signal.SIGTERM)

    def _on_term(signum: int, frame: Any) -> None:
        interrupted["flag"] = True
        handler = signal.getsignal(signal.SIGINT)  # Tune's graceful-stop handler while fit() runs
        if callable(handler) and handler not in (signal.default_int_handler, _on_term):
            handler(signal.SIGINT, frame)
        else:
            raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _on_term)
    try:
        with display:
            try:
                tuner.fit()
            except KeyboardInterrupt:
                interrupted["flag"] = True
    finally:
        signal.signal(signal.SIGTERM, previous)
    killed = callback.kill_unfinished()
    counts = {s: sum(st.status == s for st in states.values()) for s in ("finished", "pruned", "failed", "killed")}
    status = "killed" if (interrupted["flag"] or killed) else ("failed" if counts["failed"] else "finished")
    return status, counts


def _fault_specs(text: str | None) -> list[dict[str, Any]] | None:
    """``$EQUITRACK_FAULT``: a JSON object or list of them (test hook that makes matching cells raise)."""
    if not text:
        return None
    spec = json.loads(text)
    return spec if isinstance(spec, list) else [spec]


def _log_importances(grid: GridFile, tracker: Any, console: Console) -> None:
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
