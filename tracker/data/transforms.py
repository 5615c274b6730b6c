"""Rotations about the beam (z) axis, applied consistently to every coordinate of a hit graph.

``pos`` (x, y) is rotated, the azimuth feature φ/π in ``x[:, 1]`` is shifted by θ/π and wrapped to [-1, 1),
and ``edge_attr`` (dr, dφ, dz, dR) is left unchanged: differences of φ and dR are rotation invariant.
"""

from __future__ import annotations

import math

import torch
from torch_geometric.data import Data
from torch_geometric.transforms import BaseTransform


def wrap_unit(v: torch.Tensor) -> torch.Tensor:
    """Wrap φ/π values into [-1, 1)."""
    return torch.remainder(v + 1.0, 2.0) - 1.0


def rotate(data: Data, theta: float) -> Data:
    """Return a new ``Data`` rotated by ``theta`` radians about z; the input is not modified."""
    out = data.clone()
    theta = float(theta)
    c, s = math.cos(theta), math.sin(theta)
    if getattr(data, "pos", None) is not None:
        pos = data.pos.to(torch.float64)
        new = pos.clone()
        new[:, 0] = c * pos[:, 0] - s * pos[:, 1]
        new[:, 1] = s * pos[:, 0] + c * pos[:, 1]
        out.pos = new.to(data.pos.dtype)
    if getattr(data, "x", None) is not None:
        x = data.x.clone()
        phi = data.x[:, 1].to(torch.float64) + theta / math.pi
        x[:, 1] = wrap_unit(phi).to(x.dtype)
        out.x = x
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
