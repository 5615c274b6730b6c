"""E(n)-equivariant GNN (Satorras, Hoogeboom & Welling 2021) restricted to the transverse plane (n = 2).

Coordinates x_i = (x, y) / ``length_scale`` (default 0.1 m, so squared distances are O(0.01–1)); node features
h_i from invariant scalars z (and r = |x_i| when ``use_r``, the default: r is invariant under rotations about z,
which is the symmetry here, though not under the translations of full E(2)). Each of ``iterations`` equivariant
graph convolution layers (EGCL, weights not shared, as in the paper):

  m_ij = φ_e(h_i, h_j, ‖x_i − x_j‖², a_ij)           a_ij = (dr, dφ, dz, dR), rotation invariant (``edge_attr``)
  x_i ← x_i + Σ_j (x_i − x_j) φ_x(m_ij) / deg(i)      (C = 1/(M−1): mean over neighbours; each term's norm ≤ 100)
  h_i ← h_i + φ_h(h_i, Σ_j m_ij)                      (residual)

φ_e, φ_h: Linear–SiLU–Linear(–SiLU); φ_x: Linear–SiLU–Linear(h, 1, no bias, init gain 0.001) as in the paper's
code; no normalisation layers. Decoder: φ_d(h_i, h_j, ‖x_i − x_j‖²) → logit on the stored edges. Messages flow
both ways along every stored edge (symmetrised internally). ``hidden`` is the width of every layer.
Plain path here (PyG ``MessagePassing``); ``fused=True`` runs tracker/models/fused/egnn.py.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch_geometric.data import Data
from torch_geometric.nn import MessagePassing
from torch_geometric.utils import scatter

from tracker.models.common import ConcatMLP, EdgeClassifier, mlp, symmetrise, transverse
from tracker.models.fused import egnn as fused

HPARAMS: dict[str, Any] = {
    "hidden": 16,
    "iterations": 4,
    "use_r": True,
    "edge_attr": True,
    "length_scale": 0.1,
    "fused": False,
}
PRESETS: dict[str, dict[str, Any]] = {}
PRESET_COUNTS: dict[str, int] = {}


MAX_STEP = 100.0


def clamp_norm(u: Tensor, max_norm: float) -> Tensor:
    """Scale each row vector of ``u`` [E, 2] down to norm ``max_norm`` at most (a rotation-equivariant clamp;
    clamping x and y separately, as the EuclidNet reference does, is not equivariant once it bites)."""
    norm = torch.sqrt((u * u).sum(dim=-1, keepdim=True))
    return u * (max_norm / norm.clamp(min=max_norm))


class EGCL(MessagePassing):
    """One E(n)-equivariant graph convolution layer; messages flow source j → target i."""

    max_step = MAX_STEP

    def __init__(self, *, hidden: int, n_edge_attr: int) -> None:
        super().__init__(aggr="sum")
        h = hidden
        self.n_edge_attr = n_edge_attr
        self.phi_e = ConcatMLP(
            (h, h, 1, n_edge_attr), nn.Sequential(nn.Linear(2 * h + 1 + n_edge_attr, h), nn.SiLU(), nn.Linear(h, h), nn.SiLU())
        )
        last = nn.Linear(h, 1, bias=False)
        nn.init.xavier_uniform_(last.weight, gain=0.001)
        self.phi_x = nn.Sequential(nn.Linear(h, h), nn.SiLU(), last)
        self.phi_h = nn.Sequential(nn.Linear(2 * h, h), nn.SiLU(), nn.Linear(h, h))

    def forward(self, h: Tensor, x: Tensor, edge_index: Tensor, a: Tensor | None) -> tuple[Tensor, Tensor]:
        """h [N, H], x [N, 2] (a [E, 4]) -> the new (h, x)."""
        n = h.shape[0]
        m, dx = self.edge_updater(edge_index, h=h, x=x, a=a)
        x = x + scatter(dx, edge_index[1], dim=0, dim_size=n, reduce="mean")  # Σ_j (x_i − x_j) φ_x(m_ij) / deg(i)
        h = h + self.phi_h(torch.cat([h, self.propagate(edge_index, m=m, size=(n, n))], dim=-1))
        return h, x

    def edge_update(self, h_i: Tensor, h_j: Tensor, x_i: Tensor, x_j: Tensor,
                    a: Tensor | None) -> tuple[Tensor, Tensor]:
        """m_ij = φ_e(h_i, h_j, ‖x_i − x_j‖²[, a_ij]) and the coordinate step (x_i − x_j) φ_x(m_ij), norm ≤ 100."""
        diff = x_i - x_j
        d2 = (diff * diff).sum(dim=-1, keepdim=True)
        m = self.phi_e(h_i, h_j, d2) if a is None else self.phi_e(h_i, h_j, d2, a)
        return m, clamp_norm(diff * self.phi_x(m), self.max_step)

    def message(self, m: Tensor) -> Tensor:
        return m


class EGNN(EdgeClassifier):
    """Satorras et al.'s EGNN on the transverse plane; ``forward(data) -> Tensor[E]``, ``embed(data)``."""

    name = "egnn"

    def __init__(
        self,
        *,
        hidden: int = 16,
        iterations: int = 4,
        use_r: bool = True,
        edge_attr: bool = True,
        length_scale: float = 0.1,
        fused: bool = False,
    ) -> None:
        super().__init__()
        if length_scale <= 0:
            raise ValueError(f"egnn: length_scale={length_scale!r}; expected a positive length in metres")
        self.hparams = {"hidden": hidden, "iterations": iterations, "use_r": use_r, "edge_attr": edge_attr,
                        "length_scale": length_scale, "fused": fused}
        self.use_r = use_r
        self.use_edge_attr = edge_attr
        self.length_scale = float(length_scale)
        self.fused = fused
        self.embedding = nn.Linear(1 + int(use_r), hidden)
        self.layers = nn.ModuleList(EGCL(hidden=hidden, n_edge_attr=4 if edge_attr else 0) for _ in range(iterations))
        self.decoder = ConcatMLP((hidden, hidden, 1), mlp(2 * hidden + 1, hidden, 1, 2, act="silu", layer_norm=False))

    def _embed(self, data: Data) -> dict[str, Any]:
        v, z = transverse(data)
        x = v / self.length_scale
        edge_index, a = symmetrise(data.edge_index, data.edge_attr if self.use_edge_attr else None)
        scal = [z]
        if self.use_r:
            scal.append(torch.sqrt((v * v).sum(dim=-1, keepdim=True)))
        h = self.embedding(torch.cat(scal, dim=-1))
        for layer in self.layers:
            h, x = layer(h, x, edge_index, a)
        return {"h": h, "x": x, "edge_index": edge_index}

    def embed(self, data: Data) -> dict[str, Tensor]:
        """``vectors`` [N, 2] (equivariant, metres), ``scalars`` [N, hidden] (invariant)."""
        if self.fused:
            return fused.embed(self, data)
        st = self._embed(data)
        src, dst = st["edge_index"]
        return {"vectors": st["x"] * self.length_scale, "scalars": st["h"], "src": src, "dst": dst}

    def forward(self, data: Data) -> Tensor:
        if self.fused:
            return fused.forward(self, data)
        st = self._embed(data)
        src, dst = st["edge_index"][:, : data.edge_index.shape[1]]
        h, x = st["h"], st["x"]
        d2 = ((x[dst] - x[src]) ** 2).sum(dim=-1, keepdim=True)
        return self.decoder(h[dst], h[src], d2).squeeze(-1)
