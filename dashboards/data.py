"""Runs of an equitrack experiment (or one sweep of it) as a typed pandas table, straight from MLflow.

Reads the layout of docs/architecture.md ("MLflow layout"): a parent run per sweep (tag ``equitrack.kind=sweep``)
and a child run per trial and seed (tag ``equitrack.kind=trial``). Only the MLflow API is used, so the
dashboards work against any tracking backend (SQLite file, PostgreSQL, an MLflow server).

Columns keep MLflow's names (``params.model.name``, ``metrics.auc``, ``tags.sweep_id``); numeric params are
converted to numbers. Derived columns: ``outcome`` (ok / failed / pruned / running), ``size`` (model preset, else
hidden size) and ``size_rank`` (a number to sort sizes by).

The table of a sweep is cached as Parquet, keyed on a fingerprint of the runs (number of runs, latest start and
end time, and whether any is still running), so re-drawing thousands of runs does not search MLflow again.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
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
# tracking URI, experiment and sweep resolution


def resolve_tracking_uri(uri: str | None) -> str:
    """``--tracking-uri``, else ``MLFLOW_TRACKING_URI``, else ``sqlite:///mlflow.db``; a missing SQLite file is an
    error (MLflow would silently create an empty database)."""
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI
    if uri.startswith("sqlite:///"):
        path = Path(uri[len("sqlite:///") :])
        if str(path) not in ("", ":memory:") and not path.exists():
            raise DashboardError(
                f"no MLflow database at {path.resolve()} (tracking URI {uri}); pass --tracking-uri or set "
                "MLFLOW_TRACKING_URI to the backend the sweep wrote to"
            )
    return uri


def _client(uri: str):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)


@contextmanager
def _using(uri: str) -> Iterator[None]:
    """``mlflow.search_runs`` reads the global tracking URI (and ``set_tracking_uri`` also exports
    MLFLOW_TRACKING_URI to the environment): set it for the call, then put both back as they were, so loading
    dashboards inside another program (or a test session) leaves that program's MLflow settings alone."""
    import mlflow
    from mlflow.tracking._tracking_service import utils as tracking_utils

    env = os.environ.get("MLFLOW_TRACKING_URI")
    before = getattr(tracking_utils, "_tracking_uri", None)
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(before)
        if env is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = env


def get_experiment(client, name: str, uri: str):
    """The experiment called ``name``, or a DashboardError listing the ones that exist."""
    exp = client.get_experiment_by_name(name)
    if exp is None or exp.lifecycle_stage != "active":
        known = sorted(e.name for e in client.search_experiments())
        raise DashboardError(
            f"unknown experiment '{name}' at tracking URI {uri}; known experiments: "
            + (", ".join(known) if known else "(none)")
        )
    return exp


def _search(uri: str, experiment_id: str, filter_string: str) -> pd.DataFrame:
    import mlflow

    with _using(uri):
        df = mlflow.search_runs(
            experiment_ids=[experiment_id], filter_string=filter_string, output_format="pandas"
        )
    return df if isinstance(df, pd.DataFrame) else pd.DataFrame()


def _sweep_filter(sweep_ids: Sequence[str] | None) -> str:
    if not sweep_ids:
        return ""
    quoted = ["'" + s.replace("'", "") + "'" for s in sweep_ids]
    if len(quoted) == 1:  # MLflow's parser refuses IN with a single value
        return f" and tags.sweep_id = {quoted[0]}"
    return f" and tags.sweep_id IN ({', '.join(quoted)})"


def find_parents(uri: str, experiment_id: str, sweep: str | None, experiment_name: str) -> pd.DataFrame:
    """Parent (sweep) runs of the experiment; with ``sweep``, the one whose sweep_id, sweep_name or run id matches
    (the newest, when several sweeps share a name)."""
    parents = _search(uri, experiment_id, f"tags.`{KIND_TAG}` = 'sweep'")
    if sweep is None or sweep == "all":
        return parents
    for column in ("tags.sweep_id", "run_id", "tags.sweep_name"):
        if column in parents.columns:
            hit = parents[parents[column].astype("string") == sweep]
            if len(hit):
                return hit.sort_values("start_time", ascending=False).head(1)
    # trials may exist without a parent run (e.g. a runner that crashed before logging it)
    trials = _search(uri, experiment_id, f"tags.`{KIND_TAG}` = 'trial' and tags.sweep_id = '{sweep}'")
    if len(trials):
        return parents.iloc[0:0]
    known = []
    if len(parents):
        for _, row in parents.sort_values("start_time").iterrows():
            name = row.get("tags.sweep_name")
            known.append(
                f"{row.get('tags.sweep_id')} ({name})"
                if isinstance(name, str)
                else str(row.get("tags.sweep_id"))
            )
    raise DashboardError(
        f"unknown sweep '{sweep}' in experiment '{experiment_name}'; known sweeps (sweep_id (sweep_name)): "
        + (", ".join(known) if known else "(none)")
    )


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


def _drop_duplicates(df: pd.DataFrame) -> tuple[pd.DataFrame, int]:
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
# cache


def default_cache_dir() -> Path:
    """``$EQUITRACK_DASHBOARD_CACHE``, else ``$XDG_CACHE_HOME/equitrack/dashboards`` (``~/.cache/...``)."""
    if os.environ.get("EQUITRACK_DASHBOARD_CACHE"):
        return Path(os.environ["EQUITRACK_DASHBOARD_CACHE"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "equitrack" / "dashboards"


def _fingerprint(client, experiment_id: str, sweep_filter: str) -> dict | None:
    """Cheap key for the cached table, from three one-run queries: the newest started and the newest ended trial
    run (id and time). A new, finished or failed run changes it. None (trust no cache) while a run is still
    running, since it may still log metrics. Deleting a run does not change it: use ``--refresh`` then."""
    from mlflow.entities import ViewType

    base = f"tags.`{KIND_TAG}` = 'trial'" + sweep_filter
    running = client.search_runs(
        [experiment_id], base + " and attributes.status = 'RUNNING'", ViewType.ACTIVE_ONLY, max_results=1
    )
    if len(running):
        return None
    key: dict = {"version": CACHE_VERSION}
    for attr in ("start_time", "end_time"):
        newest = client.search_runs(
            [experiment_id], base, ViewType.ACTIVE_ONLY, max_results=1, order_by=[f"attributes.{attr} DESC"]
        )
        key[attr] = [newest[0].info.run_id, getattr(newest[0].info, attr)] if len(newest) else None
    return key


def _cache_paths(
    cache_dir: Path, uri: str, experiment_id: str, sweep_ids: Sequence[str] | None
) -> tuple[Path, Path]:
    key = hashlib.sha1(json.dumps([uri, experiment_id, sorted(sweep_ids or ["*"])]).encode()).hexdigest()[:16]
    return cache_dir / f"runs-{key}.parquet", cache_dir / f"runs-{key}.json"


# --------------------------------------------------------------------------------------------------------------
# loading


def load_runs(
    *,
    experiment: str,
    sweep: str | None = None,
    tracking_uri: str | None = None,
    cache_dir: Path | None = None,
    use_cache: bool = True,
) -> RunSet:
    """All trial runs of ``experiment`` (or of one sweep), typed, with failed runs marked; cached as Parquet."""
    uri = resolve_tracking_uri(tracking_uri)
    client = _client(uri)
    exp = get_experiment(client, experiment, uri)
    parents = find_parents(uri, exp.experiment_id, sweep, experiment)
    if sweep is None or sweep == "all":
        sweep_ids: list[str] | None = None
    elif len(parents):
        sweep_ids = [str(parents["tags.sweep_id"].iloc[0])]
    else:
        sweep_ids = [sweep]
    flt = _sweep_filter(sweep_ids)
    if len(parents) and "tags.sweep_id" in parents:
        parents = type_columns(parents)

    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    table_path, key_path = _cache_paths(cache_dir, uri, exp.experiment_id, sweep_ids)
    fingerprint = _fingerprint(client, exp.experiment_id, flt) if use_cache else None
    runs: pd.DataFrame | None = None
    from_cache = False
    if fingerprint is not None and table_path.exists() and key_path.exists():
        try:
            if json.loads(key_path.read_text()) == fingerprint:
                runs = pd.read_parquet(table_path)
                from_cache = True
        except (OSError, ValueError):
            runs = None
    if runs is None:
        raw = _search(uri, exp.experiment_id, f"tags.`{KIND_TAG}` = 'trial'" + flt)
        runs = (
            add_derived(type_columns(raw))
            if len(raw)
            else pd.DataFrame(
                columns=["run_id", "status", "start_time", "end_time", "outcome", "size", "size_rank", "seed"]
            )
        )
        if fingerprint is not None:
            cache_dir.mkdir(parents=True, exist_ok=True)
            tmp = table_path.with_suffix(".tmp")
            runs.to_parquet(tmp, index=False)
            tmp.replace(table_path)
            key_path.write_text(json.dumps(fingerprint))

    runs, dropped = _drop_duplicates(runs)
    runs, split = split_pooled_configs(runs)
    found = sorted(str(s) for s in runs["tags.sweep_id"].dropna().unique()) if "tags.sweep_id" in runs else []
    ids = sweep_ids or found
    if sweep_ids is None and len(parents) and "tags.sweep_id" in parents and found:
        parents = parents[parents["tags.sweep_id"].astype("string").isin(found)]
    rs = RunSet(
        experiment_name=experiment,
        experiment_id=exp.experiment_id,
        tracking_uri=uri,
        sweep_ids=list(ids),
        runs=runs.reset_index(drop=True),
        parents=parents.reset_index(drop=True),
        from_cache=from_cache,
        duplicates_dropped=dropped,
    )
    if runs.empty:
        rs.notes.append("no trial runs found")
    if split:
        rs.notes.append(f"{split} configurations share a model and size with another one; their size labels "
                        "name the settings they differ in")
    return rs


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


# --------------------------------------------------------------------------------------------------------------
# artifacts and histories


def fetch_artifact(run_id: str, path: str, dest: Path, *, tracking_uri: str) -> Path | None:
    """Download one artifact of a run into ``dest`` (None when the run has no such artifact)."""
    import mlflow

    dest = Path(dest) / run_id
    target = dest / path
    if target.exists():
        return target
    dest.mkdir(parents=True, exist_ok=True)
    try:
        return Path(
            mlflow.artifacts.download_artifacts(
                run_id=run_id, artifact_path=path, dst_path=str(dest), tracking_uri=tracking_uri
            )
        )
    except Exception:  # noqa: BLE001 - a missing artifact is normal for failed or older runs
        return None


def read_csv_artifact(run_id: str, path: str, dest: Path, *, tracking_uri: str) -> pd.DataFrame | None:
    local = fetch_artifact(run_id, path, dest, tracking_uri=tracking_uri)
    if local is None or not local.exists():
        return None
    return pd.read_csv(local)


def metric_histories(
    rs: RunSet, keys: Sequence[str], *, cache_dir: Path | None = None, runs: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Per-epoch metrics (``MlflowClient.get_metric_history``) of the finished runs: columns run_id, key, step,
    value; cached as Parquet beside the runs table, keyed on the same run ids and end times."""
    from mlflow import MlflowClient

    runs = rs.ok if runs is None else runs
    if runs.empty:
        return pd.DataFrame(columns=["run_id", "key", "step", "value"])
    ident = json.dumps(
        [rs.tracking_uri, sorted(keys), sorted(zip(runs["run_id"].astype(str), runs["end_time"].astype(str)))]
    )
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = cache_dir / f"history-{hashlib.sha1(ident.encode()).hexdigest()[:16]}.parquet"
    if path.exists():
        try:
            return pd.read_parquet(path)
        except (OSError, ValueError):
            pass
    client = MlflowClient(tracking_uri=rs.tracking_uri)
    rows = []
    for run_id in runs["run_id"].astype(str):
        for key in keys:
            for m in client.get_metric_history(run_id, key):
                rows.append((run_id, key, int(m.step), float(m.value)))
    hist = pd.DataFrame(rows, columns=["run_id", "key", "step", "value"])
    cache_dir.mkdir(parents=True, exist_ok=True)
    hist.to_parquet(path, index=False)
    return hist


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


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m dashboards.data``: load (and cache) the runs, print what was found, write runs.parquet/csv."""
    from dashboards import cli

    p = cli.parser("data", "Load an experiment's trial runs from MLflow into a typed table (Parquet cache).")
    args = p.parse_args(argv)
    rs = cli.load(args)
    out = cli.out_dir(args, "data")
    counts = rs.runs.groupby([c for c in ("tags.sweep_id", "outcome") if c in rs.runs], dropna=False).size()
    print(counts.to_string())
    rs.runs.to_parquet(out / "runs.parquet", index=False)
    rs.runs.to_csv(out / "runs.csv", index=False)
    print(
        f"wrote {out / 'runs.parquet'} and {out / 'runs.csv'} ({len(rs.runs)} runs, {len(rs.runs.columns)} columns)"
    )
    return 0


if __name__ == "__main__":
    from dashboards.cli import run_main

    raise SystemExit(run_main(main))
