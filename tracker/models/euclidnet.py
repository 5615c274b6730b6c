"""EuclidNet (Murnane, Thais, Thete 2023, eqs. 3.1–3.4): an SO(2)-equivariant GNN with Euclidean Equivariant Blocks.

Inputs: vectors x_i = transverse (x, y) of each hit (metres, from ``pos``), scalars = z (and optionally r = |x_i|,
also rotation invariant), the graph symmetrised internally (messages both ways). Layers (L = ``mlp_depth``):

- node encoder  h_i = φ_s(z_i[, r_i])                                   (L Linear layers → hidden)
- edge encoder  e_ij = φ_enc(h_i, h_j)                                  (L Linear layers → hidden)
- one EEB, repeated ``iterations`` times (ONE shared block by default, as in the reference):
  e_ij ← φ_e(ψ(‖x_i − x_j‖²), ψ(⟨x_i, x_j⟩), e_ij[, a_ij])              (eq. 3.2, the edge-weight MLP)
  m_ij = φ_m(h_i, h_j, e_ij, ψ(‖x_i − x_j‖²), ψ(⟨x_i, x_j⟩))            (eq. 3.1, sigmoid output as the reference)
  x_i ← x_i + c · Σ_j clamp(φ_x(m_ij) (x_i − x_j), ±100)                 (eq. 3.3, clamp as the reference)
  h_i ← h_i + c · φ_h(h_i, Σ_j m_ij)                                     (eq. 3.4 with the reference's c)
- decoder  logit_ij = φ_d(h_i, h_j, e_ij, ψ(‖x_i − x_j‖²), ψ(⟨x_i, x_j⟩)) on the final embeddings, i = target,
  j = source of each stored edge.

Every input of every MLP is rotation invariant, so the logits are invariant and the vectors x_i equivariant.
MLPs: hidden Linear layers followed by LayerNorm without affine parameters and SiLU; ψ(a) = sgn(a)·log(|a|+1).
``a_ij`` = the graph's (dr, dφ, dz, dR) (rotation invariant; off by default: the paper's inputs are positions only).

``euclidnet_noneq`` (:class:`EuclidNetNonEq`) is the ablation twin: identical blocks, but the raw coordinates
(x, y) are appended to the scalar inputs, so orientation leaks into every MLP and nothing is constrained.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch_geometric.data import Data

from tracker.models.common import (
    EdgeClassifier,
    SplitMLP,
    addmm_into,
    begin_forward,
    gather_pair,
    mlp,
    num_nodes_of,
    psi,
    run_fm,
    scatter_sum,
    symmetrise,
    transverse,
)

CLAMP = 100.0

HPARAMS: dict[str, Any] = {
    "hidden": 8,
    "mlp_depth": 3,
    "iterations": 5,
    "c": 0.005,
    "shared_block": True,
    "use_r": False,
    "edge_attr": False,
    "decoder_depth": None,
}

# Size presets: the configurations (inputs as the paper: positions only, one shared block, 5 iterations) whose
# exact parameter counts are closest to the paper's Table 1 figures 967 / 2,580 / 4,448; the search over
# hidden 2–59, mlp_depth 1–5, decoder_depth 0–5, shared/unshared is `python -m tracker.models.sizes`
# (docs/models.md). Counts asserted in tests/test_models.py.
PRESETS: dict[str, dict[str, Any]] = {
    "paper_8": {"hidden": 8, "mlp_depth": 1, "decoder_depth": 2},  # 970 (paper 967)
    "paper_16": {"hidden": 14, "mlp_depth": 1, "decoder_depth": 1},  # 2,578 (paper 2,580)
    "paper_32": {"hidden": 10, "mlp_depth": 5, "decoder_depth": 5},  # 4,442 (paper 4,448)
}
PRESET_COUNTS: dict[str, int] = {"paper_8": 970, "paper_16": 2578, "paper_32": 4442}
PAPER_COUNTS: dict[str, int] = {"paper_8": 967, "paper_16": 2580, "paper_32": 4448}


def geometric_invariants(v: Tensor, src: Tensor, dst: Tensor) -> tuple[Tensor, Tensor]:
    """Feature-major x_i − x_j [2, E] and (ψ(‖x_i − x_j‖²), ψ(⟨x_i, x_j⟩)) [2, E] with i = dst, j = src."""
    vi, vj = v.index_select(1, dst), v.index_select(1, src)
    diff = vi - vj
    n2 = (diff * diff).sum(dim=0, keepdim=True)
    dot = (vi * vj).sum(dim=0, keepdim=True)
    return diff, torch.cat([torch.log1p(n2), psi(dot)], dim=0)


def _mlp_count(n_in: int, hidden: int, n_out: int, depth: int) -> int:
    """Parameters of ``mlp(n_in, hidden, n_out, depth)`` (LayerNorms have none)."""
    if depth == 0:
        return (n_in + 1) * n_out
    return (n_in + 1) * hidden + (depth - 1) * hidden * (hidden + 1) + (hidden + 1) * n_out


def param_count(
    *, hidden: int = 8, mlp_depth: int = 3, iterations: int = 5, shared_block: bool = True, use_r: bool = False,
    edge_attr: bool = False, decoder_depth: int | None = None, raw_coordinates: bool = False, **_: Any,
) -> int:
    """Closed-form parameter count of :class:`EuclidNet` (``raw_coordinates``: of the non-equivariant twin)."""
    h, L = hidden, mlp_depth
    D = L if decoder_depth is None else decoder_depth
    s = 1 + int(use_r) + 2 * int(raw_coordinates)
    a = 4 if edge_attr else 0
    block = (_mlp_count(2 + h + a, h, h, L - 1) + _mlp_count(3 * h + 2, h, h, L - 1)
             + _mlp_count(h, h, 1, L) + _mlp_count(2 * h, h, h, L - 1))
    n_blocks = 1 if shared_block else iterations
    return (_mlp_count(s, h, h, L - 1) + _mlp_count(2 * h, h, h, L - 1) + n_blocks * block
            + _mlp_count(3 * h + 2, h, 1, D))


class EEB(nn.Module):
    """One Euclidean Equivariant Block (the parameters of one iteration); tensors are feature-major."""

    def __init__(self, *, hidden: int, mlp_depth: int, c: float, n_edge_attr: int) -> None:
        super().__init__()
        h, L = hidden, mlp_depth
        self.c = float(c)
        self.n_edge_attr = n_edge_attr
        # φ_e(ψn, ψd, e[, a]) -> hidden: L Linear layers
        self.phi_e = SplitMLP((2, h, n_edge_attr), mlp(2 + h + n_edge_attr, h, h, L - 1))
        # φ_m(h_i, h_j, e, ψn, ψd) -> hidden, LayerNorm + sigmoid output (the reference's message weights)
        self.phi_m = SplitMLP((h, h, h, 2), mlp(3 * h + 2, h, h, L - 1, out_act="sigmoid"))
        # φ_x(m) -> scalar: L hidden layers + output
        self.phi_x = mlp(h, h, 1, L)
        # φ_h(h, Σm) -> hidden: L Linear layers
        self.phi_h = mlp(2 * h, h, h, L - 1)

    def edge_attr_term(self, attr: Tensor | None) -> Tensor:
        """The constant part of φ_e's first layer: W_a a_ij + b (computed once per forward)."""
        b = self.phi_e.bias_col()
        if attr is None or self.n_edge_attr == 0:
            return b
        return torch.addmm(b, self.phi_e.weight_of(2), attr)

    def forward(
        self, h: Tensor, v: Tensor, e: Tensor, src: Tensor, dst: Tensor, attr_term: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """One iteration on feature-major h [H, N], v [2, N], e [H, 2E]; returns (h, v, e, m)."""
        n = h.shape[1]
        diff, inv = geometric_invariants(v, src, dst)
        # eq. 3.2: e ← φ_e(ψn, ψd, e[, a])
        pre = torch.addmm(attr_term, self.phi_e.weight_of(1), e)
        e = self.phi_e.finish(addmm_into(pre, self.phi_e.weight_of(0), inv))
        # eq. 3.1: m = φ_m(h_i, h_j, e, ψn, ψd); the h parts are projected per node, then gathered
        pre = gather_pair(self.phi_m.stacked(h, 0, 1), dst, src)
        pre = addmm_into(addmm_into(pre, self.phi_m.weight_of(2), e), self.phi_m.weight_of(3), inv)
        pre.add_(self.phi_m.bias_col())
        m = self.phi_m.finish(pre)
        # eq. 3.3: x_i ← x_i + c Σ_j clamp(φ_x(m_ij) (x_i − x_j), ±100)
        upd = torch.clamp(diff * run_fm(self.phi_x, m), -CLAMP, CLAMP)
        v = v + self.c * scatter_sum(upd, dst, n)
        # eq. 3.4: h_i ← h_i + c φ_h(h_i, Σ_j m_ij)
        h = h + self.c * run_fm(self.phi_h, torch.cat([h, scatter_sum(m, dst, n)], dim=0))
        return h, v, e, m


class EuclidNet(EdgeClassifier):
    """SO(2)-equivariant EuclidNet; ``forward(data) -> Tensor[E]`` logits, ``embed(data)`` the final embeddings."""

    name = "euclidnet"
    #: append raw (x, y) to the scalar inputs (the non-equivariant twin sets this)
    raw_coordinates_as_scalars = False

    def __init__(
        self,
        *,
        hidden: int = 8,
        mlp_depth: int = 3,
        iterations: int = 5,
        c: float = 0.005,
        shared_block: bool = True,
        use_r: bool = False,
        edge_attr: bool = False,
        decoder_depth: int | None = None,
    ) -> None:
        super().__init__()
        D = mlp_depth if decoder_depth is None else decoder_depth
        self.hparams = {
            "hidden": hidden, "mlp_depth": mlp_depth, "iterations": iterations, "c": c,
            "shared_block": shared_block, "use_r": use_r, "edge_attr": edge_attr, "decoder_depth": D,
        }
        h, L = hidden, mlp_depth
        self.iterations = iterations
        self.use_r = use_r
        self.use_edge_attr = edge_attr
        n_scalar = 1 + int(use_r) + (2 if self.raw_coordinates_as_scalars else 0)
        self.node_encoder = mlp(n_scalar, h, h, L - 1)
        self.edge_encoder = SplitMLP((h, h), mlp(2 * h, h, h, L - 1))
        n_blocks = 1 if shared_block else iterations
        self.blocks = nn.ModuleList(
            EEB(hidden=h, mlp_depth=L, c=c, n_edge_attr=4 if edge_attr else 0) for _ in range(n_blocks)
        )
        self.decoder = SplitMLP((h, h, h, 2), mlp(3 * h + 2, h, 1, D))

    def encode_fm(self, data: Data) -> dict[str, Any]:
        """Symmetrised edges and the encoded inputs: v [2, N], h [H, N], e [H, 2E], φ_e's constant terms."""
        n = num_nodes_of(data)
        v, z = transverse(data)
        src, dst, attr = symmetrise(data.edge_index, data.edge_attr if self.use_edge_attr else None)
        h = run_fm(self.node_encoder, self.scalar_inputs(v, z))
        pre = gather_pair(self.edge_encoder.stacked(h, 0, 1), dst, src)
        e = self.edge_encoder.finish(pre.add_(self.edge_encoder.bias_col()))
        attr_terms = [blk.edge_attr_term(attr) for blk in self.blocks]
        return {"v": v, "z": z, "h": h, "e": e, "src": src, "dst": dst, "n": n, "attr_terms": attr_terms}

    def block(self, it: int) -> EEB:
        """The EEB of iteration ``it`` (the shared one unless ``shared_block=False``)."""
        return self.blocks[0] if len(self.blocks) == 1 else self.blocks[it]

    def scalar_inputs(self, v: Tensor, z: Tensor) -> Tensor:
        """Feature-major scalar node inputs: z [, r] [, raw x, y for the non-equivariant twin]."""
        parts = [z]
        if self.use_r:
            parts.append(torch.sqrt((v * v).sum(dim=0, keepdim=True)))
        if self.raw_coordinates_as_scalars:
            parts.append(v)
        return torch.cat(parts, dim=0) if len(parts) > 1 else z

    def embed(self, data: Data) -> dict[str, Any]:
        """Final embeddings: ``vectors`` [N, 2] (equivariant), ``scalars`` [N, hidden], ``edges`` [2E, hidden]
        (first E rows: the stored edges), ``src``/``dst`` [2E] of the symmetrised edges (row-major views)."""
        begin_forward()
        fm = self._embed_fm(data)
        return {
            "vectors": fm["v"].T, "scalars": fm["h"].T, "edges": fm["e"].T,
            "src": fm["src"], "dst": fm["dst"],
        }

    def _embed_fm(self, data: Data) -> dict[str, Any]:
        st = self.encode_fm(data)
        h, v, e = st["h"], st["v"], st["e"]
        for it in range(self.iterations):
            k = 0 if len(self.blocks) == 1 else it
            h, v, e, _ = self.blocks[k](h, v, e, st["src"], st["dst"], st["attr_terms"][k])
        st.update(h=h, v=v, e=e)
        return st

    def decode_fm(self, h: Tensor, v: Tensor, e: Tensor, src: Tensor, dst: Tensor) -> Tensor:
        """Logits [E] of the edges (src, dst) from invariant features (h_i, h_j, e_ij, ψ‖Δx‖², ψ⟨x_i, x_j⟩)."""
        _, inv = geometric_invariants(v, src, dst)
        pre = gather_pair(self.decoder.stacked(h, 0, 1), dst, src)
        pre = addmm_into(addmm_into(pre, self.decoder.weight_of(2), e), self.decoder.weight_of(3), inv)
        pre.add_(self.decoder.bias_col())
        return self.decoder.finish(pre).squeeze(0)

    def forward(self, data: Data) -> Tensor:
        begin_forward()
        fm = self._embed_fm(data)
        n_edges = data.edge_index.shape[1]
        return self.decode_fm(fm["h"], fm["v"], fm["e"][:, :n_edges], fm["src"][:n_edges], fm["dst"][:n_edges])


class EuclidNetNonEq(EuclidNet):
    """Ablation twin of :class:`EuclidNet`: same blocks, raw (x, y) also fed as unconstrained scalar features.

    Its parameter count is EuclidNet's + 2·hidden (two more inputs of the node encoder); nothing in it is
    rotation invariant, so ``equivariance_deviation`` is far above round-off.
    """

    name = "euclidnet_noneq"
    raw_coordinates_as_scalars = True


NONEQ_PRESETS = PRESETS  # the twin uses the same configurations (its counts are 2·hidden larger)
NONEQ_PRESET_COUNTS: dict[str, int] = {"paper_8": 986, "paper_16": 2606, "paper_32": 4462}
