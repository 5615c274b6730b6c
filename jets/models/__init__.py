"""The jet taggers: ``build_model(name, **hparams)``, ``count_parameters(model)``, ``MODEL_NAMES``.

Every model maps a batch of jets to one logit per jet: ``model(p4 [B, N, 4] (E, px, py, pz) GeV, mask [B, N])
-> Tensor[B]``; no sigmoid inside (train with ``BCEWithLogitsLoss``). Outputs are permutation invariant over
constituents and do not depend on padding. Every model accepts ``hidden``; ``preset`` resolves a named size
(``tiny``/``small`` for CPU sweeps, ``paper`` near the parameter counts of seed 002's table 1, see
docs/jets_models.md); hyperparameters given explicitly override the preset's. Unknown names, hyperparameters or
presets raise ``ModelConfigError`` listing what is accepted. Float32 by default; ``.double()`` works.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from equitrack.registry import BOOL, Choice, Float, Int, ModelRegistry, ModelSpec, count_parameters
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


# ModelSpec(cls, defaults, presets, preset_counts, equivariant): equivariant means logits invariant under SO+(1,3)
# (vecnet: only with hidden_free = 0, see is_equivariant)
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


def _check_widths(name: str, hp: dict[str, Any]) -> None:
    if name == "vecnet" and hp["hidden_equivariant"] + hp["hidden_free"] == 0:
        raise ModelConfigError(f"model {name!r}: hidden_equivariant + hidden_free must be >= 1 (both are 0)")


#: the taggers: REGISTRY with the value constraints of their hyperparameters
MODELS = ModelRegistry(
    REGISTRY,
    {
        "hidden": Int(1),
        "layers": Int(1),
        "hidden_equivariant": Int(0),
        "hidden_free": Int(0),
        "mlp_depth": Int(0),
        "decoder_depth": Int(0),
        "depth": Int(0),
        "phi_depth": Int(0),
        "f_depth": Int(0),
        "latent": Int(1),
        "n_basis": Int(1),
        "n_constituents": Int(1),
        "k": Int(1),
        "fc": Int(1),
        "c": Float(0.0),
        "scale": Float(1e-12),
        "dropout": Float(0.0, below=1.0),
        "beams": BOOL,
        "x_update": Choice(lorentznet.X_UPDATES),
        "act": Choice(("relu", "silu", "gelu", "tanh", "leaky_relu")),
    },
    error=ModelConfigError,
    check=_check_widths,
)


def resolve_hparams(name: str, **hparams: Any) -> dict[str, Any]:
    """The full, validated hyperparameters ``build_model(name, **hparams)`` would use (preset resolved)."""
    return MODELS.resolve(name, **hparams)


def build_model(name: str, **hparams: Any) -> nn.Module:
    """Build a tagger by registry name; see the module docstring and docs/jets_models.md."""
    return MODELS.build(name, **hparams)


def is_equivariant(name: str, **hparams: Any) -> bool:
    """Whether the logits of this configuration are SO+(1,3) invariant (vecnet: hidden_free = 0; lorentznet:
    not with ``beams``, which leaves only rotations about the beam axis)."""
    hp = resolve_hparams(name, **hparams)
    if name == "vecnet":
        return hp["hidden_free"] == 0
    if name == "lorentznet":
        return not hp["beams"]
    return REGISTRY[name].equivariant


__all__ = [
    "LGN",
    "MODEL_NAMES",
    "PFN",
    "REGISTRY",
    "LorentzNet",
    "LorentzNetNonEq",
    "MODELS",
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
