"""Run a sweep's Ray trials with Ray Tune: one ``Tuner.fit`` over the planned bundles (a grid) or Optuna's
suggestions (a search), with the driver-side MLflow callback, the scheduler and the retry policy of the grid."""

from __future__ import annotations

import logging
import os
import signal
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from sweeps.callback import CellState
from sweeps.protocol import Status
from sweeps.schema import GridFile
from sweeps.trainable import Plan


def fit(grid: GridFile, plan: Plan, tracker: Any, states: dict[str, CellState], existing: dict[tuple[str, int], Any],
        console: Console, *, gpus: float, max_concurrent: int | None, num_samples: int, quiet: bool,
        optuna: bool, writer: Any, timings: Path | None = None) -> tuple[Status, dict[Status, int]]:
    """Run the Tuner; return the sweep's status and the count of cells per end status. SIGTERM is treated like
    Ctrl-C (Tune stops, unfinished runs become KILLED)."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    from sweeps.callback import SweepCallback
    from sweeps.display import Display
    from sweeps.optuna_searcher import searcher
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
    callback = SweepCallback(tracker=tracker, plan=plan, states=states, display=display, existing=existing,
                             writer=writer, timings=timings)
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
    ends = (Status.FINISHED, Status.PRUNED, Status.FAILED, Status.KILLED)
    counts = {s: sum(st.status == s for st in states.values()) for s in ends}
    if interrupted["flag"] or killed:
        return Status.KILLED, counts
    return (Status.FAILED if counts[Status.FAILED] else Status.FINISHED), counts
