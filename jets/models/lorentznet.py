"""LorentzNet (Gong et al. 2022): Lorentz group equivariant blocks on the fully connected graph of a jet.

Per jet, constituents i carry coordinates x_i = p_i / ``scale`` (four-vectors) and scalars h_i. Inputs:
node scalars s_i = ψ(⟨x_i, x_i⟩) (the particle's own Minkowski norm, invariant), h⁰_i = W s_i + b. Each Lorentz
group equivariant block (LGEB, ``layers`` of them), over pairs i ≠ j of real constituents:

- m_ij = φ_e(h_i, h_j, ψ(⟨x_i − x_j, x_i − x_j⟩), ψ(⟨x_i, x_j⟩)) · w_ij,  w_ij = sigmoid(φ_m(m̃_ij))
- x_i ← x_i + c · mean_j φ_x(m_ij) · x_j     (``x_update="neighbour"``, the paper's equation; ``"difference"``
  uses x_i − x_j as the public reference code does); the last block has no φ_x. The reference's clamp of each
  term at ±100 ("never activated", it says; it can act on inputs in GeV) is left out: it breaks equivariance
- h_i ← h_i + φ_h(h_i, Σ_j m_ij, s_i)

then logit = φ_dec(mean_i h_i). φ_e = Linear(no bias) → BatchNorm → ReLU → Linear → ReLU,
φ_h = Linear → BatchNorm → ReLU → Linear, φ_x = Linear → ReLU → Linear(·, 1, no bias, Xavier gain 10⁻³),
φ_dec = Linear → ReLU → Dropout → Linear(·, 1): the reference's layers and parameter names, so its weights load.
Every MLP input is a Lorentz scalar, so the logit is invariant under SO⁺(1, 3) and x_i is equivariant
(tests/test_jets_models.py checks both). The constant ``scale`` (GeV) commutes with every Lorentz map.

``beams=True`` adds the two beam four-vectors (√2, 0, 0, ±1) GeV (mass 1 GeV, as the reference) as two extra
nodes with scalars (ψ(m)·[particle], ψ(m)·[beam]) like the reference. Fixed beam four-vectors are left unchanged
only by rotations about z (a boost along z changes ⟨p_i, beam⟩: massive beams change direction in time, massless
ones get rescaled), so the output is then only invariant under rotations about the beam axis.

Implementation: message passing over an edge list of the real pairs (i ≠ j, both real, same jet) of all jets of
the batch, real constituents flattened to nodes — so padding costs nothing and batch-norm statistics see real
pairs and constituents only (``nn.BatchNorm1d``, as the reference: training is padding invariant too). A dense
[B, N, N, H] version was measured 2.6× slower per training step than the public code on real jets (padding to
the batch's largest jet wastes about half of the pairs, and broadcast products have costly backward passes).
φ_e's first layer on [h_i, h_j, ψ‖x_i − x_j‖², ψ⟨x_i, x_j⟩] is split: W_i h and W_j h are computed per node and
gathered per edge (no [E, 2H + 2] concatenation, a GEMM of width 2 instead of 2H + 2); in eval mode the batch
norm after it is folded into these weights.

:class:`LorentzNetNonEq` (``lorentznet_noneq``) is table 6's "w/o" twin: the same blocks, but the scaled
components of x_i are also fed as scalars (to the embedding and φ_h), φ_e also reads the raw components of x_i and
x_j, and the coordinate update is unconstrained: x_i ← x_i + c · mean_j φ_x(m_ij) with φ_x(m_ij) ∈ ℝ⁴.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from jets.models.common import P4_SCALE, Graph, JetTagger, compact, masked_p4, minkowski, psi

X_UPDATES = ("neighbour", "difference")

HPARAMS: dict[str, Any] = {
    "hidden": 16,
    "layers": 3,
    "c": 1e-3,
    "beams": False,
    "x_update": "neighbour",
    "scale": P4_SCALE,
    "dropout": 0.0,
}
PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {"hidden": 8, "layers": 2},
    "small": {"hidden": 24, "layers": 3},
    # the paper's configuration (Gong et al. 2022: 72 hidden, 6 LGEBs): 223,495 parameters with one logit and no
    # beams (the reference's 224,072 = table 4's "224k" has 2 class outputs and 2 beam scalars; table 1: "220k")
    "paper": {"hidden": 72, "layers": 6},
}
PRESET_COUNTS: dict[str, int] = {"tiny": 1123, "small": 13084, "paper": 223495}
NONEQ_PRESET_COUNTS: dict[str, int] = {"tiny": 1371, "small": 14188, "paper": 230047}
PAPER_COUNT = 220_000  # seed 002 table 1


def bn_affine(bn: nn.BatchNorm1d) -> tuple[Tensor, Tensor]:
    """(scale, shift) of an eval-mode batch norm: x ↦ x·scale + shift."""
    scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
    return scale, bn.bias - bn.running_mean * scale


class LGEB(nn.Module):
    """One Lorentz group equivariant block on the batch's edge list."""

    def __init__(self, *, hidden: int, n_scalar: int, c: float, last_layer: bool, x_update: str,
                 equivariant: bool = True) -> None:
        super().__init__()
        h = hidden
        self.c, self.last_layer, self.x_update, self.equivariant = float(c), last_layer, x_update, equivariant
        n_edge = 2 if equivariant else 2 + 8  # (ψ‖x_i − x_j‖², ψ⟨x_i, x_j⟩) [+ raw x_i, x_j]
        self.phi_e = nn.Sequential(
            nn.Linear(2 * h + n_edge, h, bias=False), nn.BatchNorm1d(h), nn.ReLU(), nn.Linear(h, h), nn.ReLU()
        )
        self.phi_h = nn.Sequential(nn.Linear(2 * h + n_scalar, h), nn.BatchNorm1d(h), nn.ReLU(), nn.Linear(h, h))
        if not last_layer:
            out = nn.Linear(h, 1 if equivariant else 4, bias=False)
            nn.init.xavier_uniform_(out.weight, gain=0.001)
            self.phi_x = nn.Sequential(nn.Linear(h, h), nn.ReLU(), out)
        self.phi_m = nn.Sequential(nn.Linear(h, 1), nn.Sigmoid())

    def forward(self, h: Tensor, x: Tensor, s: Tensor, g: Graph) -> tuple[Tensor, Tensor]:
        """Node scalars h [M, H], coordinates x [M, 4], input scalars s [M, S] -> (h, x)."""
        H = h.shape[-1]
        w = self.phi_e[0].weight
        w_h, w_inv, w_x = w[:, :2 * H], w[:, 2 * H:2 * H + 2], w[:, 2 * H + 2:]
        fold = not self.training
        if fold:  # eval: the batch norm after φ_e's first layer is an affine map; fold it into the weights
            scale, shift = bn_affine(self.phi_e[1])
            w_h, w_inv, w_x = w_h * scale.unsqueeze(1), w_inv * scale.unsqueeze(1), w_x * scale.unsqueeze(1)
        a = h @ w_h[:, :H].T  # W_i h_i, per node
        b = h @ w_h[:, H:].T  # W_j h_j
        if fold:
            a = a + shift
        if not self.equivariant:
            a = a + x @ w_x[:, :4].T
            b = b + x @ w_x[:, 4:].T
        xi, xj = x.index_select(0, g.dst), x.index_select(0, g.src)
        diff = xi - xj
        inv = psi(torch.stack([minkowski(diff, diff), minkowski(xi, xj)], dim=1))  # [E, 2]
        pre = torch.addmm(a.index_select(0, g.dst), inv, w_inv.T).add_(b.index_select(0, g.src))
        e = torch.relu_(pre if fold else self.phi_e[1](pre))
        e = torch.relu_(self.phi_e[3](e))
        weight = self.phi_m(e)
        m = e.mul_(weight) if not torch.is_grad_enabled() else e * weight  # m_ij [E, H]
        if not self.last_layer:
            t = self.phi_x[2](torch.relu_(self.phi_x[0](m)))
            if self.equivariant:
                t = t * (diff if self.x_update == "difference" else xj)
            x = x + self.c * g.mean_aggregate(t)
        u = self.phi_h[0](torch.cat([h, g.aggregate(m), s], dim=-1))
        u = self.phi_h[3](torch.relu_(self.phi_h[1](u)))
        return h + u, x


class LorentzNet(JetTagger):
    """LorentzNet tagger; ``forward(p4, mask) -> [B]`` logits, :meth:`embed` the final (h, x)."""

    name = "lorentznet"
    equivariant = True

    def __init__(self, *, hidden: int = 16, layers: int = 3, c: float = 1e-3, beams: bool = False,
                 x_update: str = "neighbour", scale: float = P4_SCALE, dropout: float = 0.0) -> None:
        super().__init__()
        self.hparams = {"hidden": hidden, "layers": layers, "c": c, "beams": beams, "x_update": x_update,
                        "scale": scale, "dropout": dropout}
        self.beams, self.scale = beams, float(scale)
        n_scalar = (2 if beams else 1) + (0 if self.equivariant else 4)
        self.embedding = nn.Linear(n_scalar, hidden)
        self.LGEBs = nn.ModuleList(
            LGEB(hidden=hidden, n_scalar=n_scalar, c=c, last_layer=(i == layers - 1), x_update=x_update,
                 equivariant=self.equivariant)
            for i in range(layers)
        )
        self.graph_dec = nn.Sequential(
            nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, 1)
        )

    def inputs(self, p4: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Scaled coordinates x [B, N', 4], node scalars s [B, N', S] and mask [B, N'] (N' = N + 2 with beams)."""
        p4, mask = compact(p4, mask)
        x = masked_p4(p4, mask) / self.scale
        if self.beams:
            b = torch.tensor([[math.sqrt(2.0), 0.0, 0.0, 1.0], [math.sqrt(2.0), 0.0, 0.0, -1.0]],
                             dtype=p4.dtype, device=p4.device) / self.scale
            x = torch.cat([b.expand(x.shape[0], 2, 4), x], dim=1)
            mask = torch.cat([mask.new_ones(mask.shape[0], 2), mask], dim=1)
            mass = psi(minkowski(x, x).abs().sqrt()).unsqueeze(-1)
            beam = torch.zeros_like(mass)
            beam[:, :2] = 1.0
            s = torch.cat([mass * (1 - beam), mass * beam], dim=-1)
        else:
            s = psi(minkowski(x, x)).unsqueeze(-1)
        if not self.equivariant:
            s = torch.cat([s, x], dim=-1)
        return x, s * mask.unsqueeze(-1).to(s.dtype), mask

    def _run(self, p4: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, Graph]:
        x, s, mask = self.inputs(p4, mask)
        g = Graph(mask)
        x, s = x[mask], s[mask]
        h = self.embedding(s)
        for block in self.LGEBs:
            h, x = block(h, x, s, g)
        return h, x, g

    def embed(self, p4: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Final node scalars h [B, N', H], coordinates x [B, N', 4] (equivariant) and the node mask (slots that
        are padding in every jet dropped, the two beams prepended if ``beams``; zeros at padding)."""
        h, x, g = self._run(p4, mask)
        return g.to_dense(h), g.to_dense(x), g.mask

    def forward(self, p4: Tensor, mask: Tensor) -> Tensor:
        h, _, g = self._run(p4, mask)
        return self.graph_dec(g.jet_mean(h)).squeeze(-1)


class LorentzNetNonEq(LorentzNet):
    """Table 6's "LorentzNet (w/o)": raw four-vector components as scalars, unconstrained coordinate update."""

    name = "lorentznet_noneq"
    equivariant = False
