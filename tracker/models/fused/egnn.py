"""Fused (feature-major) forward of the EGNN: ``fused=True`` (same modules, parameters and function as the plain
path in tracker/models/egnn.py; see tracker/models/fused/kernels.py for the layout)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch_geometric.data import Data

from tracker.models.common import num_nodes_of
from tracker.models.fused.kernels import (
    begin_forward,
    bias_col,
    finish,
    gather_pair,
    in_degree,
    linear_fm,
    run_fm,
    scatter_sum,
    stacked,
    symmetrise_fm,
    transverse_fm,
    weight_of,
)


def clamp_norm_fm(u: Tensor, max_norm: float) -> Tensor:
    """Each column vector of ``u`` [2, E] scaled down to norm ``max_norm`` at most."""
    norm = torch.sqrt((u * u).sum(dim=0, keepdim=True))
    return u * (max_norm / norm.clamp(min=max_norm))


def egcl(layer: Any, h: Tensor, x: Tensor, src: Tensor, dst: Tensor, attr: Tensor | None,
         inv_deg: Tensor) -> tuple[Tensor, Tensor]:
    """One EGCL ``layer`` on feature-major h [H, N], x [2, N]."""
    n = h.shape[1]
    diff = x.index_select(1, dst) - x.index_select(1, src)
    d2 = (diff * diff).sum(dim=0, keepdim=True)
    pre = gather_pair(stacked(layer.phi_e, h, 0, 1), dst, src)
    pre = torch.addmm(pre, weight_of(layer.phi_e, 2), d2).add_(bias_col(layer.phi_e))
    if attr is not None:
        pre = torch.addmm(pre, weight_of(layer.phi_e, 3), attr)
    m = finish(layer.phi_e, pre)
    upd = clamp_norm_fm(diff * run_fm(layer.phi_x, m), layer.max_step)
    x = x + scatter_sum(upd, dst, n) * inv_deg
    h = h + run_fm(layer.phi_h, torch.cat([h, scatter_sum(m, dst, n)], dim=0))
    return h, x


def _embed(model: Any, data: Data) -> dict[str, Any]:
    n = num_nodes_of(data)
    v, z = transverse_fm(data)
    x = v / model.length_scale
    src, dst, attr = symmetrise_fm(data.edge_index, data.edge_attr if model.use_edge_attr else None)
    scal = [z]
    if model.use_r:
        scal.append(torch.sqrt((v * v).sum(dim=0, keepdim=True)))
    h = linear_fm(model.embedding, torch.cat(scal, dim=0) if len(scal) > 1 else z)
    inv_deg = 1.0 / in_degree(dst, n, x.dtype).clamp(min=1.0)
    for layer in model.layers:
        h, x = egcl(layer, h, x, src, dst, attr, inv_deg)
    return {"h": h, "x": x, "src": src, "dst": dst}


def embed(model: Any, data: Data) -> dict[str, Tensor]:
    """``model.embed`` on the fused path."""
    begin_forward()
    st = _embed(model, data)
    return {"vectors": st["x"].T * model.length_scale, "scalars": st["h"].T, "src": st["src"], "dst": st["dst"]}


def forward(model: Any, data: Data) -> Tensor:
    """Logits [E] of the stored edges: φ_d(h_i, h_j, ‖x_i − x_j‖²)."""
    begin_forward()
    st = _embed(model, data)
    ne = data.edge_index.shape[1]
    src, dst = st["src"][:ne], st["dst"][:ne]
    x = st["x"]
    diff = x.index_select(1, dst) - x.index_select(1, src)
    pre = gather_pair(stacked(model.decoder, st["h"], 0, 1), dst, src)
    pre = torch.addmm(pre, weight_of(model.decoder, 2), (diff * diff).sum(dim=0, keepdim=True))
    pre.add_(bias_col(model.decoder))
    return finish(model.decoder, pre).squeeze(0)
