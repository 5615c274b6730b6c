"""The jet taggers: ``build_model(name, **hparams)``, ``count_parameters(model)``, ``MODEL_NAMES``.

Every model maps a batch of jets to one logit per jet: ``model(p4 [B, N, 4] (E, px, py, pz) GeV, mask [B, N])
-> Tensor[B]``; no sigmoid inside (train with ``BCEWithLogitsLoss``). Outputs are permutation invariant over
constituents and do not depend on padding. Every model accepts ``hidden``; ``preset`` resolves a named size
(``tiny``/``small`` for CPU sweeps, ``paper`` near the parameter counts of seed 002's table 1, see
docs/jets_models.md); hyperparameters given explicitly override the preset's. Unknown names, hyperparameters or
presets raise ``ModelConfigError`` listing what is accepted. Float32 by default; ``.double()`` works.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from jets.models import lgn, lorentznet, mlp, particlenet, pelican, pfn, vecnet
from jets.models.lgn import LGN
from jets.models.lorentznet import LorentzNet, LorentzNetNonEq
from jets.models.mlp import MLPTagger
from jets.models.particlenet import ParticleNet
from jets.models.pelican import Pelican
from jets.models.pfn import PFN
from jets.models.vecnet import VecNet


class ModelConfigError(ValueError):
    """An unknown model name, hyperparameter, preset or an invalid value; the message lists what is accepted."""


@dataclass(frozen=True)
class ModelSpec:
    """A registered tagger: its class, default hyperparameters, size presets and their exact parameter counts."""

    cls: type[nn.Module]
    defaults: dict[str, Any]
    presets: dict[str, dict[str, Any]]
    preset_counts: dict[str, int]
    equivariant: bool  # logits invariant under SO+(1,3) (vecnet: only with hidden_free = 0, see is_equivariant)


REGISTRY: dict[str, ModelSpec] = {
    "lorentznet": ModelSpec(LorentzNet, lorentznet.HPARAMS, lorentznet.PRESETS, lorentznet.PRESET_COUNTS, True),
    "lorentznet_noneq": ModelSpec(
        LorentzNetNonEq, lorentznet.HPARAMS, lorentznet.PRESETS, lorentznet.NONEQ_PRESET_COUNTS, False
    ),
    "lgn": ModelSpec(LGN, lgn.HPARAMS, lgn.PRESETS, lgn.PRESET_COUNTS, True),
    "pelican": ModelSpec(Pelican, pelican.HPARAMS, pelican.PRESETS, pelican.PRESET_COUNTS, True),
    "vecnet": ModelSpec(VecNet, vecnet.HPARAMS, vecnet.PRESETS, vecnet.PRESET_COUNTS, False),
    "pfn": ModelSpec(PFN, pfn.HPARAMS, pfn.PRESETS, pfn.PRESET_COUNTS, False),
    "particlenet": ModelSpec(
        ParticleNet, particlenet.HPARAMS, particlenet.PRESETS, particlenet.PRESET_COUNTS, False
    ),
    "mlp": ModelSpec(MLPTagger, mlp.HPARAMS, mlp.PRESETS, mlp.PRESET_COUNTS, False),
}
MODEL_NAMES: tuple[str, ...] = tuple(REGISTRY)

# value constraints: (kind, minimum or choices)
_CONSTRAINTS: dict[str, tuple[str, Any]] = {
    "hidden": ("int", 1),
    "layers": ("int", 1),
    "hidden_equivariant": ("int", 0),
    "hidden_free": ("int", 0),
    "mlp_depth": ("int", 0),
    "decoder_depth": ("int", 0),
    "depth": ("int", 0),
    "phi_depth": ("int", 0),
    "f_depth": ("int", 0),
    "latent": ("int", 1),
    "n_basis": ("int", 1),
    "n_constituents": ("int", 1),
    "k": ("int", 1),
    "fc": ("int", 1),
    "c": ("float", 0.0),
    "scale": ("float", 1e-12),
    "dropout": ("float", 0.0),
    "beams": ("bool", None),
    "x_update": ("choice", lorentznet.X_UPDATES),
    "act": ("choice", ("relu", "silu", "gelu", "tanh", "leaky_relu")),
}


def _check_value(model: str, key: str, value: Any) -> Any:
    kind, arg = _CONSTRAINTS.get(key, ("any", None))
    where = f"model {model!r}: hyperparameter {key}={value!r}"
    if kind == "bool":
        if not isinstance(value, bool):
            raise ModelConfigError(f"{where}: expected true or false")
    elif kind == "int":
        if isinstance(value, bool) or not isinstance(value, int) or value < arg:
            raise ModelConfigError(f"{where}: expected an integer >= {arg}")
    elif kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < arg:
            raise ModelConfigError(f"{where}: expected a number >= {arg}")
        if key == "dropout" and value >= 1.0:
            raise ModelConfigError(f"{where}: expected a number in [0, 1)")
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
            raise ModelConfigError(
                f"model {name!r}: unknown preset {preset!r}; accepted: {', '.join(spec.presets)}"
            )
        resolved.update(spec.presets[preset])
    resolved.update(hparams)
    resolved = {k: _check_value(name, k, v) for k, v in resolved.items()}
    if name == "vecnet" and resolved["hidden_equivariant"] + resolved["hidden_free"] == 0:
        raise ModelConfigError(f"model {name!r}: hidden_equivariant + hidden_free must be >= 1 (both are 0)")
    return resolved


def build_model(name: str, **hparams: Any) -> nn.Module:
    """Build a tagger by registry name; see the module docstring and docs/jets_models.md."""
    preset = hparams.get("preset")
    resolved = resolve_hparams(name, **hparams)
    model = REGISTRY[name].cls(**resolved)
    model.preset = preset
    return model


def is_equivariant(name: str, **hparams: Any) -> bool:
    """Whether the logits of this configuration are SO+(1,3) invariant (vecnet: hidden_free = 0; lorentznet:
    not with ``beams``, which leaves only rotations about the beam axis)."""
    hp = resolve_hparams(name, **hparams)
    if name == "vecnet":
        return hp["hidden_free"] == 0
    if name == "lorentznet":
        return not hp["beams"]
    return REGISTRY[name].equivariant


def count_parameters(model: nn.Module, *, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters, each shared tensor counted once."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


__all__ = [
    "LGN",
    "MODEL_NAMES",
    "PFN",
    "REGISTRY",
    "LorentzNet",
    "LorentzNetNonEq",
    "MLPTagger",
    "ModelConfigError",
    "ModelSpec",
    "ParticleNet",
    "Pelican",
    "VecNet",
    "build_model",
    "count_parameters",
    "is_equivariant",
    "resolve_hparams",
]
