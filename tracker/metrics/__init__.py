"""Metrics of a trial: edge classification (:mod:`.classification`), tracks (:mod:`.tracks`) and the
equivariance deviation of a model (:mod:`.equivariance`)."""

from __future__ import annotations

from typing import Any

from tracker.metrics.classification import (
    PT_CUTS,
    ant_factor,
    binary_metrics,
    choose_threshold,
    confusion,
    efficiency_above_pt,
    roc_auc,
    roc_auc_and_table,
    roc_auc_rows,
    roc_table,
)
from tracker.metrics.tracks import TrackCounts, connected_tracks, match_event, track_metrics

__all__ = [
    "PT_CUTS",
    "TrackCounts",
    "ant_factor",
    "binary_metrics",
    "choose_threshold",
    "confusion",
    "connected_tracks",
    "efficiency_above_pt",
    "equivariance_deviation",
    "match_event",
    "roc_auc",
    "roc_auc_and_table",
    "roc_auc_rows",
    "roc_table",
    "track_metrics",
]


def __getattr__(name: str) -> Any:
    # imported on first use: tracker.metrics.equivariance needs the model zoo, the other metrics do not
    if name == "equivariance_deviation":
        from tracker.metrics.equivariance import equivariance_deviation

        return equivariance_deviation
    raise AttributeError(f"module 'tracker.metrics' has no attribute {name!r}")
