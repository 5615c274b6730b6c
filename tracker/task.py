"""The tracking task: edge classification of TrackML hit graphs, as the sweeps see it (``equitrack.task.Task``).

Registered as the ``tracking`` entry point of ``equitrack.tasks``; everything tracking-specific that a sweep
needs (trial schema, dataset preparation, run-name labels such as ``rot045``, epoch metric names, bundled
training) is reached from here, so ``sweeps`` holds no physics.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

from equitrack.task import Bundling, standard_run_name_parts
from tracker.train.config import ADDED_DEFAULTS, RESULT_NEUTRAL_KEYS, TrialConfig

#: short run-name labels of grid axes (``euclidnet-paper_8-c0.005-rot045-s3``)
LABELS = {
    "model.c": "c", "train.train_rotation_deg": "rot", "train.fraction": "frac", "train.lr": "lr",
    "model.hidden": "h", "data.pt_min": "pt", "train.random_rotation": "randrot",
}
FORMATS = {"train.train_rotation_deg": lambda v: f"rot{int(round(float(v))):03d}"}
#: short axis names accepted in a grid's ``bundle:`` list
BUNDLE_ALIASES = {
    "seed": "train.seed", "seeds": "train.seed", "train_rotation_deg": "train.train_rotation_deg",
    "rotation": "train.train_rotation_deg", "lr": "train.lr", "c": "model.c", "fraction": "train.fraction",
    "random_rotation": "train.random_rotation",
}


class TrackingTask:
    """``task: tracking`` (the default): EuclidNet, the Interaction Network and friends on hit graphs."""

    name = "tracking"
    config_type = TrialConfig
    result_neutral_keys = RESULT_NEUTRAL_KEYS
    added_defaults = ADDED_DEFAULTS
    headline_metrics = {"auc": "auc", "edge_efficiency": "eff", "edge_purity": "purity"}

    @property
    def epoch_metrics(self) -> tuple[str, ...]:
        from tracker.train.trial import EPOCH_METRICS

        return EPOCH_METRICS

    @cached_property
    def bundling(self) -> Bundling:
        from tracker.train.bundle import BUNDLEABLE, MODEL_BUNDLEABLE, run_bundle, validate_bundle

        return Bundling(axes=BUNDLEABLE | MODEL_BUNDLEABLE, vmap_axes=BUNDLEABLE, aliases=BUNDLE_ALIASES,
                        validate=validate_bundle, run=run_bundle)

    def run_name_parts(self, trial: Mapping[str, Any], varied: Sequence[str]) -> list[str]:
        return standard_run_name_parts(trial, varied, labels=LABELS, formats=FORMATS)

    def check_model(self, config: TrialConfig) -> None:
        from tracker.models import build_model

        build_model(config.model.name, **config.model.hparams())

    def prepare_data(self, config: TrialConfig) -> str:
        from tracker.data.dataset import prepare

        return str(prepare(config.data))

    def run_trial(self, config: TrialConfig, reporter: Any, *, workdir: Path, resume: bool = True) -> Any:
        from tracker.train import run_trial

        return run_trial(config, reporter, workdir=workdir, resume=resume)


TASK = TrackingTask()
