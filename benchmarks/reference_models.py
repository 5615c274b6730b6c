"""Re-implementations of the public reference models' layer structure, for speed comparisons only.

Written from the published architecture of the EuclidNet reference code (SO(2) EuclidNet with one shared block,
``make_mlp``-style MLPs: Linear + LayerNorm(no affine) + SiLU hidden layers) and of the Interaction Network
reference (R1/O/R2 as ``nn.Sequential`` inside a PyG ``MessagePassing``). Same layers, same operation order,
same parameter counts ((7L+5)·h(h+1)+2 for EuclidNet: 1,874 at h = 8, L = 3; 3h²+41h+8 for the IN), same
per-edge concatenations, gathers and ``scatter_add`` aggregation; sigmoid outputs as the reference. These are
NOT the platform's models (``tracker.models``) and are never trained here.

Inputs as the reference feeds them: EuclidNet takes ``x`` [N, 3] with vectors = columns 0–1 and the scalar =
column 2, on the undirected graph (every edge twice); the IN takes ``x`` [N, 3], ``edge_index`` and
``edge_attr`` [E, 4] on the directed graph.
"""

from __future__ import annotations

import itertools

import torch
from torch import Tensor, nn
from torch_geometric.nn import MessagePassing


def make_mlp_ref(
    input_size: int, sizes: list[int], *, output_activation: str | None = None, layer_norm: bool = False
) -> nn.Sequential:
    """Reference-style MLP: hidden Linear → [LayerNorm(no affine)] → SiLU; output Linear → [LN → activation]."""
    dims = [input_size] + list(sizes)
    layers: list[nn.Module] = []
    for a, b in itertools.pairwise(dims[:-1]):  # hidden layers; the output layer follows
        layers.append(nn.Linear(a, b))
        if layer_norm:
            layers.append(nn.LayerNorm(b, elementwise_affine=False))
        layers.append(nn.SiLU())
    layers.append(nn.Linear(dims[-2], dims[-1]))
    if output_activation is not None:
        if layer_norm:
            layers.append(nn.LayerNorm(dims[-1], elementwise_affine=False))
        layers.append(getattr(nn, output_activation)())
    return nn.Sequential(*layers)


def _scatter_add(src: Tensor, index: Tensor, dim_size: int) -> Tensor:
    """torch_scatter.scatter_add along dim 0 (broadcast index + scatter_add_), as the reference calls it."""
    out = src.new_zeros((dim_size, src.shape[1]))
    return out.scatter_add_(0, index.unsqueeze(-1).expand_as(src), src)


def _psi(a: Tensor) -> Tensor:
    return torch.sign(a) * torch.log(torch.abs(a) + 1)


class RefEB(nn.Module):
    """The reference's shared Euclidean block: φ_e on (ψ‖Δx‖², ψ⟨x_i,x_j⟩, s_i, s_j, e), φ_m(e), φ_x, φ_s."""

    def __init__(self, n_edge: int, n_scalar: int, n_hidden: int, n_layers: int, c_weight: float) -> None:
        super().__init__()
        self.c_weight = c_weight
        self.phi_e = make_mlp_ref(n_edge, [n_hidden] * n_layers, layer_norm=True)
        self.phi_x = make_mlp_ref(n_hidden, [n_hidden] * n_layers + [1], layer_norm=True)
        self.phi_m = make_mlp_ref(n_hidden, [n_hidden] * n_layers, output_activation="Sigmoid", layer_norm=True)
        self.phi_s = make_mlp_ref(n_scalar, [n_hidden] * n_layers, layer_norm=True)

    def forward(self, v: Tensor, edge_index: Tensor, s: Tensor, e: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        i, j = edge_index
        v_diff = v[i] - v[j]
        norms = _psi((v_diff**2).sum(dim=-1)).unsqueeze(1)
        dots = _psi((v[i] * v[j]).sum(dim=-1)).unsqueeze(1)
        s_cat = torch.cat([s[i], s[j]], dim=1)
        e = self.phi_e(torch.cat([norms, dots, s_cat, e], dim=1))
        m = self.phi_m(e)
        upd = torch.clamp(v_diff * self.phi_x(m), min=-100, max=100)
        v = v + _scatter_add(upd, i, v.shape[0]) * self.c_weight
        s_agg = self.phi_s(torch.cat([s, _scatter_add(m, i, v.shape[0])], dim=1))
        s = s + s_agg * self.c_weight
        return v, s, e


class RefEuclidNet(nn.Module):
    """The reference SO(2) EuclidNet (equi_output=True): encoders, one shared block × iterations, edge MLP."""

    def __init__(self, n_hidden: int = 8, n_layers: int = 3, n_graph_iters: int = 5, c_weight: float = 0.005):
        super().__init__()
        h = n_hidden
        self.n_graph_iters = n_graph_iters
        self.node_encoder = make_mlp_ref(1, [h] * n_layers, layer_norm=True)
        self.edge_encoder = make_mlp_ref(2 * h, [h] * n_layers, layer_norm=True)
        self.EB = RefEB(2 + 3 * h, 2 * h, h, n_layers, c_weight)
        self.edge_mlp = make_mlp_ref(3 * h, [h] * n_layers + [1], layer_norm=True)

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        v = x[:, :2]
        s = self.node_encoder(x[:, 2].unsqueeze(-1))
        e = self.edge_encoder(torch.cat([s[edge_index[0]], s[edge_index[1]]], dim=1))
        for _ in range(self.n_graph_iters):
            v, s, e = self.EB(v, edge_index, s, e)
        m = torch.cat([s[edge_index[1]], s[edge_index[0]], e], dim=1)
        return torch.sigmoid(self.edge_mlp(m))


def _ref_mlp3(i: int, o: int, h: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(i, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU(), nn.Linear(h, o))


class RefInteractionNetwork(MessagePassing):
    """The reference IN: R1 (10→4) messages stored on the module, O (7→3) update, R2 (10→1) + sigmoid."""

    def __init__(self, hidden_size: int = 16, n_layers: int = 3) -> None:
        super().__init__(aggr="add", flow="source_to_target")
        self.R1 = _ref_mlp3(10, 4, hidden_size)
        self.O = _ref_mlp3(7, 3, hidden_size)
        self.R2 = _ref_mlp3(10, 1, hidden_size)
        self.E: Tensor = Tensor()
        self.n_layers = n_layers

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor) -> Tensor:
        for _ in range(self.n_layers):
            x = self.propagate(edge_index, x=x, edge_attr=edge_attr, size=None)
        m2 = torch.cat([x[edge_index[1]], x[edge_index[0]], self.E], dim=1)
        return torch.sigmoid(self.R2(m2))

    def message(self, x_i: Tensor, x_j: Tensor, edge_attr: Tensor) -> Tensor:
        self.E = self.R1(torch.cat([x_i, x_j, edge_attr], dim=1))
        return self.E

    def update(self, aggr_out: Tensor, x: Tensor) -> Tensor:
        return self.O(torch.cat([x, aggr_out], dim=1))


def undirected_reference_inputs(x: Tensor, edge_index: Tensor) -> Tensor:
    """The reference dataset's undirected edge list (every edge, then every edge reversed)."""
    return torch.cat([edge_index, edge_index.flip(0)], dim=1)


__all__ = ["RefEuclidNet", "RefInteractionNetwork", "make_mlp_ref", "undirected_reference_inputs"]
