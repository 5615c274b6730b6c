"""The clustering trial uses the core's trial protocol (equitrack.trial): its result, its errors, its checkpoint
hash. Checkpoints written before the switch still resume (the hash is the one the old formula made)."""

from __future__ import annotations

import hashlib
import json

import equitrack.trial
from tracker.clustering import trial as ctrial
from tracker.clustering.config import RESULT_NEUTRAL_KEYS, trial_from_dict

RAW = {"model": {"name": "so2", "preset": "tiny"}, "train": {"checkpoint_every": 3, "epochs": 2}}


def test_checkpoint_hash_is_the_one_clustering_checkpoints_were_written_with():
    config = trial_from_dict(RAW)
    resolved = config.model_dump(mode="json")
    for section, key in RESULT_NEUTRAL_KEYS:
        resolved[section].pop(key, None)
    old = hashlib.sha256(json.dumps(resolved, sort_keys=True).encode()).hexdigest()
    assert ctrial.config_hash(config) == old
    # the checkpoint cadence is result-neutral, any other key is not
    assert ctrial.config_hash(trial_from_dict({**RAW, "train": {"epochs": 2}})) == old
    assert ctrial.config_hash(trial_from_dict({**RAW, "train": {"epochs": 3}})) != old


def test_clustering_errors_and_result_are_the_cores():
    assert ctrial.TrialResult is equitrack.trial.TrialResult
    assert ctrial.CheckpointMismatchError is equitrack.trial.CheckpointMismatchError
    err = ctrial.NonFiniteLossError(4, "training loss of stage edge_classifier", float("nan"))
    assert isinstance(err, equitrack.trial.NonFiniteLossError) and err.epoch == 4
    assert str(err).startswith(
        "non-finite training loss of stage edge_classifier (nan) at epoch 4: the trial stops"
    )
    assert "check the events' hits (x, pid, pt) for NaN" in str(err)


def test_artifacts_keep_their_format(tmp_path, monkeypatch):
    """history.csv is the text pandas writes for the history (every stage's loss columns), model.pt one state dict
    per stage, metrics.json the finite metrics: what dashboards and earlier runs read."""
    import pandas as pd
    import torch

    from equitrack.reporter import NullReporter
    from equitrack.task import get_task

    monkeypatch.setenv("EQUITRACK_CACHE", str(tmp_path / "cache"))
    task = get_task("clustering")
    cfg = task.config_type.model_validate(
        {
            "pipeline": {"stages": ["noise_classifier", "metric_learning"]},
            "data": {
                "source": "simulated",
                "events": {"train": 2, "val": 1, "test": 1},
                "pileup": 10,
                "noise_hits": True,
            },
            "model": {"name": "so2", "preset": "tiny"},
            "train": {"epochs": 2},
            "eval": {"eps": [0.4], "min_samples": [1]},
        }
    )
    task.prepare_data(cfg)
    result = task.run_trial(cfg, NullReporter(), workdir=tmp_path / "w")
    history = (tmp_path / "w" / "history.csv").read_text()
    assert history == pd.DataFrame(result.history).to_csv(index=False)
    assert history.splitlines()[0] == (
        "epoch,train_loss,val_loss,stage,lr,epoch_seconds,nc_train_loss,nc_val_loss,ml_train_loss,ml_val_loss"
    )
    weights = torch.load(tmp_path / "w" / "model.pt", weights_only=True)
    assert list(weights) == ["noise_classifier", "metric_learning"]
    assert all(
        isinstance(v, torch.Tensor) and v.device.type == "cpu" for v in weights["metric_learning"].values()
    )
    metrics = json.loads((tmp_path / "w" / "metrics.json").read_text())
    assert metrics == result.metrics and list(metrics)[0] == "track_dm_eff"


def test_clustering_trial_file_is_core_trial_sections(tmp_path):
    """The clustering trial loads through equitrack.config.TrialSections; its model name keeps its default."""
    import pytest

    from equitrack.config import ConfigError, TrialSections
    from tracker.clustering.config import ClusteringTrialConfig, load_trial

    assert issubclass(ClusteringTrialConfig, TrialSections)
    assert trial_from_dict({}).model.name == "plain"
    path = tmp_path / "trial.yaml"
    path.write_text("model: {preset: tiny}\ntrian: {epochs: 2}\n")
    with pytest.raises(
        ConfigError, match=r"trial.yaml: invalid configuration\n  trian: unknown key; allowed: data"
    ):
        load_trial(path)
    with pytest.raises(
        ConfigError, match="expected a mapping with sections pipeline/data/model/train/eval, got list"
    ):
        trial_from_dict([])
