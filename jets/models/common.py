"""Building blocks shared by the jet taggers: Minkowski products, ψ, masked aggregation, MLPs, jet kinematics.

Conventions (docs/jets_models.md): a batch is ``p4 [B, N, 4]`` = (E, px, py, pz) in GeV, zero padded, and
``mask [B, N]`` (True = a real constituent); a model returns one logit per jet ``[B]``. Every aggregation here
takes the mask, so padded slots never reach an output (the padding-invariance tests check it).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

#: GeV per unit of the scaled four-momenta of mlp, lgn and lorentznet (in GeV, float32 round-off of near-massless
#: constituents' m² = E² − |p|² becomes a visible input: LorentzNet's AUC then moves by ~5e-3 under a β = 0.9 boost)
P4_SCALE = 100.0
#: GeV per unit of the four-momenta vecnet builds invariants from
#: (a constant factor: invariance is kept). The pairwise invariants of a jet's nearly collinear constituents are
#: ~1e-4 in units of 100 GeV: layers without batch norm then barely see them (VecNet stayed at the loss of a
#: constant output, ln 2); in GeV it learns. (LorentzNet's batch norms rescale them; see jets.train.evaluate's
#: precise batch-norm statistics for what that needs.)
INVARIANT_SCALE = 1.0
#: Minkowski metric signature (+, −, −, −)
METRIC = (1.0, -1.0, -1.0, -1.0)


def psi(a: Tensor) -> Tensor:
    """ψ(a) = sgn(a)·log(|a| + 1): compresses the broad range of Minkowski products (LorentzNet eq. 4)."""
    return torch.sign(a) * torch.log1p(a.abs())


def metric_like(x: Tensor) -> Tensor:
    """The metric diag(+1, −1, −1, −1) as a [4] tensor of ``x``'s dtype and device."""
    return torch.tensor(METRIC, dtype=x.dtype, device=x.device)


def minkowski(a: Tensor, b: Tensor) -> Tensor:
    """⟨a, b⟩ = a⁰b⁰ − a·b over the last dimension (size 4), broadcasting the others."""
    return (a * b * metric_like(a)).sum(-1)


def minkowski_pairs(x: Tensor, y: Tensor | None = None) -> Tensor:
    """All pairwise products ⟨x_i, y_j⟩ of ``x [B, N, (C,) 4]`` and ``y`` (default x) -> [B, N, N(, C)]."""
    y = x if y is None else y
    g = metric_like(x)
    if x.dim() == 3:
        return torch.einsum("bid,bjd->bij", x * g, y)
    return torch.einsum("bicd,bjcd->bijc", x * g, y)


def masked_p4(p4: Tensor, mask: Tensor) -> Tensor:
    """``p4`` with padded slots set to exactly zero (whatever the caller left there)."""
    return p4 * mask.unsqueeze(-1).to(p4.dtype)


def compact(p4: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Drop the slots that are padding in every jet of the batch (dense pair tensors cost O(N²) per jet).

    The outputs do not depend on padding, so this changes nothing but the cost; real constituents need not be
    leading (any slot real in some jet is kept, in order).
    """
    keep = mask.any(0)
    if bool(keep.all()):
        return p4, mask
    idx = keep.nonzero().squeeze(1)
    return p4.index_select(1, idx), mask.index_select(1, idx)


def pair_mask(mask: Tensor, *, self_loops: bool = False) -> Tensor:
    """[B, N, N] bool: both constituents real (and i ≠ j unless ``self_loops``): the fully connected graph."""
    pm = mask.unsqueeze(2) & mask.unsqueeze(1)
    if not self_loops:
        pm = pm & ~torch.eye(mask.shape[1], dtype=torch.bool, device=mask.device)
    return pm


def masked_sum(x: Tensor, mask: Tensor, dim: int = 1) -> Tensor:
    """Σ over ``dim`` of the entries where ``mask`` (broadcast over x's trailing feature dims) is True."""
    m = mask.to(x.dtype)
    while m.dim() < x.dim():
        m = m.unsqueeze(-1)
    return (x * m).sum(dim)


def masked_mean(x: Tensor, mask: Tensor, dim: int = 1) -> Tensor:
    """Mean over ``dim`` of the entries where ``mask`` is True (0 where there are none)."""
    count = mask.to(x.dtype).sum(dim).clamp(min=1.0)
    while count.dim() < x.dim() - 1:
        count = count.unsqueeze(-1)
    return masked_sum(x, mask, dim) / count


class Graph:
    """The real constituents of a batch as nodes, their pairs i ≠ j within each jet as edges (message j → i).

    The message-passing models work on this edge list: padding costs nothing, and statistics (batch norm) see
    real pairs and constituents only. Edge tensors are [E, ...] with E = Σ_jets n(n − 1).
    """

    def __init__(self, mask: Tensor) -> None:
        b, n = mask.shape
        self.mask = mask
        flat = torch.cumsum(mask.reshape(-1).long(), 0).view(b, n) - 1  # node number of each real slot
        self.n_nodes = int(mask.sum())
        self.batch = torch.arange(b, device=mask.device).unsqueeze(1).expand(b, n)[mask]  # jet of each node
        jet, i, j = pair_mask(mask).nonzero(as_tuple=True)
        self.dst, self.src = flat[jet, i], flat[jet, j]  # message j -> i
        deg = torch.zeros(self.n_nodes, dtype=torch.long, device=mask.device).index_add_(
            0, self.dst, torch.ones_like(self.dst)
        )
        self.deg = deg.clamp(min=1)
        self.jet_size = mask.sum(1).clamp(min=1)

    def aggregate(self, values: Tensor) -> Tensor:
        """Σ_j values_ij per node i: [E, C] -> [n_nodes, C]."""
        return values.new_zeros((self.n_nodes, values.shape[1])).index_add_(0, self.dst, values)

    def jet_mean(self, h: Tensor) -> Tensor:
        """Mean over each jet's nodes: [n_nodes, C] -> [B, C]."""
        out = h.new_zeros((self.mask.shape[0], h.shape[1])).index_add_(0, self.batch, h)
        return out / self.jet_size.unsqueeze(1).to(h.dtype)

    def mean_aggregate(self, values: Tensor) -> Tensor:
        """mean_j values_ij per node i (over its neighbours): [E, C] -> [n_nodes, C]."""
        return self.aggregate(values) / self.deg.unsqueeze(1).to(values.dtype)

    def to_dense(self, nodes: Tensor) -> Tensor:
        """[n_nodes, ...] -> [B, N, ...] with zeros at padding."""
        out = nodes.new_zeros((*self.mask.shape, *nodes.shape[1:]))
        out[self.mask] = nodes
        return out


ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU, "silu": nn.SiLU, "gelu": nn.GELU, "tanh": nn.Tanh, "leaky_relu": nn.LeakyReLU,
}


def mlp(in_dim: int, hidden: int, out_dim: int, depth: int, *, act: str = "relu") -> nn.Sequential:
    """``depth`` hidden Linear(·, hidden) + activation layers, then Linear(·, out_dim) (depth 0: one Linear)."""
    layers: list[nn.Module] = []
    d = in_dim
    for _ in range(depth):
        layers += [nn.Linear(d, hidden), ACTIVATIONS[act]()]
        d = hidden
    layers.append(nn.Linear(d, out_dim))
    return nn.Sequential(*layers)


def mlp_count(in_dim: int, hidden: int, out_dim: int, depth: int) -> int:
    """Parameters of :func:`mlp` with the same arguments."""
    if depth == 0:
        return (in_dim + 1) * out_dim
    return (in_dim + 1) * hidden + (depth - 1) * (hidden + 1) * hidden + (hidden + 1) * out_dim


# -- jet kinematics (for the non-Lorentz baselines) ------------------------------------------------------------
def _safe(x: Tensor, mask: Tensor, fill: float = 1.0) -> Tensor:
    """``x`` with padded entries replaced by ``fill`` (so logs and divisions stay finite, gradients too)."""
    return torch.where(mask, x, torch.full_like(x, fill))


def particle_features(p4: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """The 7 per-constituent inputs of ParticleNet/PFN and the (Δη, Δφ) coordinates, relative to the jet axis.

    Features [B, N, 7]: log pT, log E, Δη, Δφ, log(pT/pT_jet), log(E/E_jet), ΔR (GeV inside the logs); padded
    slots are 0. Returns (features, coords [B, N, 2] = (Δη, Δφ)).
    """
    p4 = masked_p4(p4, mask)
    e, px, py, pz = p4.unbind(-1)
    pt = torch.sqrt(px * px + py * py)
    jet = p4.sum(1)
    jet_pt = torch.sqrt(jet[:, 1] ** 2 + jet[:, 2] ** 2).clamp(min=1e-8)
    jet_e = jet[:, 0].clamp(min=1e-8)
    jet_eta = torch.asinh(jet[:, 3] / jet_pt)
    jet_phi = torch.atan2(jet[:, 2], jet[:, 1])
    pt_s = _safe(pt, mask & (pt > 0))
    eta = torch.asinh(_safe(pz, mask) / pt_s)
    phi = torch.atan2(_safe(py, mask, 0.0), _safe(px, mask))
    deta = eta - jet_eta.unsqueeze(1)
    dphi = torch.remainder(phi - jet_phi.unsqueeze(1) + math.pi, 2 * math.pi) - math.pi
    dr = torch.sqrt(deta * deta + dphi * dphi + 1e-12)
    e_s = _safe(e, mask & (e > 0))
    feats = torch.stack([
        torch.log(pt_s), torch.log(e_s), deta, dphi,
        torch.log(pt_s / jet_pt.unsqueeze(1)), torch.log(e_s / jet_e.unsqueeze(1)), dr,
    ], dim=-1)
    m = mask.unsqueeze(-1).to(p4.dtype)
    return feats * m, torch.stack([deta, dphi], dim=-1) * m


class JetTagger(nn.Module):
    """Base class: ``forward(p4 [B, N, 4] GeV, mask [B, N]) -> Tensor[B]`` logits (no sigmoid inside)."""

    #: registry name (set by subclasses)
    name: str = ""
    hparams: dict[str, Any]

    def extra_repr(self) -> str:
        hp = getattr(self, "hparams", None)
        return ", ".join(f"{k}={v!r}" for k, v in hp.items()) if hp else ""


__all__ = [
    "INVARIANT_SCALE", "P4_SCALE", "Graph", "JetTagger", "compact", "masked_mean", "masked_p4", "masked_sum",
    "minkowski", "minkowski_pairs", "mlp", "mlp_count", "pair_mask", "particle_features", "psi",
]
