"""A small Lorentz Group Network (Bogatskiy et al. 2020): irreps of SO⁺(1, 3), Clebsch–Gordan products, mixing.

Activations of constituent i are ``hidden`` channels of each kept irrep: scalars S_i ∈ (0,0)^C and four-vectors
V_i ∈ (1/2,1/2)^C (x_i = p_i / ``scale``). Input layer: S⁰_i = W ψ(⟨x_i, x_i⟩) + b, V⁰_i,c = a_c x_i. Each of the
``layers`` CG layers, channel-wise (channel c of one factor with channel c of the other, as LGN):

- neighbour aggregation with learnable invariant pair weights, over real j ≠ i:
  Ā^S_i = mean_j f^S(d_ij) ⊙ S_j,  Ā^V_i = mean_j f^V(d_ij) ⊙ V_j,  d_ij = ψ(⟨x_i, x_j⟩),
  f = linear combination of ``n_basis`` Lorentzian bells 1 / (1 + w_k²(d − μ_k)²) (LGN's f(p_ij²)) plus a constant;
- CG products of F_i with itself and with Ā_i, kept components only:
  (0,0)⊗(0,0)→(0,0): S⊙S, S⊙Ā^S;  (0,0)⊗(1/2,1/2)→(1/2,1/2): S⊙V, S⊙Ā^V, Ā^S⊙V;
  (1/2,1/2)⊗(1/2,1/2)→(0,0): ⟨V, V⟩, ⟨V, Ā^V⟩ (Minkowski products, ψ-compressed: a scalar nonlinearity);
- linear mixing within each irrep type (the only equivariant linear maps): S ← SiLU(W_S [S, Ā^S, products]
  + b), V ← W_V [V, Ā^V, products] (no bias on vectors); the nonlinearity acts on scalars only.

Output: logit = W_out [mean_i S_i, ψ(⟨V̄, V̄⟩)] + b with V̄ = mean_i V_i, i.e. from the invariant (0,0) parts of
the summed representation, as LGN's P_inv. Every step is equivariant, so the logit is SO⁺(1, 3) invariant.

Truncated compared with the paper: irreps above (1/2,1/2) — (1,0), (0,1), (1,1), … — are dropped from every CG
decomposition (the paper keeps up to (1,1) with N_ch channels each); the (1/2,1/2)⊗(1/2,1/2) product keeps
only its (0,0) part; no spinor or charge inputs; the neighbour sum Σ_j f(p_ij²) p_ij ⊗ F_j of the paper is
replaced by the aggregate Σ_j f(⟨p_i, p_j⟩) F_j (its CG product with F_i is taken instead), divided by the
number of neighbours (mean: stable for jets of 20–200 constituents); quadratic invariants are ψ-compressed and
the scalar MLP is one SiLU layer. It keeps what makes LGN LGN: Lorentz irreps as activations, CG products as
the only nonlinearity on vectors, mixing within irrep types, invariant readout.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from jets.models.common import P4_SCALE, Graph, JetTagger, compact, minkowski, psi

HPARAMS: dict[str, Any] = {"hidden": 8, "layers": 3, "n_basis": 4, "scale": P4_SCALE}
PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {"hidden": 6, "layers": 3},
    "small": {"hidden": 8, "layers": 3},
    "paper": {"hidden": 11, "layers": 3},  # 4,436 parameters (table 1: 4.5k)
}
PRESET_COUNTS: dict[str, int] = {"tiny": 1441, "small": 2441, "paper": 4436}
PAPER_COUNT = 4_500


class CGLayer(nn.Module):
    """One Clebsch–Gordan layer on (S [B, N, C], V [B, N, C, 4])."""

    def __init__(self, *, hidden: int, n_basis: int) -> None:
        super().__init__()
        c = hidden
        self.mu = nn.Parameter(torch.linspace(-1.0, 3.0, n_basis))
        self.width = nn.Parameter(torch.ones(n_basis))
        self.pair_weights = nn.Linear(n_basis, 2 * c)  # bells -> (f^S, f^V) per channel
        self.mix_s = nn.Linear(6 * c, c)
        self.mix_v = nn.Linear(5 * c, c, bias=False)

    def forward(self, s: Tensor, v: Tensor, d: Tensor, g: Graph) -> tuple[Tensor, Tensor]:
        """Nodes' S [M, C] and V [M, C, 4]; d [E] = ψ⟨x_i, x_j⟩ per edge of ``g``."""
        n, c = s.shape
        bells = 1.0 / (1.0 + (self.width * (d.unsqueeze(-1) - self.mu)) ** 2)  # [E, K]
        f = self.pair_weights(bells)  # [E, 2C]: (f^S, f^V)
        agg_s = g.mean_aggregate(f[:, :c] * s.index_select(0, g.src))
        agg_v = f[:, c:].unsqueeze(-1) * v.index_select(0, g.src)  # [E, C, 4]
        agg_v = g.mean_aggregate(agg_v.reshape(-1, 4 * c)).view(n, c, 4)
        scalars = torch.cat(
            [s, agg_s, s * s, s * agg_s, psi(minkowski(v, v)), psi(minkowski(v, agg_v))], dim=-1
        )
        s3, a3 = s.unsqueeze(-1), agg_s.unsqueeze(-1)
        vectors = torch.cat([v, agg_v, s3 * v, s3 * agg_v, a3 * v], dim=1)  # [M, 5C, 4]
        s_new = nn.functional.silu(self.mix_s(scalars))
        v_new = torch.einsum("oc,ncd->nod", self.mix_v.weight, vectors)
        return s_new, v_new


class LGN(JetTagger):
    """Small Lorentz Group Network; ``forward(p4, mask) -> [B]`` logits, :meth:`embed` the final irreps."""

    name = "lgn"

    def __init__(self, *, hidden: int = 8, layers: int = 3, n_basis: int = 4, scale: float = P4_SCALE) -> None:
        super().__init__()
        self.hparams = {"hidden": hidden, "layers": layers, "n_basis": n_basis, "scale": scale}
        self.scale = float(scale)
        self.input_s = nn.Linear(1, hidden)
        self.input_v = nn.Parameter(torch.ones(hidden) + 0.1 * torch.randn(hidden))
        self.cg = nn.ModuleList(CGLayer(hidden=hidden, n_basis=n_basis) for _ in range(layers))
        self.out = nn.Linear(2 * hidden, 1)

    def _run(self, p4: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, Graph]:
        p4, mask = compact(p4, mask)
        g = Graph(mask)
        x = p4[mask] / self.scale  # [M, 4]
        d = psi(minkowski(x.index_select(0, g.dst), x.index_select(0, g.src)))
        s = self.input_s(psi(minkowski(x, x)).unsqueeze(-1))
        v = self.input_v.unsqueeze(-1) * x.unsqueeze(1)  # [M, C, 4]
        for layer in self.cg:
            s, v = layer(s, v, d, g)
        return s, v, g

    def embed(self, p4: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """Final scalars S [B, N', C] (invariant) and four-vectors V [B, N', C, 4] (equivariant), zeros at
        padding (N': slots that are padding in every jet dropped)."""
        s, v, g = self._run(p4, mask)
        return g.to_dense(s), g.to_dense(v)

    def forward(self, p4: Tensor, mask: Tensor) -> Tensor:
        s, v, g = self._run(p4, mask)
        c = s.shape[1]
        vbar = g.jet_mean(v.reshape(-1, 4 * c)).view(-1, c, 4)  # [B, C, 4]
        return self.out(torch.cat([g.jet_mean(s), psi(minkowski(vbar, vbar))], dim=-1)).squeeze(-1)
