"""Bundled trials in sweeps: the ``bundle:`` grid keys, how cells are grouped into Ray trials, and one bundled
sweep end to end (one Ray trial, every member its own MLflow child run; a failing member FAILED, the others
FINISHED with the metrics of the same cell trained alone)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from mlflow.tracking import MlflowClient

from sweeps.bundling import auto_bundle_size, bundle_axes, plan_bundles
from sweeps.schema import GridError, load_grid, parse_grid, resolve

REPO = Path(__file__).resolve().parents[1]
GRIDS = REPO / "sweeps" / "grids"


def _grid(name: str, **changes: Any):
    raw = yaml.safe_load((GRIDS / name).read_text())
    raw.update(changes)
    return parse_grid(raw, source=name)


def test_auto_bundles_paper_rotation_by_model():
    grid = _grid("paper_rotation.yaml", max_bundle_size=25)
    cells = resolve(grid, check_model=False)
    assert len(cells) == 50
    assert bundle_axes(grid) == ["train.seed", "train.train_rotation_deg"]
    bundles = plan_bundles(cells, grid)
    assert sorted(len(b) for b in bundles) == [25, 25]
    for b in bundles:
        assert len({c.trial["model"]["name"] for c in b}) == 1
        assert len({(c.config_id, c.seed) for c in b}) == len(b)
    assert sum(len(b) for b in bundles) == 50


def test_automatic_size_gives_every_slot_two_bundles():
    """Without max_bundle_size: at most 25 cells, and about two bundles per concurrent trial (load balance)."""
    grid = _grid("paper_rotation.yaml", resources={"cpus_per_trial": 1, "max_concurrent": 2})
    assert auto_bundle_size(50, grid) == 13
    bundles = plan_bundles(resolve(grid, check_model=False), grid)
    assert sorted(len(b) for b in bundles) == [12, 12, 13, 13]
    big = _grid("paper_rotation.yaml", resources={"cpus_per_trial": 1, "max_concurrent": 1})
    assert auto_bundle_size(50, big) == 25


def test_explicit_axes_size_limit_and_none():
    grid = _grid("paper_rotation.yaml", bundle=["seed"], max_bundle_size=3)
    bundles = plan_bundles(resolve(grid, check_model=False), grid)
    # 10 configurations x 5 seeds, at most 3 per bundle: each configuration split 3 + 2
    assert len(bundles) == 20 and sorted({len(b) for b in bundles}) == [2, 3]
    for b in bundles:
        assert len({c.config_id for c in b}) == 1
    none = _grid("paper_rotation.yaml", bundle="none")
    assert all(len(b) == 1 for b in plan_bundles(resolve(none, check_model=False), none))


def test_c_is_bundled_by_the_loop_strategy_only():
    assert "model.c" in bundle_axes(_grid("c_scale.yaml"))
    assert "model.c" not in bundle_axes(_grid("c_scale.yaml", bundle_strategy="vmap"))


def test_bad_bundle_keys_are_grid_errors():
    with pytest.raises(GridError, match="model.hidden"):
        grid = _grid("paper_table1.yaml", bundle=["seed", "model.hidden"])
        plan_bundles(resolve(grid, check_model=False), grid)
    with pytest.raises(GridError, match="max_bundle_size"):
        _grid("quick.yaml", max_bundle_size=0)
    with pytest.raises(GridError, match="bundle_strategy"):
        _grid("quick.yaml", bundle_strategy="fast")
    with pytest.raises(GridError, match="asha"):
        grid = _grid("quick.yaml", bundle=["seed"], scheduler="asha")
        bundle_axes(grid)
    with pytest.raises(GridError, match="bundle_final_eval"):
        _grid("quick.yaml", bundle_final_eval="fast")
    with pytest.raises(GridError, match="bundle_cuda_graphs"):
        _grid("quick.yaml", bundle_cuda_graphs="sometimes")
    # c varies inside a loop bundle: stacked forwards would run one member's c for all
    grid = _grid("c_scale.yaml", bundle_final_eval="batched")
    with pytest.raises(GridError, match=r"bundle_final_eval: batched.*model\.c"):
        plan_bundles(resolve(grid, check_model=False), grid)
    per_member = _grid("c_scale.yaml", bundle_final_eval="per_member")
    assert plan_bundles(resolve(per_member, check_model=False), per_member)


def test_a_bundle_reports_once_per_round(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """train_bundle sends one ``epochs`` report per round holding every member's epoch, before the finishes."""
    import ray
    from ray import tune

    from sweeps.trainable import Plan, cell_key, train_bundle

    assert not ray.is_initialized()

    sent: list[dict[str, Any]] = []
    monkeypatch.setattr(tune, "report", lambda result, checkpoint=None: sent.append(dict(result)))
    overrides = [TINY[i + 1] for i, t in enumerate(TINY) if t == "--set"][:-2] + ["seeds=3"]
    monkeypatch.setenv("EQUITRACK_CACHE", str(tmp_path / "cache"))
    grid = load_grid(GRIDS / "quick.yaml", overrides=[*overrides, "grid={model.name: [interaction_network]}",
                                                      "bundle_final_eval=batched"])
    cells = resolve(grid)
    assert len(cells) == 3
    plan = Plan(grid=grid, bundles=[cells], workdir_root=str(tmp_path / "work"))
    finals = train_bundle(list(enumerate(cells)), plan=plan, scratch=tmp_path)
    assert len(finals) == 3
    events = [r["event"] for r in sent]
    assert events == ["epochs", "epochs", "finish", "finish", "finish"]  # 2 epochs, then the batched evaluation
    for epoch, report in enumerate(sent[:2], start=1):
        assert [m["cell_key"] for m in report["members"]] == [cell_key(c) for c in cells]
        assert {m["epoch"] for m in report["members"]} == {epoch} and report["epoch"] == epoch
        assert all(0.0 <= m["val_auc"] <= 1.0 and m["event"] == "epoch" for m in report["members"])
    assert not ray.is_initialized()  # reporting outside Ray must not start one (later tests start their own)
    for cell in cells:  # each member's folder says how its bundle ran
        log = (plan.workdir(cell) / "bundle.log").read_text()
        assert "bundle of 3: strategy loop" in log and "final evaluation of 3 members:" in log, log


# -- end to end --------------------------------------------------------------------------------------------------
TINY = ["--set", "data.events={train: 2, val: 1, test: 1}", "--set", "data.pileup=10", "--set", "train.epochs=2",
        "--set", "eval.rotations_deg=[0, 90]", "--set", "eval.timing=false", "--quiet",
        "--set", "grid={model.name: [interaction_network], train.lr: [0.003, 10000000000.0]}", "--set", "seeds=2",
        "--set", "max_bundle_size=4"]


@pytest.mark.slow
def test_bundled_sweep_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import ray

    from equitrack.reporter import NullReporter
    from sweeps.ray_local import shutdown_ray
    from sweeps.run import EXIT_FAILED, main
    from tracker.train import run_trial
    from tracker.train.config import trial_from_dict

    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    monkeypatch.chdir(tmp_path)
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, object_store_memory=150 * 2**20, include_dashboard=False, log_to_driver=False)
    try:
        code = main([str(GRIDS / "quick.yaml"), "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}", *TINY,
                     "--timings", str(tmp_path / "timings.jsonl")])
    finally:
        if started:
            shutdown_ray()
    assert code == EXIT_FAILED  # the two lr = 1e10 members diverge
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.get_experiment_by_name("equitrack-quick")
    runs = client.search_runs([exp.experiment_id], "tags.`equitrack.kind` = 'trial'")
    assert len(runs) == 4
    assert len({r.data.tags["ray_trial_id"] for r in runs}) == 1  # one Ray trial trained all four
    timings = [json.loads(line) for line in (tmp_path / "timings.jsonl").read_text().splitlines()]
    assert len(timings) == 1 and timings[0]["cells"] == 4
    assert len({r.data.tags["config_id"] for r in runs}) == 2
    grid = load_grid(GRIDS / "quick.yaml", overrides=[TINY[i + 1] for i, t in enumerate(TINY) if t == "--set"])
    cells = {(c.config_id, c.seed): c for c in resolve(grid)}
    for run in runs:
        tags = run.data.tags
        lr = float(run.data.params["train.lr"])
        if lr > 1:
            assert run.info.status == "FAILED" and tags["status"] == "failed"
            assert "non-finite" in tags["error"]
            continue
        assert run.info.status == "FINISHED" and tags["status"] == "finished"
        names = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"history.csv", "metrics.json", "model.pt", "rotation.csv"} <= names
        assert tags["last_epoch"] == "2"
        # the same cell trained alone (same process, same dataset cache) gives the same metrics
        cell = cells[(tags["config_id"], int(tags["seed"]))]
        solo = run_trial(trial_from_dict(cell.trial), NullReporter(), workdir=tmp_path / f"solo-{cell.seed}")
        # each member's epochs reached its own run (sent as one report per round of the bundle)
        for key in ("val_auc", "train_loss"):
            history = sorted(client.get_metric_history(run.info.run_id, key), key=lambda m: m.step)
            assert [m.step for m in history] == [1, 2]
            assert [m.value for m in history] == pytest.approx([h[key] for h in solo.history], rel=1e-6)
        assert run.data.metrics["auc"] == pytest.approx(solo.metrics["auc"], abs=1e-4)
        assert run.data.metrics["test_loss"] == pytest.approx(solo.metrics["test_loss"], rel=1e-6)
