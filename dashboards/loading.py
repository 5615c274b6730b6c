"""Loading an experiment's runs from MLflow into a :class:`~dashboards.data.RunSet`: the tracking URI, the
experiment and sweeps, ``mlflow.search_runs``, and the Parquet cache of a sweep's table keyed on a fingerprint of its
runs (so re-drawing thousands of runs does not search MLflow again). Only the MLflow API is used."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

from dashboards.data import (
    CACHE_VERSION,
    DEFAULT_TRACKING_URI,
    KIND_TAG,
    DashboardError,
    RunSet,
    add_derived,
    drop_duplicates,
    split_pooled_configs,
    type_columns,
)

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

    runs, dropped = drop_duplicates(runs)
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
