"""Stage ``object_condensation``: a GNN on the (pruned) graph gives every hit condensation coordinates x_i and a
condensation strength β_i ∈ (0, 1); DBSCAN in the coordinate space builds the tracks.

Losses (Kieseler 2020, as gnn_tracking and seed 003 use them). Charge q_i = artanh²(β_i) + q_min; each particle k
(pid > 0) has its condensation point α_k = the hit of k with the largest β. With M_ik = 1 when hit i belongs to k:

- attractive  L_att = 1/N Σ_i Σ_k M_ik q_i q_αk ‖x_i − x_αk‖²;
- repulsive   L_rep = 1/N Σ_i Σ_k (1 − M_ik) q_i q_αk max(0, 1 − ‖x_i − x_αk‖);
- coward      L_β   = 1/K Σ_k (1 − β_αk)  (every particle must have one confident hit);
- background  L_bkg = 1/N_B Σ_{i noise} β_i  (noise hits must not condense; 0 without noise hits).

The total is w_att L_att + w_rep L_rep + w_coward L_β + w_bkg L_bkg with the weights ``train.oc_*_weight``.
Architecture: node MLP, edge encoder, ``iterations`` message blocks; β = sigmoid(linear(h)); coordinates from a
plain linear head or the :class:`~tracker.clustering.models.common.EquivariantHead` (``vectors`` 2-D vectors).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch_geometric.data import Data

from tracker.clustering.models.common import (
    EDGE_DIM,
    EQUIVARIANT_NODE_DIM,
    PLAIN_NODE_DIM,
    EquivariantHead,
    MessageBlock,
    ResidualMLP,
    edge_features,
    node_inputs,
    radial_frame,
)

HPARAMS: dict[str, Any] = {
    "hidden": 32,
    "depth": 2,
    "iterations": 3,
    "oc_dim": 4,
    "vectors": 1,
    "equivariant": False,
}
PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {"hidden": 8, "depth": 1, "iterations": 2, "oc_dim": 4},
    "small": {"hidden": 32, "depth": 2, "iterations": 3, "oc_dim": 8},
    "thesis": {"hidden": 64, "depth": 2, "iterations": 5, "oc_dim": 24},  # h_outdim 24 of seed 003's OC model
}
BETA_EPS = 1e-4


def param_count(*, hidden: int, depth: int, iterations: int, oc_dim: int, equivariant: bool, **_: Any) -> int:
    """node MLP + edge encoder + iterations · (5h² + 2h) + β head (h + 1) + coordinate head (h·d + d)."""
    n_in = EQUIVARIANT_NODE_DIM if equivariant else PLAIN_NODE_DIM
    h = hidden
    node = n_in * h + h + (depth - 1) * (h * h + h)
    return node + EDGE_DIM * h + h + iterations * (5 * h * h + 2 * h) + h + 1 + h * oc_dim + oc_dim


class ObjectCondensation(nn.Module):
    """``model(data, edge_index) -> (coords [N, oc_dim], beta [N])``."""

    def __init__(
        self, *, hidden: int, depth: int, iterations: int, oc_dim: int, vectors: int, equivariant: bool
    ) -> None:
        super().__init__()
        self.equivariant, self.vectors = equivariant, vectors if equivariant else 0
        self.node = ResidualMLP(EQUIVARIANT_NODE_DIM if equivariant else PLAIN_NODE_DIM, hidden, depth)
        self.edge = nn.Linear(EDGE_DIM, hidden)
        self.blocks = nn.ModuleList(MessageBlock(hidden) for _ in range(iterations))
        self.beta = nn.Linear(hidden, 1)
        self.head = EquivariantHead(hidden, oc_dim, vectors) if equivariant else nn.Linear(hidden, oc_dim)

    def forward(self, data: Data, edge_index: Tensor) -> tuple[Tensor, Tensor]:
        h = self.node(node_inputs(data, equivariant=self.equivariant))
        e = self.edge(edge_features(data, edge_index).to(h.dtype))
        for block in self.blocks:
            h, e = block(h, e, edge_index)
        beta = torch.sigmoid(self.beta(h)).squeeze(1)
        coords = self.head(h, *radial_frame(data)) if self.equivariant else self.head(h)
        return coords, beta


def condensation_losses(
    coords: Tensor, beta: Tensor, pid: Tensor, *, q_min: float = 0.01
) -> dict[str, Tensor]:
    """``attractive``, ``repulsive``, ``coward``, ``background`` of one event (module docstring); 0 when a term
    has nothing to sum over."""
    n = coords.shape[0]
    zero = coords.sum() * 0.0 + beta.sum() * 0.0
    b = beta.clamp(BETA_EPS, 1 - BETA_EPS)
    q = torch.atanh(b) ** 2 + q_min
    real = pid > 0
    noise = ~real
    background = beta[noise].mean() if bool(noise.any()) else zero
    if not bool(real.any()):
        return {"attractive": zero, "repulsive": zero, "coward": zero, "background": background}
    objects, obj_of_hit = torch.unique(pid[real], return_inverse=True)
    k = objects.shape[0]
    real_idx = torch.nonzero(real).squeeze(1)
    # condensation point of each object: its hit with the largest β (ties: the first such hit)
    best = torch.full((k,), -1.0, dtype=b.dtype, device=b.device).scatter_reduce(
        0, obj_of_hit, b[real].detach(), reduce="amax"
    )
    is_best = b[real].detach() == best[obj_of_hit]
    cand = torch.where(is_best, real_idx, torch.full_like(real_idx, n))
    alpha = torch.full((k,), n, dtype=torch.long, device=b.device).scatter_reduce(
        0, obj_of_hit, cand, reduce="amin"
    )
    x_a, q_a = coords[alpha], q[alpha]  # [K, d], [K]
    dist = torch.cdist(coords, x_a)  # [N, K]
    member = torch.zeros(n, k, dtype=torch.bool, device=coords.device)
    member[real_idx, obj_of_hit] = True
    qq = q[:, None] * q_a[None, :]
    attractive = (qq * dist**2 * member).sum() / n
    repulsive = (qq * torch.relu(1.0 - dist) * (~member)).sum() / n
    coward = (1.0 - b[alpha]).mean()
    return {"attractive": attractive, "repulsive": repulsive, "coward": coward, "background": background}
