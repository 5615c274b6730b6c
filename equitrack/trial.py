"""Task-free parts of one trial that every task's trainer shares: its result, its errors, early stopping, seeding,
deterministic algorithms, the checkpoint's configuration hash and the artifacts a finished trial writes.

A task's trainer (``tracker.train``, ``jets.train``) owns its data, model, loss and metrics; what it hands to the
sweeps looks the same for every task because it is made here: ``history.csv`` and the task's tables (CSV, the text
pandas writes), ``model.pt`` (the best epoch's state dict on the CPU), ``metrics.json`` (the metrics in the task's
order), each reported with ``reporter.artifact``, then ``reporter.finish(metrics=...)``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import random
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
import torch
from torch import nn

from equitrack.config import identity

#: the per-epoch metrics a trial reports (``reporter.epoch``, the columns of ``history.csv`` after ``epoch``); the
#: sweeps' scheduler metric is one of them
EPOCH_METRICS = ("train_loss", "val_loss", "val_auc", "lr", "epoch_seconds")


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the trial stops (the message names the epoch and what to check).

    A task subclasses it to name its inputs in the advice (:attr:`inputs`)."""

    #: what the message asks to check for NaN
    inputs = "the inputs"

    def __init__(self, epoch: int, what: str, value: float) -> None:
        self.epoch = epoch
        super().__init__(
            f"non-finite {what} ({value}) at epoch {epoch}: the trial stops "
            f"(lower train.lr, set train.grad_clip, or check {self.inputs} for NaN)"
        )


class CheckpointMismatchError(ValueError):
    """``workdir/checkpoint`` belongs to a different trial configuration."""

    @classmethod
    def of(cls, workdir: Path, *, entry: str = "run_trial") -> CheckpointMismatchError:
        """The error for ``workdir``'s checkpoint, telling how to start afresh (``entry(..., resume=False)``)."""
        return cls(f"{Path(workdir) / 'checkpoint'} was written by a different trial configuration; "
                   f"remove it or call {entry}(..., resume=False)")


@dataclass
class TrialResult:
    """What a trial returns: the final metrics, the folder holding its artifacts, the per-epoch history."""

    metrics: dict[str, float]
    artifacts_dir: Path
    history: list[dict[str, float]] = field(default_factory=list)


def config_hash(resolved: Mapping[str, Any], *, neutral: Iterable[tuple[str, str]] = (),
                added: Mapping[tuple[str, str], Any] | None = None) -> str:
    """SHA-256 of a resolved trial config (JSON, sorted keys) as :func:`equitrack.config.identity` leaves it:
    guards a checkpoint against reuse by another configuration; result-neutral and added-at-default keys do not
    count, so a trial may resume with another checkpoint cadence or after a release adds a key."""
    raw = json.dumps(identity(dict(resolved), neutral=neutral, added=added), sort_keys=True)
    return hashlib.sha256(raw.encode()).hexdigest()


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@contextlib.contextmanager
def deterministic(on: bool) -> Iterator[None]:
    """``torch.use_deterministic_algorithms(True, warn_only=True)`` while training when ``on``, restored after."""
    previous_det = torch.are_deterministic_algorithms_enabled()
    previous_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    if on:
        torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous_det, warn_only=previous_warn)


class EarlyStopping:
    """Tracks the monitored validation metric, the best weights (CPU copy) and the epochs without improvement.

    ``monitor``: the epoch metric watched (``val_loss`` is minimised, any other, e.g. ``val_auc``, maximised);
    ``patience``: epochs without improvement before stopping (None: never). A NaN never improves."""

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

    def update(self, epoch: int, metrics: Mapping[str, float], model: nn.Module) -> bool:
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

    def restore_best(self, model: nn.Module) -> None:
        """Load the best epoch's weights into ``model``: the weights a trial is evaluated with."""
        if self.best_state is not None:
            model.load_state_dict(self.best_state)

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


class ArtifactReporter(Protocol):
    """The part of a task's reporter (``start``/``epoch``/``artifact``/``finish``/``fail``) the artifacts use."""

    def artifact(self, path: Path) -> None: ...

    def finish(self, *, metrics: Mapping[str, float]) -> None: ...


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


def write_table(path: Path, rows: pd.DataFrame, reporter: ArtifactReporter) -> None:
    """Write ``rows`` as CSV (:func:`csv_text`) to ``path`` through a temporary file, and report it."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(csv_text(rows))
    tmp.replace(path)
    reporter.artifact(path)


def order_metrics(metrics: Mapping[str, float], head: Sequence[str]) -> dict[str, float]:
    """``head``'s metrics in its order first, then the rest alphabetically (stable tables and JSON)."""
    first = {k: metrics[k] for k in head if k in metrics}
    return {**first, **{k: metrics[k] for k in sorted(metrics) if k not in first}}


def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu() for k, v in model.state_dict().items()}


def finish_trial(workdir: Path, *, model: nn.Module | Mapping[str, nn.Module], metrics: dict[str, float],
                 history: list[dict[str, float]], epoch_metrics: Sequence[str], tables: Mapping[str, pd.DataFrame],
                 reporter: ArtifactReporter) -> TrialResult:
    """Write a finished trial's artifacts into ``workdir`` and report them, then ``reporter.finish(metrics)``.

    ``history.csv`` (columns ``epoch`` and ``epoch_metrics``), each of ``tables`` (file name -> rows, in order),
    ``model.pt`` (``model``'s state dict on the CPU; for named modules, such as a pipeline's stages, one state dict
    per name), ``metrics.json`` (``metrics`` as given, already ordered)."""
    write_table(workdir / "history.csv", pd.DataFrame(history, columns=["epoch", *epoch_metrics]), reporter)
    for name, rows in tables.items():
        write_table(workdir / name, rows, reporter)
    weights = workdir / "model.pt"
    if isinstance(model, nn.Module):
        torch.save(_cpu_state(model), weights)
    else:
        torch.save({name: _cpu_state(m) for name, m in model.items()}, weights)
    reporter.artifact(weights)
    out = workdir / "metrics.json"
    out.write_text(json.dumps(metrics, indent=2))
    reporter.artifact(out)
    reporter.finish(metrics=metrics)
    return TrialResult(metrics=metrics, artifacts_dir=workdir, history=list(history))


__all__ = ["EPOCH_METRICS", "ArtifactReporter", "CheckpointMismatchError", "EarlyStopping", "NonFiniteLossError", "TrialResult",
           "config_hash", "csv_text", "deterministic", "finish_trial", "order_metrics", "seed_everything",
           "write_table"]
