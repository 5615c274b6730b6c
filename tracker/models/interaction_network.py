"""Interaction Network for edge classification, exactly as DeZoort et al. (2021) define it.

- R1 (relational model): m_ij = R1(x_i, x_j, a_ij), 3 + 3 + 4 → 4, x_i the target (outer) hit, x_j the source,
  a_ij = (dr, dφ, dz, dR);
- O (object model): x_i ← O(x_i, Σ_j m_ij), 3 + 4 → 3 (not residual: O's output replaces the node features);
- repeated ``iterations`` (3) times, the edge features a_ij always the graph's; weights shared across the
  iterations (the reference) unless ``shared_weights=False``;
- R2: logit_ij = R2(x_i, x_j, m_ij of the last iteration), 10 → 1 (no sigmoid: the models output logits).

Every MLP is Linear(in, h)–ReLU–Linear(h, h)–ReLU–Linear(h, out), so the model has 3h² + 41h + 8 parameters
(1,432 / 4,392 / 6,448 at h = 16 / 32 / 40; the paper's Table 1 rows "8 / 16 / 32" are these h).
Nodes are Cartesian hits (x, y, z) in metres (``node_features="xyz"``, from ``pos``) or the graph's
(r/1000, φ/π, z/1000) (``node_features="rphiz"``, DeZoort's own inputs). Messages flow source → target along
the stored directed edges as in DeZoort's code; ``undirected=True`` adds the reversed edges internally
((dr, dφ, dz) negated, dR kept) and still returns one logit per stored edge.

This file is the plain path: a PyG ``MessagePassing`` written as the definition reads. ``fused=True`` runs the same
modules as one hand-written autograd function (tracker/models/fused/interaction_network.py; faster on CPU, see
docs/models.md). State-dict keys and parameter counts do not depend on the path.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch_geometric.data import Data
from torch_geometric.nn import MessagePassing

from tracker.models.common import ConcatMLP, EdgeClassifier, symmetrise
from tracker.models.fused import interaction_network as fused

HPARAMS: dict[str, Any] = {
    "hidden": 16,
    "iterations": 3,
    "shared_weights": True,
    "node_features": "xyz",
    "undirected": False,
    "fused": False,
}
NODE_FEATURES = ("xyz", "rphiz")

# The paper's Table 1 sizes: rows labelled N_hidden = 8 / 16 / 32 are the IN's h = 16 / 32 / 40.
PRESETS: dict[str, dict[str, Any]] = {
    "paper_8": {"hidden": 16},
    "paper_16": {"hidden": 32},
    "paper_32": {"hidden": 40},
}
PRESET_COUNTS: dict[str, int] = {"paper_8": 1432, "paper_16": 4392, "paper_32": 6448}


def mlp3(in_dim: int, out_dim: int, hidden: int) -> nn.Sequential:
    """Linear(in, h)–ReLU–Linear(h, h)–ReLU–Linear(h, out) (DeZoort's relational/object model)."""
    return nn.Sequential(
        nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, out_dim)
    )


def param_count(hidden: int, iterations: int = 3, shared_weights: bool = True) -> int:
    """Closed form: R1 = h² + 16h + 4, O = h² + 12h + 3, R2 = h² + 13h + 1 (shared: 3h² + 41h + 8)."""
    h = hidden
    r1, o, r2 = h * h + 16 * h + 4, h * h + 12 * h + 3, h * h + 13 * h + 1
    return (r1 + o) * (1 if shared_weights else iterations) + r2


class InteractionNetwork(EdgeClassifier, MessagePassing):
    """DeZoort's Interaction Network; ``forward(data) -> Tensor[E]`` logits. Messages flow source j → target i."""

    name = "interaction_network"

    def __init__(
        self,
        *,
        hidden: int = 16,
        iterations: int = 3,
        shared_weights: bool = True,
        node_features: str = "xyz",
        undirected: bool = False,
        fused: bool = False,
    ) -> None:
        super().__init__(aggr="sum")
        if node_features not in NODE_FEATURES:
            raise ValueError(f"interaction_network: node_features={node_features!r}; expected one of {NODE_FEATURES}")
        if iterations < 1:
            raise ValueError(f"interaction_network: iterations={iterations!r}; expected at least 1")
        self.hparams = {
            "hidden": hidden, "iterations": iterations, "shared_weights": shared_weights,
            "node_features": node_features, "undirected": undirected, "fused": fused,
        }
        self.iterations = iterations
        self.node_features = node_features
        self.undirected = undirected
        self.fused = fused
        n_blocks = 1 if shared_weights else iterations
        # R1 on (x_i, x_j, a_ij) and O on (x_i, Σ m): one pair per iteration unless shared
        self.R1 = nn.ModuleList(ConcatMLP((3, 3, 4), mlp3(10, 4, hidden)) for _ in range(n_blocks))
        self.O = nn.ModuleList(mlp3(7, 3, hidden) for _ in range(n_blocks))
        self.R2 = ConcatMLP((3, 3, 4), mlp3(10, 1, hidden))

    def node_inputs(self, data: Data) -> Tensor:
        """[N, 3]: (x, y, z) in metres, or (r/1000, φ/π, z/1000)."""
        if self.node_features == "xyz":
            pos = getattr(data, "pos", None)
            if pos is None:
                raise ValueError("interaction_network: node_features='xyz' needs data.pos (Cartesian hits, metres)")
            return pos
        return data.x

    def forward(self, data: Data) -> Tensor:
        if self.fused:
            return fused.forward(self, data)
        n_out = data.edge_index.shape[1]
        edge_index, a = data.edge_index, data.edge_attr
        if self.undirected:
            edge_index, a = symmetrise(edge_index, a)
        x = self.node_inputs(data)
        n = x.shape[0]
        for it in range(self.iterations):
            k = 0 if len(self.R1) == 1 else it
            m = self.edge_updater(edge_index, x=x, a=a, relational=self.R1[k])  # m_ij = R1(x_i, x_j, a_ij)
            x = self.O[k](torch.cat([x, self.propagate(edge_index, m=m, size=(n, n))], dim=-1))  # O(x_i, Σ_j m_ij)
        src, dst = edge_index[:, :n_out]
        return self.R2(x[dst], x[src], m[:n_out]).squeeze(-1)  # R2(x_i, x_j, m_ij) of the last iteration

    def edge_update(self, x_i: Tensor, x_j: Tensor, a: Tensor, relational: nn.Module) -> Tensor:
        return relational(x_i, x_j, a)

    def message(self, m: Tensor) -> Tensor:
        return m
