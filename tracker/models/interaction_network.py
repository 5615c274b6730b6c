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

A PyG ``MessagePassing``: ``edge_updater``/``edge_update`` computes R1 on every edge, ``propagate`` sums the
messages at the targets and ``update`` applies O. Features are feature-major ([C, N], ``node_dim=-1``) and R1's
and R2's first layers are split per input part (see ``tracker.models.common``) for speed; the arithmetic is
the definition's.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch_geometric.data import Data
from torch_geometric.nn import MessagePassing

from tracker.models.common import SplitMLP, begin_forward, num_nodes_of, run_fm, symmetrise

HPARAMS: dict[str, Any] = {
    "hidden": 16,
    "iterations": 3,
    "shared_weights": True,
    "node_features": "xyz",
    "undirected": False,
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


class InteractionNetwork(MessagePassing):
    """DeZoort's Interaction Network; ``forward(data) -> Tensor[E]`` logits."""

    name = "interaction_network"

    def __init__(
        self,
        *,
        hidden: int = 16,
        iterations: int = 3,
        shared_weights: bool = True,
        node_features: str = "xyz",
        undirected: bool = False,
    ) -> None:
        super().__init__(aggr="add", flow="source_to_target", node_dim=-1)
        if node_features not in NODE_FEATURES:
            raise ValueError(f"interaction_network: node_features={node_features!r}; expected one of {NODE_FEATURES}")
        self.hparams = {
            "hidden": hidden, "iterations": iterations, "shared_weights": shared_weights,
            "node_features": node_features, "undirected": undirected,
        }
        self.iterations = iterations
        self.node_features = node_features
        self.undirected = undirected
        n_blocks = 1 if shared_weights else iterations
        # R1 on (x_i, x_j, a_ij) and O on (x_i, Σ m): one pair per iteration unless shared
        self.R1 = nn.ModuleList(SplitMLP((3, 3, 4), mlp3(10, 4, hidden)) for _ in range(n_blocks))
        self.O = nn.ModuleList(mlp3(7, 3, hidden) for _ in range(n_blocks))
        self.R2 = SplitMLP((3, 3, 4), mlp3(10, 1, hidden))

    # -- PyG message passing (feature-major tensors, node_dim = -1) -------------------------------------------
    def edge_update(self, x_i: Tensor, x_j: Tensor, a: Tensor, k: int) -> Tensor:  # type: ignore[override]
        """m_ij = R1(x_i, x_j, a_ij); ``a`` holds the constant W_a a_ij + b of R1's first layer."""
        r1 = self.R1[k]
        # out-of-place addmm: vmap has no batching rule for addmm_ (the bundle's vmap strategy)
        return r1.finish(torch.addmm(torch.addmm(a, r1.weight_of(0), x_i), r1.weight_of(1), x_j))

    def message(self, msg: Tensor) -> Tensor:  # type: ignore[override]
        return msg

    def aggregate(self, inputs: Tensor, index: Tensor, ptr: Tensor | None = None,  # type: ignore[override]
                  dim_size: int | None = None) -> Tensor:
        """Σ_j m_ij at each target (sum aggregation as one ``index_add_``)."""
        return inputs.new_zeros((inputs.shape[0], dim_size)).index_add_(1, index, inputs)

    def update(self, aggr_out: Tensor, x: Tensor, k: int) -> Tensor:  # type: ignore[override]
        """O(x_i, Σ_j m_ij) replaces the node features."""
        return run_fm(self.O[k], torch.cat([x, aggr_out], dim=0), fresh=True)

    # -- the network ------------------------------------------------------------------------------------------
    def node_inputs(self, data: Data) -> Tensor:
        """Feature-major [3, N]: (x, y, z) in metres, or (r/1000, φ/π, z/1000)."""
        if self.node_features == "xyz":
            pos = getattr(data, "pos", None)
            if pos is None:
                raise ValueError("interaction_network: node_features='xyz' needs data.pos (Cartesian hits, metres)")
            return pos.T
        return data.x.T

    def forward(self, data: Data) -> Tensor:
        begin_forward()
        n = num_nodes_of(data)
        n_edges = data.edge_index.shape[1]
        if self.undirected:
            src, dst, attr = symmetrise(data.edge_index, data.edge_attr)
            edge_index = torch.stack([src, dst])
        else:
            edge_index, attr = data.edge_index, data.edge_attr.T
        x = self.node_inputs(data)
        consts = [torch.addmm(r1.bias_col(), r1.weight_of(2), attr) for r1 in self.R1]
        m = x.new_zeros((4, edge_index.shape[1]))
        for it in range(self.iterations):
            k = 0 if len(self.R1) == 1 else it
            m = self.edge_updater(edge_index, x=x, a=consts[k], k=k, size=(n, n))
            x = self.propagate(edge_index, msg=m, x=x, k=k, size=(n, n))
        src, dst = edge_index[0, :n_edges], edge_index[1, :n_edges]
        pre = torch.addmm(self.R2.bias_col(), self.R2.weight_of(2), m[:, :n_edges])
        pre = torch.addmm(pre, self.R2.weight_of(0), x.index_select(1, dst))
        pre = torch.addmm(pre, self.R2.weight_of(1), x.index_select(1, src))
        return self.R2.finish(pre).squeeze(0)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.hparams.items())
