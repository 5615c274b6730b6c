"""Building blocks shared by the clustering stages: hit inputs, residual MLPs, the SO(2)-equivariant output head
and one message-passing block.

Inputs. A *plain* stage reads (r/1000, φ/π, z/1000, x, y) per hit (metres for x, y): it sees the azimuth, so
its outputs change when the event is rotated about the beam (z) axis. An *equivariant* stage reads only the
rotation-invariant (r, z) per hit and, on edges, (dr, dφ, dz, dR) (relative φ); its scalar outputs (β, logits)
are then invariant, and its coordinates are made equivariant by :class:`EquivariantHead`: ``vectors`` 2-D
vectors a·u + b·Ju built from the hit's unit radial vector u = (x, y)/r and its 90° turn Ju, with invariant
coefficients (a, b), so they rotate with the event; the remaining coordinates are invariant. Both heads have the
same parameter count (``Linear(h, d)``), so plain and equivariant stages of one size differ only by the first
layer's 3 × h input weights.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch_geometric.data import Data
from torch_geometric.utils import scatter

PLAIN_NODE_DIM = 5  # r, φ/π, z, x, y
EQUIVARIANT_NODE_DIM = 2  # r, z
EDGE_DIM = 4  # dr, dφ/π, dz, dR


def node_inputs(data: Data, *, equivariant: bool) -> Tensor:
    """Per-hit inputs: (r, z) when ``equivariant``, else (r, φ/π, z, x, y) — scales as in docs/architecture.md."""
    x = data.x
    if equivariant:
        return torch.stack([x[:, 0], x[:, 2]], dim=1)
    return torch.cat([x, data.pos[:, :2].to(x.dtype)], dim=1)


def radial_frame(data: Data) -> tuple[Tensor, Tensor]:
    """Unit radial vector u = (x, y)/r of every hit and its 90° turn Ju = (−u_y, u_x); both rotate with the event."""
    xy = data.pos[:, :2].to(data.x.dtype)
    u = xy / xy.norm(dim=1, keepdim=True).clamp_min(1e-9)
    return u, torch.stack([-u[:, 1], u[:, 0]], dim=1)


def edge_features(data: Data, edge_index: Tensor) -> Tensor:
    """(dr, dφ/π, dz, dR) of each edge, target − source, dφ wrapped to [−π, π): invariant under z rotations."""
    x = data.x
    src, dst = edge_index
    r, phi, z = x[:, 0] * 1000.0, x[:, 1] * math.pi, x[:, 2] * 1000.0
    dphi = torch.remainder(phi[dst] - phi[src] + math.pi, 2 * math.pi) - math.pi
    eta = torch.asinh(z / r.clamp_min(1e-6))
    d_r = torch.sqrt((eta[dst] - eta[src]) ** 2 + dphi**2)
    return torch.stack([(r[dst] - r[src]) / 1000.0, dphi / math.pi, (z[dst] - z[src]) / 1000.0, d_r], dim=1)


class ResidualMLP(nn.Module):
    """Linear(in, h)–ReLU, then ``depth − 1`` residual blocks h ← h + ReLU(Linear(h, h)).

    Parameters: in·h + h + (depth − 1)(h² + h)."""

    def __init__(self, in_dim: int, hidden: int, depth: int) -> None:
        super().__init__()
        self.inp = nn.Linear(in_dim, hidden)
        self.blocks = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(depth - 1))

    def forward(self, x: Tensor) -> Tensor:
        h = torch.relu(self.inp(x))
        for block in self.blocks:
            h = h + torch.relu(block(h))
        return h


class EquivariantHead(nn.Module):
    """Invariant features h → ``dim`` coordinates: ``dim − 2·vectors`` invariant ones, then ``vectors`` 2-D
    vectors a_k u + b_k Ju (equivariant). One ``Linear(h, dim)``, like the plain head."""

    def __init__(self, hidden: int, dim: int, vectors: int) -> None:
        super().__init__()
        if not 0 < 2 * vectors <= dim:
            raise ValueError(f"vectors={vectors}: expected 1 <= vectors <= dim/2 = {dim // 2}")
        self.dim, self.vectors = dim, vectors
        self.lin = nn.Linear(hidden, dim)

    def forward(self, h: Tensor, u: Tensor, ju: Tensor) -> Tensor:
        out = self.lin(h)
        n_inv = self.dim - 2 * self.vectors
        ab = out[:, n_inv:].reshape(-1, self.vectors, 2)
        vec = ab[..., :1] * u[:, None, :] + ab[..., 1:] * ju[:, None, :]
        return torch.cat([out[:, :n_inv], vec.reshape(-1, 2 * self.vectors)], dim=1)


def rotate_coordinates(coords: Tensor, theta: float, vectors: int) -> Tensor:
    """Rotate the last ``2·vectors`` columns of ``coords`` (the equivariant 2-D vectors) by ``theta`` radians."""
    if vectors == 0:
        return coords
    c, s = math.cos(theta), math.sin(theta)
    n_inv = coords.shape[1] - 2 * vectors
    v = coords[:, n_inv:].reshape(-1, vectors, 2)
    rot = torch.stack([c * v[..., 0] - s * v[..., 1], s * v[..., 0] + c * v[..., 1]], dim=-1)
    return torch.cat([coords[:, :n_inv], rot.reshape(-1, 2 * vectors)], dim=1)


class MessageBlock(nn.Module):
    """One round of edge and node updates with residuals (an interaction-network step, messages both ways):
    e ← e + ReLU(W_e [h_src, h_dst, e]); h ← h + ReLU(W_n [h, Σ_incident e]). Parameters: 5h² + 2h."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.edge = nn.Linear(3 * hidden, hidden)
        self.node = nn.Linear(2 * hidden, hidden)

    def forward(self, h: Tensor, e: Tensor, edge_index: Tensor) -> tuple[Tensor, Tensor]:
        src, dst = edge_index
        e = e + torch.relu(self.edge(torch.cat([h[src], h[dst], e], dim=1)))
        agg = scatter(e, dst, dim=0, dim_size=h.shape[0], reduce="sum")
        agg = agg + scatter(e, src, dim=0, dim_size=h.shape[0], reduce="sum")
        h = h + torch.relu(self.node(torch.cat([h, agg], dim=1)))
        return h, e
