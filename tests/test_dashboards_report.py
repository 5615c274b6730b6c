"""The compare, importance and report dashboards against the MLflow backend of known values (the ``backend``
fixture of conftest.py): groups and the paired comparison, parameter importance, every report figure and the Pareto
front, legends beside the points and configurations kept apart (issue 22)."""

from __future__ import annotations

import statistics

import numpy as np
import pandas as pd
import pytest
from dashboard_helpers import SEEDS, _logged, auc_of, dashboard_args, figures_of, make_sweep

pytest.importorskip("mlflow")

from mlflow import MlflowClient
from mlflow.entities import Metric, Param

from dashboards import compare, importance, report, size_vs_auc
from dashboards.loading import load_runs

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

    def pair(a: str, b: str) -> int:
        """``compare --by model,hidden --pair a b`` into tmp_path; the exit code."""
        return run_main(compare.main, dashboard_args(backend, "table", tmp_path, "--by", "model,hidden", "--pair", a, b))

    code = pair("model=euclidnet,hidden=8", "model=interaction_network,hidden=32")
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
    code = pair("model=euclidnet", "model=nosuchmodel")
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
