"""The jets task: top-quark tagging, as the sweeps see it (``equitrack.task.Task``).

Registered as the ``jets`` entry point of ``equitrack.tasks``; a grid with ``task: jets`` gets its trial schema
(:class:`jets.config.JetsTrialConfig`), its dataset preparation, its run-name labels (``aug0.5``, ``bx0.3``, …),
its epoch metric names and :func:`jets.train.run_trial`. No bundled training: one cell per Ray trial.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from equitrack.task import standard_run_name_parts
from jets.config import RESULT_NEUTRAL_KEYS, JetsTrialConfig

#: short run-name labels of grid axes (``lorentznet-tiny-aug0.5-s1``)
LABELS = {
    "train.boost_augment": "aug", "train.boost_beta": "b", "train.fraction": "frac", "train.lr": "lr",
    "model.c": "c", "model.hidden": "h", "model.hidden_equivariant": "eq", "model.hidden_free": "free",
    "data.max_constituents": "n",
}


class JetsTask:
    """``task: jets``: LorentzNet, LGN, PELICAN, VecNet, ParticleNet, PFN and MLPs on top-tagging jets."""

    name = "jets"
    config_type = JetsTrialConfig
    result_neutral_keys = RESULT_NEUTRAL_KEYS
    added_defaults: dict = {}
    headline_metrics = {"auc": "auc", "accuracy": "acc", "rejection_30": "rej30", "boost_spread": "boost spread"}
    bundling = None

    @property
    def epoch_metrics(self) -> tuple[str, ...]:
        from jets.train.trial import EPOCH_METRICS

        return EPOCH_METRICS

    def run_name_parts(self, trial: Mapping[str, Any], varied: Sequence[str]) -> list[str]:
        return standard_run_name_parts(trial, varied, labels=LABELS)

    def check_model(self, config: JetsTrialConfig) -> None:
        from jets.models import build_model

        build_model(config.model.name, **config.model.hparams())

    def prepare_data(self, config: JetsTrialConfig) -> str:
        from jets.data.dataset import prepare

        return str(prepare(config.data))

    def run_trial(self, config: JetsTrialConfig, reporter: Any, *, workdir: Path, resume: bool = True) -> Any:
        from jets.train import run_trial

        return run_trial(config, reporter, workdir=workdir, resume=resume)


TASK = JetsTask()
