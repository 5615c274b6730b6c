"""Building blocks of the model zoo in plain PyTorch (the default path): ψ, MLPs, graph inputs, the base class.

Tensors are row-major as in PyG: node features [N, C], edge features [E, C], edge_index [2, E] with row 0 the
source j and row 1 the target i of each message (PyG's ``source_to_target`` flow). The opt-in fast path
(``fused=True``) lives in :mod:`tracker.models.fused` and reuses the same modules and parameters.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch_geometric.data import Data


def psi(a: Tensor) -> Tensor:
    """ψ(a) = sgn(a)·log(|a| + 1): compresses broad distributions (EuclidNet eq. 3.1).

    sgn is taken of ``a`` detached: its derivative is zero anyway, and autograd then skips a zero-filled tensor.
    """
    return torch.sign(a.detach()) * torch.log1p(a.abs())


def invariants(v_i: Tensor, v_j: Tensor) -> Tensor:
    """The rotation-invariant edge inputs (ψ(‖x_i − x_j‖²), ψ(⟨x_i, x_j⟩)) [E, 2] of vectors v_i, v_j [E, 2]."""
    diff = v_i - v_j
    return torch.stack([psi((diff * diff).sum(-1)), psi((v_i * v_j).sum(-1))], dim=-1)


ACTIVATIONS: dict[str, type[nn.Module]] = {
    "silu": nn.SiLU, "relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU, "sigmoid": nn.Sigmoid,
}


class NoAffineLayerNorm(nn.LayerNorm):
    """LayerNorm without learnable affine parameters (the EuclidNet reference's choice); no state-dict entries."""

    def __init__(self, width: int, eps: float = 1e-5) -> None:
        super().__init__(width, eps=eps, elementwise_affine=False)

    @property
    def width(self) -> int:
        return self.normalized_shape[0]


def mlp(
    in_dim: int,
    hidden: int,
    out_dim: int,
    depth: int,
    *,
    act: str = "silu",
    layer_norm: bool = True,
    out_act: str | None = None,
) -> nn.Sequential:
    """``depth`` hidden Linear(·, hidden) layers, each followed by [LayerNorm] + activation, then Linear(·, out_dim).

    ``out_act`` (e.g. ``"sigmoid"``) adds [LayerNorm] + that activation after the output layer. ``depth = 0``
    gives a single Linear(in_dim, out_dim).
    """
    layers: list[nn.Module] = []
    d = in_dim
    for _ in range(depth):
        layers.append(nn.Linear(d, hidden))
        if layer_norm:
            layers.append(NoAffineLayerNorm(hidden))
        layers.append(ACTIVATIONS[act]())
        d = hidden
    layers.append(nn.Linear(d, out_dim))
    if out_act is not None:
        if layer_norm:
            layers.append(NoAffineLayerNorm(out_dim))
        layers.append(ACTIVATIONS[out_act]())
    return nn.Sequential(*layers)


class ConcatMLP(nn.Module):
    """An MLP ``seq`` applied to the concatenation of its inputs: ``phi(a, b, c) = seq([a, b, c])``.

    ``parts`` are the widths of the inputs, in order (a zero-width part is simply left out of the call). The
    fused path uses them to apply the first layer part by part; the parameters are those of ``seq``.
    """

    def __init__(self, parts: Sequence[int], seq: nn.Sequential) -> None:
        super().__init__()
        if not isinstance(seq[0], nn.Linear) or seq[0].in_features != sum(parts):
            raise ValueError(f"ConcatMLP: first layer must be Linear({sum(parts)}, ·), got {seq[0]}")
        self.parts = tuple(int(p) for p in parts)
        self.offsets = tuple(itertools.accumulate(self.parts, initial=0))  # where each part starts
        self.seq = seq

    def forward(self, *inputs: Tensor) -> Tensor:
        """``seq`` on the inputs concatenated along the last (feature) dimension."""
        return self.seq(torch.cat(inputs, dim=-1))


# -- graph inputs ---------------------------------------------------------------------------------------------
def transverse(data: Data) -> tuple[Tensor, Tensor]:
    """Transverse (x, y) [N, 2] and z [N, 1] in metres: from ``pos``, else from ``x`` = (r/1000, φ/π, z/1000)."""
    pos = getattr(data, "pos", None)
    if pos is not None:
        return pos[:, :2], pos[:, 2:3]
    x = data.x
    r, phi = x[:, 0], x[:, 1] * math.pi
    return torch.stack([r * torch.cos(phi), r * torch.sin(phi)], dim=-1), x[:, 2:3]


def symmetrise(edge_index: Tensor, edge_attr: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
    """Both directions of every stored edge: edge_index [2, 2E] and attr [2E, 4]; the first E are the stored ones.

    Reversed copies get (dr, dφ, dz) negated and dR kept (dR is a distance; the reference's negated dR is a defect).
    """
    both = torch.cat([edge_index, edge_index.flip(0)], dim=1)
    if edge_attr is None:
        return both, None
    sign = torch.tensor([-1.0, -1.0, -1.0, 1.0], dtype=edge_attr.dtype, device=edge_attr.device)
    return both, torch.cat([edge_attr, edge_attr * sign], dim=0)


def num_nodes_of(data: Data) -> int:
    n = data.num_nodes
    if n is None:
        raise ValueError("graph has no nodes (num_nodes is None)")
    return int(n)


class EdgeClassifier(nn.Module):
    """Base class: ``forward(data) -> Tensor[E]`` logits, one per stored edge; no sigmoid inside.

    ``fused`` (a hyperparameter of every model, default False) selects the feature-major fast path of
    :mod:`tracker.models.fused` instead of the plain one; both compute the same function with the same parameters.
    """

    #: name in the registry (set by subclasses)
    name: str = ""
    hparams: dict
    fused: bool = False

    def extra_repr(self) -> str:
        hp = getattr(self, "hparams", None)
        return ", ".join(f"{k}={v!r}" for k, v in hp.items()) if hp else ""
