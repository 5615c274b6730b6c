"""VecNet-style semi-equivariant tagger (Murnane, Thais & Wong 2023): equivariant and free channels, one dial.

Two message-passing streams on the fully connected graph of each jet's real constituents (j ≠ i), ``layers``
rounds each, merged only before the final fully connected layers (as VecNet):

- equivariant stream, ``hidden_equivariant`` = C_e channels: four-vectors V_i ∈ ℝ^{C_e × 4} (V⁰_i,c = a_c x_i,
  x = p / ``scale``) and scalars s_i ∈ ℝ^{C_e} (s⁰ = W ψ⟨x_i, x_i⟩ + b). Per round, with channel-wise invariants
  ψ⟨V_i, V_j⟩ and ψ‖V_i − V_j‖²:  m_ij = φ_e(s_i, s_j, ψ⟨V_i,V_j⟩, ψ‖V_i−V_j‖²) ∈ ℝ^{C_e},
  V_i ← V_i + c · mean_j φ_v(m_ij) ⊙ V_j (a weight per channel), s_i ← s_i + φ_s(s_i, mean_j m_ij).
  Vectors only ever meet through Minkowski products, so this stream is Lorentz equivariant.
- free stream, ``hidden_free`` = C_f channels: g⁰_i = W [x_i components, ψ⟨x_i, x_i⟩] + b (raw components: no
  symmetry), f_ij = φ_f(g_i, g_j), g_i ← g_i + φ_g(g_i, mean_j f_ij) — a plain interaction network.
- decoder: logit = φ_d(mean_i s_i, mean_i g_i) (MLP of width ``hidden``).

The dial: ``hidden_free = 0`` drops the free stream (the logit is SO⁺(1, 3) invariant, ``equivariant`` in the
registry's sense only then); ``hidden_equivariant = 0`` drops the equivariant stream (a plain GNN); in between
both contribute. φ's are MLPs with ``mlp_depth`` hidden layers of width ``hidden`` (SiLU).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from jets.models.common import INVARIANT_SCALE, Graph, JetTagger, compact, minkowski, mlp, psi

HPARAMS: dict[str, Any] = {
    "hidden": 16,
    "hidden_equivariant": 8,
    "hidden_free": 4,
    "layers": 2,
    "mlp_depth": 1,
    "c": 1e-3,
    "scale": INVARIANT_SCALE,
}
PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {"hidden": 8, "hidden_equivariant": 4, "hidden_free": 2, "layers": 2},
    "small": {"hidden": 24, "hidden_equivariant": 12, "hidden_free": 4, "layers": 3},
    # VecNet.1 (table 1: 633k) and VecNet.2 (15k, "4 unconstrained channels")
    "paper": {"hidden": 96, "hidden_equivariant": 48, "hidden_free": 48, "layers": 5, "mlp_depth": 2},  # 633,505
    "paper_2": {"hidden": 24, "hidden_equivariant": 16, "hidden_free": 4, "layers": 3, "mlp_depth": 1},  # 14,977
}
PRESET_COUNTS: dict[str, int] = {"tiny": 1105, "small": 11953, "paper": 633505, "paper_2": 14977}
PAPER_COUNTS: dict[str, int] = {"paper": 633_000, "paper_2": 15_000}


class EquivariantRound(nn.Module):
    """One round of the equivariant stream on the nodes' (s [M, Ce], V [M, Ce, 4])."""

    def __init__(self, *, ce: int, hidden: int, depth: int, c: float) -> None:
        super().__init__()
        self.c = float(c)
        self.phi_e = mlp(4 * ce, hidden, ce, depth, act="silu")
        self.phi_v = mlp(ce, hidden, ce, depth, act="silu")
        self.phi_s = mlp(2 * ce, hidden, ce, depth, act="silu")

    def forward(self, s: Tensor, v: Tensor, g: Graph) -> tuple[Tensor, Tensor]:
        """Nodes' s [M, Ce] and V [M, Ce, 4] -> updated (s, V)."""
        ce = s.shape[-1]
        vi, vj = v.index_select(0, g.dst), v.index_select(0, g.src)  # [E, Ce, 4]
        diff = vi - vj
        inv = psi(torch.cat([minkowski(vi, vj), minkowski(diff, diff)], dim=-1))  # [E, 2 Ce]
        w = self.phi_e[0].weight
        a = s @ w[:, :ce].T + self.phi_e[0].bias  # per node, gathered per edge
        b = s @ w[:, ce:2 * ce].T
        pre = torch.addmm(a.index_select(0, g.dst), inv, w[:, 2 * ce:].T).add_(b.index_select(0, g.src))
        m = self.phi_e[1:](pre) if len(self.phi_e) > 1 else pre  # [E, Ce]
        t = self.phi_v(m).unsqueeze(-1) * vj  # φ_v(m_ij) ⊙ V_j  [E, Ce, 4]
        v = v + self.c * g.mean_aggregate(t.reshape(-1, 4 * ce)).view(-1, ce, 4)
        return s + self.phi_s(torch.cat([s, g.mean_aggregate(m)], dim=-1)), v


class FreeRound(nn.Module):
    """One round of the free stream on the nodes' h [M, Cf]."""

    def __init__(self, *, cf: int, hidden: int, depth: int) -> None:
        super().__init__()
        self.phi_f = mlp(2 * cf, hidden, cf, depth, act="silu")
        self.phi_g = mlp(2 * cf, hidden, cf, depth, act="silu")

    def forward(self, h: Tensor, g: Graph) -> Tensor:
        """Nodes' free features h [M, Cf] -> updated h."""
        cf = h.shape[-1]
        w = self.phi_f[0].weight
        a = h @ w[:, :cf].T + self.phi_f[0].bias
        pre = a.index_select(0, g.dst).add_((h @ w[:, cf:].T).index_select(0, g.src))
        f = self.phi_f[1:](pre) if len(self.phi_f) > 1 else pre
        return h + self.phi_g(torch.cat([h, g.mean_aggregate(f)], dim=-1))


class VecNet(JetTagger):
    """Semi-equivariant tagger with the equivariant/free dial; ``forward(p4, mask) -> [B]`` logits."""

    name = "vecnet"

    def __init__(self, *, hidden: int = 16, hidden_equivariant: int = 8, hidden_free: int = 4, layers: int = 2,
                 mlp_depth: int = 1, c: float = 1e-3, scale: float = INVARIANT_SCALE) -> None:
        super().__init__()
        if hidden_equivariant + hidden_free == 0:
            raise ValueError("vecnet: hidden_equivariant + hidden_free must be >= 1")
        self.hparams = {"hidden": hidden, "hidden_equivariant": hidden_equivariant, "hidden_free": hidden_free,
                        "layers": layers, "mlp_depth": mlp_depth, "c": c, "scale": scale}
        ce, cf = hidden_equivariant, hidden_free
        self.ce, self.cf, self.scale = ce, cf, float(scale)
        if ce:
            self.input_s = nn.Linear(1, ce)
            self.input_v = nn.Parameter(torch.ones(ce) + 0.1 * torch.randn(ce))
            self.eq_rounds = nn.ModuleList(
                EquivariantRound(ce=ce, hidden=hidden, depth=mlp_depth, c=c) for _ in range(layers)
            )
        if cf:
            self.input_g = nn.Linear(5, cf)
            self.free_rounds = nn.ModuleList(
                FreeRound(cf=cf, hidden=hidden, depth=mlp_depth) for _ in range(layers)
            )
        self.decoder = mlp(ce + cf, hidden, 1, mlp_depth + 1, act="silu")

    def forward(self, p4: Tensor, mask: Tensor) -> Tensor:
        p4, mask = compact(p4, mask)
        g = Graph(mask)
        x = p4[mask] / self.scale  # [M, 4]
        inv = psi(minkowski(x, x)).unsqueeze(-1)
        pooled = []
        if self.ce:
            s = self.input_s(inv)
            v = self.input_v.unsqueeze(-1) * x.unsqueeze(1)  # [M, Ce, 4]
            for rnd in self.eq_rounds:
                s, v = rnd(s, v, g)
            pooled.append(g.jet_mean(s))
        if self.cf:
            h = self.input_g(torch.cat([x, inv], dim=-1))
            for rnd in self.free_rounds:
                h = rnd(h, g)
            pooled.append(g.jet_mean(h))
        return self.decoder(torch.cat(pooled, dim=-1)).squeeze(-1)
