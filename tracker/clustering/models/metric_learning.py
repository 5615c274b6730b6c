"""Stage ``metric_learning`` (graph construction): an MLP embeds every hit so that hits of one particle lie close;
a radius graph in that space (``max_radius``, ``max_neighbours``) replaces the geometric graph builder.

Loss (seed 003, ch. 3): L = L_att + ``rep_weight`` · L_rep with
L_att = mean over attractive pairs of ‖h_i − h_j‖² (every pair of hits of one particle of interest: pT above
``pt_min`` with at least 3 hits) and L_rep = mean over repulsive pairs of ReLU(r_emb² − ‖h_i − h_j‖²) (pairs of
the current radius graph of radius ``r_emb`` whose hits belong to different particles or are noise); with
r_emb = 1 this is the thesis' ReLU(1 − ‖h_i − h_j‖²).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn
from torch_geometric.data import Data

from tracker.clustering.graphs import radius_graph, same_particle_pairs
from tracker.clustering.models.common import (
    EQUIVARIANT_NODE_DIM,
    PLAIN_NODE_DIM,
    EquivariantHead,
    ResidualMLP,
    node_inputs,
    radial_frame,
)

HPARAMS: dict[str, Any] = {"hidden": 32, "depth": 3, "emb_dim": 8, "vectors": 1, "equivariant": False}
PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {"hidden": 16, "depth": 2, "emb_dim": 4},
    "small": {"hidden": 64, "depth": 3, "emb_dim": 8},
    "thesis": {
        "hidden": 256,
        "depth": 6,
        "emb_dim": 8,
    },  # GraphConstructionFCNN of seed 003 (depth 6, 256, 8)
}


def param_count(*, hidden: int, depth: int, emb_dim: int, equivariant: bool, **_: Any) -> int:
    """in·h + h + (depth − 1)(h² + h) + h·d + d, in = 2 (equivariant) or 5 (plain)."""
    n_in = EQUIVARIANT_NODE_DIM if equivariant else PLAIN_NODE_DIM
    return n_in * hidden + hidden + (depth - 1) * (hidden * hidden + hidden) + hidden * emb_dim + emb_dim


class MetricLearning(nn.Module):
    """``model(data) -> Tensor[N, emb_dim]``: the embedding of every hit (equivariant: the last 2·``vectors``
    coordinates rotate with the event, the others are invariant)."""

    def __init__(self, *, hidden: int, depth: int, emb_dim: int, vectors: int, equivariant: bool) -> None:
        super().__init__()
        self.equivariant, self.vectors = equivariant, vectors if equivariant else 0
        self.trunk = ResidualMLP(EQUIVARIANT_NODE_DIM if equivariant else PLAIN_NODE_DIM, hidden, depth)
        self.head = EquivariantHead(hidden, emb_dim, vectors) if equivariant else nn.Linear(hidden, emb_dim)

    def forward(self, data: Data) -> Tensor:
        h = self.trunk(node_inputs(data, equivariant=self.equivariant))
        if self.equivariant:
            return self.head(h, *radial_frame(data))
        return self.head(h)


def interesting_hits(pid: Tensor, pt: Tensor, *, pt_min: float, min_hits: int = 3) -> Tensor:
    """Hits of particles of interest: pid > 0, pT > ``pt_min`` and at least ``min_hits`` hits in the event (an
    unknown pT, NaN in the reference npz graphs, passes: those graphs hold only particles above their own cut)."""
    real = pid > 0
    _, inverse, counts = torch.unique(pid, return_inverse=True, return_counts=True)
    return real & torch.nan_to_num(pt, nan=math.inf).gt(pt_min) & (counts[inverse] >= min_hits)


def hinge_losses(
    emb: Tensor,
    pid: Tensor,
    pt: Tensor,
    *,
    r_emb: float = 1.0,
    pt_min: float = 0.9,
    max_neighbours: int = 64,
    attractive_pairs: Tensor | None = None,
) -> dict[str, Tensor]:
    """``attractive``, ``repulsive`` (see the module docstring); a term without pairs is 0."""
    if attractive_pairs is None:
        attractive_pairs = same_particle_pairs(pid, interesting_hits(pid, pt, pt_min=pt_min))
    zero = emb.sum() * 0.0
    if attractive_pairs.shape[1]:
        a, b = attractive_pairs
        att = ((emb[a] - emb[b]) ** 2).sum(dim=1).mean()
    else:
        att = zero
    edges = radius_graph(emb.detach(), max_radius=r_emb, max_neighbours=max_neighbours)
    src, dst = edges
    rep_mask = (pid[src] != pid[dst]) | (pid[src] == 0)
    if bool(rep_mask.any()):
        d2 = ((emb[src[rep_mask]] - emb[dst[rep_mask]]) ** 2).sum(dim=1)
        rep = torch.relu(r_emb**2 - d2).mean()
    else:
        rep = zero
    return {"attractive": att, "repulsive": rep}
