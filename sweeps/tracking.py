"""MLflow layout of a sweep, written from the driver only.

Every write goes through :class:`SweepTracker`, which lives in the sweep driver process and is fed by the Ray
Tune callback (:mod:`sweeps.callback`): one writer, so concurrent trials never race on a SQLite database, and
trial workers need no MLflow access at all (their artifacts reach the driver inside Ray checkpoints).

Layout (docs/mlflow.md): one experiment per grid ``experiment``; a parent run per sweep (tags
``equitrack.kind=sweep``, ``sweep_id``, ``sweep_name``); one nested child run per (config_id, seed) with tags
``equitrack.kind=trial``, ``sweep_id``, ``config_id``, ``seed``, ``model``, ``status`` and ``mlflow.parentRunId``.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import os
import subprocess
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlparse

from equitrack.config import flatten
from sweeps.schema import Cell

log = logging.getLogger(__name__)
T = TypeVar("T")

KIND = "equitrack.kind"
PARENT = "mlflow.parentRunId"
NOTE = "mlflow.note.content"  # the description the MLflow UI shows for an experiment or a run
PACKAGES = ("torch", "torch-geometric", "ray", "mlflow", "optuna", "numpy", "pydantic", "scikit-learn")


class TrackingUnreachable(RuntimeError):
    """The tracking server or database cannot be reached; raised before any training starts."""


# ------------------------------------------------------------------------------------------------ URIs


def absolute_tracking_uri(uri: str, *, base: Path | None = None) -> str:
    """Make ``sqlite:///relative.db`` and bare paths absolute so Ray processes with another cwd agree."""
    base = base or Path.cwd()
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        rel = uri[len("sqlite:///"):]
        if rel and rel != ":memory:":
            return "sqlite:///" + str((base / rel).resolve())
    return uri


def absolute_artifact_location(location: str, *, base: Path | None = None) -> str:
    """``./mlartifacts`` -> ``file:///abs/mlartifacts``; URIs (s3://, mlflow-artifacts:/, file://) unchanged."""
    if "://" in location or location.startswith("mlflow-artifacts:"):
        return location
    return (Path(base or Path.cwd()) / location).resolve().as_uri()


def is_local_store(uri: str) -> bool:
    """A database URI (MLflow writes artifacts itself) rather than a tracking server."""
    return urlparse(uri).scheme not in ("http", "https", "databricks")


def probe(uri: str, *, timeout: float = 8.0) -> None:
    """Check the tracking store answers within ``timeout`` seconds; raise :class:`TrackingUnreachable` if not."""
    result: dict[str, BaseException | None] = {"error": None}

    def _run() -> None:
        try:
            _probe(uri, timeout=min(5.0, timeout))
        except BaseException as err:
            result["error"] = err

    thread = threading.Thread(target=_run, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise TrackingUnreachable(f"MLflow tracking store {uri!r} did not answer within {timeout:.0f} s")
    err = result["error"]
    if err is not None:
        if isinstance(err, TrackingUnreachable):
            raise err
        raise TrackingUnreachable(f"MLflow tracking store {uri!r} is not usable: {type(err).__name__}: {err}")


def _probe(uri: str, *, timeout: float) -> None:
    scheme = urlparse(uri).scheme
    if scheme in ("http", "https"):
        import requests

        try:
            resp = requests.get(uri.rstrip("/") + "/api/2.0/mlflow/experiments/search",
                                params={"max_results": 1}, timeout=timeout)
        except requests.RequestException as err:
            raise TrackingUnreachable(f"MLflow tracking server {uri} is unreachable: {err}") from None
        if resp.status_code in (401, 403):
            raise TrackingUnreachable(f"MLflow tracking server {uri} refused the credentials (HTTP {resp.status_code}); "
                                      "set MLFLOW_TRACKING_USERNAME/MLFLOW_TRACKING_PASSWORD")
        if resp.status_code >= 400:
            raise TrackingUnreachable(f"MLflow tracking server {uri} answered HTTP {resp.status_code}: {resp.text[:200]}")
    elif scheme.startswith("sqlite"):
        path = uri[len("sqlite:///"):]
        folder = Path(path).parent if path else Path.cwd()
        if not folder.is_dir() or not os.access(folder, os.W_OK):
            raise TrackingUnreachable(f"MLflow SQLite database {path!r}: folder {folder} is missing or not writable")
    elif scheme.startswith(("postgresql", "mysql", "mssql")):
        import sqlalchemy

        args = {"connect_timeout": int(max(1, timeout))} if scheme.startswith(("postgresql", "mysql")) else {}
        engine = sqlalchemy.create_engine(uri, connect_args=args)
        try:
            with engine.connect() as conn:
                conn.execute(sqlalchemy.text("SELECT 1"))
        except Exception as err:
            raise TrackingUnreachable(f"MLflow database {urlparse(uri)._replace(netloc=urlparse(uri).hostname or '').geturl()}"
                                      f" is unreachable: {type(err).__name__}: {str(err).splitlines()[0]}") from None
        finally:
            engine.dispose()
    else:
        raise TrackingUnreachable(f"unsupported MLflow tracking URI {uri!r} (use sqlite:///, postgresql://, http(s)://)")


# ------------------------------------------------------------------------------------------------ helpers


def retry(fn: Callable[[], T], *, what: str, attempts: int = 6, delay: float = 0.25) -> T:
    """Call ``fn`` with exponential backoff on any exception (database locked, HTTP hiccups)."""
    for i in range(attempts):
        try:
            return fn()
        except Exception as err:
            if i == attempts - 1:
                raise
            log.warning("MLflow %s failed (%s: %s); retrying", what, type(err).__name__, err)
            time.sleep(delay * 2**i)
    raise AssertionError("unreachable")


def git_commit(cwd: Path | None = None) -> str:
    """The repository's HEAD commit (``unknown`` outside a git checkout), ``+dirty`` if modified."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd, capture_output=True,
                               text=True, timeout=5).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def package_versions() -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "missing"
    return out


def _param_value(v: Any) -> str:
    text = json.dumps(v) if isinstance(v, (list, dict, tuple)) else str(v)
    return text[:6000]


def _finite(metrics: Mapping[str, Any]) -> dict[str, float]:
    out = {}
    for k, v in metrics.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        out[k] = float(v)
    return out


@dataclass
class ChildRun:
    """What MLflow already holds for one (config_id, seed)."""

    run_id: str
    status: str  # MLflow status: SCHEDULED, RUNNING, FINISHED, FAILED, KILLED
    tag_status: str  # equitrack status tag: scheduled, running, finished, pruned, failed, killed
    last_step: int  # highest epoch logged (0 if none)
    metrics: dict[str, float]
    run_name: str = ""  # MLflow run name (a new cell must not take one held by another configuration)


# ------------------------------------------------------------------------------------------------ tracker


class SweepTracker:
    """The single MLflow writer of a sweep (driver side)."""

    def __init__(self, *, tracking_uri: str, experiment: str, artifact_location: str | None) -> None:
        # imported here, not at the top: the driver probes the store before it pays for MLflow's import (~1 s)
        from mlflow.tracking import MlflowClient

        self.tracking_uri = tracking_uri
        self.client = MlflowClient(tracking_uri=tracking_uri)
        self.experiment_id = self._ensure_experiment(experiment, artifact_location)
        self.parent_id: str | None = None
        self.sweep_id: str | None = None

    @classmethod
    def existing_children(cls, *, tracking_uri: str, experiment: str, sweep_name: str,
                          sweep_id: str | None) -> dict[tuple[str, int], ChildRun]:
        """Read-only: the child runs a re-run of this sweep would find (empty when there is none yet).

        Creates nothing (no experiment, no parent): ``--dry-run`` uses it to show what would be skipped.
        """
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=tracking_uri)
        exp = retry(lambda: client.get_experiment_by_name(experiment), what="get experiment")
        if exp is None or exp.lifecycle_stage == "deleted":
            return {}
        self = cls.__new__(cls)
        self.tracking_uri, self.client, self.experiment_id = tracking_uri, client, exp.experiment_id
        parent = self.find_parent(sweep_name=sweep_name, sweep_id=sweep_id)
        if parent is None:
            return {}
        self.sweep_id = parent.data.tags.get("sweep_id", sweep_id or parent.info.run_id)
        return self.children()

    # experiment and parent -------------------------------------------------------------------------------

    def _ensure_experiment(self, name: str, artifact_location: str | None) -> str:
        exp = retry(lambda: self.client.get_experiment_by_name(name), what="get experiment")
        if exp is not None:
            if exp.lifecycle_stage == "deleted":
                retry(lambda: self.client.restore_experiment(exp.experiment_id), what="restore experiment")
            return exp.experiment_id
        try:
            return self.client.create_experiment(name, artifact_location=artifact_location,
                                                 tags={KIND: "experiment"})
        except Exception:
            exp = self.client.get_experiment_by_name(name)
            if exp is None:
                raise
            return exp.experiment_id

    def find_parent(self, *, sweep_name: str, sweep_id: str | None) -> Any | None:
        """The newest parent run of this sweep name (or with this sweep id)."""
        flt = f"tags.`{KIND}` = 'sweep' and " + (f"tags.sweep_id = '{sweep_id}'" if sweep_id
                                                 else f"tags.sweep_name = '{sweep_name}'")
        runs = retry(lambda: self.client.search_runs([self.experiment_id], flt, max_results=1,
                                                     order_by=["attributes.start_time DESC"]), what="search parent")
        return runs[0] if runs else None

    def open_parent(self, *, sweep_name: str, sweep_id: str | None, fresh: bool, tags: Mapping[str, str]) -> str:
        """Reuse the sweep's parent run (same name, or the given id) unless ``fresh``; create it otherwise."""
        parent = None if fresh else self.find_parent(sweep_name=sweep_name, sweep_id=sweep_id)
        if parent is not None:
            self.parent_id = parent.info.run_id
            self.sweep_id = parent.data.tags.get("sweep_id", sweep_id or self.parent_id)
            retry(lambda: self.client.update_run(self.parent_id, status="RUNNING"), what="reopen parent")
        else:
            self.sweep_id = sweep_id or f"{sweep_name}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:4]}"
            run = retry(lambda: self.client.create_run(
                self.experiment_id, run_name=self.sweep_id,
                tags={KIND: "sweep", "sweep_id": self.sweep_id, "sweep_name": sweep_name}), what="create parent")
            self.parent_id = run.info.run_id
        self.set_tags(self.parent_id, {**tags, KIND: "sweep", "sweep_id": self.sweep_id, "sweep_name": sweep_name,
                                       "status": "running"})
        return self.parent_id

    def describe(self, description: str) -> None:
        """The grid's ``description`` as the experiment's and the parent run's description (the tag
        ``mlflow.note.content``, which the MLflow UI shows); an empty description changes nothing."""
        if not description:
            return
        assert self.parent_id is not None
        retry(lambda: self.client.set_experiment_tag(self.experiment_id, NOTE, description),
              what="describe experiment")
        self.set_tags(self.parent_id, {NOTE: description})

    def close_parent(self, status: str, *, summary: Mapping[str, Any]) -> None:
        assert self.parent_id is not None
        self.set_tags(self.parent_id, {"status": status.lower(), **{f"n_{k}": str(v) for k, v in summary.items()}})
        mlflow_status = {"finished": "FINISHED", "failed": "FINISHED", "killed": "KILLED"}.get(status, "FINISHED")
        retry(lambda: self.client.set_terminated(self.parent_id, status=mlflow_status), what="close parent")

    def parent_text(self, text: str, name: str) -> None:
        assert self.parent_id is not None
        retry(lambda: self.client.log_text(self.parent_id, text, name), what=f"log {name}")

    def parent_artifact(self, path: Path) -> None:
        assert self.parent_id is not None
        retry(lambda: self.client.log_artifact(self.parent_id, str(path)), what=f"log {path.name}")

    def parent_metrics(self, metrics: Mapping[str, float]) -> None:
        assert self.parent_id is not None
        self.log_metrics(self.parent_id, metrics, step=0)

    # children --------------------------------------------------------------------------------------------

    def children(self) -> dict[tuple[str, int], ChildRun]:
        """Existing child runs of this sweep keyed by (config_id, seed); a FINISHED one wins over others."""
        assert self.sweep_id is not None
        flt = f"tags.`{KIND}` = 'trial' and tags.sweep_id = '{self.sweep_id}'"
        out: dict[tuple[str, int], ChildRun] = {}
        token = None
        while True:
            page = retry(lambda: self.client.search_runs([self.experiment_id], flt, max_results=1000,
                                                         page_token=token), what="search children")
            for run in page:
                tags = run.data.tags
                try:
                    key = (tags["config_id"], int(tags["seed"]))
                except (KeyError, ValueError):
                    continue
                child = ChildRun(run.info.run_id, run.info.status, tags.get("status", ""),
                                 int(tags.get("last_epoch", "0") or 0), dict(run.data.metrics),
                                 run.info.run_name or "")
                old = out.get(key)
                if old is None or (child.status == "FINISHED" and old.status != "FINISHED"):
                    out[key] = child
            token = page.token
            if not token:
                return out

    def create_child(self, cell: Cell, *, extra_tags: Mapping[str, str] | None = None) -> str:
        """A new nested run for ``cell``, SCHEDULED, with its params and identity tags."""
        assert self.parent_id is not None and self.sweep_id is not None
        tags = {PARENT: self.parent_id, KIND: "trial", "sweep_id": self.sweep_id, "task": cell.task,
                "config_id": cell.config_id,
                "seed": str(cell.seed), "model": cell.model, "status": "scheduled", "attempts": "0",
                **{f"grid.{k}": _param_value(v) for k, v in cell.overrides.items()}, **(extra_tags or {})}
        run = retry(lambda: self.client.create_run(self.experiment_id, run_name=cell.run_name, tags=tags),
                    what="create child")
        run_id = run.info.run_id
        from mlflow.entities import Param

        params = [Param(k, _param_value(v)) for k, v in flatten(cell.trial).items()]
        for i in range(0, len(params), 100):
            chunk = params[i:i + 100]
            retry(lambda: self.client.log_batch(run_id, params=chunk), what="log params")
        retry(lambda: self.client.update_run(run_id, status="SCHEDULED"), what="schedule child")
        return run_id

    def reschedule(self, run_id: str) -> None:
        """A FAILED/KILLED/stale run that is going to run again: back to SCHEDULED (never a duplicate run)."""
        retry(lambda: self.client.update_run(run_id, status="SCHEDULED"), what="reschedule")
        self.set_tags(run_id, {"status": "scheduled", "error": ""})

    def start_child(self, run_id: str, *, attempt: int, ray_trial_id: str) -> None:
        retry(lambda: self.client.update_run(run_id, status="RUNNING"), what="start child")
        self.set_tags(run_id, {"status": "running", "attempts": str(attempt), "ray_trial_id": ray_trial_id})

    def end_child(self, run_id: str, status: str, *, error: str | None = None) -> None:
        """``status``: finished | pruned (MLflow FINISHED), failed (FAILED), killed (KILLED)."""
        tags = {"status": str(status)}
        if error:
            tags["error"] = error[-5000:]
        self.set_tags(run_id, tags)
        if error:
            try:
                retry(lambda: self.client.log_text(run_id, error, "error.txt"), what="log error.txt")
            except Exception as err:
                log.warning("could not write error.txt for %s: %s", run_id, err)
        mlflow_status = {"finished": "FINISHED", "pruned": "FINISHED", "failed": "FAILED"}.get(status, "KILLED")
        retry(lambda: self.client.set_terminated(run_id, status=mlflow_status), what="end child")

    # writes ----------------------------------------------------------------------------------------------

    def set_tags(self, run_id: str, tags: Mapping[str, str]) -> None:
        from mlflow.entities import RunTag

        items = [RunTag(k, str(v)) for k, v in tags.items()]
        retry(lambda: self.client.log_batch(run_id, tags=items), what="set tags")

    def log_metrics(self, run_id: str, metrics: Mapping[str, Any], *, step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, v, now, step) for k, v in _finite(metrics).items()]
        for i in range(0, len(items), 1000):
            chunk = items[i:i + 1000]
            retry(lambda: self.client.log_batch(run_id, metrics=chunk), what="log metrics")

    def log_epoch(self, run_id: str, metrics: Mapping[str, Any], *, step: int, tags: Mapping[str, str]) -> None:
        """One epoch of a child run: its metrics at ``step`` and its progress tags, in one ``log_batch``."""
        from mlflow.entities import Metric, RunTag

        now = int(time.time() * 1000)
        items = [Metric(k, v, now, step) for k, v in _finite(metrics).items()]
        run_tags = [RunTag(k, str(v)) for k, v in tags.items()]
        retry(lambda: self.client.log_batch(run_id, metrics=items, tags=run_tags), what="log epoch")

    def log_artifacts(self, run_id: str, folder: Path, files: Iterable[Path] | None = None) -> list[str]:
        """Upload every file under ``folder`` (or just ``files``) to the run's artifact root."""
        paths = sorted(p for p in (files if files is not None else folder.rglob("*")) if p.is_file())
        for p in paths:
            rel_dir = p.parent.relative_to(folder).as_posix()
            retry(lambda p=p, rel_dir=rel_dir: self.client.log_artifact(run_id, str(p), None if rel_dir == "." else rel_dir),
                  what=f"upload {p.name}")
        return [p.relative_to(folder).as_posix() for p in paths]


class WriteBehind:
    """Runs MLflow writes on one background thread, in the order they were submitted.

    Ray Tune hands a trial's result to the driver's callbacks and lets the trial go on only after they return, so
    a write made inside a callback holds up that trial (a bundle of K members: K writes per epoch, 15–40 ms each on
    SQLite). The callback submits here instead and returns at once. There is still a single writer: while a sweep
    runs, this thread is the only one that writes to the tracking store (the driver drains it before it writes
    itself). A write that fails after :func:`retry`'s attempts is re-raised by the next :meth:`submit` or by
    :meth:`drain`, so a store that goes away still stops the sweep.
    """

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlflow-writer")
        self._pending: deque[Future[Any]] = deque()

    def submit(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> Future[T]:
        """Queue ``fn(*args, **kwargs)``; returns its future (e.g. a child run's id from ``create_child``)."""
        self._check(block=False)
        fut = self._pool.submit(fn, *args, **kwargs)
        self._pending.append(fut)
        return fut

    def drain(self) -> None:
        """Wait until every submitted write has run; re-raise the first that failed."""
        self._check(block=True)

    def close(self) -> None:
        """Drain, then stop the thread."""
        try:
            self.drain()
        finally:
            self._pool.shutdown(wait=True)

    def _check(self, *, block: bool) -> None:
        while self._pending and (block or self._pending[0].done()):
            fut = self._pending.popleft()
            err = fut.exception()  # waits for it when blocking
            if err is not None:
                raise err


def resolve_run_id(run: str | Future[str]) -> str:
    """A child run's id, waiting for the writer to create it if it was created behind (:class:`WriteBehind`)."""
    return run if isinstance(run, str) else run.result()
