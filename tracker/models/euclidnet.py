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

This file is the plain path (row-major PyG ``MessagePassing``, read it against the equations above);
``fused=True`` runs the same modules through tracker/models/fused/euclidnet.py (faster on CPU, docs/models.md).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch_geometric.data import Data
from torch_geometric.nn import MessagePassing

from tracker.models.common import ConcatMLP, EdgeClassifier, invariants, mlp, symmetrise, transverse
from tracker.models.fused import euclidnet as fused

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
    "fused": False,
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


class EEB(MessagePassing):
    """One Euclidean Equivariant Block (the parameters of one iteration); messages flow source j → target i."""

    clamp = CLAMP

    def __init__(self, *, hidden: int, mlp_depth: int, c: float, n_edge_attr: int) -> None:
        super().__init__(aggr="sum")
        h, L = hidden, mlp_depth
        self.c = float(c)
        self.n_edge_attr = n_edge_attr
        # φ_e(ψn, ψd, e[, a]) -> hidden: L Linear layers
        self.phi_e = ConcatMLP((2, h, n_edge_attr), mlp(2 + h + n_edge_attr, h, h, L - 1))
        # φ_m(h_i, h_j, e, ψn, ψd) -> hidden, LayerNorm + sigmoid output (the reference's message weights)
        self.phi_m = ConcatMLP((h, h, h, 2), mlp(3 * h + 2, h, h, L - 1, out_act="sigmoid"))
        # φ_x(m) -> scalar: L hidden layers + output
        self.phi_x = mlp(h, h, 1, L)
        # φ_h(h, Σm) -> hidden: L Linear layers
        self.phi_h = mlp(2 * h, h, h, L - 1)

    def forward(
        self, h: Tensor, v: Tensor, e: Tensor, edge_index: Tensor, a: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """One iteration on h [N, H], v [N, 2], e [E, H] (a [E, 4]); returns the new (h, v, e) and m [E, H]."""
        n = h.shape[0]
        e, m, dv = self.edge_updater(edge_index, h=h, v=v, e=e, a=a)
        v = v + self.c * self.propagate(edge_index, msg=dv, size=(n, n))  # eq. 3.3: x_i + c Σ_j clamp(...)
        sum_m = self.propagate(edge_index, msg=m, size=(n, n))  # Σ_j m_ij
        h = h + self.c * self.phi_h(torch.cat([h, sum_m], dim=-1))  # eq. 3.4
        return h, v, e, m

    def edge_update(self, h_i: Tensor, h_j: Tensor, v_i: Tensor, v_j: Tensor, e: Tensor,
                    a: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        """Per edge j → i: the new e_ij (eq. 3.2), the message m_ij (eq. 3.1) and the summand of eq. 3.3."""
        inv = invariants(v_i, v_j)
        e = self.phi_e(inv, e) if a is None or self.n_edge_attr == 0 else self.phi_e(inv, e, a)
        m = self.phi_m(h_i, h_j, e, inv)
        dv = torch.clamp(self.phi_x(m) * (v_i - v_j), -self.clamp, self.clamp)
        return e, m, dv

    def message(self, msg: Tensor) -> Tensor:
        """What flows j → i was computed per edge by :meth:`edge_update` (m_ij, or the eq. 3.3 summand)."""
        return msg


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
        fused: bool = False,
    ) -> None:
        super().__init__()
        D = mlp_depth if decoder_depth is None else decoder_depth
        self.hparams = {
            "hidden": hidden, "mlp_depth": mlp_depth, "iterations": iterations, "c": c,
            "shared_block": shared_block, "use_r": use_r, "edge_attr": edge_attr, "decoder_depth": D,
            "fused": fused,
        }
        h, L = hidden, mlp_depth
        self.iterations = iterations
        self.use_r = use_r
        self.use_edge_attr = edge_attr
        self.fused = fused
        n_scalar = 1 + int(use_r) + (2 if self.raw_coordinates_as_scalars else 0)
        self.node_encoder = mlp(n_scalar, h, h, L - 1)
        self.edge_encoder = ConcatMLP((h, h), mlp(2 * h, h, h, L - 1))
        n_blocks = 1 if shared_block else iterations
        self.blocks = nn.ModuleList(
            EEB(hidden=h, mlp_depth=L, c=c, n_edge_attr=4 if edge_attr else 0) for _ in range(n_blocks)
        )
        self.decoder = ConcatMLP((h, h, h, 2), mlp(3 * h + 2, h, 1, D))

    def block(self, it: int) -> EEB:
        """The EEB of iteration ``it`` (the shared one unless ``shared_block=False``)."""
        return self.blocks[0] if len(self.blocks) == 1 else self.blocks[it]

    def scalar_inputs(self, v: Tensor, z: Tensor) -> Tensor:
        """Scalar node inputs [N, ·]: z [, r = |x_i|] [, raw x, y for the non-equivariant twin]."""
        parts = [z]
        if self.use_r:
            parts.append(torch.sqrt((v * v).sum(dim=-1, keepdim=True)))
        if self.raw_coordinates_as_scalars:
            parts.append(v)
        return torch.cat(parts, dim=-1)

    def encode(self, data: Data) -> dict[str, Any]:
        """Symmetrised edges and encoded inputs: v [N, 2], z [N, 1], h = φ_s(z[, r]) [N, H], e = φ_enc(h_i, h_j)."""
        v, z = transverse(data)
        edge_index, a = symmetrise(data.edge_index, data.edge_attr if self.use_edge_attr else None)
        src, dst = edge_index
        h = self.node_encoder(self.scalar_inputs(v, z))
        e = self.edge_encoder(h[dst], h[src])
        return {"v": v, "z": z, "h": h, "e": e, "a": a, "edge_index": edge_index}

    def _embed(self, data: Data) -> dict[str, Any]:
        """:meth:`encode`, then the EEB ``iterations`` times."""
        st = self.encode(data)
        h, v, e = st["h"], st["v"], st["e"]
        for it in range(self.iterations):
            h, v, e, _ = self.block(it)(h, v, e, st["edge_index"], st["a"])
        st.update(h=h, v=v, e=e)
        return st

    def embed(self, data: Data) -> dict[str, Any]:
        """Final embeddings: ``vectors`` [N, 2] (equivariant), ``scalars`` [N, hidden], ``edges`` [2E, hidden]
        (first E rows: the stored edges), ``src``/``dst`` [2E] of the symmetrised edges."""
        if self.fused:
            return fused.embed(self, data)
        st = self._embed(data)
        src, dst = st["edge_index"]
        return {"vectors": st["v"], "scalars": st["h"], "edges": st["e"], "src": src, "dst": dst}

    def decode(self, st: dict[str, Any], n_edges: int) -> Tensor:
        """logit_ij = φ_d(h_i, h_j, e_ij, ψ‖x_i − x_j‖², ψ⟨x_i, x_j⟩) for the first ``n_edges`` (stored) edges."""
        src, dst = st["edge_index"][:, :n_edges]
        h, v = st["h"], st["v"]
        return self.decoder(h[dst], h[src], st["e"][:n_edges], invariants(v[dst], v[src])).squeeze(-1)

    def forward(self, data: Data) -> Tensor:
        if self.fused:
            return fused.forward(self, data)
        return self.decode(self._embed(data), data.edge_index.shape[1])


class EuclidNetNonEq(EuclidNet):
    """Ablation twin of :class:`EuclidNet`: same blocks, raw (x, y) also fed as unconstrained scalar features.

    Its parameter count is EuclidNet's + 2·hidden (two more inputs of the node encoder); nothing in it is
    rotation invariant, so ``equivariance_deviation`` is far above round-off.
    """

    name = "euclidnet_noneq"
    raw_coordinates_as_scalars = True


NONEQ_PRESETS = PRESETS  # the twin uses the same configurations (its counts are 2·hidden larger)
NONEQ_PRESET_COUNTS: dict[str, int] = {"paper_8": 986, "paper_16": 2606, "paper_32": 4462}
