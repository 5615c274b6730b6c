"""The errors of training: a non-finite loss, a checkpoint of another configuration (both
:mod:`equitrack.trial`'s, shared with every task), configurations that cannot share a bundle. Kept apart so that
every training module may raise them without importing another's code."""

from __future__ import annotations

from equitrack import trial as _core
from equitrack.trial import CheckpointMismatchError


class NonFiniteLossError(_core.NonFiniteLossError):
    """The loss became NaN or infinite; the trial stops (the message names the epoch and the batch)."""

    inputs = "the input graphs"


class BundleError(ValueError):
    """Configurations that cannot be trained as one bundle; the message names the key, members and values."""


__all__ = ["BundleError", "CheckpointMismatchError", "NonFiniteLossError"]
