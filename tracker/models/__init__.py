"""The model zoo: ``build_model(name, **hparams)``, ``count_parameters(model)``, ``MODEL_NAMES``.

Every model maps a PyG ``Data``/``Batch`` in the platform's graph format (docs/architecture.md) to one logit
per stored (directed) edge: ``model(data) -> Tensor[E]``; no sigmoid inside (train with
``BCEWithLogitsLoss``). Every model accepts ``hidden``; ``preset`` resolves a named size configuration
(``paper_8``/``paper_16``/``paper_32``: the sizes of the paper's Table 1, see docs/models.md); hyperparameters
given explicitly override the preset's. Unknown names, hyperparameters or presets raise ``ModelConfigError``
listing what is accepted. Models are float32 by default and support ``.double()``.

Every model has two paths with the same parameters and function: plain PyTorch / PyG ``MessagePassing``
(default; tracker/models/*.py) and ``fused=True``, feature-major kernels that are faster on CPU
(tracker/models/fused/; docs/models.md says when to turn it on).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from equitrack.registry import BOOL, Choice, Float, Int, ModelRegistry, ModelSpec, count_parameters
from tracker.models import egnn, euclidnet, hybrid, interaction_network
from tracker.models.egnn import EGNN
from tracker.models.euclidnet import EuclidNet, EuclidNetNonEq
from tracker.models.hybrid import Hybrid
from tracker.models.interaction_network import InteractionNetwork


class ModelConfigError(ValueError):
    """An unknown model name, hyperparameter, preset or an invalid value; the message lists what is accepted."""


# ModelSpec(cls, defaults, presets, preset_counts, equivariant): equivariant means edge scores invariant to
# rotations about z (for hybrid: only with hidden_free = 0)
REGISTRY: dict[str, ModelSpec] = {
    "euclidnet": ModelSpec(EuclidNet, euclidnet.HPARAMS, euclidnet.PRESETS, euclidnet.PRESET_COUNTS, True),
    "interaction_network": ModelSpec(
        InteractionNetwork, interaction_network.HPARAMS, interaction_network.PRESETS,
        interaction_network.PRESET_COUNTS, False,
    ),
    "euclidnet_noneq": ModelSpec(
        EuclidNetNonEq, euclidnet.HPARAMS, euclidnet.NONEQ_PRESETS, euclidnet.NONEQ_PRESET_COUNTS, False
    ),
    "hybrid": ModelSpec(Hybrid, hybrid.HPARAMS, hybrid.PRESETS, hybrid.PRESET_COUNTS, False),
    "egnn": ModelSpec(EGNN, egnn.HPARAMS, egnn.PRESETS, egnn.PRESET_COUNTS, True),
}
MODEL_NAMES: tuple[str, ...] = tuple(REGISTRY)

#: the zoo: REGISTRY with the value constraints of its hyperparameters (None allowed where the default is None)
MODELS = ModelRegistry(
    REGISTRY,
    {
        "hidden": Int(1),
        "hidden_equivariant": Int(1),
        "hidden_free": Int(0),
        "mlp_depth": Int(1),
        "decoder_depth": Int(0),
        "iterations": Int(1),
        "c": Float(0.0),
        "length_scale": Float(1e-12),
        "shared_block": BOOL,
        "shared_weights": BOOL,
        "use_r": BOOL,
        "edge_attr": BOOL,
        "undirected": BOOL,
        "fused": BOOL,
        "node_features": Choice(interaction_network.NODE_FEATURES),
    },
    error=ModelConfigError,
)


def resolve_hparams(name: str, **hparams: Any) -> dict[str, Any]:
    """The full, validated hyperparameters ``build_model(name, **hparams)`` would use (preset resolved)."""
    return MODELS.resolve(name, **hparams)


def build_model(name: str, **hparams: Any) -> nn.Module:
    """Build a zoo model by registry name; see the module docstring and docs/models.md."""
    return MODELS.build(name, **hparams)


__all__ = [
    "EGNN",
    "MODEL_NAMES",
    "REGISTRY",
    "EuclidNet",
    "EuclidNetNonEq",
    "Hybrid",
    "InteractionNetwork",
    "MODELS",
    "ModelConfigError",
    "ModelSpec",
    "build_model",
    "count_parameters",
    "resolve_hparams",
]
