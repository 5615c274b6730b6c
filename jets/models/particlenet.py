"""ParticleNet (Qu & Gouskos 2020): EdgeConv blocks on dynamic k-nearest-neighbour graphs of the constituents.

Inputs: the 7 per-constituent features of :func:`jets.models.common.particle_features` (batch-normalised) and
the coordinates (Δη, Δφ). Three EdgeConv blocks (``torch_geometric.nn.EdgeConv``, mean aggregation): the first on
the kNN graph in (Δη, Δφ), the others on the kNN graph of the previous block's output features (dynamic graph).
Each block: edge MLP h(x_i, x_j − x_i) of 3 × (Linear without bias → BatchNorm → ReLU) with widths
(C, C, C), (2C, 2C, 2C), (4C, 4C, 4C) for C = ``hidden``, plus a shortcut Linear + BatchNorm of x_i, then ReLU.
Global mean pooling over the jet's constituents, then Linear(4C, ``fc``) → ReLU → Dropout → Linear(·, 1).

Graph building: ``torch_cluster`` (behind PyG's ``knn_graph`` / ``DynamicEdgeConv``) has no wheels for this torch,
so the k nearest real neighbours (self excluded) come from a masked ``torch.cdist`` + ``topk`` per jet, and the
edge list is built here. Only real constituents become nodes (padding never enters a BatchNorm statistic or a
neighbourhood). Jets with at most k constituents use all their other constituents.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch_geometric.nn import EdgeConv, global_mean_pool

from jets.models.common import JetTagger, particle_features

N_FEATURES = 7
HPARAMS: dict[str, Any] = {"hidden": 16, "k": 16, "fc": 64, "dropout": 0.1}
PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {"hidden": 4, "k": 8, "fc": 8},
    "small": {"hidden": 12, "k": 12, "fc": 48},
    "paper": {"hidden": 76, "k": 16, "fc": 256},  # 500,075 (table 1: 498k; C = 64, the original, is 365,903)
}
PRESET_COUNTS: dict[str, int] = {"tiny": 1619, "small": 13707, "paper": 500075}
PAPER_COUNT = 498_000


def knn_edge_index(coords: Tensor, mask: Tensor, k: int) -> Tensor:
    """Edges j → i (row 0 = neighbour j, row 1 = centre i) to the k nearest real neighbours of each real
    constituent, in the flat numbering of the real constituents (row-major over [B, N] where ``mask``)."""
    b, n, _ = coords.shape
    kk = min(k, n - 1)
    if kk <= 0:
        return torch.zeros((2, 0), dtype=torch.long, device=coords.device)
    with torch.no_grad():
        dist = torch.cdist(coords, coords)
        pair = mask.unsqueeze(2) & mask.unsqueeze(1) & ~torch.eye(n, dtype=torch.bool, device=mask.device)
        dist = dist.masked_fill(~pair, float("inf"))
        vals, idx = dist.topk(kk, dim=-1, largest=False)  # [B, N, kk]
        valid = torch.isfinite(vals)
        flat = torch.cumsum(mask.reshape(-1).long(), 0).view(b, n) - 1
        src = flat.gather(1, idx.reshape(b, -1)).view(b, n, kk)[valid]
        dst = flat.unsqueeze(-1).expand(b, n, kk)[valid]
    return torch.stack([src, dst])


class EdgeConvBlock(nn.Module):
    """EdgeConv with a 3-layer edge MLP and a shortcut (ParticleNet's block)."""

    def __init__(self, in_dim: int, width: int, *, k: int) -> None:
        super().__init__()
        self.k = k
        layers: list[nn.Module] = []
        d = 2 * in_dim
        for _ in range(3):
            layers += [nn.Linear(d, width, bias=False), nn.BatchNorm1d(width), nn.ReLU()]
            d = width
        self.conv = EdgeConv(nn.Sequential(*layers), aggr="mean")
        self.shortcut = nn.Sequential(nn.Linear(in_dim, width, bias=False), nn.BatchNorm1d(width))

    def forward(self, x: Tensor, coords: Tensor, mask: Tensor) -> Tensor:
        """x [M, F] features of the M real constituents, coords [B, N, D] dense, mask [B, N]."""
        edge_index = knn_edge_index(coords, mask, self.k)
        return torch.relu(self.conv(x, edge_index) + self.shortcut(x))


class ParticleNet(JetTagger):
    """ParticleNet tagger; ``forward(p4, mask) -> [B]`` logits."""

    name = "particlenet"

    def __init__(self, *, hidden: int = 16, k: int = 16, fc: int = 64, dropout: float = 0.1) -> None:
        super().__init__()
        self.hparams = {"hidden": hidden, "k": k, "fc": fc, "dropout": dropout}
        c = hidden
        self.input_bn = nn.BatchNorm1d(N_FEATURES)
        self.blocks = nn.ModuleList([
            EdgeConvBlock(N_FEATURES, c, k=k), EdgeConvBlock(c, 2 * c, k=k), EdgeConvBlock(2 * c, 4 * c, k=k),
        ])
        self.fc = nn.Sequential(nn.Linear(4 * c, fc), nn.ReLU(), nn.Dropout(dropout), nn.Linear(fc, 1))

    def forward(self, p4: Tensor, mask: Tensor) -> Tensor:
        feats, coords = particle_features(p4, mask)
        batch = torch.arange(mask.shape[0], device=mask.device).unsqueeze(1).expand_as(mask)[mask]
        x = self.input_bn(feats[mask])
        for i, block in enumerate(self.blocks):
            if i > 0:  # dynamic graph: neighbours in the current feature space
                coords = x.new_zeros((*mask.shape, x.shape[-1]))
                coords[mask] = x
            x = block(x, coords, mask)
        pooled = global_mean_pool(x, batch, size=mask.shape[0])
        return self.fc(pooled).squeeze(-1)
