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
