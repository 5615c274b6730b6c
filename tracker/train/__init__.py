"""Training and evaluation of one trial: :func:`run_trial` (config → metrics, artifacts, checkpoints); bundles of
K trials in one process: :func:`tracker.train.bundle.run_bundle`. Both run one trainer (docs/architecture.md,
"One trainer").

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
    "TrialResult": "tracker.train.member",
    "NonFiniteLossError": "tracker.train.errors",
    "CheckpointMismatchError": "tracker.train.errors",
    "ConsoleReporter": "tracker.train.console",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'tracker.train' has no attribute {name!r}")
