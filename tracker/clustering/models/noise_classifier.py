"""Stage ``noise_classifier`` (optional first stage, seed 003 ch. 2): a residual MLP gives every hit a logit of
being a real (particle) hit; hits below ``pipeline.noise_threshold`` are dropped before graph construction.

Loss: binary cross-entropy with the noise hits up-weighted by ``pos_weight`` (``auto``: #real / #noise of the
training events, the thesis' class weighting), so the rare noise class counts as much as the real one.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn
from torch_geometric.data import Data

from tracker.clustering.models.common import EQUIVARIANT_NODE_DIM, PLAIN_NODE_DIM, ResidualMLP, node_inputs

HPARAMS: dict[str, Any] = {"hidden": 32, "depth": 3, "equivariant": False}
PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {"hidden": 16, "depth": 2},
    "small": {"hidden": 64, "depth": 3},
    "thesis": {"hidden": 256, "depth": 6},  # GraphConstructionFCNN with a classification output (seed 003)
}


def param_count(*, hidden: int, depth: int, equivariant: bool, **_: Any) -> int:
    """in·h + h + (depth − 1)(h² + h) + h + 1."""
    n_in = EQUIVARIANT_NODE_DIM if equivariant else PLAIN_NODE_DIM
    return n_in * hidden + hidden + (depth - 1) * (hidden * hidden + hidden) + hidden + 1


class NoiseClassifier(nn.Module):
    """``model(data) -> Tensor[N]``: logit of each hit being a particle hit (invariant when ``equivariant``)."""

    def __init__(self, *, hidden: int, depth: int, equivariant: bool) -> None:
        super().__init__()
        self.equivariant, self.vectors = equivariant, 0
        self.trunk = ResidualMLP(EQUIVARIANT_NODE_DIM if equivariant else PLAIN_NODE_DIM, hidden, depth)
        self.head = nn.Linear(hidden, 1)

    def forward(self, data: Data) -> Tensor:
        return self.head(self.trunk(node_inputs(data, equivariant=self.equivariant))).squeeze(1)
