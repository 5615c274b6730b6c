"""LorentzNet (Gong et al. 2022): Lorentz group equivariant blocks on the fully connected graph of a jet.

Per jet, constituents i carry coordinates x_i = p_i / ``scale`` (four-vectors) and scalars h_i. Inputs:
node scalars s_i = ψ(⟨x_i, x_i⟩) (the particle's own Minkowski norm, invariant), h⁰_i = W s_i + b. Each Lorentz
group equivariant block (LGEB, ``layers`` of them), over pairs i ≠ j of real constituents:

- m_ij = φ_e(h_i, h_j, ψ(⟨x_i − x_j, x_i − x_j⟩), ψ(⟨x_i, x_j⟩)) · w_ij,  w_ij = sigmoid(φ_m(m̃_ij))
- x_i ← x_i + c · mean_j φ_x(m_ij) · x_j     (``x_update="neighbour"``, the paper's equation; ``"difference"``
  uses x_i − x_j as the public reference code does); the last block has no φ_x. The reference's clamp of each
  term at ±100 ("never activated", it says) is left out: it would break equivariance, and without it the sum is
  one batched matmul
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

Dense, masked implementation (why): every jet graph is fully connected, so pair tensors [B, N, N, H] with a pair
mask replace gather/scatter over an edge list (no index tensors, batched matmuls instead of scattered adds),
and φ_e's first layer is applied as per-node projections W_i h_i + W_j h_j broadcast over pairs (N ≪ N²).
BatchNorm statistics come from real pairs/constituents only (:class:`MaskedBatchNorm`): padding never matters.

:class:`LorentzNetNonEq` (``lorentznet_noneq``) is table 6's "w/o" twin: the same blocks, but the scaled
components of x_i are also fed as scalars (to the embedding and φ_h), φ_e also reads the raw components of x_i and
x_j, and the coordinate update is unconstrained: x_i ← x_i + c · mean_j φ_x(m_ij) with φ_x(m_ij) ∈ ℝ⁴.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from jets.models.common import (
    P4_SCALE,
    JetTagger,
    MaskedBatchNorm,
    compact,
    masked_mean,
    masked_p4,
    minkowski,
    minkowski_pairs,
    pair_mask,
    psi,
)

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


class LGEB(nn.Module):
    """One Lorentz group equivariant block (dense over the pairs of a jet)."""

    def __init__(self, *, hidden: int, n_scalar: int, c: float, last_layer: bool, x_update: str,
                 equivariant: bool = True) -> None:
        super().__init__()
        h = hidden
        self.c, self.last_layer, self.x_update, self.equivariant = float(c), last_layer, x_update, equivariant
        n_edge = 2 if equivariant else 2 + 8  # (ψ‖x_i − x_j‖², ψ⟨x_i, x_j⟩) [+ raw x_i, x_j]
        self.phi_e = nn.Sequential(
            nn.Linear(2 * h + n_edge, h, bias=False), MaskedBatchNorm(h), nn.ReLU(), nn.Linear(h, h), nn.ReLU()
        )
        self.phi_h = nn.Sequential(nn.Linear(2 * h + n_scalar, h), MaskedBatchNorm(h), nn.ReLU(), nn.Linear(h, h))
        if not last_layer:
            out = nn.Linear(h, 1 if equivariant else 4, bias=False)
            nn.init.xavier_uniform_(out.weight, gain=0.001)
            self.phi_x = nn.Sequential(nn.Linear(h, h), nn.ReLU(), out)
        self.phi_m = nn.Sequential(nn.Linear(h, 1), nn.Sigmoid())

    def forward(self, h: Tensor, x: Tensor, s: Tensor, mask: Tensor, pm: Tensor) -> tuple[Tensor, Tensor]:
        """h [B, N, H], x [B, N, 4], scalars s [B, N, S], node mask [B, N], pair mask [B, N, N] -> (h, x)."""
        H = h.shape[-1]
        w = self.phi_e[0].weight
        dots = minkowski_pairs(x)  # ⟨x_i, x_j⟩ [B, N, N]
        sq = torch.diagonal(dots, dim1=1, dim2=2)
        norms = sq.unsqueeze(2) + sq.unsqueeze(1) - 2.0 * dots  # ⟨x_i − x_j, x_i − x_j⟩
        pre = torch.stack([psi(norms), psi(dots)], dim=-1) @ w[:, 2 * H:2 * H + 2].T  # [B, N, N, H]
        pre = pre + (h @ w[:, :H].T).unsqueeze(2)
        pre += (h @ w[:, H:2 * H].T).unsqueeze(1)
        if not self.equivariant:
            pre += (x @ w[:, 2 * H + 2:2 * H + 6].T).unsqueeze(2)
            pre += (x @ w[:, 2 * H + 6:].T).unsqueeze(1)
        e = torch.relu_(self.phi_e[1](pre, pm))
        e = torch.relu_(self.phi_e[3](e))
        pmf = pm.to(e.dtype)
        m = e * (self.phi_m(e) * pmf.unsqueeze(-1))  # [B, N, N, H], zero off the graph
        if not self.last_layer:
            count = pmf.sum(2).clamp(min=1.0).unsqueeze(-1)  # neighbours of i
            t = self.phi_x(m)
            if self.equivariant:  # Σ_j t_ij x_j as one batched matmul
                t = t.squeeze(-1) * pmf
                upd = torch.bmm(t, x)
                if self.x_update == "difference":
                    upd = x * t.sum(2, keepdim=True) - upd
            else:
                upd = (t * pmf.unsqueeze(-1)).sum(2)
            x = x + self.c * (upd / count)
        u = self.phi_h[0](torch.cat([h, m.sum(2), s], dim=-1))
        u = self.phi_h[3](torch.relu(self.phi_h[1](u, mask)))
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

    def embed(self, p4: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Final node scalars h [B, N', H], coordinates x [B, N', 4] (equivariant) and the node mask (slots that
        are padding in every jet dropped, the two beams prepended if ``beams``)."""
        x, s, mask = self.inputs(p4, mask)
        pm = pair_mask(mask)
        h = self.embedding(s)
        for block in self.LGEBs:
            h, x = block(h, x, s, mask, pm)
        return h, x, mask

    def forward(self, p4: Tensor, mask: Tensor) -> Tensor:
        h, _, mask = self.embed(p4, mask)
        return self.graph_dec(masked_mean(h, mask)).squeeze(-1)


class LorentzNetNonEq(LorentzNet):
    """Table 6's "LorentzNet (w/o)": raw four-vector components as scalars, unconstrained coordinate update."""

    name = "lorentznet_noneq"
    equivariant = False
