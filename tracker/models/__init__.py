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

from dataclasses import dataclass
from typing import Any

from torch import nn

from tracker.models import egnn, euclidnet, hybrid, interaction_network
from tracker.models.egnn import EGNN
from tracker.models.euclidnet import EuclidNet, EuclidNetNonEq
from tracker.models.hybrid import Hybrid
from tracker.models.interaction_network import InteractionNetwork


class ModelConfigError(ValueError):
    """An unknown model name, hyperparameter, preset or an invalid value; the message lists what is accepted."""


@dataclass(frozen=True)
class ModelSpec:
    """A registered model: its class, default hyperparameters, size presets and their exact parameter counts."""

    cls: type[nn.Module]
    defaults: dict[str, Any]
    presets: dict[str, dict[str, Any]]
    preset_counts: dict[str, int]
    equivariant: bool  # edge scores invariant to rotations about z (for hybrid: only with hidden_free = 0)


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

# value constraints: (kind, minimum or choices); None allowed where the default is None
_CONSTRAINTS: dict[str, tuple[str, Any]] = {
    "hidden": ("int", 1),
    "hidden_equivariant": ("int", 1),
    "hidden_free": ("int", 0),
    "mlp_depth": ("int", 1),
    "decoder_depth": ("int", 0),
    "iterations": ("int", 1),
    "c": ("float", 0.0),
    "length_scale": ("float", 1e-12),
    "shared_block": ("bool", None),
    "shared_weights": ("bool", None),
    "use_r": ("bool", None),
    "edge_attr": ("bool", None),
    "undirected": ("bool", None),
    "fused": ("bool", None),
    "node_features": ("choice", interaction_network.NODE_FEATURES),
}


def _check_value(model: str, key: str, value: Any, default: Any) -> Any:
    kind, arg = _CONSTRAINTS.get(key, ("any", None))
    where = f"model {model!r}: hyperparameter {key}={value!r}"
    if value is None and default is None:
        return None
    if kind == "bool":
        if not isinstance(value, bool):
            raise ModelConfigError(f"{where}: expected true or false")
    elif kind == "int":
        if isinstance(value, bool) or not isinstance(value, int) or value < arg:
            raise ModelConfigError(f"{where}: expected an integer >= {arg}")
    elif kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < arg:
            raise ModelConfigError(f"{where}: expected a number >= {arg}")
        value = float(value)
    elif kind == "choice" and value not in arg:
        raise ModelConfigError(f"{where}: expected one of {list(arg)}")
    return value


def resolve_hparams(name: str, **hparams: Any) -> dict[str, Any]:
    """The full, validated hyperparameters ``build_model(name, **hparams)`` would use (preset resolved)."""
    if name not in REGISTRY:
        raise ModelConfigError(f"unknown model {name!r}; accepted: {', '.join(MODEL_NAMES)}")
    spec = REGISTRY[name]
    preset = hparams.pop("preset", None)
    unknown = sorted(set(hparams) - set(spec.defaults))
    if unknown:
        raise ModelConfigError(
            f"model {name!r}: unknown hyperparameter(s) {unknown}; accepted: {', '.join(spec.defaults)}, preset"
        )
    resolved = dict(spec.defaults)
    if preset is not None:
        if preset not in spec.presets:
            accepted = ", ".join(spec.presets) or "none (this model has no presets)"
            raise ModelConfigError(f"model {name!r}: unknown preset {preset!r}; accepted: {accepted}")
        resolved.update(spec.presets[preset])
    resolved.update(hparams)
    return {k: _check_value(name, k, v, spec.defaults[k]) for k, v in resolved.items()}


def build_model(name: str, **hparams: Any) -> nn.Module:
    """Build a zoo model by registry name; see the module docstring and docs/models.md."""
    preset = hparams.get("preset")
    model = REGISTRY[name].cls(**resolve_hparams(name, **hparams)) if name in REGISTRY else None
    if model is None:  # resolve_hparams raised for unknown names already; kept for type checkers
        raise ModelConfigError(f"unknown model {name!r}; accepted: {', '.join(MODEL_NAMES)}")
    model.preset = preset
    return model


def count_parameters(model: nn.Module, *, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters, each shared tensor counted once."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


__all__ = [
    "EGNN",
    "MODEL_NAMES",
    "REGISTRY",
    "EuclidNet",
    "EuclidNetNonEq",
    "Hybrid",
    "InteractionNetwork",
    "ModelConfigError",
    "ModelSpec",
    "build_model",
    "count_parameters",
    "resolve_hparams",
]
