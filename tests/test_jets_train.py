"""jets metrics on hand-computed cases, and ``jets.train.run_trial``: reporter calls and artifacts, seed
determinism, exact resume, boost augmentation, boost evaluation, errors, and the CLI (tiny models, few jets)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from equitrack.reporter import NullReporter
from jets.config import trial_from_dict
from jets.data.dataset import JetSet
from jets.data.generated import pack_constituents, write_generated
from jets.metrics import (
    accuracy,
    ant_factor_v2,
    auc,
    background_efficiency,
    boost_metrics,
    classification_metrics,
    rejection,
)
from jets.train.trial import (
    TIMING_METRICS,
    CheckpointMismatchError,
    NonFiniteLossError,
    run_trial,
    select_fraction,
)

# ------------------------------------------------------------------------------------------------ metrics

# six jets, three top (1) and three QCD (0); scores tie once between a top and a QCD jet (0.5)
LABELS = np.array([0, 1, 1, 0, 1, 0])
SCORES = np.array([0.9, 0.8, 0.5, 0.5, 0.2, 0.1])


def test_rejection_and_auc_by_hand() -> None:
    # ROC points (eps_B, eps_S) from the highest threshold down: (0,0) (1/3,0) (1/3,1/3) (2/3,2/3) (2/3,1) (1,1)
    # eps_S = 0.3 lies on the vertical segment at eps_B = 1/3 -> rejection 3;
    # eps_S = 0.5 lies on the diagonal of the tie, from (1/3,1/3) to (2/3,2/3): eps_B = 0.5 -> rejection 2
    assert rejection(LABELS, SCORES, 0.3) == pytest.approx(3.0)
    assert rejection(LABELS, SCORES, 0.5) == pytest.approx(2.0)
    # AUC: top pairs above QCD: 0.8 beats 0.5 and 0.1; 0.5 ties 0.5 (1/2) and beats 0.1; 0.2 beats 0.1 -> 4.5 / 9
    assert auc(LABELS, SCORES) == pytest.approx(0.5)
    # probabilities >= 0.5 are called top: 0.9 (wrong), 0.8, 0.5 (right), 0.5 (wrong), 0.2 (wrong), 0.1 (right)
    assert accuracy(LABELS, SCORES) == pytest.approx(0.5)
    assert background_efficiency([0.0, 0.25, 1.0], [0.0, 0.5, 1.0], 0.3) == pytest.approx(0.15)  # interpolated
    assert rejection([1, 1, 0, 0], [0.9, 0.8, 0.2, 0.1], 0.5) == math.inf  # no QCD jet passes
    assert math.isnan(auc([1, 1], [0.3, 0.4])) and math.isnan(rejection([0, 0], [0.3, 0.4], 0.3))


def test_classification_metrics_from_logits_and_ant_factor() -> None:
    logits = np.log(SCORES / (1 - SCORES))  # the same ranking and the same 0.5 threshold
    m = classification_metrics(LABELS, logits)
    assert m == pytest.approx({"accuracy": 0.5, "auc": 0.5, "rejection_30": 3.0, "rejection_50": 2.0,
                               "threshold": 0.5})
    assert ant_factor_v2(0.98, 1000) == pytest.approx(1 / 20)
    assert ant_factor_v2(1.0, 10) == math.inf and math.isnan(ant_factor_v2(math.nan, 10))


def test_boost_metric_names_and_spread() -> None:
    out = boost_metrics({0.0: (0.9, 0.95), 0.3: (0.8, 0.90), 0.95: (0.6, 0.70)})
    assert out == pytest.approx({"acc_boost_000": 0.9, "auc_boost_000": 0.95, "acc_boost_030": 0.8,
                                 "auc_boost_030": 0.90, "acc_boost_095": 0.6, "auc_boost_095": 0.70,
                                 "boost_spread": 0.25})
    assert boost_metrics({}) == {}


# ------------------------------------------------------------------------------------------------ trials


def make_jets(n: int, seed: int, n_max: int = 10) -> JetSet:
    """Jets at pT ~ 600 GeV along x: tops are wide (three prongs, large mass), QCD jets narrow; balanced."""
    rng = np.random.default_rng(seed)
    label = (np.arange(n) % 2).astype(np.int8)
    p4 = np.zeros((n, n_max, 4), np.float32)
    mask = np.zeros((n, n_max), bool)
    for i in range(n):
        k = int(rng.integers(3, n_max + 1))
        spread = 0.35 if label[i] else 0.08
        pt = np.sort(rng.dirichlet(np.ones(k)) * 600.0)[::-1]
        dy, dz = rng.normal(0, spread, k), rng.normal(0, spread, k)
        px, py, pz = pt, pt * dy, pt * dz
        c = np.stack([np.sqrt(px**2 + py**2 + pz**2), px, py, pz], 1)
        p4[i, :k] = c[np.argsort(-np.hypot(px, py), kind="stable")]  # pT-descending, as every source
        mask[i, :k] = True
    return JetSet(p4, mask, label)


SPLITS = (make_jets(96, 1), make_jets(32, 2), make_jets(40, 3))


def config(**sections: dict[str, Any]):
    raw: dict[str, Any] = {
        "model": {"name": "mlp", "preset": "tiny"},
        "train": {"epochs": 3, "batch_size": 16, "lr": 1e-2, "device": "cpu", "seed": 1},
        "eval": {"boosts_beta": [0.0, 0.5], "timing_runs": 1},
    }
    for k, v in sections.items():
        raw[k] = {**raw.get(k, {}), **v}
    return trial_from_dict(raw)


class Recorder(NullReporter):
    """Keeps every call; ``fail_at`` raises after that epoch's report (a killed trial)."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.fail_at = fail_at

    def start(self, *, config, n_params) -> None:
        self.calls.append(("start", n_params))

    def epoch(self, *, epoch, metrics, checkpoint_dir) -> None:
        self.calls.append(("epoch", (epoch, dict(metrics), checkpoint_dir)))
        if epoch == self.fail_at:
            raise KeyboardInterrupt("killed")

    def artifact(self, path) -> None:
        self.calls.append(("artifact", Path(path).name))

    def finish(self, *, metrics) -> None:
        self.calls.append(("finish", dict(metrics)))


def untimed(metrics: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in metrics.items() if k not in TIMING_METRICS}


def test_run_trial_reports_metrics_and_artifacts(tmp_path: Path) -> None:
    rec = Recorder()
    result = run_trial(config(), rec, workdir=tmp_path, splits=SPLITS)
    kinds = [c[0] for c in rec.calls]
    assert kinds[0] == "start" and kinds.count("start") == 1 and kinds[-1] == "finish"
    assert rec.calls[0][1] == result.metrics["n_params"] > 0
    epochs = [c[1] for c in rec.calls if c[0] == "epoch"]
    assert [e[0] for e in epochs] == [1, 2, 3] and all(e[2] == tmp_path / "checkpoint" for e in epochs)
    assert set(epochs[0][1]) == {"train_loss", "val_loss", "val_auc", "lr", "epoch_seconds"}
    assert [c[1] for c in rec.calls if c[0] == "artifact"] == [
        "config.yaml", "history.csv", "roc.csv", "boost.csv", "model.pt", "metrics.json"]
    m = result.metrics
    for name in ("accuracy", "auc", "ant_factor_v2", "n_params", "test_loss",
                 "threshold", "best_epoch", "train_seconds", "seconds_per_epoch", "inference_ms_per_batch100",
                 "acc_boost_000", "auc_boost_000", "acc_boost_050", "auc_boost_050", "boost_spread"):
        assert name in m and math.isfinite(m[name]), name
    assert m["threshold"] == 0.5 and m["auc"] == m["auc_boost_000"] and m["auc"] > 0.6  # it learned something
    assert m["boost_spread"] == pytest.approx(abs(m["auc_boost_000"] - m["auc_boost_050"]))
    assert m["ant_factor_v2"] == pytest.approx(1 / ((1 - m["auc"]) * m["n_params"]))
    assert json.loads((tmp_path / "metrics.json").read_text()) == m == rec.calls[-1][1]
    hist = pd.read_csv(tmp_path / "history.csv")
    assert list(hist.columns) == ["epoch", "train_loss", "val_loss", "val_auc", "lr", "epoch_seconds"]
    assert hist["lr"].iloc[0] == pytest.approx(1e-2) and hist["lr"].iloc[1] < hist["lr"].iloc[0]  # cosine
    boosts = pd.read_csv(tmp_path / "boost.csv")
    assert boosts["beta"].tolist() == [0.0, 0.5] and boosts["auc"].tolist() == pytest.approx(
        [m["auc_boost_000"], m["auc_boost_050"]])
    roc = pd.read_csv(tmp_path / "roc.csv")
    assert list(roc.columns) == ["fpr", "tpr", "threshold"] and roc["tpr"].iloc[-1] == 1.0
    for name, eff in (("rejection_30", 0.3), ("rejection_50", 0.5)):  # from the ROC; left out when infinite
        eps_b = background_efficiency(roc["fpr"], roc["tpr"], eff)
        assert m.get(name) == (pytest.approx(1 / eps_b) if eps_b > 0 else None), name
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["model"]["name"] == "mlp"
    assert set(torch.load(tmp_path / "model.pt", weights_only=True))


def test_same_seed_same_metrics_other_seed_differs(tmp_path: Path) -> None:
    a = run_trial(config(), NullReporter(), workdir=tmp_path / "a", splits=SPLITS)
    b = run_trial(config(), NullReporter(), workdir=tmp_path / "b", splits=SPLITS)
    c = run_trial(config(train={"seed": 2}), NullReporter(), workdir=tmp_path / "c", splits=SPLITS)
    assert untimed(a.metrics) == untimed(b.metrics)
    assert untimed(a.metrics) != untimed(c.metrics)


@pytest.mark.parametrize("augment", [None, 0.6])
def test_resume_after_an_interrupted_epoch_gives_the_same_metrics(tmp_path: Path, augment) -> None:
    cfg = config(train={"boost_augment": augment, "schedule": "step", "lr_step": 1})
    whole = run_trial(cfg, NullReporter(), workdir=tmp_path / "whole", splits=SPLITS)
    with pytest.raises(KeyboardInterrupt):
        run_trial(cfg, Recorder(fail_at=2), workdir=tmp_path / "cut", splits=SPLITS)
    assert not (tmp_path / "cut" / "metrics.json").exists()
    rec = Recorder()
    resumed = run_trial(cfg, rec, workdir=tmp_path / "cut", splits=SPLITS)
    assert [c[1][0] for c in rec.calls if c[0] == "epoch"] == [3]  # only the missing epoch ran
    assert untimed(resumed.metrics) == untimed(whole.metrics)
    drop = ["epoch_seconds"]
    assert pd.DataFrame(resumed.history).drop(columns=drop).equals(pd.DataFrame(whole.history).drop(columns=drop))
    with pytest.raises(CheckpointMismatchError, match="different trial configuration"):
        run_trial(config(train={"lr": 1e-2}), NullReporter(), workdir=tmp_path / "cut", splits=SPLITS)
    fresh = run_trial(config(train={"lr": 1e-2}), NullReporter(), workdir=tmp_path / "cut", resume=False,
                      splits=SPLITS)
    assert len(fresh.history) == 3


def test_boost_augmentation_is_seeded_and_changes_training(tmp_path: Path) -> None:
    plain = run_trial(config(), NullReporter(), workdir=tmp_path / "p", splits=SPLITS)
    aug = [run_trial(config(train={"boost_augment": 0.8}), NullReporter(), workdir=tmp_path / f"a{i}",
                     splits=SPLITS) for i in range(2)]
    assert untimed(aug[0].metrics) == untimed(aug[1].metrics)
    assert aug[0].history[0]["train_loss"] != plain.history[0]["train_loss"]
    boosted = run_trial(config(train={"boost_beta": 0.5, "boost_axis": "y"}), NullReporter(),
                        workdir=tmp_path / "b", splits=SPLITS)
    assert boosted.history[0]["val_loss"] != plain.history[0]["val_loss"]  # validation in the boosted frame


def test_invariant_tagger_has_no_boost_spread(tmp_path: Path) -> None:
    # LorentzNet's logits depend on Minkowski products only: the test AUC does not move under x boosts
    cfg = config(model={"name": "lorentznet", "preset": "tiny"}, train={"epochs": 1},
                 eval={"boosts_beta": [0.0, 0.5, 0.9]})
    m = run_trial(cfg, NullReporter(), workdir=tmp_path / "l", splits=SPLITS).metrics
    assert m["boost_spread"] < 1e-4
    mlp = run_trial(config(eval={"boosts_beta": [0.0, 0.5, 0.9]}), NullReporter(), workdir=tmp_path / "m",
                    splits=SPLITS).metrics
    assert mlp["boost_spread"] > 1e-2  # a frame-bound tagger trained without augmentation is not robust


def test_fraction_takes_a_seeded_balanced_share(tmp_path: Path) -> None:
    train = SPLITS[0]
    part = select_fraction(train, 0.1, seed=4)
    assert len(part) == 10 and int(part.label.sum()) == 5  # round(0.1 * 48) of each class
    assert np.array_equal(part.p4, select_fraction(train, 0.1, seed=4).p4)
    assert not np.array_equal(part.p4, select_fraction(train, 0.1, seed=5).p4)
    assert select_fraction(train, 0.001, seed=0).label.tolist() == [0, 1]  # at least one jet of each class
    small = run_trial(config(train={"fraction": 0.1}), NullReporter(), workdir=tmp_path, splits=SPLITS)
    full = run_trial(config(), NullReporter(), workdir=tmp_path / "full", splits=SPLITS)
    assert small.history[0]["train_loss"] != full.history[0]["train_loss"]


def test_non_finite_loss_names_the_epoch(tmp_path: Path) -> None:
    bad = JetSet(SPLITS[0].p4.copy(), SPLITS[0].mask, SPLITS[0].label)
    bad.p4[:, 0, 0] = np.nan
    with pytest.raises(NonFiniteLossError, match="non-finite training loss .* at epoch 1"):
        run_trial(config(), NullReporter(), workdir=tmp_path, splits=(bad, SPLITS[1], SPLITS[2]))


def test_cli_runs_a_trial_file_on_a_generated_sample(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture) -> None:
    from jets.train.__main__ import main

    monkeypatch.setenv("EQUITRACK_CACHE", str(tmp_path / "cache"))
    jets = make_jets(80, 5)
    parts = [jets.p4[i, jets.mask[i]] for i in range(80)]
    constituents, offsets = pack_constituents(parts)
    sample = write_generated(tmp_path / "gen.npz", constituents, offsets, jets.label,
                             np.stack([p.sum(0) for p in parts]))
    trial = {"data": {"path": str(sample), "jets": {"train": 40, "val": 20, "test": 20}, "max_constituents": 8},
             "model": {"name": "pfn", "preset": "tiny"}, "train": {"epochs": 1, "device": "cpu"},
             "eval": {"boosts_beta": [0.0, 0.3], "timing": False}}
    path = tmp_path / "trial.yaml"
    path.write_text(yaml.safe_dump(trial))
    assert main([str(path), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert "auc_boost_030" in metrics and "inference_ms_per_batch100" not in metrics
    path.write_text(yaml.safe_dump({**trial, "train": {"epoch": 1}}))
    assert main([str(path), "--out", str(tmp_path / "out2")]) == 2
    assert "train.epoch" in capsys.readouterr().err
    path.write_text(yaml.safe_dump({**trial, "model": {"name": "nonet"}}))
    assert main([str(path), "--out", str(tmp_path / "out3")]) == 2
    assert "unknown model 'nonet'" in capsys.readouterr().err
    # the shared command (equitrack.cli) maps the trial's errors to exit status 1: here a checkpoint of another seed
    path.write_text(yaml.safe_dump({**trial, "train": {"epochs": 1, "device": "cpu", "seed": 1}}))
    assert main([str(path), "--out", str(tmp_path / "out"), "--quiet"]) == 1
    assert "different trial configuration" in capsys.readouterr().err


def test_precise_batch_norm_gives_eval_mode_the_statistics_of_the_current_weights() -> None:
    """LorentzNet's batch norms see the tiny pairwise invariants of collinear constituents; with running statistics
    left from training (or fresh ones) its eval-mode logits are far from what the same weights give in train mode,
    and a trained tagger ranked jets worse than chance. After ``precise_batch_norm`` over one batch holding every
    jet, eval mode normalises with that batch's statistics, as train mode does."""
    from jets.models import build_model
    from jets.train.evaluate import DeviceJets, precise_batch_norm

    torch.manual_seed(0)
    model = build_model("lorentznet", preset="tiny")
    jets = DeviceJets(SPLITS[0], torch.device("cpu"))
    p4, mask = jets.p4, jets.mask
    with torch.no_grad():
        reference = model.train()(p4, mask)  # batch statistics of all jets
        stale = model.eval()(p4, mask)  # statistics of a single earlier forward pass, blended with the initial ones
    assert not torch.allclose(stale, reference, rtol=0.05, atol=0.05)
    assert precise_batch_norm(model, jets, batch_size=len(jets)) and not model.training
    with torch.no_grad():
        precise = model(p4, mask)
    # equal but for the unbiased (running) against the biased (batch) variance: n / (n - 1) over thousands of pairs
    torch.testing.assert_close(precise, reference, rtol=5e-3, atol=5e-3)
    assert not precise_batch_norm(build_model("pfn", preset="tiny"), jets, batch_size=8)  # no batch norm: no-op
