"""Stage ``edge_classifier``: an interaction-network-style GNN scores the edges of the constructed graph (the
metric-learning radius graph, or the dataset's geometric graph when the pipeline has no metric learning); edges
below ``pipeline.ec_threshold`` are pruned before object condensation.

Nodes are encoded by a residual MLP, edges (dr, dφ, dz, dR) by a linear layer; ``iterations`` message blocks
(:class:`~tracker.clustering.models.common.MessageBlock`, messages both ways); the logit is a linear map of the
final edge features. Equivariant: nodes read (r, z) only, the edge features are invariant, so every logit is
invariant under rotations about z. Loss: BCE with logits (``train.ec_pos_weight`` on true edges).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn
from torch_geometric.data import Data

from tracker.clustering.models.common import (
    EDGE_DIM,
    EQUIVARIANT_NODE_DIM,
    PLAIN_NODE_DIM,
    MessageBlock,
    ResidualMLP,
    edge_features,
    node_inputs,
)

HPARAMS: dict[str, Any] = {"hidden": 32, "depth": 2, "iterations": 3, "equivariant": False}
PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {"hidden": 8, "depth": 1, "iterations": 2},
    "small": {"hidden": 32, "depth": 2, "iterations": 3},
    "thesis": {"hidden": 64, "depth": 2, "iterations": 5},
}


def param_count(*, hidden: int, depth: int, iterations: int, equivariant: bool, **_: Any) -> int:
    """node MLP + edge encoder (4h + h) + iterations · (5h² + 2h) + output (h + 1)."""
    n_in = EQUIVARIANT_NODE_DIM if equivariant else PLAIN_NODE_DIM
    h = hidden
    node = n_in * h + h + (depth - 1) * (h * h + h)
    return node + EDGE_DIM * h + h + iterations * (5 * h * h + 2 * h) + h + 1


class EdgeClassifier(nn.Module):
    """``model(data, edge_index) -> Tensor[E]``: one logit per edge of ``edge_index``."""

    def __init__(self, *, hidden: int, depth: int, iterations: int, equivariant: bool) -> None:
        super().__init__()
        self.equivariant, self.vectors = equivariant, 0
        self.node = ResidualMLP(EQUIVARIANT_NODE_DIM if equivariant else PLAIN_NODE_DIM, hidden, depth)
        self.edge = nn.Linear(EDGE_DIM, hidden)
        self.blocks = nn.ModuleList(MessageBlock(hidden) for _ in range(iterations))
        self.out = nn.Linear(hidden, 1)

    def forward(self, data: Data, edge_index: Tensor) -> Tensor:
        h = self.node(node_inputs(data, equivariant=self.equivariant))
        e = self.edge(edge_features(data, edge_index).to(h.dtype))
        for block in self.blocks:
            h, e = block(h, e, edge_index)
        return self.out(e).squeeze(1)
