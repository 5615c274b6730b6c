"""Rotations about the beam (z) axis, applied consistently to every coordinate of a hit graph.

``pos`` (x, y) is rotated, the azimuth feature φ/π in ``x[:, 1]`` is shifted by θ/π and wrapped to [-1, 1),
and ``edge_attr`` (dr, dφ, dz, dR) is left unchanged: differences of φ and dR are rotation invariant.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import Tensor
from torch_geometric.data import Data
from torch_geometric.transforms import BaseTransform


def wrap_unit(v: torch.Tensor) -> torch.Tensor:
    """Wrap φ/π values into [-1, 1)."""
    return torch.remainder(v + 1.0, 2.0) - 1.0


def rotate(data: Data, theta: float) -> Data:
    """Return a new ``Data`` rotated by ``theta`` radians about z; the input is not modified."""
    return rotate_batch(data.clone(), float(theta))


def rotate_batch(batch: Data, theta: Tensor | float | None) -> Data:
    """``batch`` rotated about z by ``theta`` radians: one angle, or one per graph (``[num_graphs]``).

    The one implementation of the rotation (module docstring), computed in float64; per-graph angles let the
    members of a bundle share one canonical batch. Returns a shallow copy (the input is not modified); ``None`` or
    a Python ``0.0`` returns the batch itself.
    """
    if theta is None or (isinstance(theta, (int, float)) and theta == 0.0):
        return batch
    theta = torch.as_tensor(theta, dtype=torch.float64, device=batch.x.device)
    if theta.dim() == 1:
        index = getattr(batch, "batch", None)
        if index is None:
            if theta.numel() != 1:
                raise ValueError(f"{theta.numel()} angles given for a single graph")
            theta = theta[0]
        else:
            theta = theta[index]
    out = copy.copy(batch)  # shallow: new attribute store, same tensors
    c, s = torch.cos(theta), torch.sin(theta)
    pos = getattr(batch, "pos", None)
    if pos is not None:
        p = pos.to(torch.float64)
        new = torch.stack((c * p[:, 0] - s * p[:, 1], s * p[:, 0] + c * p[:, 1], p[:, 2]), dim=1)
        out.pos = new.to(pos.dtype)
    x = batch.x
    phi = x[:, 1].to(torch.float64) + theta / math.pi
    phi = wrap_unit(phi)
    out.x = torch.cat((x[:, :1], phi.to(x.dtype).unsqueeze(1), x[:, 2:]), dim=1)
    return out


class Rotate(BaseTransform):
    """Rotate every graph by a fixed angle (radians) about z; ``Rotate.from_degrees(45)`` for degrees."""

    def __init__(self, theta: float) -> None:
        self.theta = float(theta)

    @classmethod
    def from_degrees(cls, deg: float) -> Rotate:
        return cls(math.radians(deg))

    def forward(self, data: Data) -> Data:
        return rotate(data, self.theta)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(theta={self.theta:.6g})"
