"""Training and evaluation of one jets trial: :func:`run_trial` (config -> metrics, artifacts, checkpoints), the
contract of :func:`tracker.train.run_trial`. ``python -m jets.train TRIAL.yaml --out DIR`` runs one from a file.

The names below are imported on first use, so importing ``jets.train`` stays light.
"""

from __future__ import annotations

from typing import Any

__all__ = ["CheckpointMismatchError", "NonFiniteLossError", "TrialResult", "run_trial"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        import importlib

        return getattr(importlib.import_module("jets.train.trial"), name)
    raise AttributeError(f"module 'jets.train' has no attribute {name!r}")
