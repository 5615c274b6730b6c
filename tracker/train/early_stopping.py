"""Early stopping of one trial: the monitored validation metric, the best epoch's weights and the patience."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn


class EarlyStopping:
    """Tracks the monitored validation metric, the best weights (CPU copy) and the epochs without improvement."""

    def __init__(self, monitor: str, patience: int | None) -> None:
        self.monitor = monitor
        self.patience = patience
        self.best: float | None = None
        self.best_epoch = 0
        self.bad_epochs = 0
        self.best_state: dict[str, torch.Tensor] | None = None

    def _better(self, value: float) -> bool:
        if math.isnan(value):
            return False
        if self.best is None:
            return True
        return value < self.best if self.monitor == "val_loss" else value > self.best

    def update(self, epoch: int, metrics: dict[str, float], model: nn.Module) -> bool:
        """Record ``epoch``; returns True when training should stop."""
        value = float(metrics[self.monitor])
        if self._better(value) or self.best_state is None:
            if not math.isnan(value):
                self.best = value
            self.best_epoch = epoch
            self.bad_epochs = 0
            self.best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        else:
            self.bad_epochs += 1
        return self.patience is not None and self.bad_epochs >= self.patience

    def restore_best(self, model: nn.Module) -> None:
        """Load the best epoch's weights into ``model``: the weights a trial is evaluated with."""
        if self.best_state is not None:
            model.load_state_dict(self.best_state)

    def state_dict(self) -> dict[str, Any]:
        return {
            "best": self.best,
            "best_epoch": self.best_epoch,
            "bad_epochs": self.bad_epochs,
            "best_state": self.best_state,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best = state["best"]
        self.best_epoch = state["best_epoch"]
        self.bad_epochs = state["bad_epochs"]
        self.best_state = state["best_state"]


__all__ = ["EarlyStopping"]
