"""The jets dashboards against a real MLflow backend (SQLite in tmp) with trial runs in the sweep layout of
docs/mlflow.md (tags ``equitrack.kind=trial``, ``task=jets``, ``sweep_id``, ``config_id``, ``seed``, ``model``,
``status``; flattened params; final ``acc_boost_*`` / ``auc_boost_*`` metrics and per-epoch histories), filled with
hand-chosen values: the boost figure's curves and bands, the boost, data-efficiency and ablation tables, and the
jets report (jets sections in, tracking sections out)."""

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
from dashboard_helpers import dashboard_args

pytest.importorskip("mlflow")

from mlflow import MlflowClient
from mlflow.entities import Metric, Param

from dashboards import boost, figures, jets_tables, report
from dashboards.data import DashboardError, RunSet, add_derived
from dashboards.jets_runs import mode_of, task_of
from dashboards.loading import load_runs

REPO = Path(__file__).resolve().parents[1]

# ---- known values -------------------------------------------------------------------------------------------
BETAS = (0.0, 0.3, 0.9)
N_PARAMS = {"lorentznet": 5000, "pfn": 3000, "particlenet": 8000, "lorentznet_noneq": 5200, "vecnet": 2000}
#: (model, boost_augment) -> accuracy and AUC at each β of BETAS (the mean over the two seeds)
BOOST_ACC = {
    ("lorentznet", None): (0.90, 0.89, 0.88),
    ("lorentznet", 0.9): (0.89, 0.89, 0.885),
    ("pfn", None): (0.86, 0.75, 0.55),
    ("pfn", 0.9): (0.85, 0.83, 0.80),
}
BOOST_AUC = {
    ("lorentznet", None): (0.995, 0.955, 0.95),  # β = 0: mean + std > 1, the band must be clipped at 1
    ("lorentznet", 0.9): (0.955, 0.955, 0.95),
    ("pfn", None): (0.93, 0.80, 0.60),
    ("pfn", 0.9): (0.92, 0.90, 0.88),
}
#: per-model seed offset: seed 1 gets −D, seed 2 +D (so mean = the table value, std = D·√2)
D = {"lorentznet": 0.004, "pfn": 0.02, "particlenet": 0.01, "lorentznet_noneq": 0.006, "vecnet": 0.008}
SEEDS = (1, 2)
EPOCHS = 3


def off(model: str, seed: int) -> float:
    return (2 * seed - 3) * D[model]


def boost_values(model: str, augment: float | None, seed: int) -> dict[str, float]:
    out = {}
    for i, b in enumerate(BETAS):
        out[f"acc_boost_{round(b * 100):03d}"] = BOOST_ACC[(model, augment)][i] + off(model, seed)
        out[f"auc_boost_{round(b * 100):03d}"] = BOOST_AUC[(model, augment)][i] + off(model, seed)
    aucs = [out[f"auc_boost_{round(b * 100):03d}"] for b in BETAS]
    out["boost_spread"] = max(aucs) - min(aucs)
    return out


def _trial(
    client, exp_id, parent_id, sweep_id, *, model, seed, metrics, params=None, status="FINISHED", task="jets"
) -> str:
    """One child run in the sweep layout: identity tags (``grid.<key>`` for the grid axes: the model and the keys
    of ``params``), flattened params, final metrics at step 0, per-epoch histories."""
    axes = {"model.name": model, **(params or {})}
    params = {
        "model.name": model,
        "model.preset": "small",
        "train.boost_augment": None,
        "train.boost_beta": 0.0,
        "train.fraction": 1.0,
        "train.seed": seed,
        "data.source": "generated",
        "data.jets.train": 4000,
        "eval.boost_axis": "x",
        **(params or {}),
    }
    config_id = "-".join(f"{k}={v}" for k, v in sorted(params.items()) if k != "train.seed")
    tags = {
        "equitrack.kind": "trial",
        "sweep_id": sweep_id,
        "config_id": config_id,
        "seed": str(seed),
        "model": model,
        "status": "finished" if status == "FINISHED" else "failed",
        "mlflow.parentRunId": parent_id,
    }
    tags.update({f"grid.{k}": str(v) for k, v in axes.items()})
    if task:
        tags["task"] = task
    run = client.create_run(exp_id, run_name=f"{model}-s{seed}", tags=tags)
    rid = run.info.run_id
    client.log_batch(rid, params=[Param(k, str(v)) for k, v in params.items()])
    ts = int(time.time() * 1000)
    batch = [Metric(k, float(v), ts, 0) for k, v in metrics.items()]
    for e in range(1, EPOCHS + 1):
        row = {
            "train_loss": 0.6 / e + 0.01 * seed,
            "val_loss": 0.65 / e,
            "val_auc": 0.9 + 0.01 * e,
            "lr": 1e-3 / e,
            "epoch_seconds": 2.0,
        }
        batch += [Metric(k, v, ts + e, e) for k, v in row.items()]
    client.log_batch(rid, metrics=batch)
    client.set_terminated(rid, status=status)
    return rid


def _parent(client, exp_id, sweep_id) -> str:
    run = client.create_run(
        exp_id,
        run_name=sweep_id,
        tags={"equitrack.kind": "sweep", "sweep_id": sweep_id, "sweep_name": sweep_id},
    )
    return run.info.run_id


def _final(model: str, seed: int, acc: float, auc: float, *, r30: float = 500.0, r50: float = 100.0) -> dict:
    n = N_PARAMS[model]
    return {
        "accuracy": acc,
        "auc": auc,
        "rejection_30": r30,
        "rejection_50": r50,
        "n_params": n,
        "ant_factor_v2": 1.0 / ((1.0 - auc) * n),
        "test_loss": 0.3,
    }


#: data efficiency: (model, fraction) -> (accuracy, AUC) means
EFFICIENCY = {
    ("lorentznet", 0.01): (0.80, 0.88),
    ("lorentznet", 1.0): (0.90, 0.96),
    ("particlenet", 0.01): (0.70, 0.78),
    ("particlenet", 1.0): (0.89, 0.95),
}
#: ablation: (model, extra params) -> (accuracy, AUC, rejection_30, rejection_50) means
ABLATION = {
    ("lorentznet", ()): (0.91, 0.965, 900.0, 150.0),
    ("lorentznet_noneq", ()): (0.90, 0.958, 700.0, 120.0),
    ("vecnet", (("model.hidden_equivariant", 8), ("model.hidden_free", 0))): (0.88, 0.950, 400.0, 90.0),
    ("vecnet", (("model.hidden_equivariant", 4), ("model.hidden_free", 4))): (0.89, 0.955, 450.0, 95.0),
}


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    """Experiments ``jets-boost`` (2 models × plain / aug0.9 × 2 seeds + one failed run), ``jets-eff`` (2 models ×
    fractions 0.01 / 1.0 × 2 seeds), ``jets-abl`` (LorentzNet, its non-equivariant twin, VecNet at two channel
    splits × 2 seeds) and ``track`` (two tracking runs), one sweep each."""
    root = tmp_path_factory.mktemp("mlflow_jets")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    art = (root / "artifacts").as_uri()
    ids = {}

    exp = client.create_experiment("jets-boost", artifact_location=art)
    parent = ids["boost_parent"] = _parent(client, exp, "jb")
    for model, augment in BOOST_ACC:
        for seed in SEEDS:
            values = boost_values(model, augment, seed)
            metrics = {**_final(model, seed, values["acc_boost_000"], values["auc_boost_000"]), **values}
            _trial(
                client,
                exp,
                parent,
                "jb",
                model=model,
                seed=seed,
                metrics=metrics,
                params={"train.boost_augment": augment},
            )
    # a failed run with absurd values: left out of every mean
    bad = {**_final("lorentznet", 3, 0.1, 0.2), **{k: 0.1 for k in boost_values("lorentznet", None, 1)}}
    _trial(client, exp, parent, "jb", model="lorentznet", seed=3, metrics=bad, status="FAILED")
    client.set_terminated(parent)

    exp = client.create_experiment("jets-eff", artifact_location=art)
    parent = _parent(client, exp, "je")
    for (model, fraction), (acc, auc) in EFFICIENCY.items():
        for seed in SEEDS:
            metrics = _final(model, seed, acc + off(model, seed), auc + off(model, seed) / 2)
            metrics["acc_boost_000"], metrics["auc_boost_000"] = metrics["accuracy"], metrics["auc"]
            _trial(
                client,
                exp,
                parent,
                "je",
                model=model,
                seed=seed,
                metrics=metrics,
                params={"train.fraction": fraction},
            )
    client.set_terminated(parent)

    exp = client.create_experiment("jets-abl", artifact_location=art)
    parent = _parent(client, exp, "ja")
    for (model, extra), (acc, auc, r30, r50) in ABLATION.items():
        for seed in SEEDS:
            o = off(model, seed)
            metrics = _final(model, seed, acc + o, auc + o / 2, r30=r30 + 1000 * o, r50=r50 + 100 * o)
            _trial(client, exp, parent, "ja", model=model, seed=seed, metrics=metrics, params=dict(extra))
    client.set_terminated(parent)
    return {"uri": uri, "client": client, "root": root, "ids": ids}


def _load(backend, experiment) -> RunSet:
    return load_runs(experiment=experiment, tracking_uri=backend["uri"], cache_dir=backend["root"] / "cache")


def _runset(rows: list[dict]) -> RunSet:
    runs = add_derived(pd.DataFrame([{"status": "FINISHED", "tags.status": "finished", **r} for r in rows]))
    return RunSet(
        experiment_name="x",
        experiment_id="1",
        tracking_uri="sqlite://",
        sweep_ids=["s"],
        runs=runs,
        parents=pd.DataFrame(),
    )


def pm(values: list[float], digits: int = 4) -> str:
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


# ---- task and training mode ----------------------------------------------------------------------------------


def test_training_mode_labels():
    assert mode_of("None", "0.0") == "plain"
    assert mode_of(None, None) == "plain"
    assert mode_of(0.9, 0.0) == "aug0.9"
    assert mode_of("0.0", "0.3") == "boosted 0.3"
    assert mode_of(0.5, -0.3) == "aug0.5, boosted -0.3"


def test_task_from_tag_else_from_metrics():
    base = {"params.model.name": "lorentznet", "params.train.seed": 1, "metrics.auc": 0.9}
    assert task_of(_runset([{**base, "tags.task": "jets"}])) == "jets"
    assert task_of(_runset([{**base, "metrics.rejection_30": 500.0}])) == "jets"  # an old run without the tag
    assert task_of(_runset([{**base, "metrics.acc_boost_000": 0.9}])) == "jets"
    tracking = {
        "params.model.name": "euclidnet",
        "params.train.seed": 1,
        "metrics.auc": 0.99,
        "metrics.edge_efficiency": 0.95,
    }
    assert task_of(_runset([tracking])) == "tracking"
    assert task_of(_runset([{**tracking, "tags.task": "tracking"}])) == "tracking"
    with pytest.raises(DashboardError, match="mixes tasks jets, tracking"):
        task_of(_runset([{**base, "tags.task": "jets"}, {**tracking, "tags.task": "tracking"}]))


# ---- boost figure and table ----------------------------------------------------------------------------------


def test_boost_figure_one_curve_per_model_and_mode_with_seed_means(backend):
    rs = _load(backend, "jets-boost")
    assert rs.n_failed == 1 and len(rs.ok) == 8
    fig, table = boost.draw(rs)
    try:
        axes = fig.axes
        assert len(axes) == 2 and len(fig.legends) == 1  # the legend sits outside both panels
        assert all(ax.get_legend() is None for ax in axes)
        names = {"LorentzNet": "lorentznet", "PFN": "pfn"}
        for ax, (values, _name) in zip(axes, [(BOOST_ACC, "accuracy"), (BOOST_AUC, "auc")]):
            lines = ax.get_lines()
            assert len(lines) == 4
            seen = set()
            for line in lines:
                text = line.get_label()  # "LorentzNet, aug0.9 (n=2)"
                model_text, rest = text.split(", ", 1)
                mode = rest.split(" (n=")[0]
                assert rest.endswith("(n=2)")
                key = (names[model_text], 0.9 if mode == "aug0.9" else None)
                assert mode in ("plain", "aug0.9")
                assert line.get_linestyle() == ("-" if mode == "plain" else "--")
                np.testing.assert_allclose(line.get_xdata(), BETAS)
                # the hand-computed mean of the two seeds' values at every β
                i_seeds = [boost_values(key[0], key[1], s) for s in SEEDS]
                prefix = "acc_boost" if values is BOOST_ACC else "auc_boost"
                means = [statistics.mean(v[f"{prefix}_{round(b * 100):03d}"] for v in i_seeds) for b in BETAS]
                np.testing.assert_allclose(line.get_ydata(), means, rtol=0, atol=1e-12)
                np.testing.assert_allclose(means, values[key], atol=1e-12)
                seen.add(key)
            assert seen == set(BOOST_ACC)
            bands = ax.collections
            assert len(bands) == 4
            tops = max(np.max(b.get_paths()[0].vertices[:, 1]) for b in bands)
            assert tops <= 1.0 + 1e-12  # bands are clipped to [0, 1]
        # the clipped band: LorentzNet plain AUC at β = 0 is 0.995 ± 0.004·√2, whose upper edge (1.0007) is cut at 1
        assert tops == pytest.approx(1.0)
    finally:
        import matplotlib.pyplot as plt

        plt.close(fig)
    row = table[
        (table["params.model.name"] == "pfn") & (table["mode"] == "plain") & (table["beta"] == 0.9)
    ].iloc[0]
    assert row["auc_std"] == pytest.approx(statistics.stdev([0.60 - 0.02, 0.60 + 0.02]))
    assert row["auc_n"] == 2


def test_boost_files_and_summary_table(backend, tmp_path):
    out = tmp_path / "boost"
    assert boost.main(dashboard_args(backend, "jets-boost", out, "--no-log")) == 0
    for name in ("boost.png", "boost.pdf", "boost.csv", "boost.md"):
        assert (out / name).stat().st_size > 100, name
    md = (out / "boost.md").read_text()
    spreads = [boost_values("pfn", None, s)["boost_spread"] for s in SEEDS]
    auc0 = [BOOST_AUC[("pfn", None)][0] + off("pfn", s) for s in SEEDS]
    assert f"| PFN | small | plain | 3000 | {pm(auc0)} | {pm(spreads)} | 2 |" in md
    spreads = [boost_values("lorentznet", 0.9, s)["boost_spread"] for s in SEEDS]
    auc0 = [BOOST_AUC[("lorentznet", 0.9)][0] + off("lorentznet", s) for s in SEEDS]
    assert f"| LorentzNet | small | aug0.9 | 5000 | {pm(auc0)} | {pm(spreads)} | 2 |" in md
    assert "1 failed left out" in md
    csv = pd.read_csv(out / "boost.csv")
    assert len(csv) == 4 * len(BETAS)
    cur = csv[(csv["model"] == "lorentznet") & (csv["mode"] == "aug0.9")].sort_values("beta")
    np.testing.assert_allclose(cur["accuracy_mean"], BOOST_ACC[("lorentznet", 0.9)], atol=1e-12)


# ---- tables --------------------------------------------------------------------------------------------------


def test_data_efficiency_table(backend, tmp_path):
    rs = _load(backend, "jets-eff")
    t = jets_tables.data_efficiency(rs)
    assert len(t) == 4 and set(t["params.train.fraction"]) == {0.01, 1.0}
    for (model, fraction), (acc, auc) in EFFICIENCY.items():
        r = t[(t["params.model.name"] == model) & (t["params.train.fraction"] == fraction)].iloc[0]
        accs = [acc + off(model, s) for s in SEEDS]
        aucs = [auc + off(model, s) / 2 for s in SEEDS]
        assert r["accuracy_mean"] == pytest.approx(statistics.mean(accs))
        assert r["accuracy_std"] == pytest.approx(statistics.stdev(accs))
        assert r["auc_mean"] == pytest.approx(statistics.mean(aucs))
        assert r["auc_std"] == pytest.approx(statistics.stdev(aucs))
        assert r["n"] == 2
    paths, texts = jets_tables.build(rs, tmp_path)
    md = (tmp_path / "data_efficiency.md").read_text()
    assert md == texts["data_efficiency"]
    # rows model, columns the fractions (with the number of training jets), cells accuracy / AUC (n)
    assert "| model | 1 % (≈40 jets) | 100 % (≈4,000 jets) |" in md
    lz = [pm([a + off("lorentznet", s) for s in SEEDS]) for a in (0.80, 0.90)]
    lz_auc = [pm([a + off("lorentznet", s) / 2 for s in SEEDS]) for a in (0.88, 0.96)]
    assert f"| LorentzNet | {lz[0]} / {lz_auc[0]} (n=2) | {lz[1]} / {lz_auc[1]} (n=2) |" in md
    assert "Published (seed 002 Table 3" in md and "| 0.5 % | LorentzNet | 0.932" in md
    csv = pd.read_csv(tmp_path / "data_efficiency.csv")
    assert {"model", "fraction", "accuracy_mean", "auc_std", "n"} <= set(csv.columns) and len(csv) == 4


def test_ablation_table(backend, tmp_path):
    rs = _load(backend, "jets-abl")
    t = jets_tables.ablation(rs)
    assert len(t) == 4
    rows = {(r["params.model.name"], r["variant"]): r["equivariant"] for _, r in t.iterrows()}
    assert rows == {
        ("lorentznet", "small"): "yes",
        ("lorentznet_noneq", "small"): "no",
        ("vecnet", "small eq=8 free=0"): "yes",
        ("vecnet", "small eq=4 free=4"): "no",
    }
    for (model, extra), (acc, auc, r30, r50) in ABLATION.items():
        variant = "small" + "".join(f" {'eq' if 'equi' in k else 'free'}={v}" for k, v in extra)
        r = t[(t["params.model.name"] == model) & (t["variant"] == variant)].iloc[0]
        offs = [off(model, s) for s in SEEDS]
        for name, values in [
            ("accuracy", [acc + o for o in offs]),
            ("auc", [auc + o / 2 for o in offs]),
            ("rejection_30", [r30 + 1000 * o for o in offs]),
            ("rejection_50", [r50 + 100 * o for o in offs]),
        ]:
            assert r[f"{name}_mean"] == pytest.approx(statistics.mean(values)), (model, variant, name)
            assert r[f"{name}_std"] == pytest.approx(statistics.stdev(values)), (model, variant, name)
        assert r["n_params_mean"] == N_PARAMS[model] and r["n"] == 2
    jets_tables.build(rs, tmp_path)
    md = (tmp_path / "ablation.md").read_text()
    o = [off("vecnet", s) for s in SEEDS]
    row = (
        f"| VecNet | small eq=8 free=0 | yes | {pm([0.88 + x for x in o])} | {pm([0.950 + x / 2 for x in o])} | "
        f"{pm([400 + 1000 * x for x in o], 1)} | {pm([90 + 100 * x for x in o], 1)} | 2000 | 2 |"
    )
    assert row in md
    assert (
        "| model | variant | Lorentz-equivariant | accuracy | AUC | rejection_30 | rejection_50 | params | n |"
        in md
    )
    assert "Published (seed 002 Table 6" in md and "| LorentzNet | 0.942 | 0.9868 | 2195 ± 173 |" in md
    assert len(pd.read_csv(tmp_path / "ablation.csv")) == 4


# ---- report --------------------------------------------------------------------------------------------------


def test_report_of_a_jets_experiment_has_jets_sections_only(backend, tmp_path, monkeypatch):
    drawn = {}
    save = figures.save

    def series(ax):
        """(label, x, y) of every labelled line and error-bar series of a panel."""
        out = [
            (c.get_label(), list(c.lines[0].get_xdata()), list(c.lines[0].get_ydata()))
            for c in ax.containers
            if type(c).__name__ == "ErrorbarContainer"
        ]
        return out + [
            (line.get_label(), list(line.get_xdata()), list(line.get_ydata()))
            for line in ax.get_lines()
            if not line.get_label().startswith("_")
        ]

    def keep(fig, out, name, **kwargs):
        drawn[name] = [series(ax) for ax in fig.axes]
        return save(fig, out, name, **kwargs)

    monkeypatch.setattr(figures, "save", keep)
    out = tmp_path / "rep"
    assert report.main(dashboard_args(backend, "jets-boost", out)) == 0
    md = (out / "report.md").read_text()
    for section in (
        "## Model size: AUC and background rejection",
        "## Robustness to Lorentz boosts",
        "## Data efficiency (seed 002 Table 3)",
        "## Equivariance ablation (seed 002 Table 6)",
        "## Training curves",
        "## Failed and unfinished runs",
    ):
        assert section in md, section
    for name in ("jets_size", "boost", "training_curves"):
        assert f"]({name}.png)" in md
        assert (out / f"{name}.png").stat().st_size > 1000 and (out / f"{name}.pdf").exists()
    # nothing of the tracking report
    for text in (
        "Table 1",
        "Rotation",
        "rotation",
        "Equivariance deviation",
        "Pareto",
        "Ant factor",
        "edge",
        "efficiency, purity",
        "thresholded",
    ):
        assert text not in md, text
    for name in ("table1.md", "rotation.png", "equivariance.png", "pareto.png", "roc.png"):
        assert not (out / name).exists(), name
    assert set(drawn) == {"jets_size", "boost", "training_curves"}
    # size figure: plain runs only, one series per model; AUC and rejection_30 means at the model's n_params
    auc_panel, rej_panel = drawn["jets_size"]
    assert sorted(label for label, _, _ in auc_panel) == [
        "LorentzNet (this work, ROC AUC)",
        "PFN (this work, ROC AUC)",
    ]
    for label, x, y in auc_panel:
        model = "lorentznet" if label.startswith("Lorentz") else "pfn"
        assert x == [N_PARAMS[model]]
        assert y == pytest.approx([BOOST_AUC[(model, None)][0]])
    assert all(y == pytest.approx([500.0]) for _, _, y in rej_panel) and len(rej_panel) == 2
    # training curves: one line per model × mode in each of the three panels
    assert [len(panel) for panel in drawn["training_curves"]] == [4, 4, 4]
    assert any("aug0.9" in label for label, _, _ in drawn["training_curves"][0])
    html = (out / "report.html").read_text()
    assert '<img src="boost.png" alt="accuracy and AUC vs boost"' in html
    logged = {f.path for f in backend["client"].list_artifacts(backend["ids"]["boost_parent"], "dashboards")}
    assert {"dashboards/boost.png", "dashboards/report.md", "dashboards/ablation.md"} <= logged


def test_jets_commands_as_modules(backend, tmp_path):
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": backend["uri"],
        "EQUITRACK_DASHBOARD_CACHE": str(tmp_path / "c"),
    }
    out = tmp_path / "tables"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "dashboards.jets_tables",
            "--experiment",
            "jets-eff",
            "--out",
            str(out),
            "--no-log",
        ],
        cwd=REPO,
        env=env,
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    for name in ("data_efficiency.md", "data_efficiency.csv", "ablation.md", "ablation.csv"):
        assert (out / name).exists(), name
    assert "## data_efficiency" in proc.stdout
    from dashboards import cli

    assert cli.run_main(jets_tables.main, dashboard_args(backend, "nope", tmp_path / "x")) == 2  # unknown experiment
