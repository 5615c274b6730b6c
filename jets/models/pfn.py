"""Particle Flow Network (Komiske, Metodiev & Thaler 2019): Deep Sets on per-constituent features.

logit = F( Σ_i Φ(f_i) ), f_i = (log pT, log E, Δη, Δφ, log pT/pT_jet, log E/E_jet, ΔR) relative to the jet
axis (:func:`jets.models.common.particle_features`); the sum runs over real constituents only (padding
invariant), the sum makes it permutation invariant. Φ: ``phi_depth`` hidden layers of width ``hidden`` → a
``latent``-dimensional code; F: ``f_depth`` hidden layers of width ``hidden`` → 1 (ReLU). Not Lorentz invariant
(pT, η and ΔR are frame dependent). The paper's configuration (Φ 100-100-256, F 100-100-100) is the ``paper``
preset: 82,757 parameters (table 1: 82k).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from jets.models.common import JetTagger, masked_sum, mlp, particle_features

N_FEATURES = 7
HPARAMS: dict[str, Any] = {"hidden": 32, "latent": 32, "phi_depth": 2, "f_depth": 2}
PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {"hidden": 16, "latent": 16, "phi_depth": 2, "f_depth": 2},
    "small": {"hidden": 48, "latent": 64, "phi_depth": 2, "f_depth": 2},
    "paper": {"hidden": 100, "latent": 256, "phi_depth": 2, "f_depth": 3},
}
PRESET_COUNTS: dict[str, int] = {"tiny": 1233, "small": 11393, "paper": 82757}
PAPER_COUNT = 82_000


class PFN(JetTagger):
    """Deep Sets tagger; ``forward(p4, mask) -> [B]`` logits."""

    name = "pfn"

    def __init__(self, *, hidden: int = 32, latent: int = 32, phi_depth: int = 2, f_depth: int = 2) -> None:
        super().__init__()
        self.hparams = {"hidden": hidden, "latent": latent, "phi_depth": phi_depth, "f_depth": f_depth}
        self.phi = nn.Sequential(*mlp(N_FEATURES, hidden, latent, phi_depth), nn.ReLU())  # Φ ends in ReLU too
        self.F = mlp(latent, hidden, 1, f_depth)

    def forward(self, p4: Tensor, mask: Tensor) -> Tensor:
        feats, _ = particle_features(p4, mask)
        return self.F(masked_sum(self.phi(feats), mask)).squeeze(-1)
