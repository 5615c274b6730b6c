"""Runs of an equitrack experiment (or one sweep of it) as a typed pandas table, straight from MLflow.

Reads the layout of docs/architecture.md ("MLflow layout"): a parent run per sweep (tag ``equitrack.kind=sweep``)
and a child run per trial and seed (tag ``equitrack.kind=trial``). Only the MLflow API is used, so the
dashboards work against any tracking backend (SQLite file, PostgreSQL, an MLflow server).

Columns keep MLflow's names (``params.model.name``, ``metrics.auc``, ``tags.sweep_id``); numeric params are
converted to numbers. Derived columns: ``outcome`` (ok / failed / pruned / running), ``size`` (model preset, else
hidden size) and ``size_rank`` (a number to sort sizes by).

Loading from MLflow (and the Parquet cache of a sweep's table) is :mod:`dashboards.loading`; run artifacts and
metric histories are :mod:`dashboards.artifacts`. This module holds the table itself: :class:`RunSet`, column typing
and derived columns, column lookup, labels and aggregation.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlparse

import numpy as np
import pandas as pd

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
KIND_TAG = "equitrack.kind"
FINISHED = "FINISHED"
FAILED_STATUSES = {"FAILED", "KILLED"}
FAILED_TAG_VALUES = {"failed", "failure", "error", "errored", "killed", "crashed", "oom"}
RUNNING_STATUSES = {"RUNNING", "SCHEDULED"}
PRUNED_TAG_VALUES = {"pruned"}
CACHE_VERSION = 1

#: short names accepted wherever a column is named (``--by model,hidden``, ``--metrics auc``)
ALIASES: dict[str, str] = {
    "model": "params.model.name",
    "name": "params.model.name",
    "hidden": "params.model.hidden",
    "preset": "params.model.preset",
    "c": "params.model.c",
    "rotation": "params.train.train_rotation_deg",
    "train_rotation": "params.train.train_rotation_deg",
    "train_rotation_deg": "params.train.train_rotation_deg",
    "fraction": "params.train.fraction",
    "seed": "params.train.seed",
    "pt_min": "params.data.pt_min",
    "config": "tags.config_id",
    "paper": "paper_size",
    "config_id": "tags.config_id",
    "sweep": "tags.sweep_id",
    "sweep_id": "tags.sweep_id",
    "params": "metrics.n_params",
}

#: axis labels (with units) for the metrics the dashboards draw
LABELS: dict[str, str] = {
    "metrics.auc": "ROC AUC",
    "metrics.auc_thresholded": "thresholded AUC (balanced accuracy)",
    "metrics.edge_efficiency": "edge efficiency TP/(TP+FN)",
    "metrics.edge_purity": "edge purity TP/(TP+FP)",
    "metrics.n_params": "trainable parameters",
    "metrics.ant_factor": "ant factor 1/((1−AUC)·N_params)",
    "metrics.train_seconds": "training time [s]",
    "metrics.inference_ms_per_graph": "inference time [ms/graph]",
    "metrics.auc_rot_spread": "AUC spread over inference angles",
    "metrics.accuracy": "accuracy",
    "metrics.rejection_30": "background rejection 1/ε_B at ε_S = 30 %",
    "metrics.rejection_50": "background rejection 1/ε_B at ε_S = 50 %",
    "metrics.boost_spread": "AUC spread over test boosts β",
    "params.train.train_rotation_deg": "training rotation [deg]",
    "params.model.hidden": "hidden size",
    "params.model.name": "model",
}

MODEL_NAMES: dict[str, str] = {
    "euclidnet": "EuclidNet",
    "interaction_network": "Interaction Network",
    "in": "Interaction Network",
    "egnn": "EGNN",
    # jets task (top tagging)
    "lorentznet": "LorentzNet",
    "lorentznet_noneq": "LorentzNet (non-eq.)",
    "lgn": "LGN",
    "pelican": "PELICAN",
    "vecnet": "VecNet",
    "particlenet": "ParticleNet",
    "pfn": "PFN",
    "mlp": "MLP",
}


class DashboardError(RuntimeError):
    """A problem the user can fix (unknown experiment, sweep or column); the CLIs print it and exit 2."""


@dataclass
class RunSet:
    """The runs of one experiment or sweep: all trial runs, plus what the dashboards need to report on them."""

    experiment_name: str
    experiment_id: str
    tracking_uri: str
    sweep_ids: list[str]
    runs: pd.DataFrame  # every trial run, typed; column ``outcome``: ok / failed / pruned / running
    parents: pd.DataFrame  # the sweeps' parent runs
    from_cache: bool = False
    duplicates_dropped: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> pd.DataFrame:
        """FINISHED trials only: what aggregates are computed from."""
        return self.runs[self.runs["outcome"] == "ok"]

    @property
    def n_failed(self) -> int:
        return int((self.runs["outcome"] == "failed").sum())

    @property
    def n_pruned(self) -> int:
        return int((self.runs["outcome"] == "pruned").sum())

    @property
    def n_running(self) -> int:
        return int((self.runs["outcome"] == "running").sum())

    @property
    def parent_run_id(self) -> str | None:
        """The parent run figures are logged to: the sweep's, when exactly one sweep is selected."""
        if len(self.parents) == 1:
            return str(self.parents["run_id"].iloc[0])
        return None

    def describe(self) -> str:
        """One line for the terminal and the reports: what was loaded and what was left out."""
        if not self.sweep_ids:
            scope = "no sweep"
        elif len(self.sweep_ids) <= 3:
            scope = f"sweep {', '.join(self.sweep_ids)}"
        else:
            scope = f"{len(self.sweep_ids)} sweeps"
        text = (
            f"experiment '{self.experiment_name}', {scope}: {len(self.ok)} finished trial runs used, "
            f"{self.n_failed} failed left out"
        )
        if self.n_pruned:
            text += f", {self.n_pruned} pruned (stopped early) left out"
        if self.n_running:
            text += f", {self.n_running} still running left out"
        if self.duplicates_dropped:
            text += f", {self.duplicates_dropped} older duplicates (same config_id and seed) left out"
        return text


# --------------------------------------------------------------------------------------------------------------
# typing and derived columns


def _to_number(series: pd.Series) -> pd.Series:
    """A param column as numbers when every non-empty value parses as one (ints stay ints when possible)."""
    text = series.astype("string").str.strip()
    text = text.mask(text.isin(["", "None", "none", "null", "nan", "NaN"]))
    present = text.dropna()
    if present.empty:
        return series
    numbers = pd.to_numeric(present, errors="coerce")
    if numbers.isna().any():
        return series
    out = pd.to_numeric(text, errors="coerce")
    if (
        not out.isna().any()
        and np.all(np.equal(np.mod(out.to_numpy(dtype=float), 1), 0))
        and not present.str.contains(r"[.eE]", regex=True).any()
    ):
        return out.astype("int64")
    return out.astype("float64")


def type_columns(df: pd.DataFrame) -> pd.DataFrame:
    """Numeric params and tags (``seed``) converted to numbers, metrics to float, other params/tags to strings."""
    df = df.copy()
    for column in df.columns:
        if column.startswith("params.") or column in ("tags.seed",):
            df[column] = _to_number(df[column])
            if not pd.api.types.is_numeric_dtype(df[column]):
                df[column] = df[column].astype("string")
        elif column.startswith("metrics."):
            df[column] = pd.to_numeric(df[column], errors="coerce").astype("float64")
        elif column.startswith("tags.") or column in ("run_id", "experiment_id", "status", "artifact_uri"):
            df[column] = df[column].astype("string")
    return df


def _outcome(df: pd.DataFrame) -> pd.Series:
    status = df["status"].astype("string") if "status" in df else pd.Series("FINISHED", index=df.index)
    tag = (
        df["tags.status"].astype("string").str.lower()
        if "tags.status" in df
        else pd.Series(pd.NA, index=df.index)
    )
    failed = status.isin(FAILED_STATUSES) | tag.isin(FAILED_TAG_VALUES).fillna(False)
    running = status.isin(RUNNING_STATUSES)
    pruned = tag.isin(PRUNED_TAG_VALUES).fillna(
        False
    )  # stopped early by a scheduler: not a finished training
    outcome = np.where(failed, "failed", np.where(running, "running", np.where(pruned, "pruned", "ok")))
    return pd.Series(outcome, index=df.index, dtype="string")


def _size_rank(label: object) -> float:
    if label is None or (isinstance(label, float) and math.isnan(label)) or label is pd.NA:
        return math.nan
    match = re.search(r"(\d+(?:\.\d+)?)(?!.*\d)", str(label))
    return float(match.group(1)) if match else math.nan


def add_derived(df: pd.DataFrame) -> pd.DataFrame:
    """``outcome``, ``size`` (preset, else hidden) and ``size_rank``; ``seed`` from train.seed or the seed tag."""
    df = df.copy()
    df["outcome"] = _outcome(df)
    preset = df["params.model.preset"].astype("string") if "params.model.preset" in df else None
    hidden = df.get("params.model.hidden", None)
    size = pd.Series(pd.NA, index=df.index, dtype="string")
    if hidden is not None:
        size = hidden.map(
            lambda v: pd.NA if pd.isna(v) else (str(int(v)) if float(v).is_integer() else str(v))
        ).astype("string")
    if preset is not None:
        size = preset.mask(preset.isna() | preset.isin(["", "None", "none"]), size)
    df["size"] = size
    df["size_rank"] = df["size"].map(_size_rank).astype("float64")
    from dashboards.paper import paper_size  # the paper's N_hidden label, to pair EuclidNet and IN rows

    models = df["params.model.name"] if "params.model.name" in df else pd.Series(pd.NA, index=df.index)
    df["paper_size"] = pd.array([paper_size(m, z) for m, z in zip(models, df["size"])], dtype="Int64")
    if "params.train.seed" in df:
        df["seed"] = pd.to_numeric(df["params.train.seed"], errors="coerce")
        if "tags.seed" in df:
            df["seed"] = df["seed"].fillna(pd.to_numeric(df["tags.seed"], errors="coerce"))
    elif "tags.seed" in df:
        df["seed"] = pd.to_numeric(df["tags.seed"], errors="coerce")
    else:
        df["seed"] = np.nan
    return df


def drop_duplicates(df: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Of several finished runs with the same config_id and seed (a re-run sweep), keep the newest."""
    if "tags.config_id" not in df or df["seed"].isna().all():
        return df, 0
    ok = df[df["outcome"] == "ok"].sort_values("start_time", ascending=False)
    dup = ok[ok["tags.config_id"].notna()].duplicated(subset=["tags.config_id", "seed"], keep="first")
    drop = dup[dup].index
    return df.drop(index=drop), len(drop)


def split_pooled_configs(df: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Keep configurations apart that the dashboards' groupings (model and size) would pool.

    Runs of one model and size but different ``config_id`` that differ in a setting that is not a grid or search
    axis of theirs (``tags.grid.<key>``: e.g. a sweep re-run with ``--set train.epochs=12``) are different
    configurations, not more seeds: each gets the settings it differs in appended to its ``size`` label
    (``16 [train.epochs=12]``); ``size_rank`` and ``paper_size`` stay. Axes such as the training rotation are left
    to the figures that draw them. Returns the table and the number of configurations relabelled."""
    needed = {"tags.config_id", "params.model.name", "size"}
    if df.empty or not needed <= set(df.columns):
        return df, 0
    axes = {"params." + c[len("tags.grid."):] for c in df.columns if c.startswith("tags.grid.")}
    settings = [c for c in df.columns if c.startswith("params.") and c not in axes
                and c not in ("params.train.seed", "params.seed") and not c.endswith(".seed")]
    df = df.copy()
    df["size"] = df["size"].astype("string")
    relabelled = 0
    keyed = df[df["tags.config_id"].notna()]
    for _, group in keyed.groupby(["params.model.name", "size"], dropna=False):
        if group["tags.config_id"].nunique() < 2:
            continue
        differ = [c for c in settings if group[c].astype("string").nunique(dropna=False) > 1]
        if not differ:
            continue
        for _, rows in group.groupby("tags.config_id"):
            first = rows.iloc[0]
            what = ", ".join(f"{c[len('params.'):]}={first[c]}" for c in differ[:3])
            if len(differ) > 3:
                what = f"config {first['tags.config_id'][:6]}"
            base = first["size"]
            df.loc[rows.index, "size"] = f"{'' if pd.isna(base) else base} [{what}]".lstrip()
            relabelled += 1
    return df, relabelled


# --------------------------------------------------------------------------------------------------------------
# columns and aggregation


def column(df: pd.DataFrame, key: str, *, prefer: str | None = None) -> str:
    """The column a user-given key names: exact column, alias (``model``, ``hidden``), ``params.KEY``,
    ``metrics.KEY``, ``tags.KEY``, or a unique params column ending in ``.KEY``."""
    key = key.strip()
    if key in df.columns:
        return key
    candidates = [ALIASES.get(key, "")]
    order = ["params.", "metrics.", "tags."]
    if prefer:
        order.remove(prefer)
        order.insert(0, prefer)
    candidates += [p + key for p in order]
    for c in candidates:
        if c and c in df.columns:
            return c
    ends = [c for c in df.columns if c.startswith("params.") and c.endswith("." + key)]
    if len(ends) == 1:
        return ends[0]
    if key in ALIASES:  # a known alias whose column this sweep does not have: say so by name
        raise DashboardError(f"column '{ALIASES[key]}' (for '{key}') is not in these runs")
    known = sorted(c for c in df.columns if c.startswith(("params.", "metrics.", "tags.")))
    raise DashboardError(
        f"unknown column '{key}': not a column, alias ({', '.join(sorted(ALIASES))}) or params./metrics./tags. key; "
        f"columns here: {', '.join(known[:60])}{' …' if len(known) > 60 else ''}"
    )


def columns(df: pd.DataFrame, keys: Iterable[str] | str, *, prefer: str | None = None) -> list[str]:
    if isinstance(keys, str):
        keys = [k for k in keys.split(",") if k.strip()]
    return [column(df, k, prefer=prefer) for k in keys]


def short(col: str) -> str:
    """``metrics.auc`` → ``auc``, ``params.model.hidden`` → ``model.hidden``."""
    for prefix in ("metrics.", "params.", "tags."):
        if col.startswith(prefix):
            return col[len(prefix) :]
    return col


def label(col: str) -> str:
    return LABELS.get(col, short(col))


def size_label(size: object) -> str:
    """How a size is printed on points and rows: a preset as is (``paper_8``), a bare hidden width as ``h=16``."""
    if size is None or size is pd.NA or (isinstance(size, float) and math.isnan(size)):
        return "?"
    text = str(size)
    return f"h={text}" if re.fullmatch(r"\d+(\.\d+)?( \[.*\])?", text) else text


def model_label(name: object) -> str:
    return MODEL_NAMES.get(str(name).lower(), str(name))


def aggregate(df: pd.DataFrame, by: Sequence[str], metrics: Sequence[str]) -> pd.DataFrame:
    """Mean, sample std (ddof=1; NaN for n=1), min, max and n over the runs (seeds) of each group.

    Output columns: the ``by`` columns, then ``<metric>_mean``, ``_std``, ``_min``, ``_max``, ``_n`` per metric
    (short names), and ``n`` = runs in the group. Groups with missing keys are kept (dropna=False)."""
    by = list(by)
    if df.empty:
        cols = by + [f"{short(m)}_{s}" for m in metrics for s in ("mean", "std", "min", "max", "n")] + ["n"]
        return pd.DataFrame(columns=cols)
    grouped = df.groupby(by, dropna=False, sort=True)
    pieces = []
    for m in metrics:
        values = pd.to_numeric(df[m], errors="coerce")
        g = values.groupby([df[b] for b in by], dropna=False, sort=True)
        stats = pd.DataFrame(
            {
                f"{short(m)}_mean": g.mean(),
                f"{short(m)}_std": g.std(ddof=1),
                f"{short(m)}_min": g.min(),
                f"{short(m)}_max": g.max(),
                f"{short(m)}_n": g.count(),
            }
        )
        pieces.append(stats)
    out = pd.concat(pieces, axis=1) if pieces else pd.DataFrame(index=grouped.size().index)
    out["n"] = grouped.size()
    return out.reset_index()


def config_keys(df: pd.DataFrame, *, exclude: Iterable[str] = ()) -> list[str]:
    """Params that vary between the runs, except seeds: what tells one configuration from another."""
    skip = {"params.train.seed", "params.seed", "params.data.seed"} | set(exclude)
    keys = []
    for c in df.columns:
        varies = c.startswith("params.") and c not in skip and not c.endswith(".seed")
        if varies and df[c].astype("string").nunique(dropna=False) > 1:
            keys.append(c)
    return keys


def fmt_pm(mean: float, std: float, digits: int = 4) -> str:
    """``0.9913 ± 0.0040``; ``–`` when missing; std shown as ``–`` for a single run."""
    if mean is None or pd.isna(mean):
        return "–"
    if std is None or pd.isna(std):
        return f"{mean:.{digits}f} ± –"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def angle_columns(df: pd.DataFrame, prefix: str) -> list[tuple[int, str]]:
    """(degrees, column) of the ``metrics.<prefix>_XXX`` columns, sorted by angle (``auc_rot_045`` → 45)."""
    out = []
    for c in df.columns:
        m = re.fullmatch(rf"metrics\.{re.escape(prefix)}_(\d{{3}})", c)
        if m:
            out.append((int(m.group(1)), c))
    return sorted(out)


def tracking_path(uri: str) -> str:
    """A short printable form of a tracking URI (no credentials)."""
    parsed = urlparse(uri)
    if parsed.password:
        return uri.replace(parsed.password, "***")
    return uri
