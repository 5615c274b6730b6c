"""Run artifacts and per-epoch metric histories from MLflow, for the dashboards that need more than the runs table
(ROC curves, training curves, clustering's per-particle tables); downloads and histories are cached on disk."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from dashboards.data import RunSet
from dashboards.loading import default_cache_dir


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
