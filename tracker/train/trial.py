"""One trial: train a model from a :class:`TrialConfig`, keep the best epoch, evaluate it on the test split,
write the artifacts and tell a :class:`Reporter` what happened.

The loop only orchestrates: the step is :mod:`tracker.train.step`, data handling :mod:`tracker.train.data`,
evaluation :mod:`tracker.train.evaluate`, checkpoints :mod:`tracker.train.checkpoint`.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch_geometric.data import Data

from tracker.train.checkpoint import (
    checkpoint_due,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
    trainer_state,
)
from tracker.train.config import RESULT_NEUTRAL_KEYS, EvalConfig, TrialConfig, yaml_text
from tracker.train.data import GraphSet, auto_pos_weight, epoch_plan, resolve_device, select_fraction
from tracker.train.evaluate import FinalPredictions, final_metrics, predict
from tracker.train.reporter import Reporter
from tracker.train.step import train_step

EPOCH_METRICS = ("train_loss", "val_loss", "val_auc", "lr", "epoch_seconds")
#: final metrics that measure time and so differ between otherwise identical runs
TIMING_METRICS = frozenset({"train_seconds", "seconds_per_epoch", "inference_ms_per_graph"})


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the trial stops (the message names the epoch and the batch)."""

    def __init__(self, epoch: int, what: str, value: float) -> None:
        self.epoch = epoch
        super().__init__(
            f"non-finite {what} ({value}) at epoch {epoch}: the trial stops "
            "(lower train.lr, set train.grad_clip, or check the input graphs for NaN)"
        )


class CheckpointMismatchError(ValueError):
    """``workdir/checkpoint`` belongs to a different trial configuration."""


@dataclass
class TrialResult:
    """What a trial returns: the final metrics, the folder holding its artifacts, the per-epoch history."""

    metrics: dict[str, float]
    artifacts_dir: Path
    history: list[dict[str, float]] = field(default_factory=list)


def config_hash(config: TrialConfig) -> str:
    """SHA-256 of the resolved configuration (JSON, sorted keys): guards a checkpoint against reuse.

    ``train.checkpoint_every`` is left out: it changes no result, so a trial may resume with another cadence
    (and checkpoints written before the key existed still match).
    """
    resolved = config.model_dump(mode="json")
    for section, key in RESULT_NEUTRAL_KEYS:
        resolved[section].pop(key, None)
    raw = json.dumps(resolved, sort_keys=True)
    return hashlib.sha256(raw.encode()).hexdigest()


class EarlyStopping:
    """Tracks the monitored validation metric, the best weights (CPU copy) and the epochs without improvement."""

    def __init__(self, monitor: str, patience: int | None) -> None:
        self.monitor = monitor
        self.patience = patience
        self.best: float | None = None
        self.best_epoch = 0
        self.bad_epochs = 0
        self.best_state: dict[str, torch.Tensor] | None = None

    def _better(self, value: float) -> bool:
        if math.isnan(value):
            return False
        if self.best is None:
            return True
        return value < self.best if self.monitor == "val_loss" else value > self.best

    def update(self, epoch: int, metrics: dict[str, float], model: nn.Module) -> bool:
        """Record ``epoch``; returns True when training should stop."""
        value = float(metrics[self.monitor])
        if self._better(value) or self.best_state is None:
            if not math.isnan(value):
                self.best = value
            self.best_epoch = epoch
            self.bad_epochs = 0
            self.best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        else:
            self.bad_epochs += 1
        return self.patience is not None and self.bad_epochs >= self.patience

    def state_dict(self) -> dict[str, Any]:
        return {
            "best": self.best,
            "best_epoch": self.best_epoch,
            "bad_epochs": self.bad_epochs,
            "best_state": self.best_state,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best = state["best"]
        self.best_epoch = state["best_epoch"]
        self.bad_epochs = state["bad_epochs"]
        self.best_state = state["best_state"]


def load_trial_splits(config: TrialConfig) -> tuple[list[Data], list[Data], list[Data], str | None]:
    """(train, val, test, dataset key) through ``tracker.data.dataset`` (built and cached on first use)."""
    from tracker.data.dataset import load_splits, prepare

    prepare(config.data)
    splits = load_splits(config.data)
    return list(splits.train), list(splits.val), list(splits.test), getattr(splits, "key", None)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def write_table(path: Path, rows: pd.DataFrame, reporter: Reporter) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(csv_text(rows))
    tmp.replace(path)
    reporter.artifact(path)


def csv_text(rows: pd.DataFrame) -> str:
    """``rows.to_csv(index=False)``, the same text, ~2x faster for the float64/int64 tables a trial writes.

    Python's ``repr`` of a float is the shortest string that reads back to the same float, as pandas writes it
    (NaN as an empty field, as pandas' default ``na_rep``). Other column types, names that CSV would quote, and
    tables of fewer than two columns (where pandas quotes an empty field) go through pandas. A bundle of 100
    members writes 300 tables at its end, ``roc.csv`` with thousands of rows each, on the trial's one CPU
    (docs/benchmarks.md, "A member's end").
    """
    names = [str(c) for c in rows.columns]
    plain = len(names) >= 2 and all(dtype in (np.float64, np.int64) for dtype in rows.dtypes)
    if (not plain or rows.columns.has_duplicates
            or any(not name or any(ch in name for ch in ',"\n\r') for name in names)):
        return rows.to_csv(index=False)
    columns = [["" if v != v else repr(v) for v in rows[c].tolist()] for c in rows.columns]  # v != v: NaN
    return "\n".join([",".join(names), *map(",".join, zip(*columns))]) + "\n"


def run_trial(
    config: TrialConfig,
    reporter: Reporter,
    *,
    workdir: Path,
    resume: bool = True,
    splits: tuple[Sequence[Data], Sequence[Data], Sequence[Data]] | None = None,
) -> TrialResult:
    """Train and evaluate one trial in ``workdir`` (created if needed) and return its final metrics.

    ``resume=True`` continues from ``workdir/checkpoint`` when it exists (same config required), giving the
    same metrics as an uninterrupted run (epochs after the last checkpoint written, see
    ``train.checkpoint_every``, are trained again); ``resume=False`` discards it. ``splits`` = (train, val, test) graph
    lists skips ``tracker.data.dataset`` (graphs already in memory, e.g. shared by several trials).
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    tc = config.train
    previous_det = torch.are_deterministic_algorithms_enabled()
    previous_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    if tc.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        return _run(config, reporter, workdir=workdir, resume=resume, splits=splits)
    finally:
        torch.use_deterministic_algorithms(previous_det, warn_only=previous_warn)


def _run(config, reporter, *, workdir, resume, splits) -> TrialResult:
    from tracker.models import build_model, count_parameters

    tc, ec = config.train, config.eval
    if splits is None:
        train_graphs, val_graphs, test_graphs, _ = load_trial_splits(config)
    else:
        train_graphs, val_graphs, test_graphs = (list(s) for s in splits)
    train_graphs = select_fraction(train_graphs, tc.fraction, seed=tc.seed)
    device = resolve_device(tc.device)
    if device.type == "cuda" and tc.deterministic:
        import os

        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

    seed_everything(tc.seed)
    model = build_model(config.model.name, **config.model.hparams()).to(device)
    n_params = int(count_parameters(model))
    optimizer = torch.optim.Adam(
        model.parameters(), lr=tc.lr, betas=tuple(tc.betas), weight_decay=tc.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=tc.lr_step, gamma=tc.lr_gamma)
    stopper = EarlyStopping(tc.monitor, tc.patience)
    generator = torch.Generator().manual_seed(tc.seed)

    pos_weight: float | None
    if tc.pos_weight == "auto":
        pos_weight = auto_pos_weight(train_graphs)
    else:
        pos_weight = None if tc.pos_weight is None else float(tc.pos_weight)

    train_set = GraphSet(train_graphs, device=device, batch_size=tc.batch_size)
    val_set = GraphSet(val_graphs, device=device)
    test_set = GraphSet(test_graphs, device=device)
    base_theta = math.radians(tc.train_rotation_deg)
    val_theta = base_theta if base_theta != 0 else None

    # resume
    chash = config_hash(config)
    history: list[dict[str, float]] = []
    start_epoch, train_seconds, finished = 1, 0.0, False
    state = load_checkpoint(workdir)
    if state is not None and not resume:
        shutil.rmtree(workdir / "checkpoint", ignore_errors=True)
        state = None
    if state is not None:
        if state["config_hash"] != chash:
            raise CheckpointMismatchError(
                f"{workdir / 'checkpoint'} was written by a different trial configuration; "
                "remove it or call run_trial(..., resume=False)"
            )
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        stopper.load_state_dict(state["early_stopping"])
        set_rng_state(state["rng"], generator)
        history = [dict(h) for h in state["history"]]
        start_epoch = int(state["epoch"]) + 1
        train_seconds = float(state["train_seconds"])
        finished = bool(state["finished"])

    resolved = config.model_dump(mode="json")
    reporter.start(config=resolved, n_params=n_params)
    cfg_path = workdir / "config.yaml"
    cfg_path.write_text(yaml_text(resolved))
    reporter.artifact(cfg_path)

    model.train()
    epoch = start_epoch - 1
    for epoch in range(start_epoch, tc.epochs + 1):
        if finished:
            break
        t0 = time.perf_counter()
        lr = optimizer.param_groups[0]["lr"]
        order, theta = epoch_plan(
            len(train_set), generator, base_theta=base_theta, random_rotation=tc.random_rotation
        )
        loss_sum, n_edges = 0.0, 0
        for i, (batch, idx) in enumerate(train_set.batches(order)):
            angles = theta[idx] if (tc.random_rotation or base_theta != 0) else None
            loss = float(
                train_step(model, optimizer, batch, angles, pos_weight=pos_weight, grad_clip=tc.grad_clip)
            )
            if not math.isfinite(loss):
                raise NonFiniteLossError(epoch, f"training loss in batch {i + 1}", loss)
            e = int(batch.edge_index.shape[1])
            loss_sum += loss * e
            n_edges += e
        scheduler.step()
        val = predict(model, val_set, val_theta, pos_weight=pos_weight)
        if not math.isfinite(val.loss):
            raise NonFiniteLossError(epoch, "validation loss", val.loss)
        seconds = time.perf_counter() - t0
        train_seconds += seconds
        metrics = {
            "train_loss": loss_sum / max(n_edges, 1),
            "val_loss": val.loss,
            "val_auc": val.epoch_auc(),
            "lr": lr,
            "epoch_seconds": seconds,
        }
        history.append({"epoch": epoch, **metrics})
        stop = stopper.update(epoch, metrics, model)
        finished = stop or epoch == tc.epochs
        ckpt = None  # epochs between checkpoints (train.checkpoint_every) report none
        if checkpoint_due(epoch, every=tc.checkpoint_every, finished=finished):
            ckpt = save_checkpoint(workdir, trainer_state(
                config_hash=chash, epoch=epoch, finished=finished, model=model, optimizer=optimizer,
                scheduler=scheduler, early_stopping=stopper.state_dict(), rng=rng_state(generator), history=history,
                train_seconds=train_seconds,
            ))
        reporter.epoch(epoch=epoch, metrics=metrics, checkpoint_dir=ckpt)
        if stop:
            break

    return finalise_trial(
        model, stopper=stopper, history=history, train_seconds=train_seconds, val_set=val_set, test_set=test_set,
        eval_cfg=ec, val_theta=val_theta, pos_weight=pos_weight, n_params=n_params, workdir=workdir, reporter=reporter,
    )


def restore_best(model: nn.Module, stopper: EarlyStopping) -> None:
    """Load the best epoch's weights (kept by early stopping) into ``model``: the weights a trial is evaluated with."""
    if stopper.best_state is not None:
        model.load_state_dict(stopper.best_state)


def finalise_trial(
    model: nn.Module,
    *,
    stopper: EarlyStopping,
    history: list[dict[str, float]],
    train_seconds: float,
    val_set: GraphSet,
    test_set: GraphSet,
    eval_cfg: EvalConfig,
    val_theta: float | None,
    pos_weight: float | None,
    n_params: int,
    workdir: Path,
    reporter: Reporter,
    predictions: FinalPredictions | None = None,
) -> TrialResult:
    """The end of every trial (alone or in a bundle): the best epoch evaluated on the test split, the artifacts
    written and reported, and the final metrics handed to ``reporter.finish``.

    ``predictions``: the best epoch's forwards already made (a bundle's batched final evaluation, from the weights
    :func:`restore_best` put in ``model``); the metrics are computed from them by the same code.
    """
    restore_best(model, stopper)
    metrics, roc, rotation = final_metrics(
        model, val=val_set, test=test_set, cfg=eval_cfg, val_theta=val_theta, pos_weight=pos_weight,
        n_params=n_params, predictions=predictions,
    )
    metrics["best_epoch"] = float(stopper.best_epoch)
    metrics["train_seconds"] = train_seconds
    metrics["seconds_per_epoch"] = train_seconds / max(len(history), 1)
    metrics["on_cuda"] = float(test_set.device.type == "cuda")  # the device it ran on (train.device may fall back)
    ordered = _order_metrics(metrics)

    write_table(workdir / "history.csv", pd.DataFrame(history, columns=["epoch", *EPOCH_METRICS]), reporter)
    write_table(workdir / "roc.csv", roc, reporter)
    write_table(workdir / "rotation.csv", rotation, reporter)
    weights = workdir / "model.pt"
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, weights)
    reporter.artifact(weights)
    out = workdir / "metrics.json"
    out.write_text(json.dumps(ordered, indent=2))
    reporter.artifact(out)
    reporter.finish(metrics=ordered)
    return TrialResult(metrics=ordered, artifacts_dir=workdir, history=list(history))


_ORDER = (
    "auc",
    "auc_thresholded",
    "edge_efficiency",
    "edge_purity",
    "accuracy",
    "balanced_accuracy",
    "f1",
    "test_loss",
    "n_params",
    "ant_factor",
    "threshold",
    "best_epoch",
    "train_seconds",
    "seconds_per_epoch",
)


def _order_metrics(m: dict[str, float]) -> dict[str, float]:
    """The architecture's order first, then the rest alphabetically (stable tables and JSON)."""
    head = {k: m[k] for k in _ORDER if k in m}
    return {**head, **{k: m[k] for k in sorted(m) if k not in head}}


__all__ = [
    "EPOCH_METRICS",
    "TIMING_METRICS",
    "CheckpointMismatchError",
    "NonFiniteLossError",
    "TrialResult",
    "EarlyStopping",
    "config_hash",
    "csv_text",
    "finalise_trial",
    "load_trial_splits",
    "restore_best",
    "run_trial",
    "seed_everything",
    "write_table",
]
