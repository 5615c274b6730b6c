"""Helpers of the dashboard tests: the command-line arguments of every ``python -m dashboards.X`` main, a RunSet
built from plain rows, the figures a dashboard module saves, and the known values and trial runs of the tracking
dashboards' MLflow backend (the ``backend`` fixture of conftest.py)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dashboards.data import RunSet, add_derived


def dashboard_args(backend: dict[str, Any], experiment: str, out: Path, *extra: str) -> list[str]:
    return ["--experiment", experiment, "--out", str(out), "--tracking-uri", backend["uri"],
            "--cache-dir", str(backend["root"] / "cache"), *extra]


def runset(rows: list[dict]) -> RunSet:
    """A RunSet of finished trial runs with the given params and metrics (no MLflow needed for the aggregation)."""
    runs = add_derived(pd.DataFrame([{"status": "FINISHED", "tags.status": "finished", **r} for r in rows]))
    return RunSet(experiment_name="x", experiment_id="1", tracking_uri="sqlite://", sweep_ids=["s"], runs=runs,
                  parents=pd.DataFrame())


def figures_of(monkeypatch, module) -> list:
    """The figures ``module`` saves, kept open for inspection."""
    drawn: list = []
    save = module.figures.save
    monkeypatch.setattr(module.figures, "save", lambda fig, out, name, **kw: drawn.append(fig) or save(fig, out, name))
    return drawn


# ---- known values of the tracking dashboards' backend ------------------------------------------------------
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
    from mlflow.entities import Metric, Param  # here: the modules that need no MLflow import this one too

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


def _logged(backend, parent) -> set[str]:
    return {f.path for f in backend["client"].list_artifacts(parent, "dashboards")}
