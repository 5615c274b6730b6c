"""The stages of the learned-clustering pipeline (seed 003) as a registry: ``build_stage(stage, **hparams)``.

Every stage takes ``hidden``, ``depth`` and ``equivariant`` (the SO(2)-equivariant variant: invariant inputs,
equivariant coordinates, docs/clustering.md); ``preset`` (``tiny``, ``small``, ``thesis``) resolves a named size,
explicit hyperparameters override it. ``PRESET_COUNTS`` holds the exact parameter counts of every preset (plain
and equivariant), which the tests check against the built modules and the closed forms (``param_count``).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from equitrack.registry import BOOL, Int, ModelRegistry, ModelSpec, count_parameters
from tracker.clustering.models import edge_classifier, metric_learning, noise_classifier, object_condensation
from tracker.clustering.models.edge_classifier import EdgeClassifier
from tracker.clustering.models.metric_learning import MetricLearning
from tracker.clustering.models.noise_classifier import NoiseClassifier
from tracker.clustering.models.object_condensation import ObjectCondensation

#: the stages in pipeline order
STAGES: tuple[str, ...] = ("noise_classifier", "metric_learning", "edge_classifier", "object_condensation")
#: short prefixes of each stage's metrics
PREFIX = {
    "noise_classifier": "nc",
    "metric_learning": "ml",
    "edge_classifier": "ec",
    "object_condensation": "oc",
}


class StageConfigError(ValueError):
    """An unknown stage, hyperparameter, preset or a bad value; the message names it and lists what is accepted."""


#: the stages: class, defaults, presets and closed-form parameter count (``ModelSpec.param_count``)
REGISTRY: dict[str, ModelSpec] = {
    stage: ModelSpec(cls, module.HPARAMS, module.PRESETS, param_count=module.param_count)
    for stage, cls, module in (
        ("noise_classifier", NoiseClassifier, noise_classifier),
        ("metric_learning", MetricLearning, metric_learning),
        ("edge_classifier", EdgeClassifier, edge_classifier),
        ("object_condensation", ObjectCondensation, object_condensation),
    )
}

#: exact parameter counts: (stage, preset, equivariant) -> count
PRESET_COUNTS: dict[tuple[str, str, bool], int] = {
    ("noise_classifier", "tiny", False): 385,
    ("noise_classifier", "tiny", True): 337,
    ("noise_classifier", "small", False): 8769,
    ("noise_classifier", "small", True): 8577,
    ("noise_classifier", "thesis", False): 330753,
    ("noise_classifier", "thesis", True): 329985,
    ("metric_learning", "tiny", False): 436,
    ("metric_learning", "tiny", True): 388,
    ("metric_learning", "small", False): 9224,
    ("metric_learning", "small", True): 9032,
    ("metric_learning", "thesis", False): 332552,
    ("metric_learning", "thesis", True): 331784,
    ("edge_classifier", "tiny", False): 769,
    ("edge_classifier", "tiny", True): 745,
    ("edge_classifier", "small", False): 16993,
    ("edge_classifier", "small", True): 16897,
    ("edge_classifier", "thesis", False): 107969,
    ("edge_classifier", "thesis", True): 107777,
    ("object_condensation", "tiny", False): 805,
    ("object_condensation", "tiny", True): 781,
    ("object_condensation", "small", False): 17257,
    ("object_condensation", "small", True): 17161,
    ("object_condensation", "thesis", False): 109529,
    ("object_condensation", "thesis", True): 109337,
}


def _check_vectors(stage: str, hp: dict[str, Any]) -> None:
    dim = hp.get("emb_dim", hp.get("oc_dim"))
    if dim is not None and hp["equivariant"] and 2 * hp["vectors"] > dim:
        raise StageConfigError(
            f"model.{stage}.vectors={hp['vectors']}: 2·vectors must not exceed the coordinate dimension {dim}"
        )


#: the stages with the value constraints of their hyperparameters
STAGE_REGISTRY = ModelRegistry(
    REGISTRY,
    {
        "hidden": Int(1),
        "depth": Int(1),
        "iterations": Int(1),
        "emb_dim": Int(2),
        "oc_dim": Int(2),
        "vectors": Int(1),
        "equivariant": BOOL,
    },
    error=StageConfigError,
    noun="stage",
    label="model.{name}",
    where="model.{name}.{key}={value!r}",
    check=_check_vectors,
)


def _given(hparams: dict[str, Any]) -> dict[str, Any]:
    """The hyperparameters a trial file sets (``None`` leaves the preset's or default value)."""
    return {k: v for k, v in hparams.items() if v is not None}


def resolve_stage(stage: str, **hparams: Any) -> dict[str, Any]:
    """The full, validated hyperparameters of ``stage`` (preset resolved, explicit values override it)."""
    return STAGE_REGISTRY.resolve(stage, **_given(hparams))


def build_stage(stage: str, **hparams: Any) -> nn.Module:
    """Build one stage by name (see the module docstring)."""
    return STAGE_REGISTRY.build(stage, **_given(hparams))


__all__ = [
    "PREFIX",
    "PRESET_COUNTS",
    "REGISTRY",
    "STAGES",
    "STAGE_REGISTRY",
    "EdgeClassifier",
    "MetricLearning",
    "NoiseClassifier",
    "ObjectCondensation",
    "StageConfigError",
    "build_stage",
    "count_parameters",
    "resolve_stage",
]
