"""Benchmark: how long loading an experiment takes with and without the Parquet cache.

    python -m dashboards.bench_load --runs 1000 [--dir /tmp/bench]

Fills a fresh SQLite MLflow backend with ``--runs`` finished trial runs (≈ 45 final metrics and 10 params each,
the layout of docs/architecture.md), then times ``load_runs`` cold (MLflow search + typing + Parquet write), warm
(fingerprint queries + Parquet read) and the Table 1 aggregation. Results go to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def fill(uri: str, n_runs: int, art: Path) -> None:
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param

    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("bench", artifact_location=art.as_uri())
    parent = client.create_run(exp, tags={"equitrack.kind": "sweep", "sweep_id": "b1", "sweep_name": "bench"})
    rng = np.random.default_rng(0)
    ts = int(time.time() * 1000)
    for i in range(n_runs):
        model = ("euclidnet", "interaction_network")[i % 2]
        hidden = (8, 16, 32)[(i // 2) % 3]
        seed = i // 6
        run = client.create_run(
            exp,
            tags={
                "equitrack.kind": "trial",
                "sweep_id": "b1",
                "seed": str(seed),
                "config_id": f"{model}-{hidden}",
                "model": model,
                "status": "ok",
                "mlflow.parentRunId": parent.info.run_id,
            },
        )
        params = {
            "model.name": model,
            "model.hidden": hidden,
            "model.c": 0.005,
            "train.seed": seed,
            "train.train_rotation_deg": 0,
            "train.fraction": 1.0,
            "train.lr": 1e-3,
            "train.epochs": 200,
            "data.pt_min": 1.5,
            "data.n_events": 100,
        }
        metrics = {"auc": 0.99 + 0.001 * rng.standard_normal(), "n_params": 100 * hidden}
        metrics.update({f"m{k:02d}": float(rng.random()) for k in range(25)})
        metrics.update({f"auc_rot_{a:03d}": 0.99 for a in range(0, 181, 20)})
        metrics.update({f"equivariance_dev_{a:03d}": 1e-9 for a in range(0, 181, 20)})
        client.log_batch(
            run.info.run_id,
            metrics=[Metric(k, float(v), ts, 0) for k, v in metrics.items()],
            params=[Param(k, str(v)) for k, v in params.items()],
        )
        client.set_terminated(run.info.run_id)


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m dashboards.bench_load", description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=1000)
    p.add_argument("--dir", type=Path, default=None)
    args = p.parse_args()
    root = args.dir or Path(tempfile.mkdtemp(prefix="dash-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{root / 'mlflow.db'}"
    t0 = time.perf_counter()
    fill(uri, args.runs, root / "artifacts")
    print(f"filled {args.runs} runs in {time.perf_counter() - t0:.1f} s")

    from dashboards.loading import load_runs
    from dashboards.size_vs_auc import table1

    cache = root / "cache"
    t0 = time.perf_counter()
    rs = load_runs(experiment="bench", sweep="b1", tracking_uri=uri, cache_dir=cache)
    cold = time.perf_counter() - t0
    t0 = time.perf_counter()
    rs2 = load_runs(experiment="bench", sweep="b1", tracking_uri=uri, cache_dir=cache)
    warm = time.perf_counter() - t0
    assert not rs.from_cache and rs2.from_cache and len(rs2.ok) == args.runs
    t0 = time.perf_counter()
    table1(rs2)
    agg = time.perf_counter() - t0
    print(
        f"runs={args.runs} columns={len(rs.runs.columns)} cold={cold:.2f}s warm={warm:.2f}s table1={agg:.3f}s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
