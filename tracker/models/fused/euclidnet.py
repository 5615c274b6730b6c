"""Fused (feature-major) forwards of EuclidNet, its non-equivariant twin and the hybrid: ``fused=True``.

Same modules, parameters and function as the plain path in tracker/models/euclidnet.py and hybrid.py (tested equal
in tests/test_model_paths.py); the arithmetic is rearranged for speed on CPU (tracker/models/fused/kernels.py):
tensors are feature-major [C, N] / [C, 2E], node parts of an edge MLP's first layer are projected per node and
then gathered, LayerNorm + activation is one hand-written autograd node, accumulators are added into in place.
The functions take the model or block (duck-typed: this package imports no model module).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch_geometric.data import Data

from tracker.models.common import num_nodes_of, psi
from tracker.models.fused.kernels import (
    addmm_into,
    begin_forward,
    bias_col,
    finish,
    gather_pair,
    run_fm,
    scatter_sum,
    stacked,
    symmetrise_fm,
    transverse_fm,
    weight_of,
)


def geometric_invariants(v: Tensor, src: Tensor, dst: Tensor) -> tuple[Tensor, Tensor]:
    """Feature-major x_i − x_j [2, E] and (ψ(‖x_i − x_j‖²), ψ(⟨x_i, x_j⟩)) [2, E] with i = dst, j = src."""
    vi, vj = v.index_select(1, dst), v.index_select(1, src)
    diff = vi - vj
    n2 = (diff * diff).sum(dim=0, keepdim=True)
    dot = (vi * vj).sum(dim=0, keepdim=True)
    return diff, torch.cat([torch.log1p(n2), psi(dot)], dim=0)


def edge_attr_term(blk: Any, attr: Tensor | None) -> Tensor:
    """The constant part of an EEB's φ_e first layer: W_a a_ij + b (computed once per forward)."""
    b = bias_col(blk.phi_e)
    if attr is None or blk.n_edge_attr == 0:
        return b
    return torch.addmm(b, weight_of(blk.phi_e, 2), attr)


def eeb(blk: Any, h: Tensor, v: Tensor, e: Tensor, src: Tensor, dst: Tensor,
        attr_term: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """One iteration of EEB ``blk`` on feature-major h [H, N], v [2, N], e [H, 2E]; returns (h, v, e, m)."""
    n = h.shape[1]
    diff, inv = geometric_invariants(v, src, dst)
    # eq. 3.2: e ← φ_e(ψn, ψd, e[, a])
    pre = torch.addmm(attr_term, weight_of(blk.phi_e, 1), e)
    e = finish(blk.phi_e, addmm_into(pre, weight_of(blk.phi_e, 0), inv))
    # eq. 3.1: m = φ_m(h_i, h_j, e, ψn, ψd); the h parts are projected per node, then gathered
    pre = gather_pair(stacked(blk.phi_m, h, 0, 1), dst, src)
    pre = addmm_into(addmm_into(pre, weight_of(blk.phi_m, 2), e), weight_of(blk.phi_m, 3), inv)
    pre.add_(bias_col(blk.phi_m))
    m = finish(blk.phi_m, pre)
    # eq. 3.3: x_i ← x_i + c Σ_j clamp(φ_x(m_ij) (x_i − x_j), ±clamp)
    upd = torch.clamp(diff * run_fm(blk.phi_x, m), -blk.clamp, blk.clamp)
    v = v + blk.c * scatter_sum(upd, dst, n)
    # eq. 3.4: h_i ← h_i + c φ_h(h_i, Σ_j m_ij)
    h = h + blk.c * run_fm(blk.phi_h, torch.cat([h, scatter_sum(m, dst, n)], dim=0))
    return h, v, e, m


def _scalar_inputs(model: Any, v: Tensor, z: Tensor) -> Tensor:
    """Feature-major scalar node inputs: z [, r] [, raw x, y for the non-equivariant twin]."""
    parts = [z]
    if model.use_r:
        parts.append(torch.sqrt((v * v).sum(dim=0, keepdim=True)))
    if model.raw_coordinates_as_scalars:
        parts.append(v)
    return torch.cat(parts, dim=0) if len(parts) > 1 else z


def _encode(model: Any, data: Data) -> dict[str, Any]:
    """Symmetrised edges and the encoded inputs: v [2, N], h [H, N], e [H, 2E], φ_e's constant terms."""
    n = num_nodes_of(data)
    v, z = transverse_fm(data)
    src, dst, attr = symmetrise_fm(data.edge_index, data.edge_attr if model.use_edge_attr else None)
    h = run_fm(model.node_encoder, _scalar_inputs(model, v, z))
    pre = gather_pair(stacked(model.edge_encoder, h, 0, 1), dst, src)
    e = finish(model.edge_encoder, pre.add_(bias_col(model.edge_encoder)))
    attr_terms = [edge_attr_term(blk, attr) for blk in model.blocks]
    return {"v": v, "z": z, "h": h, "e": e, "src": src, "dst": dst, "n": n, "attr_terms": attr_terms}


def _free_block(blk: Any, hf: Tensor, ef: Tensor, m: Tensor, src: Tensor, dst: Tensor) -> tuple[Tensor, Tensor]:
    """One iteration of the hybrid's free channel (``FreeBlock``), feature-major."""
    pre = gather_pair(stacked(blk.phi_e, hf, 0, 1), dst, src)
    pre = torch.addmm(torch.addmm(pre, weight_of(blk.phi_e, 2), ef), weight_of(blk.phi_e, 3), m)
    pre.add_(bias_col(blk.phi_e))
    ef = finish(blk.phi_e, pre)
    hf = hf + run_fm(blk.phi_h, torch.cat([hf, scatter_sum(ef, dst, hf.shape[1])], dim=0))
    return hf, ef


def _embed(model: Any, data: Data) -> dict[str, Any]:
    """Final feature-major embeddings of EuclidNet (and of the hybrid's free channel when it has one)."""
    st = _encode(model, data)
    h, v, e, src, dst = st["h"], st["v"], st["e"], st["src"], st["dst"]
    free = getattr(model, "hidden_free", 0) > 0
    if free:
        raw = [v, st["z"]]
        if model.use_r:
            raw.append(torch.sqrt((v * v).sum(dim=0, keepdim=True)))
        hf = run_fm(model.free_node_encoder, torch.cat(raw, dim=0))
        pre = gather_pair(stacked(model.free_edge_encoder, hf, 0, 1), dst, src)
        ef = finish(model.free_edge_encoder, pre.add_(bias_col(model.free_edge_encoder)))
    for it in range(model.iterations):
        k = 0 if len(model.blocks) == 1 else it
        h, v, e, m = eeb(model.blocks[k], h, v, e, src, dst, st["attr_terms"][k])
        if free:
            hf, ef = _free_block(model.free_blocks[k], hf, ef, m, src, dst)
    st.update(h=h, v=v, e=e)
    if free:
        st.update(hf=hf, ef=ef)
    return st


def embed(model: Any, data: Data) -> dict[str, Tensor]:
    """``model.embed`` on the fused path (row-major views of the feature-major results)."""
    begin_forward()
    fm = _embed(model, data)
    return {"vectors": fm["v"].T, "scalars": fm["h"].T, "edges": fm["e"].T, "src": fm["src"], "dst": fm["dst"]}


def forward(model: Any, data: Data) -> Tensor:
    """Logits [E] of the stored edges: φ_d(h_i, h_j, e_ij, ψ‖Δx‖², ψ⟨x_i, x_j⟩[, h^f_i, h^f_j, e^f_ij])."""
    begin_forward()
    st = _embed(model, data)
    ne = data.edge_index.shape[1]
    src, dst = st["src"][:ne], st["dst"][:ne]
    _, inv = geometric_invariants(st["v"], src, dst)
    dec = model.decoder
    pre = gather_pair(stacked(dec, st["h"], 0, 1), dst, src)
    pre = addmm_into(addmm_into(pre, weight_of(dec, 2), st["e"][:, :ne]), weight_of(dec, 3), inv)
    if "hf" in st:
        pre.add_(gather_pair(stacked(dec, st["hf"], 4, 5), dst, src))
        pre = addmm_into(pre, weight_of(dec, 6), st["ef"][:, :ne])
    pre.add_(bias_col(dec))
    return finish(dec, pre).squeeze(0)
