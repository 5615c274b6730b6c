"""PELICAN-style tagger (Bogatskiy et al. 2022): permutation-equivariant layers on the invariant dot products.

Input: the matrix of pairwise Minkowski products d_ij = ψ(⟨p_i, p_j⟩ / GeV²) of the real constituents (the
complete set of Lorentz invariants of a jet; ψ = sgn·log(1+|·|) makes the 10⁻²–10⁵ GeV² range O(1)), embedded
per entry into ``hidden`` channels (Linear + activation). Then ``layers`` 2→2 layers

    T'_ij = act( Σ_a W_a · Agg_a(T)_ij + b + δ_ij b_diag ),

with the 15 aggregators of the basis of permutation-equivariant linear maps of a 2-tensor (Maron et al. 2019),
over the n real constituents of each jet: identity T_ij, transpose T_ji, diagonal δ_ij T_ii, row/column means
broadcast along rows and columns (T̄_i·, T̄_·i, at i and at j: 4), diagonal broadcast along rows and columns
(T_ii, T_jj), total mean and trace mean broadcast (2), and the diagonal placements δ_ij × (row mean, column mean,
total mean, trace mean) (4). Means over n (not sums) keep the scale independent of the jet's multiplicity, as
PELICAN's normalised aggregators. Each aggregator has its own channel-mixing matrix W_a (hidden × hidden).
Readout (2→0): [trace mean, total mean] per channel → MLP → logit.

Everything is a function of invariants only, so the logit is SO⁺(1, 3) invariant; permutation equivariance of
every layer makes it permutation invariant; padded rows/columns are masked after every layer and excluded from
every mean. Not included from the paper: its dropout, batch-norm and message (per-entry MLP) layers between the
aggregations and the learnable input embedding exponent.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from jets.models.common import (
    ACTIVATIONS,
    JetTagger,
    compact,
    masked_p4,
    minkowski_pairs,
    mlp,
    pair_mask,
    psi,
)

HPARAMS: dict[str, Any] = {"hidden": 8, "layers": 3, "decoder_depth": 1, "act": "leaky_relu"}
PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {"hidden": 5, "layers": 3},
    "small": {"hidden": 10, "layers": 3},
    "paper": {"hidden": 24, "layers": 5},  # 44,689 parameters (table 1: 45k)
}
PRESET_COUNTS: dict[str, int] = {"tiny": 1226, "small": 4801, "paper": 44689}
PAPER_COUNT = 45_000
N_AGGREGATORS = 15


class Eq2to2(nn.Module):
    """One permutation-equivariant 2→2 layer with the 15 aggregators (dense, masked)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.width = width
        self.weight = nn.Parameter(torch.randn(N_AGGREGATORS, width, width) / (N_AGGREGATORS * width) ** 0.5)
        self.bias = nn.Parameter(torch.zeros(width))
        self.bias_diag = nn.Parameter(torch.zeros(width))

    def forward(self, t: Tensor, n: Tensor) -> Tensor:
        """t [B, N, N, C] zero off the real pairs (self pairs included), n [B] the real constituent counts."""
        w = self.weight
        n3 = n.view(-1, 1, 1)
        diag = torch.diagonal(t, dim1=1, dim2=2).transpose(1, 2)  # [B, N, C]
        row = t.sum(2) / n3  # mean over j of T_ij  [B, N, C]
        col = t.sum(1) / n3  # mean over i of T_ij
        total = row.sum(1) / n.view(-1, 1)  # [B, C]
        trace = diag.sum(1) / n.view(-1, 1)
        # full-size terms: identity and transpose
        out = t @ w[0] + t.transpose(1, 2) @ w[1]
        # terms constant along j (depend on i): row mean, column mean, diagonal at i
        out += (row @ w[2] + col @ w[3] + diag @ w[4]).unsqueeze(2)
        # terms constant along i (depend on j)
        out += (row @ w[5] + col @ w[6] + diag @ w[7]).unsqueeze(1)
        # constants and the diagonal placements
        const = total @ w[8] + trace @ w[9] + self.bias
        on_diag = diag @ w[10] + row @ w[11] + col @ w[12]
        on_diag += (total @ w[13] + trace @ w[14] + self.bias_diag).unsqueeze(1)
        out += const.view(-1, 1, 1, self.width)
        out.diagonal(dim1=1, dim2=2).add_(on_diag.transpose(1, 2))  # δ_ij terms, in place on the diagonal view
        return out


class Pelican(JetTagger):
    """PELICAN-style invariant tagger; ``forward(p4, mask) -> [B]`` logits."""

    name = "pelican"

    def __init__(
        self, *, hidden: int = 8, layers: int = 3, decoder_depth: int = 1, act: str = "leaky_relu"
    ) -> None:
        super().__init__()
        self.hparams = {"hidden": hidden, "layers": layers, "decoder_depth": decoder_depth, "act": act}
        self.embedding = nn.Linear(1, hidden)
        self.act = ACTIVATIONS[act]()
        self.layers = nn.ModuleList(Eq2to2(hidden) for _ in range(layers))
        self.decoder = mlp(2 * hidden, hidden, 1, decoder_depth, act=act)

    def forward(self, p4: Tensor, mask: Tensor) -> Tensor:
        p4, mask = compact(p4, mask)
        x = masked_p4(p4, mask)
        pm = pair_mask(mask, self_loops=True)
        pmf = pm.to(x.dtype).unsqueeze(-1)
        n = mask.to(x.dtype).sum(1).clamp(min=1.0)
        t = self.act(self.embedding(psi(minkowski_pairs(x)).unsqueeze(-1))) * pmf
        for layer in self.layers:
            t = self.act(layer(t, n)) * pmf
        diag = torch.diagonal(t, dim1=1, dim2=2).transpose(1, 2)
        readout = torch.cat([diag.sum(1) / n.unsqueeze(1), t.sum((1, 2)) / (n * n).unsqueeze(1)], dim=-1)
        return self.decoder(readout).squeeze(-1)
