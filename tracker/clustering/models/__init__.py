"""The stages of the learned-clustering pipeline (seed 003) as a registry: ``build_stage(stage, **hparams)``.

Every stage takes ``hidden``, ``depth`` and ``equivariant`` (the SO(2)-equivariant variant: invariant inputs,
equivariant coordinates, docs/clustering.md); ``preset`` (``tiny``, ``small``, ``thesis``) resolves a named size,
explicit hyperparameters override it. ``PRESET_COUNTS`` holds the exact parameter counts of every preset (plain
and equivariant), which the tests check against the built modules and the closed forms (``param_count``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

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


@dataclass(frozen=True)
class StageSpec:
    """A stage: its class, default hyperparameters, presets and closed-form parameter count."""

    cls: type[nn.Module]
    defaults: dict[str, Any]
    presets: dict[str, dict[str, Any]]
    param_count: Callable[..., int]


REGISTRY: dict[str, StageSpec] = {
    "noise_classifier": StageSpec(
        NoiseClassifier, noise_classifier.HPARAMS, noise_classifier.PRESETS, noise_classifier.param_count
    ),
    "metric_learning": StageSpec(
        MetricLearning, metric_learning.HPARAMS, metric_learning.PRESETS, metric_learning.param_count
    ),
    "edge_classifier": StageSpec(
        EdgeClassifier, edge_classifier.HPARAMS, edge_classifier.PRESETS, edge_classifier.param_count
    ),
    "object_condensation": StageSpec(
        ObjectCondensation,
        object_condensation.HPARAMS,
        object_condensation.PRESETS,
        object_condensation.param_count,
    ),
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

_INT_MIN = {"hidden": 1, "depth": 1, "iterations": 1, "emb_dim": 2, "oc_dim": 2, "vectors": 1}


def resolve_stage(stage: str, **hparams: Any) -> dict[str, Any]:
    """The full, validated hyperparameters of ``stage`` (preset resolved, explicit values override it)."""
    if stage not in REGISTRY:
        raise StageConfigError(f"unknown stage {stage!r}; accepted: {', '.join(STAGES)}")
    spec = REGISTRY[stage]
    preset = hparams.pop("preset", None)
    unknown = sorted(set(hparams) - set(spec.defaults))
    if unknown:
        raise StageConfigError(
            f"model.{stage}: unknown hyperparameter(s) {unknown}; accepted: "
            f"{', '.join(spec.defaults)}, preset"
        )
    out = dict(spec.defaults)
    if preset is not None:
        if preset not in spec.presets:
            raise StageConfigError(
                f"model.{stage}: unknown preset {preset!r}; accepted: {', '.join(spec.presets)}"
            )
        out.update(spec.presets[preset])
    out.update({k: v for k, v in hparams.items() if v is not None})
    for key, value in out.items():
        where = f"model.{stage}.{key}={value!r}"
        if key == "equivariant":
            if not isinstance(value, bool):
                raise StageConfigError(f"{where}: expected true or false")
        elif isinstance(value, bool) or not isinstance(value, int) or value < _INT_MIN[key]:
            raise StageConfigError(f"{where}: expected an integer >= {_INT_MIN[key]}")
    dim = out.get("emb_dim", out.get("oc_dim"))
    if dim is not None and out["equivariant"] and 2 * out["vectors"] > dim:
        raise StageConfigError(
            f"model.{stage}.vectors={out['vectors']}: 2·vectors must not exceed the "
            f"coordinate dimension {dim}"
        )
    return out


def build_stage(stage: str, **hparams: Any) -> nn.Module:
    """Build one stage by name (see the module docstring)."""
    return REGISTRY[stage].cls(**resolve_stage(stage, **hparams))


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters, each tensor once."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


__all__ = [
    "PREFIX",
    "PRESET_COUNTS",
    "REGISTRY",
    "STAGES",
    "EdgeClassifier",
    "MetricLearning",
    "NoiseClassifier",
    "ObjectCondensation",
    "StageConfigError",
    "StageSpec",
    "build_stage",
    "count_parameters",
    "resolve_stage",
]
