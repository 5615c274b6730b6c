"""The errors of training: a non-finite loss, a checkpoint of another configuration, configurations that cannot
share a bundle. Kept apart so that every training module may raise them without importing another's code."""

from __future__ import annotations


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the trial stops (the message names the epoch and the batch)."""

    def __init__(self, epoch: int, what: str, value: float) -> None:
        self.epoch = epoch
        super().__init__(
            f"non-finite {what} ({value}) at epoch {epoch}: the trial stops "
            "(lower train.lr, set train.grad_clip, or check the input graphs for NaN)"
        )


class CheckpointMismatchError(ValueError):
    """``workdir/checkpoint`` belongs to a different trial configuration."""


class BundleError(ValueError):
    """Configurations that cannot be trained as one bundle; the message names the key, members and values."""


__all__ = ["BundleError", "CheckpointMismatchError", "NonFiniteLossError"]
