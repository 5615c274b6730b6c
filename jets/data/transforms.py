"""Lorentz transformations of jet sets: boosts along any axis, rotations, random boost augmentation.

Four-momenta are ``(E, px, py, pz)`` in the last dimension (numpy arrays or torch tensors of any leading shape,
e.g. a jet set ``[n_jets, n_max, 4]``). The arithmetic is float64 whatever the input dtype; the result has the
input's type, dtype and device. Zero padding stays exactly zero (a Lorentz transformation is linear), so masks
are unchanged.

Convention: :func:`boost` is *active* — the jet is given the velocity ``β`` along the axis; a particle at rest of
mass m becomes ``(γm, γβm·n)``, and a boost along z adds ``artanh β`` to every rapidity. ``boost(p, -β, n)``
undoes ``boost(p, β, n)``.
"""

from __future__ import annotations

from typing import Union

import numpy as np
import torch

ArrayLike = Union[np.ndarray, torch.Tensor]
AxisLike = Union[str, tuple, list, np.ndarray, torch.Tensor]

_AXES = {"x": (1.0, 0.0, 0.0), "y": (0.0, 1.0, 0.0), "z": (0.0, 0.0, 1.0)}


def _as_f64(a: ArrayLike, like: torch.Tensor | None = None) -> torch.Tensor:
    if isinstance(a, torch.Tensor):
        return a.to(torch.float64)
    t = torch.as_tensor(np.asarray(a, dtype=np.float64))
    return t if like is None else t.to(like.device)


def _unit(axis: AxisLike, like: torch.Tensor) -> torch.Tensor:
    """Unit direction(s) [..., 3] in float64 on ``like``'s device from "x"/"y"/"z" or a (batch of) 3-vectors."""
    if isinstance(axis, str):
        if axis not in _AXES:
            raise ValueError(f"axis={axis!r}: expected 'x', 'y', 'z' or a 3-vector")
        return torch.tensor(_AXES[axis], dtype=torch.float64, device=like.device)
    n = _as_f64(axis, like).to(like.device)
    if n.shape[-1:] != (3,):
        raise ValueError(f"axis of shape {tuple(n.shape)}: expected [..., 3]")
    norm = torch.linalg.vector_norm(n, dim=-1, keepdim=True)
    if bool((norm == 0).any()):
        raise ValueError("axis: a zero vector has no direction")
    return n / norm


def _per_jet(value: torch.Tensor, p: torch.Tensor, trailing: int) -> torch.Tensor:
    """Broadcast a per-jet quantity [n_jets, *rest] against ``p`` [n_jets, n_max, 4] (``trailing`` = len(rest))."""
    extra = p.dim() - 1 - (value.dim() - trailing)
    if value.dim() > trailing and extra > 0:
        value = value.reshape(*value.shape[: value.dim() - trailing], *([1] * extra), *value.shape[value.dim() - trailing:])
    return value


def _like(out: torch.Tensor, ref: ArrayLike) -> ArrayLike:
    if isinstance(ref, torch.Tensor):
        return out.to(ref.dtype)
    return out.numpy().astype(np.asarray(ref).dtype, copy=False)


def boost(p4: ArrayLike, beta: float | ArrayLike, axis: AxisLike = "z") -> ArrayLike:
    """Boost four-momenta by velocity ``beta`` (|β| < 1) along ``axis`` (active convention, see the module).

    ``beta``: a number, or one per jet ``[n_jets]``; ``axis``: "x", "y", "z", a 3-vector, or one per jet
    ``[n_jets, 3]`` (normalised here). E' = γ(E + β p∥), p∥' = γ(p∥ + β E), p⊥' = p⊥.
    """
    p = _as_f64(p4)
    if p.shape[-1:] != (4,):
        raise ValueError(f"p4 of shape {tuple(p.shape)}: expected [..., 4] (E, px, py, pz)")
    b = _as_f64(beta, p).to(p.device)
    if bool((b.abs() >= 1).any()) or bool(torch.isnan(b).any()):
        raise ValueError(f"beta must satisfy |β| < 1, got {beta!r}")
    n = _unit(axis, p)
    b = _per_jet(b, p, 0)[..., None]  # [..., 1]
    n = _per_jet(n, p, 1)  # [..., 3]
    gamma = 1.0 / torch.sqrt(1.0 - b * b)
    e, vec = p[..., :1], p[..., 1:]
    p_par = (vec * n).sum(-1, keepdim=True)
    e_new = gamma * (e + b * p_par)
    vec_new = vec + ((gamma - 1.0) * p_par + gamma * b * e) * n
    return _like(torch.cat([e_new, vec_new], dim=-1), p4)


def rotate(p4: ArrayLike, angle: float | ArrayLike, axis: AxisLike = "z") -> ArrayLike:
    """Rotate the momenta ``(px, py, pz)`` by ``angle`` radians about ``axis`` (right-handed; E unchanged).

    ``angle``: a number or one per jet; ``axis`` as in :func:`boost` (Rodrigues' formula).
    """
    p = _as_f64(p4)
    if p.shape[-1:] != (4,):
        raise ValueError(f"p4 of shape {tuple(p.shape)}: expected [..., 4] (E, px, py, pz)")
    a = _per_jet(_as_f64(angle, p).to(p.device), p, 0)[..., None]
    k = _per_jet(_unit(axis, p), p, 1)
    v = p[..., 1:]
    k = k.expand_as(v)
    cos, sin = torch.cos(a), torch.sin(a)
    v_new = v * cos + torch.linalg.cross(k, v, dim=-1) * sin + k * (k * v).sum(-1, keepdim=True) * (1 - cos)
    return _like(torch.cat([p[..., :1], v_new], dim=-1), p4)


def minkowski_norm2(p4: ArrayLike) -> ArrayLike:
    """E² − |p|² of each four-vector (float64; the invariant mass squared)."""
    p = _as_f64(p4)
    out = p[..., 0] ** 2 - (p[..., 1:] ** 2).sum(-1)
    return out if isinstance(p4, torch.Tensor) else out.numpy()


def random_boosts(
    n: int, beta_max: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """(β [n], direction [n, 3]) for boost augmentation: |β| uniform in [0, beta_max], the direction uniform on
    the sphere (normalised Gaussian), drawn from ``generator`` (CPU, float64) so that a seed fixes them."""
    if not 0 <= beta_max < 1:
        raise ValueError(f"beta_max={beta_max!r}: expected 0 <= beta_max < 1")
    beta = torch.rand(n, generator=generator, dtype=torch.float64) * beta_max
    direction = torch.randn(n, 3, generator=generator, dtype=torch.float64)
    norm = torch.linalg.vector_norm(direction, dim=-1, keepdim=True)
    direction = torch.where(norm > 1e-12, direction / norm.clamp_min(1e-12), torch.tensor([0.0, 0.0, 1.0],
                                                                                        dtype=torch.float64))
    return beta, direction


__all__ = ["boost", "minkowski_norm2", "random_boosts", "rotate"]
