"""The clustering task: the learned-clustering pipeline of seed 003, as the sweeps see it (``equitrack.task.Task``).

Registered as the ``clustering`` entry point of ``equitrack.tasks``; a grid with ``task: clustering`` gets its
trial schema (:class:`tracker.clustering.config.ClusteringTrialConfig`, with its extra ``pipeline:`` section),
the tracking dataset cache, run-name labels and :func:`tracker.clustering.trial.run_trial`. No bundled training.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from equitrack.task import standard_run_name_parts
from tracker.clustering.config import RESULT_NEUTRAL_KEYS, ClusteringTrialConfig

#: short run-name labels of grid axes (``so2-tiny-mleq1-s0``)
LABELS = {
    "model.metric_learning.equivariant": "mleq",
    "model.edge_classifier.equivariant": "eceq",
    "model.object_condensation.equivariant": "oceq",
    "model.noise_classifier.equivariant": "nceq",
    "train.random_rotation": "randrot",
    "train.lr": "lr",
    "pipeline.max_radius": "r",
    "pipeline.max_neighbours": "k",
    "data.pt_min": "pt",
}
_SHORT = {
    "noise_classifier": "nc",
    "metric_learning": "ml",
    "edge_classifier": "ec",
    "object_condensation": "oc",
}
FORMATS = {
    "pipeline.stages": lambda v: "+".join(_SHORT[s] for s in v),
    "model.equivariant": lambda v: "eq-" + ("+".join(_SHORT[s] for s in v) if v else "none"),
}


class ClusteringTask:
    """``task: clustering``: noise classifier, metric learning, edge classifier, object condensation, DBSCAN."""

    name = "clustering"
    config_type = ClusteringTrialConfig
    result_neutral_keys = RESULT_NEUTRAL_KEYS
    added_defaults: dict = {}
    bundling = None
    #: keys added after a release, at their default left out of config ids (none yet)
    added_defaults: dict = {}
    #: final metrics of the sweep's results table (name -> column header)
    headline_metrics = {
        "track_dm_eff": "dm_eff",
        "track_perfect_eff": "perfect",
        "trackml_score": "trackml",
        "gc_efficiency": "gc_eff",
    }

    @property
    def epoch_metrics(self) -> tuple[str, ...]:
        from tracker.clustering.trial import EPOCH_METRICS

        return EPOCH_METRICS

    def run_name_parts(self, trial: Mapping[str, Any], varied: Sequence[str]) -> list[str]:
        return standard_run_name_parts(trial, varied, labels=LABELS, formats=FORMATS)

    def check_model(self, config: ClusteringTrialConfig) -> None:
        from tracker.clustering.models import build_stage

        for stage in config.pipeline.stages:
            build_stage(stage, **config.model.stage_hparams(stage))

    def prepare_data(self, config: ClusteringTrialConfig) -> str:
        from tracker.data.dataset import prepare

        return str(prepare(config.data))

    def run_trial(
        self, config: ClusteringTrialConfig, reporter: Any, *, workdir: Path, resume: bool = True
    ) -> Any:
        from tracker.clustering.trial import run_trial

        return run_trial(config, reporter, workdir=workdir, resume=resume)


TASK = ClusteringTask()
