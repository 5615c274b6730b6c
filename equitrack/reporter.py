"""How a trial of any task tells the outside world what happened, without knowing who listens.

The science packages (tracker, jets, tracker.clustering) import neither Ray nor MLflow: ``sweeps`` implements
this protocol to forward epochs to Ray Tune (with checkpoints) and runs to MLflow; the trial command uses
``tracker.train.console.ConsoleReporter``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class Reporter(Protocol):
    """Receives a trial's life: start, one call per epoch, artifacts, then the final metrics or the failure."""

    def start(self, *, config: Mapping[str, Any], n_params: int) -> None:
        """Called once, before the first epoch (also on resume), with the resolved config."""

    def epoch(self, *, epoch: int, metrics: Mapping[str, float], checkpoint_dir: Path | None) -> None:
        """Called after every epoch (1-based) with that epoch's metrics and the checkpoint just written."""

    def artifact(self, path: Path) -> None:
        """A file the trial produced (config, history, ROC, rotation table, weights)."""

    def finish(self, *, metrics: Mapping[str, float]) -> None:
        """Called once with the final test metrics."""

    def fail(self, *, error: BaseException) -> None:
        """Called once, instead of :meth:`finish`, when a member of a bundle fails (non-finite loss, an error in its
        forward or evaluation) while the others go on (:func:`tracker.train.bundle.run_bundle`); a trial run alone
        (:func:`tracker.train.run_trial`) raises ``error`` instead."""


class NullReporter:
    """Swallows everything (tests, library use)."""

    def start(self, *, config: Mapping[str, Any], n_params: int) -> None:
        pass

    def epoch(self, *, epoch: int, metrics: Mapping[str, float], checkpoint_dir: Path | None) -> None:
        pass

    def artifact(self, path: Path) -> None:
        pass

    def finish(self, *, metrics: Mapping[str, float]) -> None:
        pass

    def fail(self, *, error: BaseException) -> None:
        pass
