"""One trial end to end on the real npz hit graphs: metrics and artifacts, determinism, resume and checkpoint
cadence, errors and NaN handling, training fraction and rotations, the CLI, and a short training that separates
signal from fakes (AUC > 0.9) for both model families."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from equitrack.checkpoint import checkpoint_path
from equitrack.reporter import NullReporter
from tracker.train import CheckpointMismatchError, NonFiniteLossError, run_trial
from tracker.train.config import trial_from_dict
from tracker.train.trial import TIMING_METRICS, csv_text

REPO = Path(__file__).resolve().parents[1]
ARCH_FINAL = [
    "auc",
    "auc_thresholded",
    "edge_efficiency",
    "edge_purity",
    "accuracy",
    "balanced_accuracy",
    "f1",
    "test_loss",
    "n_params",
    "ant_factor",
    "threshold",
    "best_epoch",
    "train_seconds",
    "seconds_per_epoch",
    "auc_rot_000",
    "auc_rot_090",
    "auc_rot_spread",
    "equivariance_dev_000",
    "equivariance_dev_090",
    "track_dm_eff",
    "track_perfect_eff",
    "track_lhc_eff",
    "trackml_score",
]


@pytest.fixture(scope="module")
def small(graphs):
    """(train, val, test) for the quick runs: 2 / 1 / 1 real graphs."""
    return graphs[:2], graphs[8:9], graphs[9:10]


def _config(**sections):
    raw = {
        "model": {"name": "euclidnet", "hidden": 4},
        "train": {"epochs": 3, "lr": 0.005, "seed": 0, "device": "cpu"},
        "eval": {"rotations_deg": [0, 90], "timing": False},
    }
    for key, value in sections.items():
        raw[key] = {**raw.get(key, {}), **value}
    return trial_from_dict(raw)


def _comparable(metrics: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in metrics.items() if k not in TIMING_METRICS}


def _history(result) -> list[dict[str, float]]:
    return [{k: v for k, v in h.items() if k != "epoch_seconds"} for h in result.history]


class Recorder(NullReporter):
    """Remembers epochs (and those reported with a checkpoint) and artifacts; raises after ``stop_after`` epochs
    to simulate a crash."""

    def __init__(self, stop_after: int | None = None) -> None:
        self.epochs: list[int] = []
        self.checkpointed: list[int] = []
        self.artifacts: list[Path] = []
        self.final: dict[str, float] | None = None
        self.stop_after = stop_after

    def epoch(self, *, epoch, metrics, checkpoint_dir):
        assert set(metrics) == {"train_loss", "val_loss", "val_auc", "lr", "epoch_seconds"}
        if checkpoint_dir is not None:
            assert torch.load(checkpoint_dir / "state.pt", weights_only=True)["epoch"] == epoch  # just written
            self.checkpointed.append(epoch)
        self.epochs.append(epoch)
        if self.stop_after is not None and epoch >= self.stop_after:
            raise KeyboardInterrupt(f"simulated crash after epoch {epoch}")

    def artifact(self, path):
        self.artifacts.append(Path(path))

    def finish(self, *, metrics):
        self.final = dict(metrics)


@pytest.fixture(scope="module")
def reference(small, tmp_path_factory):
    """An uninterrupted 3-epoch run (shared by the determinism and resume tests)."""
    rec = Recorder()
    result = run_trial(_config(), rec, workdir=tmp_path_factory.mktemp("ref"), splits=small)
    return result, rec


def test_metrics_names_and_artifacts(reference):
    result, rec = reference
    for name in ARCH_FINAL:
        assert name in result.metrics, name
    assert rec.final == result.metrics and rec.epochs == rec.checkpointed == [1, 2, 3]
    assert 0.0 <= result.metrics["auc"] <= 1.0 and result.metrics["n_params"] > 0
    assert result.metrics["ant_factor"] == pytest.approx(
        1 / ((1 - result.metrics["auc"]) * result.metrics["n_params"])
    )
    assert "edge_efficiency_pt0p9" not in result.metrics  # the npz graphs carry no pT
    d = result.artifacts_dir
    names = {p.name for p in rec.artifacts}
    assert names == {"config.yaml", "history.csv", "roc.csv", "rotation.csv", "model.pt", "metrics.json"}
    assert json.loads((d / "metrics.json").read_text()) == pytest.approx(result.metrics)
    assert list(pd.read_csv(d / "history.csv").epoch) == [1, 2, 3]
    rot = pd.read_csv(d / "rotation.csv")
    assert list(rot.angle_deg) == [0.0, 90.0] and rot.auc.iloc[1] == pytest.approx(
        result.metrics["auc_rot_090"]
    )
    assert torch.load(d / "model.pt", weights_only=True)
    assert torch.load(checkpoint_path(d), weights_only=True)["epoch"] == 3
    assert yaml.safe_load((d / "config.yaml").read_text())["model"]["hidden"] == 4


def test_artifact_tables_are_the_text_pandas_writes(reference):
    # the trial's CSV writer (csv_text) gives pandas' text exactly: the trial's own tables, then every kind of
    # float64 (shortest round-trip text, NaN empty, infinities, signed zero, exponents) and int64 value
    result, _ = reference
    for name in ("history.csv", "roc.csv", "rotation.csv"):
        text = (result.artifacts_dir / name).read_text()
        table = pd.read_csv(result.artifacts_dir / name)
        assert text == table.to_csv(index=False) == csv_text(table)
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.normal(size=500) * 10.0 ** rng.integers(-300, 300, size=500),
                             rng.random(500).astype(np.float32).astype(np.float64),  # float32 probabilities
                             [np.nan, np.inf, -np.inf, 0.0, -0.0, 1e16, 1e-5, 1e-4, 123456789.123, 2.0**53, 5e-324]])
    table = pd.DataFrame({"x": values, "i": np.arange(values.size) - 500, "y": values[::-1]})
    assert csv_text(table) == table.to_csv(index=False)
    assert csv_text(table.iloc[:0]) == table.iloc[:0].to_csv(index=False)
    for odd in (pd.DataFrame({"a,b": [1.0], "s": ["x"]}),  # names needing quotes, strings: pandas writes them
                pd.DataFrame({"x": [1.0, np.nan]}),  # one column: pandas quotes the empty field
                pd.DataFrame({"": [1.0], "y": [2.0]}), pd.DataFrame(index=range(2))):
        assert csv_text(odd) == odd.to_csv(index=False)


def test_same_config_and_seed_give_identical_metrics(reference, small, tmp_path):
    again = run_trial(_config(), NullReporter(), workdir=tmp_path / "a", splits=small)
    assert _comparable(again.metrics) == _comparable(reference[0].metrics)
    assert _history(again) == _history(reference[0])
    other = run_trial(_config(train={"seed": 1}), NullReporter(), workdir=tmp_path / "b", splits=small)
    assert _history(other) != _history(reference[0])


def test_resume_after_a_crash_equals_uninterrupted_run(reference, small, tmp_path):
    with pytest.raises(KeyboardInterrupt):
        run_trial(_config(), Recorder(stop_after=2), workdir=tmp_path, splits=small)
    assert not (tmp_path / "metrics.json").exists()
    rec = Recorder()
    resumed = run_trial(_config(), rec, workdir=tmp_path, splits=small, resume=True)
    assert rec.epochs == [3]
    assert _comparable(resumed.metrics) == _comparable(reference[0].metrics)
    assert _history(resumed) == _history(reference[0])
    # a finished checkpoint resumes straight to the evaluation
    rec = Recorder()
    again = run_trial(_config(), rec, workdir=tmp_path, splits=small)
    assert rec.epochs == [] and _comparable(again.metrics) == _comparable(reference[0].metrics)
    # another configuration refuses the checkpoint unless resume=False
    with pytest.raises(CheckpointMismatchError, match="different trial configuration"):
        run_trial(_config(train={"lr": 0.001}), NullReporter(), workdir=tmp_path, splits=small)


def test_checkpoint_every_keeps_results_and_resumes_from_the_last_checkpoint(small, tmp_path):
    """``train.checkpoint_every: 3`` over 5 epochs checkpoints epochs 3 and 5 (the last) with the metrics of
    ``checkpoint_every: 1``; a crash after epoch 4 resumes from epoch 3 and ends with the uninterrupted metrics."""
    every1 = run_trial(_config(train={"epochs": 5}), NullReporter(), workdir=tmp_path / "every1", splits=small)
    rec = Recorder()
    every3 = run_trial(_config(train={"epochs": 5, "checkpoint_every": 3}), rec, workdir=tmp_path / "every3",
                       splits=small)
    assert rec.epochs == [1, 2, 3, 4, 5] and rec.checkpointed == [3, 5]
    assert _comparable(every3.metrics) == _comparable(every1.metrics)
    assert _history(every3) == _history(every1)
    ckpt = torch.load(checkpoint_path(tmp_path / "every3"), weights_only=True)
    assert ckpt["epoch"] == 5 and ckpt["finished"]

    crash = tmp_path / "crash"
    with pytest.raises(KeyboardInterrupt):
        run_trial(_config(train={"epochs": 5, "checkpoint_every": 3}), Recorder(stop_after=4), workdir=crash,
                  splits=small)
    ckpt = torch.load(checkpoint_path(crash), weights_only=True)
    assert ckpt["epoch"] == 3 and not ckpt["finished"]
    rec = Recorder()
    resumed = run_trial(_config(train={"epochs": 5, "checkpoint_every": 3}), rec, workdir=crash, splits=small)
    assert rec.epochs == [4, 5] and rec.checkpointed == [5]
    assert _comparable(resumed.metrics) == _comparable(every1.metrics)
    assert _history(resumed) == _history(every1)
    # the cadence changes no result, so a finished checkpoint resumes under another one
    rec = Recorder()
    again = run_trial(_config(train={"epochs": 5}), rec, workdir=crash, splits=small)
    assert rec.epochs == [] and _comparable(again.metrics) == _comparable(every1.metrics)


def test_bundle_checkpoint_with_float_epochs_resumes(reference, small, tmp_path):
    """A checkpoint whose history holds float epochs (bundles wrote them so before the one trainer) still resumes:
    the run ends with the uninterrupted metrics, and ``history.csv`` writes the integer epochs a trial writes."""
    with pytest.raises(KeyboardInterrupt):
        run_trial(_config(), Recorder(stop_after=1), workdir=tmp_path, splits=small)
    path = checkpoint_path(tmp_path)
    state = torch.load(path, weights_only=True)
    state["history"] = [{**h, "epoch": float(h["epoch"])} for h in state["history"]]
    torch.save(state, path)
    resumed = run_trial(_config(), NullReporter(), workdir=tmp_path, splits=small)
    assert _comparable(resumed.metrics) == _comparable(reference[0].metrics)
    assert _history(resumed) == _history(reference[0])
    assert pd.read_csv(tmp_path / "history.csv")["epoch"].tolist() == [1, 2, 3]
    assert (tmp_path / "history.csv").read_text().splitlines()[1].startswith("1,")


def test_a_trial_alone_raises_its_errors_and_reports_no_failure(small, tmp_path):
    """run_trial is a bundle of one whose errors propagate: no ``fail`` report and no ``error.txt`` (the FAILED
    bookkeeping of a bundle member)."""
    train, val, test = small
    bad = train[0].clone()
    bad.pos = torch.full_like(bad.pos, float("nan"))
    bad.x = torch.full_like(bad.x, float("nan"))
    failed: list[BaseException] = []

    class Failing(NullReporter):
        def fail(self, *, error):
            failed.append(error)

    with pytest.raises(NonFiniteLossError):
        run_trial(_config(), Failing(), workdir=tmp_path, splits=([bad], val, test))
    assert failed == [] and not (tmp_path / "error.txt").exists()


def test_nan_loss_raises_naming_the_epoch(small, tmp_path):
    train, val, test = small
    bad = train[0].clone()
    bad.pos = torch.full_like(bad.pos, float("nan"))
    bad.x = torch.full_like(bad.x, float("nan"))
    with pytest.raises(NonFiniteLossError, match="at epoch 1") as err:
        run_trial(_config(), NullReporter(), workdir=tmp_path, splits=([bad], val, test))
    assert err.value.epoch == 1


def test_training_rotation_and_fraction_reach_the_step(graphs, small, tmp_path, monkeypatch):
    import tracker.train.strategies.loop as loop_strategy  # the step a trial (a bundle of one) runs

    seen: list[tuple[int, torch.Tensor | None]] = []
    real_step = loop_strategy.train_step

    def spy(model, optimizer, batch, theta=None, **kw):
        seen.append((int(batch.num_edges), None if theta is None else theta.clone()))
        return real_step(model, optimizer, batch, theta, **kw)

    monkeypatch.setattr(loop_strategy, "train_step", spy)
    _, val, test = small
    cfg = _config(
        train={"epochs": 2, "train_rotation_deg": 45.0, "fraction": 0.5},
        eval={"rotations_deg": [0], "equivariance": False, "track_metrics": False},
    )
    run_trial(cfg, NullReporter(), workdir=tmp_path / "fixed", splits=(graphs[:6], val, test))
    assert len(seen) == 2 * 3  # 3 of 6 graphs, 2 epochs
    assert len({n for n, _ in seen}) == 3
    assert all(
        t is not None and torch.allclose(t, torch.tensor([math.pi / 4], dtype=torch.float64)) for _, t in seen
    )

    seen.clear()
    cfg = _config(
        train={"epochs": 2, "random_rotation": True},
        eval={"rotations_deg": [0], "equivariance": False, "track_metrics": False},
    )
    run_trial(cfg, NullReporter(), workdir=tmp_path / "random", splits=(graphs[:2], val, test))
    angles = torch.cat([t for _, t in seen])
    assert angles.numel() == 4 and angles.unique().numel() == 4
    assert torch.all(angles.abs() <= math.pi)

    seen.clear()  # mini-batches of graphs: one angle per graph of the batch
    cfg = _config(
        train={"epochs": 1, "batch_size": 2, "random_rotation": True},
        eval={"rotations_deg": [0], "equivariance": False, "track_metrics": False},
    )
    run_trial(cfg, NullReporter(), workdir=tmp_path / "batched", splits=(graphs[:3], val, test))
    assert sorted(t.numel() for _, t in seen) == [1, 2]
    assert sum(n for n, _ in seen) == sum(g.num_edges for g in graphs[:3])


def _write_trial(path: Path, trial: dict) -> Path:
    path.write_text(yaml.safe_dump(trial))
    return path


@pytest.fixture(scope="module")
def dataset_cache(tmp_path_factory):
    """A private ``$EQUITRACK_CACHE`` for the trials that build their data through ``tracker.data.dataset``."""
    path = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EQUITRACK_CACHE", str(path))
        yield path


def _hitgraphs(shared_trackml: Path, train: int, val: int, test: int) -> dict:
    return {
        "source": "hitgraphs",
        "path": str(shared_trackml / "hitgraphs_plus_1GeV5"),
        "events": {"train": train, "val": val, "test": test},
    }


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "hparams", "epochs"),
    [
        # EuclidNet with the edge features (dr, dφ, dz, dR) in its messages: the paper-faithful default
        # (edge_attr false) also gets there but needs ~3x more steps on CPU
        ("euclidnet", {"hidden": 8, "edge_attr": True}, 12),
        ("interaction_network", {"hidden": 8}, 15),
    ],
)
def test_short_training_separates_true_edges(
    name, hparams, epochs, shared_trackml, dataset_cache, tmp_path, record_property
):
    cfg = trial_from_dict(
        {
            "data": _hitgraphs(shared_trackml, 4, 2, 2),
            "model": {"name": name, **hparams},
            "train": {"epochs": epochs, "lr": 0.01, "pos_weight": "auto", "device": "cpu", "seed": 0},
            "eval": {"rotations_deg": [0, 45, 90, 180], "timing": False},
        }
    )
    m = run_trial(cfg, NullReporter(), workdir=tmp_path).metrics
    for key in (
        "auc",
        "auc_rot_spread",
        "equivariance_dev_090",
        "edge_efficiency",
        "edge_purity",
        "track_dm_eff",
    ):
        record_property(key, m[key])
    print(
        f"{name}: auc={m['auc']:.4f} auc_rot_spread={m['auc_rot_spread']:.3g} "
        f"equivariance_dev_090={m['equivariance_dev_090']:.3g} eff={m['edge_efficiency']:.3f} "
        f"purity={m['edge_purity']:.3f} n_params={m['n_params']:.0f} train_seconds={m['train_seconds']:.1f}"
    )
    assert m["auc"] > 0.9
    if name == "euclidnet":  # invariant edge scores: rotating the test split changes nothing measurable
        assert m["auc_rot_spread"] < 1e-4
        assert m["equivariance_dev_090"] < 1e-5
    else:  # not invariant: the spread is reported as measured, the deviation is visible
        assert m["equivariance_dev_090"] > 1e-5


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "hparams"),
    [("interaction_network", {"hidden": 8}), ("euclidnet", {"hidden": 8, "edge_attr": True})],
)
def test_trial_on_simulated_events_reports_pt_metrics(name, hparams, dataset_cache, tmp_path):
    """A short training on a few simulated events separates true edges (AUC > 0.9) for both models, and
    simulated events carry the particles' pT: the pT-binned edge and track efficiencies appear."""
    cfg = trial_from_dict(
        {
            "data": {
                "source": "simulated",
                "pileup": 40,
                "pt_min": 1.5,
                "events": {"train": 3, "val": 1, "test": 1},
            },
            "model": {"name": name, **hparams},
            "train": {"epochs": 20, "lr": 0.01, "pos_weight": "auto", "device": "cpu"},
            "eval": {"rotations_deg": [0, 90], "timing": False},
        }
    )
    m = run_trial(cfg, NullReporter(), workdir=tmp_path).metrics
    print(f"simulated, {name}: auc={m['auc']:.4f} auc_rot_spread={m['auc_rot_spread']:.3g}")
    assert m["auc"] > 0.9
    for key in (
        "edge_efficiency_pt0p9",
        "edge_efficiency_pt1p5",
        "edge_efficiency_pt2p0",
        "track_dm_eff_pt0p9",
        "track_perfect_eff_pt0p9",
        "track_lhc_eff_pt0p9",
    ):
        assert 0.0 <= m[key] <= 1.0, key
    # every graph edge has pT > pt_min = 1.5 GeV, so the 0.9 and 1.5 GeV cuts select all true edges
    assert m["edge_efficiency_pt0p9"] == pytest.approx(m["edge_efficiency"])
    assert m["edge_efficiency_pt1p5"] == pytest.approx(m["edge_efficiency"])


def test_cli_runs_a_trial_and_writes_metrics_json(shared_trackml, dataset_cache, tmp_path):
    trial = {
        "data": _hitgraphs(shared_trackml, 2, 1, 1),
        "model": {"name": "euclidnet", "hidden": 4},
        "train": {"epochs": 2, "seed": 0, "device": "cpu"},
        "eval": {"rotations_deg": [0, 180], "timing_runs": 1},
    }
    out = tmp_path / "out"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tracker.train",
            str(_write_trial(tmp_path / "t.yaml", trial)),
            "--out",
            str(out),
        ],
        check=False,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"auc", "auc_rot_180", "inference_ms_per_graph", "trackml_score"} <= set(metrics)
    assert "auc" in proc.stdout and "trackml_score" in proc.stdout  # the printed table
    for name in ("config.yaml", "history.csv", "roc.csv", "rotation.csv", "model.pt"):
        assert (out / name).is_file(), name


def test_cli_config_errors_exit_2(tmp_path, capsys):
    from tracker.train.__main__ import main

    bad = _write_trial(
        tmp_path / "bad.yaml", {"model": {"name": "euclidnet"}, "train": {"epochs": 0, "lr_typo": 1}}
    )
    assert main([str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "train.epochs" in err and "lr_typo" in err and str(bad) in err
    # a model hyperparameter the zoo does not know is a configuration error too
    bad = _write_trial(tmp_path / "bad2.yaml", {"model": {"name": "euclidnet", "hiden": 8}})
    assert main([str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "hiden" in capsys.readouterr().err
    assert main([str(tmp_path / "missing.yaml"), "--out", str(tmp_path / "o")]) == 2
    assert not (tmp_path / "o").exists()


def test_example_trial_file_validates():
    from tracker.train.config import load_trial

    cfg = load_trial(REPO / "examples" / "trial.yaml")
    assert (
        cfg.data.source == "simulated"
        and cfg.model.name == "euclidnet"
        and cfg.eval.rotations_deg == [0, 90, 180]
    )
