"""What the jets dashboards add to the typed runs table: which task an experiment ran, the training mode of each run
(plain, boost-augmented or trained in a boosted frame) and a label for model variants (VecNet's equivariant/free dial).

Jet-tagging trials carry the tag ``task=jets`` (docs/mlflow.md); runs logged before that tag existed are told
apart by their metrics (``acc_boost_*``, ``rejection_30``, ``ant_factor_v2`` are jets-only; ``edge_*`` and
``auc_rot_*`` are tracking-only).
"""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd

from dashboards.data import DashboardError, RunSet, angle_columns, size_label

MODEL = "params.model.name"
AUGMENT = "params.train.boost_augment"
BOOST = "params.train.boost_beta"
FRACTION = "params.train.fraction"
TASK = "tags.task"
MODE = "mode"  # the derived column: plain / aug<β> / boosted <β>
VARIANT = "variant"  # the derived column: size plus VecNet's eq=/free= channels

#: metrics only a jets trial logs, and only a tracking trial logs (for runs without the ``task`` tag)
JETS_METRICS = (
    "metrics.rejection_30",
    "metrics.rejection_50",
    "metrics.ant_factor_v2",
    "metrics.boost_spread",
)
TRACKING_METRICS = ("metrics.edge_efficiency", "metrics.edge_purity", "metrics.auc_thresholded")


def task_of(rs: RunSet) -> str:
    """``jets`` or ``tracking``: the runs' ``task`` tag, else what their metrics say (tracking when unsure).

    An experiment whose runs carry both tasks is an error: pass ``--sweep`` to pick one sweep."""
    runs = rs.runs
    if TASK in runs:
        tasks = sorted({str(t) for t in runs[TASK].dropna().unique() if str(t)})
        if len(tasks) > 1:
            raise DashboardError(
                f"experiment '{rs.experiment_name}' mixes tasks {', '.join(tasks)} (tag task); pass --sweep ID to "
                "draw one sweep at a time"
            )
        if tasks:
            return tasks[0]
    jets = any(c in runs for c in JETS_METRICS) or bool(angle_columns(runs, "acc_boost"))
    tracking = any(c in runs for c in TRACKING_METRICS) or bool(angle_columns(runs, "auc_rot"))
    return "jets" if jets and not tracking else "tracking"


def is_jets(rs: RunSet) -> bool:
    return task_of(rs) == "jets"


def _number(value: object) -> float:
    """A param value as a float; NaN for missing, ``None`` and anything not a number."""
    if value is None or value is pd.NA:
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def mode_of(augment: object, boost_beta: object) -> str:
    """``plain``; ``aug0.9`` when ``train.boost_augment`` is set (> 0); ``boosted 0.3`` when ``train.boost_beta``
    is not 0; both joined by ``, `` when both are set."""
    aug, beta = _number(augment), _number(boost_beta)
    parts = []
    if not math.isnan(aug) and aug > 0:
        parts.append(f"aug{aug:g}")
    if not math.isnan(beta) and beta != 0:
        parts.append(f"boosted {beta:g}")
    return ", ".join(parts) if parts else "plain"


def _mode_rank(mode: str) -> tuple[int, float]:
    """plain first, then augmented, then boosted frames, each by β."""
    if mode == "plain":
        return (0, 0.0)
    kind = 1 if mode.startswith("aug") else 2
    number = re.search(r"-?\d+(?:\.\d+)?", mode)
    return (kind, float(number.group(0)) if number else 0.0)


def mode_order(modes) -> list[str]:
    return sorted({str(m) for m in modes}, key=_mode_rank)


def _int_text(value: object) -> str | None:
    number = _number(value)
    if math.isnan(number):
        return None
    return str(int(number)) if number.is_integer() else f"{number:g}"


def variant_of(row: pd.Series) -> str:
    """A model variant's label: the size (preset or ``h=N``), with VecNet's channel split ``eq=N free=M`` when the
    run set it (the dial of the ablation: all-equivariant at free = 0)."""
    parts = []
    size = row.get("size")
    if size is not None and size is not pd.NA and not (isinstance(size, float) and math.isnan(size)):
        parts.append(size_label(size))
    for key, name in (("params.model.hidden_equivariant", "eq"), ("params.model.hidden_free", "free")):
        text = _int_text(row.get(key))
        if text is not None:
            parts.append(f"{name}={text}")
    return " ".join(parts) if parts else "default"


def with_jets_columns(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` plus the columns ``mode`` and ``variant`` (a copy)."""
    df = df.copy()
    aug = df[AUGMENT] if AUGMENT in df else pd.Series(np.nan, index=df.index)
    beta = df[BOOST] if BOOST in df else pd.Series(np.nan, index=df.index)
    df[MODE] = pd.Series([mode_of(a, b) for a, b in zip(aug, beta)], index=df.index, dtype="string")
    df[VARIANT] = pd.Series([variant_of(r) for _, r in df.iterrows()], index=df.index, dtype="string")
    return df


def ok_runs(rs: RunSet) -> pd.DataFrame:
    """The finished runs with ``mode`` and ``variant``; the model name as a string."""
    ok = with_jets_columns(rs.ok)
    if MODEL not in ok:
        ok[MODEL] = pd.Series("?", index=ok.index, dtype="string")
    return ok


def beta_columns(df: pd.DataFrame, prefix: str) -> list[tuple[float, str]]:
    """(β, column) of ``metrics.<prefix>_XXX`` (``acc_boost_030`` → 0.3), sorted by β."""
    return [(code / 100.0, col) for code, col in angle_columns(df, prefix)]
