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
and ``hidden_free`` default to ``hidden``. Plain path here (PyG ``MessagePassing``); ``fused=True`` runs
tracker/models/fused/euclidnet.py.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch_geometric.data import Data
from torch_geometric.nn import MessagePassing

from tracker.models.common import ConcatMLP, invariants, mlp
from tracker.models.euclidnet import EuclidNet

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
    "fused": False,
}
PRESETS: dict[str, dict[str, Any]] = {}
PRESET_COUNTS: dict[str, int] = {}


class FreeBlock(MessagePassing):
    """One iteration of the free channel: e^f_ij ← φ_fe(h^f_i, h^f_j, e^f_ij, m_ij), h^f_i += φ_fh(h^f_i, Σ_j e^f_ij)."""

    def __init__(self, *, hidden_free: int, hidden_equivariant: int, mlp_depth: int) -> None:
        super().__init__(aggr="sum")
        hf, he, L = hidden_free, hidden_equivariant, mlp_depth
        self.phi_e = ConcatMLP((hf, hf, hf, he), mlp(3 * hf + he, hf, hf, L - 1))
        self.phi_h = mlp(2 * hf, hf, hf, L - 1)

    def forward(self, hf: Tensor, ef: Tensor, m: Tensor, edge_index: Tensor) -> tuple[Tensor, Tensor]:
        """hf [N, Hf], ef [E, Hf], the equivariant channel's messages m [E, He] -> the new (hf, ef)."""
        ef = self.edge_updater(edge_index, hf=hf, ef=ef, m=m)
        summed = self.propagate(edge_index, ef=ef, size=(hf.shape[0], hf.shape[0]))
        return hf + self.phi_h(torch.cat([hf, summed], dim=-1)), ef

    def edge_update(self, hf_i: Tensor, hf_j: Tensor, ef: Tensor, m: Tensor) -> Tensor:
        return self.phi_e(hf_i, hf_j, ef, m)

    def message(self, ef: Tensor) -> Tensor:
        return ef


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
        fused: bool = False,
    ) -> None:
        he = hidden if hidden_equivariant is None else hidden_equivariant
        hf = hidden if hidden_free is None else hidden_free
        super().__init__(
            hidden=he, mlp_depth=mlp_depth, iterations=iterations, c=c,
            shared_block=shared_block, use_r=use_r, edge_attr=edge_attr, decoder_depth=mlp_depth, fused=fused,
        )
        self.hparams = {
            "hidden": hidden, "hidden_equivariant": he, "hidden_free": hf, "mlp_depth": mlp_depth,
            "iterations": iterations, "c": c, "shared_block": shared_block, "use_r": use_r, "edge_attr": edge_attr,
            "fused": fused,
        }
        self.hidden_free = hf
        L = mlp_depth
        if hf > 0:
            self.free_node_encoder = mlp(3 + int(use_r), hf, hf, L - 1)
            self.free_edge_encoder = ConcatMLP((hf, hf), mlp(2 * hf, hf, hf, L - 1))
            n_blocks = 1 if shared_block else iterations
            self.free_blocks = nn.ModuleList(
                FreeBlock(hidden_free=hf, hidden_equivariant=he, mlp_depth=L) for _ in range(n_blocks)
            )
            self.decoder = ConcatMLP(
                (he, he, he, 2, hf, hf, hf), mlp(3 * he + 2 + 3 * hf, he + hf, 1, L)
            )

    def _embed(self, data: Data) -> dict[str, Any]:
        if self.hidden_free == 0:
            return super()._embed(data)
        st = self.encode(data)
        h, v, e, edge_index = st["h"], st["v"], st["e"], st["edge_index"]
        src, dst = edge_index
        raw = [v, st["z"]]
        if self.use_r:
            raw.append(torch.sqrt((v * v).sum(dim=-1, keepdim=True)))
        hf = self.free_node_encoder(torch.cat(raw, dim=-1))
        ef = self.free_edge_encoder(hf[dst], hf[src])
        for it in range(self.iterations):
            k = 0 if len(self.blocks) == 1 else it
            h, v, e, m = self.blocks[k](h, v, e, edge_index, st["a"])
            hf, ef = self.free_blocks[k](hf, ef, m, edge_index)
        st.update(h=h, v=v, e=e, hf=hf, ef=ef)
        return st

    def decode(self, st: dict[str, Any], n_edges: int) -> Tensor:
        """φ_d on the merged channels (h_i, h_j, e_ij, ψ‖Δx‖², ψ⟨x_i, x_j⟩, h^f_i, h^f_j, e^f_ij) of the stored edges."""
        if self.hidden_free == 0:
            return super().decode(st, n_edges)
        src, dst = st["edge_index"][:, :n_edges]
        h, v, hf = st["h"], st["v"], st["hf"]
        return self.decoder(
            h[dst], h[src], st["e"][:n_edges], invariants(v[dst], v[src]), hf[dst], hf[src], st["ef"][:n_edges]
        ).squeeze(-1)
