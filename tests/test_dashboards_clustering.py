"""The clustering dashboards against a real MLflow backend (SQLite in tmp) with trial runs in the sweep layout of
docs/mlflow.md, filled with hand-chosen values: per-run ``particles.csv`` artifacts (efficiency vs pT and η per
model, mean and std over seeds) and ``track_dm_eff_rot_XXX`` metrics (track-level rotation robustness)."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import pytest

pytest.importorskip("mlflow")

from mlflow import MlflowClient
from mlflow.entities import Metric, Param

from dashboards import clustering
from dashboards.loading import load_runs

#: (model name, model.equivariant) -> per seed: DM flags of 4 particles at pT 1.1, 1.1, 2.5, 2.5 (eta -0.5, 0.5, ...)
RUNS = {
    ("plain", None): {0: [1, 0, 0, 0], 1: [1, 1, 0, 0]},
    ("so2", None): {0: [1, 1, 1, 1], 1: [1, 1, 1, 0]},
    ("mixed", "['metric_learning', 'edge_classifier']"): {0: [0, 0, 1, 1], 1: [0, 0, 1, 1]},
}
ROT = {"plain": (0.5, 0.2), "so2": (0.8, 0.8), "mixed": (0.6, 0.55)}  # track_dm_eff at 0° and 90°


@pytest.fixture(scope="module")
def runset(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlflow_oc")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("oc", artifact_location=(root / "artifacts").as_uri())
    parent = client.create_run(
        exp, run_name="s", tags={"equitrack.kind": "sweep", "sweep_id": "s", "sweep_name": "s"}
    ).info.run_id
    for (name, eq), seeds in RUNS.items():
        for seed, dm in seeds.items():
            params = {"model.name": name, "model.preset": "tiny", "model.equivariant": eq, "train.seed": seed}
            tags = {
                "equitrack.kind": "trial",
                "sweep_id": "s",
                "config_id": f"{name}{eq}",
                "seed": str(seed),
                "model": name,
                "status": "finished",
                "mlflow.parentRunId": parent,
                "task": "clustering",
            }
            rid = client.create_run(exp, run_name=f"{name}-s{seed}", tags=tags).info.run_id
            client.log_batch(rid, params=[Param(k, str(v)) for k, v in params.items()])
            ts = int(time.time() * 1000)
            a0, a90 = ROT[name]
            off = 0.05 * (2 * seed - 1)
            metrics = {
                "track_dm_eff": a0 + off,
                "track_dm_eff_rot_000": a0 + off,
                "track_dm_eff_rot_090": a90 + off,
            }
            client.log_batch(rid, metrics=[Metric(k, v, ts, 0) for k, v in metrics.items()])
            table = pd.DataFrame(
                {
                    "event": 1,
                    "pid": [1, 2, 3, 4],
                    "pt": [1.1, 1.1, 2.5, 2.5],
                    "eta": [-0.5, 0.5, -0.5, 0.5],
                    "n_hits": 5,
                    "dm": [bool(x) for x in dm],
                    "perfect": False,
                }
            )
            (root / rid).mkdir()
            table.to_csv(root / rid / "particles.csv", index=False)
            client.log_artifact(rid, str(root / rid / "particles.csv"))
            client.set_terminated(rid, "FINISHED")
    return load_runs(experiment="oc", tracking_uri=uri, cache_dir=root / "cache", use_cache=False), root


def test_model_keys() -> None:
    row = pd.Series(
        {
            "params.model.name": "mixed",
            "params.model.equivariant": "['metric_learning', 'edge_classifier']",
            "params.model.preset": "tiny",
        }
    )
    assert clustering.model_key(row) == "mixed [ml+ec] tiny"
    assert clustering.model_key(pd.Series({"params.model.name": "so2", "params.model.preset": None})) == "so2"


def test_efficiency_vs_pt_and_eta(runset) -> None:
    rs, root = runset
    parts = clustering.particles(rs, cache_dir=root / "cache")
    assert len(parts) == 6 * 4
    t = clustering.efficiency_table(parts, "pt", clustering.PT_BINS).set_index(["model", "lo"])
    # plain: seed 0 finds 1/2 of the 1.1 GeV particles, seed 1 2/2 -> mean 0.75; none at 2.5 GeV
    assert t.loc[("plain tiny", 1.0), "mean"] == pytest.approx(0.75)
    assert t.loc[("plain tiny", 1.0), "std"] == pytest.approx(pd.Series([0.5, 1.0]).std())
    assert t.loc[("plain tiny", 2.0), "mean"] == 0.0 and t.loc[("so2 tiny", 2.0), "mean"] == pytest.approx(
        0.75
    )
    assert t.loc[("mixed [ml+ec] tiny", 2.0), "mean"] == 1.0 and t.loc[("mixed [ml+ec] tiny", 2.0), "n"] == 2
    e = clustering.efficiency_table(parts, "eta", clustering.ETA_BINS).set_index(["model", "lo"])
    # so2, eta in [-1, 0): particles 1 and 3: seed 0 2/2, seed 1 2/2
    assert e.loc[("so2 tiny", -1.0), "mean"] == 1.0 and e.loc[("so2 tiny", 0.0), "mean"] == pytest.approx(
        0.75
    )
    # a pT cut above 2 GeV keeps only the 2.5 GeV particles
    high = clustering.efficiency_table(parts, "eta", clustering.ETA_BINS, pt_min=2.0)
    assert set(high["particles"]) == {1.0}
    with pytest.raises(ValueError, match="variable"):
        clustering.efficiency_table(parts, "phi", clustering.PT_BINS)


def test_rotation_table_and_figures(runset, tmp_path: Path) -> None:
    rs, root = runset
    t = clustering.rotation_table(rs).set_index(["model", "angle"])
    assert t.loc[("plain tiny", 90), "mean"] == pytest.approx(0.2) and t.loc[("so2 tiny", 0), "n"] == 2
    assert t.loc[("so2 tiny", 90), "std"] == pytest.approx(pd.Series([0.75, 0.85]).std())
    paths = clustering.efficiency_figure(rs, tmp_path, cache_dir=root / "cache")
    paths += clustering.rotation_figure(rs, tmp_path)
    names = {p.name for p in paths}
    assert {"clustering_efficiency.png", "clustering_rotation.png", "clustering_efficiency.csv"} <= names
    assert all(p.stat().st_size > 0 for p in paths)
    csv = pd.read_csv(tmp_path / "clustering_rotation.csv")
    assert set(csv["model"]) == {"plain tiny", "so2 tiny", "mixed [ml+ec] tiny"}


def test_cli(runset, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rs, root = runset
    code = clustering.main(
        [
            "--experiment",
            "oc",
            "--tracking-uri",
            rs.tracking_uri,
            "--out",
            str(tmp_path),
            "--no-log",
            "--cache-dir",
            str(root / "cache2"),
            "--match",
            "perfect",
        ]
    )
    assert code == 0 and (tmp_path / "clustering_efficiency.pdf").exists()
    assert "6 finished trial runs" in capsys.readouterr().out
