"""Semi-equivariant hybrid (VecNet-style, Murnane, Thais & Wong 2023): an equivariant and a free channel.

- Equivariant channel: EuclidNet's trunk (encoders + EEBs, width ``hidden_equivariant``) on the transverse
  vectors and invariant scalars, exactly as ``euclidnet``.
- Free (unconstrained) channel, width ``hidden_free``: node encoder on the raw coordinates (x, y, z[, r]), edge
  encoder, and per iteration an edge update e^f_ij ← φ_fe(h^f_i, h^f_j, e^f_ij, m_ij) that also reads the
  equivariant channel's message m_ij, and a residual node update h^f_i ← h^f_i + φ_fh(h^f_i, Σ_j e^f_ij).
  Information flows equivariant → free only, so the vector embeddings stay equivariant for any ``hidden_free``.
- Decoder on the merged channels (h_i, h_j, e_ij, ψ‖Δx‖², ψ⟨x_i, x_j⟩, h^f_i, h^f_j, e^f_ij) → logit, hidden
  width ``hidden_equivariant + hidden_free``.

``hidden_free = 0`` removes the free channel: the model is then exactly ``euclidnet`` with
``hidden = hidden_equivariant`` (same layers, same parameter count, invariant edge scores). ``hidden_equivariant``
and ``hidden_free`` default to ``hidden``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch_geometric.data import Data

from tracker.models.common import SplitMLP, begin_forward, gather_pair, mlp, run_fm, scatter_sum
from tracker.models.euclidnet import EuclidNet, geometric_invariants

HPARAMS: dict[str, Any] = {
    "hidden": 8,
    "hidden_equivariant": None,
    "hidden_free": None,
    "mlp_depth": 3,
    "iterations": 5,
    "c": 0.005,
    "shared_block": True,
    "use_r": False,
    "edge_attr": False,
}
PRESETS: dict[str, dict[str, Any]] = {}
PRESET_COUNTS: dict[str, int] = {}


class FreeBlock(nn.Module):
    """One iteration of the free channel (feature-major)."""

    def __init__(self, *, hidden_free: int, hidden_equivariant: int, mlp_depth: int) -> None:
        super().__init__()
        hf, he, L = hidden_free, hidden_equivariant, mlp_depth
        self.phi_e = SplitMLP((hf, hf, hf, he), mlp(3 * hf + he, hf, hf, L - 1))
        self.phi_h = mlp(2 * hf, hf, hf, L - 1)

    def forward(self, hf: Tensor, ef: Tensor, m: Tensor, src: Tensor, dst: Tensor) -> tuple[Tensor, Tensor]:
        pre = gather_pair(self.phi_e.stacked(hf, 0, 1), dst, src)
        pre = torch.addmm(torch.addmm(pre, self.phi_e.weight_of(2), ef), self.phi_e.weight_of(3), m)
        pre.add_(self.phi_e.bias_col())
        ef = self.phi_e.finish(pre)
        hf = hf + run_fm(self.phi_h, torch.cat([hf, scatter_sum(ef, dst, hf.shape[1])], dim=0))
        return hf, ef


class Hybrid(EuclidNet):
    """EuclidNet trunk + unconstrained channel; ``forward(data) -> Tensor[E]``, ``embed(data)`` as EuclidNet."""

    name = "hybrid"

    def __init__(
        self,
        *,
        hidden: int = 8,
        hidden_equivariant: int | None = None,
        hidden_free: int | None = None,
        mlp_depth: int = 3,
        iterations: int = 5,
        c: float = 0.005,
        shared_block: bool = True,
        use_r: bool = False,
        edge_attr: bool = False,
    ) -> None:
        he = hidden if hidden_equivariant is None else hidden_equivariant
        hf = hidden if hidden_free is None else hidden_free
        super().__init__(
            hidden=he, mlp_depth=mlp_depth, iterations=iterations, c=c,
            shared_block=shared_block, use_r=use_r, edge_attr=edge_attr, decoder_depth=mlp_depth,
        )
        self.hparams = {
            "hidden": hidden, "hidden_equivariant": he, "hidden_free": hf, "mlp_depth": mlp_depth, "iterations": iterations,
            "c": c, "shared_block": shared_block, "use_r": use_r, "edge_attr": edge_attr,
        }
        self.hidden_free = hf
        L = mlp_depth
        if hf > 0:
            self.free_node_encoder = mlp(3 + int(use_r), hf, hf, L - 1)
            self.free_edge_encoder = SplitMLP((hf, hf), mlp(2 * hf, hf, hf, L - 1))
            n_blocks = 1 if shared_block else iterations
            self.free_blocks = nn.ModuleList(
                FreeBlock(hidden_free=hf, hidden_equivariant=he, mlp_depth=L) for _ in range(n_blocks)
            )
            self.decoder = SplitMLP(
                (he, he, he, 2, hf, hf, hf), mlp(3 * he + 2 + 3 * hf, he + hf, 1, L)
            )

    def _embed_fm(self, data: Data) -> dict[str, Any]:
        if self.hidden_free == 0:
            return super()._embed_fm(data)
        st = self.encode_fm(data)
        h, v, e, src, dst = st["h"], st["v"], st["e"], st["src"], st["dst"]
        raw = [v, st["z"]]
        if self.use_r:
            raw.append(torch.sqrt((v * v).sum(dim=0, keepdim=True)))
        hf = run_fm(self.free_node_encoder, torch.cat(raw, dim=0))
        pre = gather_pair(self.free_edge_encoder.stacked(hf, 0, 1), dst, src)
        ef = self.free_edge_encoder.finish(pre.add_(self.free_edge_encoder.bias_col()))
        for it in range(self.iterations):
            k = 0 if len(self.blocks) == 1 else it
            h, v, e, m = self.blocks[k](h, v, e, src, dst, st["attr_terms"][k])
            hf, ef = self.free_blocks[k](hf, ef, m, src, dst)
        st.update(h=h, v=v, e=e, hf=hf, ef=ef)
        return st

    def forward(self, data: Data) -> Tensor:
        begin_forward()
        if self.hidden_free == 0:
            return super().forward(data)
        st = self._embed_fm(data)
        ne = data.edge_index.shape[1]
        src, dst = st["src"][:ne], st["dst"][:ne]
        _, inv = geometric_invariants(st["v"], src, dst)
        dec = self.decoder
        pre = gather_pair(dec.stacked(st["h"], 0, 1), dst, src)
        pre = torch.addmm(torch.addmm(pre, dec.weight_of(2), st["e"][:, :ne]), dec.weight_of(3), inv)
        hf = st["hf"]
        pre.add_(gather_pair(dec.stacked(hf, 4, 5), dst, src))
        pre = torch.addmm(pre, dec.weight_of(6), st["ef"][:, :ne]).add_(dec.bias_col())
        return dec.finish(pre).squeeze(0)
