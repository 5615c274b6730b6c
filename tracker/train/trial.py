"""One trial: train a model from a :class:`TrialConfig`, keep the best epoch, evaluate it on the test split,
write the artifacts and tell a :class:`Reporter` what happened.

A trial is a bundle of one: :func:`run_trial` runs the one epoch loop (:mod:`tracker.train.loop`) with the
``loop`` strategy, the per-member final evaluation and errors raised rather than isolated. The parts live in
:mod:`tracker.train.member` (trainer state), :mod:`tracker.train.strategies` (the step),
:mod:`tracker.train.final` (metrics and artifacts), :mod:`tracker.train.data`, :mod:`tracker.train.evaluate`
and :mod:`equitrack.checkpoint`; the names other code imports from here are re-exported.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from torch_geometric.data import Data

from equitrack.reporter import Reporter
from equitrack.trial import EarlyStopping
from tracker.train.config import TrialConfig
from tracker.train.errors import CheckpointMismatchError, NonFiniteLossError
from tracker.train.final import csv_text, finalise_trial, write_table
from tracker.train.loop import load_trial_splits, train_members
from tracker.train.member import EPOCH_METRICS, TIMING_METRICS, TrialResult, config_hash, seed_everything


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
    lists skips ``tracker.data.dataset`` (graphs already in memory, e.g. shared by several trials). Errors
    (:class:`NonFiniteLossError`, :class:`CheckpointMismatchError`, …) are raised.
    """
    (member,) = train_members([config], [reporter], [Path(workdir)], strategy="loop", final_eval="per_member",
                              resume=resume, splits=splits, diff={}, isolate=False, entry="run_trial")
    return TrialResult(metrics=member.metrics, artifacts_dir=member.artifacts_dir, history=member.history)


__all__ = [
    "EPOCH_METRICS",
    "TIMING_METRICS",
    "CheckpointMismatchError",
    "EarlyStopping",
    "NonFiniteLossError",
    "TrialResult",
    "config_hash",
    "csv_text",
    "finalise_trial",
    "load_trial_splits",
    "run_trial",
    "seed_everything",
    "write_table",
]
