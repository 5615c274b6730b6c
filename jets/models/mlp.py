"""Plain MLP tagger: the leading ``n_constituents`` four-momenta, flattened, through a fully connected network.

Constituents are ordered by pT (descending) inside the model, so the output does not depend on the input order
(permutation invariant by construction), and the (E, px, py, pz) / ``scale`` of the first ``n_constituents`` are
flattened (zeros where a jet has fewer; padded slots are zeroed and sorted last, so padding never matters).
``depth`` hidden layers of width ``hidden`` (ReLU). Nothing constrains it: boosts change its inputs, and its
output (seed 002 fig. 3b: the 4-layer network trained with and without boost augmentation).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from jets.models.common import P4_SCALE, JetTagger, masked_p4, mlp

HPARAMS: dict[str, Any] = {"hidden": 32, "depth": 3, "n_constituents": 20, "scale": P4_SCALE}
PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {"hidden": 24, "depth": 2, "n_constituents": 8},
    "small": {"hidden": 64, "depth": 3, "n_constituents": 30},
    "paper": {"hidden": 128, "depth": 4, "n_constituents": 200},  # no size in table 1; fig. 3b's 4 layers
}
PRESET_COUNTS: dict[str, int] = {"tiny": 1417, "small": 16129, "paper": 152193}


class MLPTagger(JetTagger):
    """Flattened leading constituents -> MLP; ``forward(p4, mask) -> [B]`` logits."""

    name = "mlp"

    def __init__(
        self, *, hidden: int = 32, depth: int = 3, n_constituents: int = 20, scale: float = P4_SCALE
    ) -> None:
        super().__init__()
        self.hparams = {"hidden": hidden, "depth": depth, "n_constituents": n_constituents, "scale": scale}
        self.n_constituents, self.scale = n_constituents, float(scale)
        self.net = mlp(4 * n_constituents, hidden, 1, depth)

    def forward(self, p4: Tensor, mask: Tensor) -> Tensor:
        x = masked_p4(p4, mask) / self.scale
        pt2 = torch.where(mask, x[..., 1] ** 2 + x[..., 2] ** 2, torch.full_like(x[..., 0], -1.0))
        order = torch.argsort(pt2, dim=1, descending=True, stable=True)
        x = x.gather(1, order.unsqueeze(-1).expand_as(x))
        n = self.n_constituents
        if x.shape[1] < n:
            x = torch.cat([x, x.new_zeros(x.shape[0], n - x.shape[1], 4)], dim=1)
        return self.net(x[:, :n].reshape(x.shape[0], -1)).squeeze(-1)
