"""Command-line plumbing shared by the dashboards: the common flags, loading the runs, and exit code 2 for errors
the user can fix (unknown experiment, sweep or column)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from dashboards.data import DashboardError, RunSet
from dashboards.loading import load_runs


def parser(prog: str, description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"python -m dashboards.{prog}", description=description)
    p.add_argument("--experiment", required=True, help="MLflow experiment name (one per grid)")
    p.add_argument(
        "--sweep",
        default=None,
        help="sweep_id, sweep_name (newest such sweep) or parent run id; default: every trial run of the experiment",
    )
    p.add_argument("--out", type=Path, default=None, help=f"output folder (default: dashboards_out/{prog})")
    p.add_argument(
        "--tracking-uri",
        default=None,
        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db)",
    )
    p.add_argument("--no-log", action="store_true", help="do not log the outputs to the sweep's parent run")
    p.add_argument(
        "--cache-dir", type=Path, default=None, help="Parquet cache folder (default ~/.cache/equitrack)"
    )
    p.add_argument("--refresh", action="store_true", help="ignore the Parquet cache and search MLflow again")
    return p


def load(args: argparse.Namespace) -> RunSet:
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one bar per roc.csv is noise
    rs = load_runs(
        experiment=args.experiment,
        sweep=args.sweep,
        tracking_uri=args.tracking_uri,
        cache_dir=args.cache_dir,
        use_cache=not args.refresh,
    )
    print(rs.describe() + (" (from cache)" if rs.from_cache else ""))
    return rs


def out_dir(args: argparse.Namespace, prog: str) -> Path:
    out = args.out if args.out is not None else Path("dashboards_out") / prog
    out.mkdir(parents=True, exist_ok=True)
    return out


def publish(args: argparse.Namespace, rs: RunSet, paths: Sequence[Path]) -> None:
    """Say what was written and, unless ``--no-log``, log it to the sweep's parent run."""
    from dashboards import figures

    print("wrote " + ", ".join(str(x) for x in paths))
    if not args.no_log:
        figures.log_to_parent(rs, paths)


def run_main(fn: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None = None) -> int:
    """Call a dashboard's main, turning a DashboardError into a one-line message and exit status 2."""
    try:
        return fn(argv)
    except DashboardError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
