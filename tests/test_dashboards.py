"""Dashboards against a real MLflow backend (SQLite in tmp) filled with runs of known values (the ``backend``
fixture of conftest.py, the values in dashboard_helpers.py), in the layout of docs/architecture.md: loading and
aggregation, Table 1 and its figures, rotation, logging to the parent run, error messages, the Parquet cache and the
``python -m dashboards.NAME`` commands."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from dashboard_helpers import (
    DELTA,
    SEEDS,
    _logged,
    _trial,
    auc_of,
    dashboard_args,
    make_sweep,
    rot_auc,
    runset,
)

pytest.importorskip("mlflow")

from dashboards import rotation, size_vs_auc
from dashboards.data import aggregate
from dashboards.loading import load_runs

REPO = Path(__file__).resolve().parents[1]


# ---- loading and aggregation ---------------------------------------------------------------------------------


def test_load_types_and_failed_runs(backend):
    import mlflow

    env_before, uri_before = os.environ.get("MLFLOW_TRACKING_URI"), mlflow.get_tracking_uri()
    rs = load_runs(
        experiment="table", sweep="tbl", tracking_uri=backend["uri"], cache_dir=backend["root"] / "c1"
    )
    assert len(rs.runs) == 14 and len(rs.ok) == 12 and rs.n_failed == 1 and rs.n_pruned == 1
    assert pd.api.types.is_integer_dtype(rs.runs["params.model.hidden"])
    assert pd.api.types.is_float_dtype(rs.runs["params.model.c"])
    assert rs.parent_run_id == backend["ids"]["table_parent"]
    assert "1 failed left out" in rs.describe() and "1 pruned" in rs.describe()
    # loading leaves the caller's MLflow settings alone
    assert os.environ.get("MLFLOW_TRACKING_URI") == env_before and mlflow.get_tracking_uri() == uri_before
    # the sweep can also be named by its sweep_name
    rs2 = load_runs(
        experiment="table",
        sweep="paper_table1",
        tracking_uri=backend["uri"],
        cache_dir=backend["root"] / "c1",
    )
    assert rs2.sweep_ids == ["tbl"]


def test_aggregate_matches_hand_computation(backend):
    rs = load_runs(
        experiment="table", sweep="tbl", tracking_uri=backend["uri"], cache_dir=backend["root"] / "c1"
    )
    agg = aggregate(rs.ok, ["params.model.name", "params.model.hidden"], ["metrics.auc"])
    for _, row in agg.iterrows():
        values = [auc_of(row["params.model.name"], int(row["params.model.hidden"]), s) for s in SEEDS]
        assert row["auc_mean"] == pytest.approx(statistics.mean(values), abs=1e-12)
        assert row["auc_std"] == pytest.approx(statistics.stdev(values), abs=1e-12)
        assert row["auc_min"] == pytest.approx(min(values)) and row["auc_max"] == pytest.approx(max(values))
        assert row["n"] == 3 and row["auc_n"] == 3


# ---- size_vs_auc ----------------------------------------------------------------------------------------------


def test_size_vs_auc_table1_and_figures(backend, tmp_path, capsys):
    out = tmp_path / "s"
    assert size_vs_auc.main(dashboard_args(backend, "table", out, "--paper")) == 0
    for name in ("size_vs_auc.png", "size_vs_auc.pdf", "table1.md", "table1.csv"):
        assert (out / name).stat().st_size > 0, name
    t = pd.read_csv(out / "table1.csv")
    assert list(t["model"]) == ["euclidnet", "interaction_network", "euclidnet", "interaction_network"]
    # the paper's N_hidden labels: EuclidNet paper_N -> N, IN h = 16 / 32 -> 8 / 16 (SCIENCE.md section 4)
    assert list(t["size"].astype(str)) == ["8", "8", "16", "16"]
    assert list(t["config"]) == ["paper_8", "h=16", "paper_16", "h=32"]
    assert list(t["n"]) == [3, 3, 3, 3] and list(t["failed"]) == [1, 0, 0, 0]
    assert list(t["params_mean"]) == [967, 1432, 2580, 4392] and list(t["configs"]) == [1, 1, 1, 1]
    e8 = [auc_of("euclidnet", 8, s) for s in SEEDS]
    assert t.loc[0, "auc_mean"] == pytest.approx(statistics.mean(e8), abs=1e-6)
    assert t.loc[0, "auc_std"] == pytest.approx(statistics.stdev(e8), abs=1e-6)
    pur = [0.730 + 2 * DELTA["interaction_network"][s] for s in SEEDS]
    assert t.loc[1, "purity_mean"] == pytest.approx(statistics.mean(pur), abs=1e-6)
    md = (out / "table1.md").read_text()
    assert md.startswith(
        "| size | model | config | params | ROC AUC | thresholded AUC | efficiency | purity | n | failed |"
    )
    row = f"| 8 | EuclidNet | paper_8 | 967 | {statistics.mean(e8):.4f} ± {statistics.stdev(e8):.4f} |"
    assert row in md
    assert "1 failed left out" in md
    assert {"dashboards/size_vs_auc.png", "dashboards/size_vs_auc.pdf", "dashboards/table1.md"} <= _logged(
        backend, backend["ids"]["table_parent"]
    )


def test_table1_never_puts_two_sizes_of_one_model_under_one_label():
    """The IN at h = 8 (not a paper size) and at h = 16 (the paper's "8") get different size labels."""
    rows = [
        {"params.model.name": m, "params.model.hidden": h, "params.model.preset": p, "params.train.seed": s,
         "tags.config_id": f"{m}-{h}-{p}", "metrics.n_params": n, "metrics.auc": 0.9 + 0.01 * s,
         "metrics.auc_thresholded": 0.8 + 0.01 * s}
        for m, h, p, n in [("interaction_network", 8, None, 528), ("interaction_network", 16, None, 1432),
                           ("euclidnet", 8, None, 1874), ("euclidnet", 8, "paper_8", 967)]
        for s in (0, 1)
    ]
    t = size_vs_auc.table1(runset(rows))
    assert len(t) == 4 and not t.duplicated(["model", "size"]).any()
    by = {(r["model"], r["config"]): r["size"] for _, r in t.iterrows()}
    assert by[("interaction_network", "h=16")] == "8" and by[("euclidnet", "paper_8")] == "8"
    assert by[("interaction_network", "h=8")] == "h=8*" and by[("euclidnet", "h=8")] == "h=8*"
    assert list(t["auc_thresholded_mean"]) == pytest.approx([0.805] * 4)
    md = size_vs_auc.table1_markdown(t, runset(rows))
    assert "| h=8* | Interaction Network | h=8 |" in md and "| 8 | Interaction Network | h=16 |" in md
    assert "not one of the paper's" in md


def test_paper_overlay_is_drawn_against_the_thresholded_auc(backend, tmp_path, monkeypatch):
    """--paper: the paper's Table 1 "AUC" (thresholded) sits on our thresholded-AUC panel, never on ROC AUC."""
    drawn = []
    save = size_vs_auc.figures.save
    monkeypatch.setattr(size_vs_auc.figures, "save", lambda fig, out, name: drawn.append(fig) or save(fig, out, name))
    rs = load_runs(experiment="table", sweep="tbl", tracking_uri=backend["uri"], cache_dir=backend["root"] / "c1")
    size_vs_auc.figure(rs, tmp_path, paper=True)
    size_vs_auc.figure(rs, tmp_path / "plain")
    with_paper, plain = drawn
    labels = {ax.get_ylabel(): ax.get_legend_handles_labels()[1] for ax in with_paper.axes}
    assert set(labels) == {"ROC AUC", "thresholded AUC (balanced accuracy)"}
    assert not [lab for lab in labels["ROC AUC"] if "paper" in lab]
    paper = [lab for lab in labels["thresholded AUC (balanced accuracy)"] if "paper" in lab]
    assert len(paper) == 2 and all("thresholded" in lab for lab in paper)
    ours = [lab for lab in labels["thresholded AUC (balanced accuracy)"] if "this work" in lab]
    assert len(ours) == 2 and all("thresholded AUC" in lab for lab in ours)
    assert [ax.get_ylabel() for ax in plain.axes] == ["ROC AUC"]


def test_no_log_flag_does_not_log(backend, tmp_path):
    assert rotation.main(dashboard_args(backend, "table", tmp_path, "--no-log")) == 0
    assert "dashboards/rotation.png" not in _logged(backend, backend["ids"]["table_parent"])


# ---- rotation -------------------------------------------------------------------------------------------------


def test_rotation_curves_per_training_angle(backend, tmp_path):
    out = tmp_path / "r"
    assert rotation.main(dashboard_args(backend, "rot", out, "--equivariance")) == 0
    for name in ("rotation.png", "rotation.pdf", "equivariance.png", "equivariance.pdf"):
        assert (out / name).stat().st_size > 0, name
    t = pd.read_csv(out / "rotation.csv")
    assert sorted(t["params.train.train_rotation_deg"].unique()) == [0.0, 90.0]
    row = t[(t["params.train.train_rotation_deg"] == 90.0) & (t["angle"] == 0)].iloc[0]
    vals = [rot_auc(auc_of("euclidnet", 8, s), 90.0, 0) for s in SEEDS]
    assert row["mean"] == pytest.approx(statistics.mean(vals), abs=1e-9)
    assert row["std"] == pytest.approx(statistics.stdev(vals), abs=1e-9)
    assert row["n"] == 3
    assert "dashboards/rotation.png" in _logged(backend, backend["ids"]["rot_parent"])


# ---- errors and cache ----------------------------------------------------------------------------------------


def test_unknown_experiment_and_sweep(backend, tmp_path, capsys):
    from dashboards.cli import run_main

    assert run_main(size_vs_auc.main, dashboard_args(backend, "nope", tmp_path)) == 2
    err = capsys.readouterr().err
    assert "unknown experiment 'nope'" in err and "rot" in err and "table" in err
    assert run_main(size_vs_auc.main, dashboard_args(backend, "table", tmp_path, "--sweep", "zzz")) == 2
    err = capsys.readouterr().err
    assert "unknown sweep 'zzz'" in err and "tbl (paper_table1)" in err
    assert (
        run_main(
            size_vs_auc.main,
            dashboard_args(backend, "table", tmp_path)[:-4]
            + ["--tracking-uri", f"sqlite:///{tmp_path / 'missing.db'}"],
        )
        == 2
    )
    assert "no MLflow database" in capsys.readouterr().err


def test_parquet_cache_reused_and_invalidated(backend, tmp_path):
    client, uri = backend["client"], backend["uri"]
    exp = client.create_experiment("cache", artifact_location=(tmp_path / "a").as_uri())
    parent = make_sweep(client, exp, "c1", "cached", tmp_path)
    for seed in (1, 2):
        _trial(
            client,
            exp,
            parent,
            "c1",
            model="euclidnet",
            hidden=8,
            preset="paper_8",
            seed=seed,
            workdir=tmp_path,
        )
    cache = tmp_path / "cache"
    first = load_runs(experiment="cache", sweep="c1", tracking_uri=uri, cache_dir=cache)
    assert not first.from_cache and len(first.ok) == 2 and list(cache.glob("runs-*.parquet"))
    second = load_runs(experiment="cache", sweep="c1", tracking_uri=uri, cache_dir=cache)
    assert second.from_cache and len(second.ok) == 2
    pd.testing.assert_frame_equal(first.runs, second.runs, check_dtype=False)
    _trial(client, exp, parent, "c1", model="euclidnet", hidden=8, preset="paper_8", seed=3, workdir=tmp_path)
    third = load_runs(experiment="cache", sweep="c1", tracking_uri=uri, cache_dir=cache)
    assert not third.from_cache and len(third.ok) == 3
    # a run still RUNNING: never served from cache
    running = client.create_run(exp, tags={"equitrack.kind": "trial", "sweep_id": "c1"}).info.run_id
    assert not load_runs(experiment="cache", sweep="c1", tracking_uri=uri, cache_dir=cache).from_cache
    client.set_terminated(running, status="KILLED")
    fourth = load_runs(experiment="cache", sweep="c1", tracking_uri=uri, cache_dir=cache)
    assert fourth.n_failed == 1 and len(fourth.ok) == 3
    assert load_runs(experiment="cache", sweep="c1", tracking_uri=uri, cache_dir=cache).from_cache


def test_acceptance_commands_as_modules(backend, tmp_path, monkeypatch):
    """The interface the acceptance checks call: ``python -m dashboards.NAME --experiment NAME --out DIR`` with
    the backend from MLFLOW_TRACKING_URI (one real subprocess; the other command in-process, same environment)."""
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": backend["uri"],
        "EQUITRACK_DASHBOARD_CACHE": str(tmp_path / "cache"),
    }
    out = tmp_path / "size"
    proc = subprocess.run(
        [sys.executable, "-m", "dashboards.size_vs_auc", "--experiment", "rot", "--out", str(out)],
        cwd=REPO,
        env=env,
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert list(out.glob("*.png")) and (out / "table1.md").exists() and (out / "table1.csv").exists()
    for key in ("MLFLOW_TRACKING_URI", "EQUITRACK_DASHBOARD_CACHE"):
        monkeypatch.setenv(key, env[key])
    assert rotation.main(["--experiment", "rot", "--out", str(tmp_path / "rot")]) == 0
    assert list((tmp_path / "rot").glob("*.png"))
