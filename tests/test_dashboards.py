"""Dashboards against a real MLflow backend (SQLite in tmp) filled with runs of known values, in the layout of
docs/architecture.md: aggregated numbers, Table 1 files, every figure (PNG and PDF), logging to the parent run,
the paired comparison, error messages and the Parquet cache."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from dashboard_helpers import dashboard_args, figures_of, runset

pytest.importorskip("mlflow")

from mlflow import MlflowClient
from mlflow.entities import Metric, Param

from dashboards import compare, importance, report, rotation, size_vs_auc
from dashboards.data import aggregate
from dashboards.loading import load_runs

REPO = Path(__file__).resolve().parents[1]

# ---- known values -------------------------------------------------------------------------------------------
# (model, hidden, preset) -> (n_params, base AUC, base efficiency, base purity)
CONFIGS = {
    ("euclidnet", 8, "paper_8"): (967, 0.9900, 0.940, 0.790),
    ("euclidnet", 16, "paper_16"): (2580, 0.9930, 0.950, 0.820),
    ("interaction_network", 16, None): (1432, 0.9850, 0.930, 0.730),
    ("interaction_network", 32, None): (4392, 0.9935, 0.957, 0.815),
}
SEEDS = (1, 2, 3)
# per model and seed offsets (different per model, so paired differences vary by seed)
DELTA = {
    "euclidnet": {1: -0.002, 2: 0.0, 3: 0.004},
    "interaction_network": {1: 0.001, 2: -0.003, 3: 0.0005, 5: -0.4},  # seed 5: the pruned run
}
ANGLES = (0, 45, 90, 135, 180)
EPOCHS = 4


def auc_of(model: str, hidden: int, seed: int) -> float:
    key = next(k for k in CONFIGS if k[0] == model and k[1] == hidden)
    return CONFIGS[key][1] + DELTA[model][seed]


def rot_auc(base: float, train_rot: float, angle: int) -> float:
    """AUC at inference angle: a dip away from the training angle (known, so the test can recompute it)."""
    return base - 0.01 * abs(np.sin(np.radians(angle - train_rot)))


def _trial(
    client,
    exp_id,
    parent_id,
    sweep_id,
    *,
    model,
    hidden,
    preset,
    seed,
    rot=0.0,
    status="FINISHED",
    tag_status=None,
    workdir: Path,
):
    run = client.create_run(
        exp_id,
        run_name=f"{model}-{preset or hidden}-rot{int(rot):03d}-s{seed}",
        tags={
            "equitrack.kind": "trial",
            "sweep_id": sweep_id,
            "config_id": f"{model}-{hidden}-{rot}",
            "seed": str(seed),
            "model": model,
            "status": tag_status or ("finished" if status == "FINISHED" else "failed"),
            "mlflow.parentRunId": parent_id,
            # the sweep's axes, as sweeps.tracking tags every child run
            "grid.model.name": model,
            "grid.train.train_rotation_deg": str(rot),
        },
    )
    rid = run.info.run_id
    params = {
        "model.name": model,
        "model.hidden": hidden,
        "model.c": 0.005,
        "train.train_rotation_deg": rot,
        "train.fraction": 1.0,
        "train.seed": seed,
        "data.pt_min": 1.5,
    }
    if preset:
        params["model.preset"] = preset
    client.log_batch(rid, params=[Param(k, str(v)) for k, v in params.items()])
    if status != "FINISHED":
        client.set_terminated(rid, status=status)
        return rid
    n_params, auc0, eff0, pur0 = next(v for k, v in CONFIGS.items() if k[0] == model and k[1] == hidden)
    auc = auc0 + DELTA[model][seed]
    ts = int(time.time() * 1000)
    final = {
        "auc": auc,
        "auc_thresholded": auc - 0.03,
        "edge_efficiency": eff0 + DELTA[model][seed],
        "edge_purity": pur0 + 2 * DELTA[model][seed],
        "n_params": n_params,
        "ant_factor": 1.0 / ((1.0 - auc) * n_params),
    }
    for a in ANGLES:
        final[f"auc_rot_{a:03d}"] = rot_auc(auc, rot, a)
        final[f"equivariance_dev_{a:03d}"] = 1e-9 * (1 + a / 45) if model == "euclidnet" else 0.05 * (a > 0)
    final["auc_rot_spread"] = max(final[f"auc_rot_{a:03d}"] for a in ANGLES) - min(
        final[f"auc_rot_{a:03d}"] for a in ANGLES
    )
    metrics = [Metric(k, float(v), ts, 0) for k, v in final.items()]
    history = []
    for e in range(EPOCHS):
        row = {
            "train_loss": 0.5 / (e + 1) + 0.01 * seed,
            "val_loss": 0.55 / (e + 1),
            "val_auc": auc - 0.01 * (EPOCHS - 1 - e),
        }
        history.append({"epoch": e, **row})
        metrics += [Metric(k, v, ts + e, e) for k, v in row.items()]
    client.log_batch(rid, metrics=metrics)
    d = workdir / rid
    d.mkdir(parents=True)
    fpr = np.linspace(0, 1, 21)
    pd.DataFrame({"fpr": fpr, "tpr": fpr ** (1 - auc + 0.02), "threshold": 1 - fpr}).to_csv(
        d / "roc.csv", index=False
    )
    pd.DataFrame(history).to_csv(d / "history.csv", index=False)
    pd.DataFrame({"angle_deg": ANGLES, "auc": [final[f"auc_rot_{a:03d}"] for a in ANGLES]}).to_csv(
        d / "rotation.csv", index=False
    )
    client.log_artifacts(rid, str(d))
    client.set_terminated(rid, status="FINISHED")
    return rid


def make_sweep(client, exp_id, sweep_id, name, workdir: Path) -> str:
    parent = client.create_run(
        exp_id, run_name=name, tags={"equitrack.kind": "sweep", "sweep_id": sweep_id, "sweep_name": name}
    )
    return parent.info.run_id


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    """One SQLite backend, created from this process: experiment ``table`` (2 models × 2 sizes × 3 seeds + one
    failed run, sweep ``tbl``) and experiment ``rot`` (EuclidNet paper_8 trained at 0° and 90°, 3 seeds)."""
    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    work = root / "work"
    ids = {}
    exp = client.create_experiment("table", artifact_location=(root / "artifacts").as_uri())
    parent = make_sweep(client, exp, "tbl", "paper_table1", work)
    for model, hidden, preset in CONFIGS:
        for seed in SEEDS:
            _trial(
                client, exp, parent, "tbl", model=model, hidden=hidden, preset=preset, seed=seed, workdir=work
            )
    ids["failed"] = _trial(
        client,
        exp,
        parent,
        "tbl",
        model="euclidnet",
        hidden=8,
        preset="paper_8",
        seed=4,
        status="FAILED",
        workdir=work,
    )
    # stopped early by a scheduler (MLflow FINISHED, tag status=pruned): a very low AUC that must not be averaged in
    _trial(
        client,
        exp,
        parent,
        "tbl",
        model="interaction_network",
        hidden=32,
        preset=None,
        seed=5,
        tag_status="pruned",
        workdir=work,
    )
    client.set_terminated(parent)
    ids["table_parent"] = parent
    exp = client.create_experiment("rot", artifact_location=(root / "artifacts").as_uri())
    parent = make_sweep(client, exp, "rot1", "paper_rotation", work)
    for rot in (0.0, 90.0):
        for seed in SEEDS:
            _trial(
                client,
                exp,
                parent,
                "rot1",
                model="euclidnet",
                hidden=8,
                preset="paper_8",
                seed=seed,
                rot=rot,
                workdir=work,
            )
    client.set_terminated(parent)
    ids["rot_parent"] = parent
    return {"uri": uri, "client": client, "root": root, "ids": ids, "work": work}


def _logged(backend, parent) -> set[str]:
    return {f.path for f in backend["client"].list_artifacts(parent, "dashboards")}


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


# ---- compare --------------------------------------------------------------------------------------------------


def test_compare_groups_and_paired_difference(backend, tmp_path, capsys):
    out = tmp_path / "c"
    code = compare.main(
        dashboard_args(
            backend,
            "table",
            out,
            "--by",
            "model,hidden",
            "--metrics",
            "auc,edge_purity",
            "--pair",
            "model.name=euclidnet",
            "model.name=interaction_network",
        )
    )
    assert code == 0
    assert "paired difference" in capsys.readouterr().out  # the rich table reached the terminal
    summary = pd.read_csv(out / "compare.csv")
    assert len(summary) == 4 and set(summary["n"]) == {3}
    assert summary[summary["model.name"] == "euclidnet"]["failed"].sum() == 1
    paired = pd.read_csv(out / "paired.csv").set_index("metric")
    # only hidden = 16 exists for both models: pairs are (E16, IN16) for seeds 1..3
    d = [auc_of("euclidnet", 16, s) - auc_of("interaction_network", 16, s) for s in SEEDS]
    mean, sd = statistics.mean(d), statistics.stdev(d)
    half = 4.302652729749464 * sd / np.sqrt(3)  # t(0.975, df=2)
    assert paired.loc["auc", "n_pairs"] == 3
    assert paired.loc["auc", "mean_diff"] == pytest.approx(mean, abs=1e-9)
    assert paired.loc["auc", "ci95_low"] == pytest.approx(mean - half, abs=1e-9)
    assert paired.loc["auc", "ci95_high"] == pytest.approx(mean + half, abs=1e-9)
    assert "## Paired" in (out / "compare.md").read_text()


def test_compare_pair_without_shared_seed_is_an_error(backend, tmp_path, capsys):
    from dashboards.cli import run_main

    code = run_main(
        compare.main,
        dashboard_args(
            backend,
            "table",
            tmp_path,
            "--by",
            "model,hidden",
            "--pair",
            "model=euclidnet,hidden=8",
            "model=interaction_network,hidden=32",
        ),
    )
    assert code == 0  # both selectors fix every --by key: matched on seed only
    # the paper's rows: EuclidNet paper_N against the IN at the same paper size label (h = 16 -> 8, 32 -> 16)
    out = tmp_path / "paper"
    args = [
        "--by",
        "model,paper_size",
        "--metrics",
        "auc",
        "--pair",
        "model=euclidnet",
        "model=interaction_network",
    ]
    assert run_main(compare.main, dashboard_args(backend, "table", out, *args)) == 0
    paired = pd.read_csv(out / "paired.csv")
    d = [auc_of("euclidnet", h, s) - auc_of("interaction_network", 2 * h, s) for h in (8, 16) for s in SEEDS]
    assert paired.loc[0, "n_pairs"] == 6 and paired.loc[0, "mean_diff"] == pytest.approx(
        statistics.mean(d), abs=1e-9
    )
    code = run_main(
        compare.main,
        dashboard_args(
            backend,
            "table",
            tmp_path,
            "--by",
            "model,hidden",
            "--pair",
            "model=euclidnet",
            "model=nosuchmodel",
        ),
    )
    assert code == 2 and "matches no finished run" in capsys.readouterr().err


# ---- importance and report -----------------------------------------------------------------------------------


def test_importance_csv_and_chart(backend, tmp_path):
    out = tmp_path / "i"
    assert importance.main(dashboard_args(backend, "table", out, "--evaluator", "fanova")) == 0
    t = pd.read_csv(out / "importance.csv")
    assert {"model.name", "model.hidden"} <= set(t["param"])
    assert "train.seed" not in set(t["param"])
    assert t["importance"].sum() == pytest.approx(1.0, abs=1e-6)
    assert (out / "importance.png").exists() and (out / "importance.pdf").exists()


def test_report_writes_every_figure(backend, tmp_path):
    out = tmp_path / "rep"
    assert report.main(dashboard_args(backend, "table", out, "--paper")) == 0
    names = [
        "size_vs_auc",
        "pareto",
        "ant_factor",
        "rotation",
        "equivariance",
        "training_curves",
        "roc",
        "importance",
    ]
    for name in names:
        for ext in ("png", "pdf"):
            assert (out / f"{name}.{ext}").stat().st_size > 1000, f"{name}.{ext}"
    md = (out / "report.md").read_text()
    for name in names:
        assert f"]({name}.png)" in md
    assert "1 failed left out" in md and "euclidnet-paper_8-rot000-s4" in md  # the failed run is listed
    html = (out / "report.html").read_text()
    assert '<img src="roc.png" alt="ROC curves"' in html and "<table>" in html and "<th>" in html
    logged = _logged(backend, backend["ids"]["table_parent"])
    assert {f"dashboards/{n}.png" for n in names} <= logged and "dashboards/report.html" in logged


def test_pareto_front_by_hand():
    pts = pd.DataFrame({"n_params_mean": [100, 200, 300, 400], "auc_mean": [0.90, 0.89, 0.95, 0.94]})
    front = report.pareto_front(pts)
    assert list(front["n_params_mean"]) == [100, 300]


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


# ---- issue 22: configurations kept apart, colours, gaps, legends, error bars ----------------------------------


def _overlaps(fig, legend, ax) -> bool:
    fig.canvas.draw()
    return legend.get_window_extent().overlaps(ax.get_window_extent())


def test_legends_sit_beside_the_points(backend, tmp_path, monkeypatch):
    """size_vs_auc.png and pareto.png: the legend is drawn outside the axes, so it covers no point."""
    rs = load_runs(experiment="table", sweep="tbl", tracking_uri=backend["uri"], cache_dir=backend["root"] / "c1")
    drawn = figures_of(monkeypatch, size_vs_auc)
    size_vs_auc.figure(rs, tmp_path, paper=True)
    report.pareto_figure(rs, tmp_path)
    for fig in drawn:
        for ax in fig.axes:
            legend = ax.get_legend()
            assert legend is not None
            assert not _overlaps(fig, legend, ax)


def test_a_changed_setting_is_not_pooled_with_the_old_configuration(tmp_path):
    """Runs of one model and size whose configs differ in a setting that is no grid axis (a sweep re-run with
    --set train.epochs=12) stay apart in Table 1 and the Pareto points, with the setting in their size label."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("mixed", artifact_location=(tmp_path / "artifacts").as_uri())
    parent = make_sweep(client, exp, "mx", "quick", tmp_path)
    for epochs, auc in ((2, 0.90), (12, 0.99)):
        for seed in (0, 1):
            run = client.create_run(exp, run_name=f"euclidnet-paper_8-s{seed}", tags={
                "equitrack.kind": "trial", "sweep_id": "mx", "config_id": f"cfg-{epochs}", "seed": str(seed),
                "status": "finished", "mlflow.parentRunId": parent, "grid.model.name": "euclidnet"})
            params = {"model.name": "euclidnet", "model.preset": "paper_8", "model.hidden": 8,
                      "train.epochs": epochs, "train.seed": seed}
            client.log_batch(run.info.run_id, params=[Param(k, str(v)) for k, v in params.items()],
                             metrics=[Metric("auc", auc + 0.001 * seed, 0, 0), Metric("n_params", 967, 0, 0)])
            client.set_terminated(run.info.run_id)
    rs = load_runs(experiment="mixed", tracking_uri=uri, cache_dir=tmp_path / "cache")
    t = size_vs_auc.table1(rs)
    assert len(t) == 2 and list(t["n"]) == [2, 2]
    assert sorted(t["auc_mean"]) == pytest.approx([0.9005, 0.9905])
    assert {c for c in t["config"]} == {"paper_8 [train.epochs=2]", "paper_8 [train.epochs=12]"}
    assert len(report.config_means(rs, ["metrics.auc"])) == 2
    assert "configurations share a model and size" in " ".join(rs.notes)
