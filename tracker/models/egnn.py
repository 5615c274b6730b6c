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
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch_geometric.data import Data

from tracker.models.common import (
    EdgeClassifier,
    SplitMLP,
    begin_forward,
    gather_pair,
    in_degree,
    linear_fm,
    mlp,
    num_nodes_of,
    run_fm,
    scatter_sum,
    symmetrise,
    transverse,
)

HPARAMS: dict[str, Any] = {
    "hidden": 16,
    "iterations": 4,
    "use_r": True,
    "edge_attr": True,
    "length_scale": 0.1,
}
PRESETS: dict[str, dict[str, Any]] = {}
PRESET_COUNTS: dict[str, int] = {}


MAX_STEP = 100.0


def clamp_norm(u: Tensor, max_norm: float) -> Tensor:
    """Scale each column vector of ``u`` [2, E] down to norm ``max_norm`` at most (a rotation-equivariant clamp;
    clamping x and y separately, as the EuclidNet reference does, is not equivariant once it bites)."""
    norm = torch.sqrt((u * u).sum(dim=0, keepdim=True))
    return u * (max_norm / norm.clamp(min=max_norm))


class EGCL(nn.Module):
    """One E(n)-equivariant graph convolution layer (feature-major tensors)."""

    def __init__(self, *, hidden: int, n_edge_attr: int) -> None:
        super().__init__()
        h = hidden
        self.n_edge_attr = n_edge_attr
        self.phi_e = SplitMLP(
            (h, h, 1, n_edge_attr), nn.Sequential(nn.Linear(2 * h + 1 + n_edge_attr, h), nn.SiLU(), nn.Linear(h, h), nn.SiLU())
        )
        last = nn.Linear(h, 1, bias=False)
        nn.init.xavier_uniform_(last.weight, gain=0.001)
        self.phi_x = nn.Sequential(nn.Linear(h, h), nn.SiLU(), last)
        self.phi_h = nn.Sequential(nn.Linear(2 * h, h), nn.SiLU(), nn.Linear(h, h))

    def forward(
        self, h: Tensor, x: Tensor, src: Tensor, dst: Tensor, attr: Tensor | None, inv_deg: Tensor
    ) -> tuple[Tensor, Tensor]:
        n = h.shape[1]
        diff = x.index_select(1, dst) - x.index_select(1, src)
        d2 = (diff * diff).sum(dim=0, keepdim=True)
        pre = gather_pair(self.phi_e.stacked(h, 0, 1), dst, src)
        pre = torch.addmm(pre, self.phi_e.weight_of(2), d2).add_(self.phi_e.bias_col())
        if attr is not None:
            pre = torch.addmm(pre, self.phi_e.weight_of(3), attr)
        m = self.phi_e.finish(pre)
        upd = clamp_norm(diff * run_fm(self.phi_x, m), MAX_STEP)
        x = x + scatter_sum(upd, dst, n) * inv_deg
        h = h + run_fm(self.phi_h, torch.cat([h, scatter_sum(m, dst, n)], dim=0))
        return h, x


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
    ) -> None:
        super().__init__()
        if length_scale <= 0:
            raise ValueError(f"egnn: length_scale={length_scale!r}; expected a positive length in metres")
        self.hparams = {"hidden": hidden, "iterations": iterations, "use_r": use_r, "edge_attr": edge_attr,
                            "length_scale": length_scale}
        self.use_r = use_r
        self.use_edge_attr = edge_attr
        self.length_scale = float(length_scale)
        self.embedding = nn.Linear(1 + int(use_r), hidden)
        self.layers = nn.ModuleList(EGCL(hidden=hidden, n_edge_attr=4 if edge_attr else 0) for _ in range(iterations))
        self.decoder = SplitMLP((hidden, hidden, 1), mlp(2 * hidden + 1, hidden, 1, 2, act="silu", layer_norm=False))

    def _embed_fm(self, data: Data) -> dict[str, Any]:
        n = num_nodes_of(data)
        v, z = transverse(data)
        x = v / self.length_scale
        src, dst, attr = symmetrise(data.edge_index, data.edge_attr if self.use_edge_attr else None)
        scal = [z]
        if self.use_r:
            scal.append(torch.sqrt((v * v).sum(dim=0, keepdim=True)))
        h = linear_fm(self.embedding, torch.cat(scal, dim=0) if len(scal) > 1 else z)
        inv_deg = 1.0 / in_degree(dst, n, x.dtype).clamp(min=1.0)
        for layer in self.layers:
            h, x = layer(h, x, src, dst, attr, inv_deg)
        return {"h": h, "x": x, "src": src, "dst": dst}

    def embed(self, data: Data) -> dict[str, Tensor]:
        """``vectors`` [N, 2] (equivariant, metres), ``scalars`` [N, hidden] (invariant)."""
        begin_forward()
        st = self._embed_fm(data)
        return {"vectors": st["x"].T * self.length_scale, "scalars": st["h"].T, "src": st["src"], "dst": st["dst"]}

    def forward(self, data: Data) -> Tensor:
        begin_forward()
        st = self._embed_fm(data)
        ne = data.edge_index.shape[1]
        src, dst = st["src"][:ne], st["dst"][:ne]
        x = st["x"]
        diff = x.index_select(1, dst) - x.index_select(1, src)
        pre = gather_pair(self.decoder.stacked(st["h"], 0, 1), dst, src)
        pre = torch.addmm(pre, self.decoder.weight_of(2), (diff * diff).sum(dim=0, keepdim=True))
        pre.add_(self.decoder.bias_col())
        return self.decoder.finish(pre).squeeze(0)
