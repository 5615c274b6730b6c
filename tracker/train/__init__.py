"""Training and evaluation of one trial: :func:`run_trial` (config → metrics, artifacts, checkpoints).

The names below are imported on first use so that ``tracker.train.config`` (imported by the data layer and by
``sweeps``) stays light and free of import cycles.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "CheckpointMismatchError",
    "ConsoleReporter",
    "NonFiniteLossError",
    "TrialResult",
    "run_trial",
]

_LAZY = {
    "run_trial": "tracker.train.trial",
    "TrialResult": "tracker.train.trial",
    "NonFiniteLossError": "tracker.train.trial",
    "CheckpointMismatchError": "tracker.train.trial",
    "ConsoleReporter": "tracker.train.console",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'tracker.train' has no attribute {name!r}")
