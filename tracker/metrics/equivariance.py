"""Equivariance of a model under rotations about the beam (z) axis: the paper's relative deviation ε(θ).

EuclidNet paper, appendix B (eq. B.1): ε(θ) = (⟨φ(R_θ x)⟩ − ⟨R_θ φ(x)⟩) / ⟨R_θ φ(x)⟩, ⟨·⟩ a mean over events.
Taken literally on signed outputs, positive and negative deviations cancel and the denominator can be ~0 (a mean
of logits), so here both means are of magnitudes:

    ε(θ) = Σ_graphs Σ_k |φ(R_θ x)_k − (R_θ φ(x))_k|  /  Σ_graphs Σ_k |(R_θ φ(x))_k|

i.e. the mean absolute deviation over all outputs k of all graphs relative to the mean absolute output.
For edge scores (invariant outputs) R_θ φ(x) = φ(x); for vector embeddings [N, 2] R_θ acts on each row.
An exactly invariant/equivariant model gives ε ≈ float round-off (~1e-7 in float32, ~1e-15 in float64).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Literal

import torch
from torch import nn
from torch_geometric.data import Data

from tracker.data.transforms import rotate

Scores = Literal["probability", "logit"]


def _as_list(graphs: Data | Iterable[Data]) -> list[Data]:
    if isinstance(graphs, Data):
        return [graphs]
    out = list(graphs)
    if not out:
        raise ValueError("equivariance_deviation: graphs is empty; pass at least one graph")
    return out


def _model_device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    p = next(model.parameters(), None)
    if p is None:
        return torch.device("cpu"), torch.float32
    return p.device, p.dtype


def _prepare(data: Data, device: torch.device, dtype: torch.dtype) -> Data:
    """Move to the model's device and cast float fields to its dtype (float64 models need float64 inputs)."""
    data = data.to(device)
    for key in ("x", "pos", "edge_attr"):
        v = getattr(data, key, None)
        if v is not None and v.is_floating_point():
            data[key] = v.to(dtype)
    return data


def rotate_vectors(v: torch.Tensor, theta: float) -> torch.Tensor:
    """Rotate rows of an [N, 2] (or [N, C, 2]) tensor of transverse vectors by ``theta`` radians."""
    c, s = math.cos(theta), math.sin(theta)
    rot = torch.tensor([[c, -s], [s, c]], dtype=v.dtype, device=v.device)
    return v @ rot.T


def _check_thetas(thetas: Sequence[float]) -> list[float]:
    thetas = [float(t) for t in thetas]
    if not thetas:
        raise ValueError("equivariance_deviation: thetas is empty; pass angles in radians, e.g. [0.3, 1.2]")
    return thetas


@torch.no_grad()
def equivariance_deviation(
    model: nn.Module,
    graphs: Data | Iterable[Data],
    thetas: Sequence[float],
    *,
    scores: Scores = "probability",
) -> dict[float, float]:
    """ε(θ) of the edge scores for every angle θ (radians) in ``thetas``; keys are the angles as given.

    ``scores="probability"`` compares sigmoid(logits) (the paper's truth scores), ``"logit"`` the raw logits.
    Works for any model of the zoo (equivariant or not); the model is put in eval mode for the measurement.
    """
    if scores not in ("probability", "logit"):
        raise ValueError(f"equivariance_deviation: scores={scores!r}; expected 'probability' or 'logit'")
    graphs = _as_list(graphs)
    thetas = _check_thetas(thetas)
    device, dtype = _model_device_dtype(model)
    was_training = model.training
    model.eval()
    try:
        num = {t: 0.0 for t in thetas}
        den = {t: 0.0 for t in thetas}
        for g in graphs:
            g = _prepare(g, device, dtype)  # cast before rotating: a float64 check needs float64 rotated inputs
            ref = model(g)
            if scores == "probability":
                ref = torch.sigmoid(ref)
            ref_abs = ref.abs().sum().item()
            for t in thetas:
                out = model(rotate(g, t))
                if scores == "probability":
                    out = torch.sigmoid(out)
                num[t] += (out - ref).abs().sum().item()
                den[t] += ref_abs
    finally:
        model.train(was_training)
    return {t: (num[t] / den[t] if den[t] > 0 else float("nan")) for t in thetas}


@torch.no_grad()
def vector_equivariance_deviation(
    model: nn.Module,
    graphs: Data | Iterable[Data],
    thetas: Sequence[float],
) -> dict[float, float]:
    """ε(θ) of the transverse vector embeddings: compares ``embed(R_θ x)["vectors"]`` with ``R_θ embed(x)["vectors"]``.

    Needs a model with ``embed(data) -> dict`` holding ``"vectors"`` of shape [N, 2] (euclidnet, egnn, hybrid,
    euclidnet_noneq of ``tracker.models``); raises ``TypeError`` for a model without vector embeddings.
    """
    if not callable(getattr(model, "embed", None)):
        raise TypeError(f"{type(model).__name__} has no embed(data) method exposing vector embeddings")
    graphs = _as_list(graphs)
    thetas = _check_thetas(thetas)
    device, dtype = _model_device_dtype(model)
    was_training = model.training
    model.eval()
    try:
        num = {t: 0.0 for t in thetas}
        den = {t: 0.0 for t in thetas}
        for g in graphs:
            g = _prepare(g, device, dtype)
            emb = model.embed(g)
            if "vectors" not in emb:
                raise TypeError(f"{type(model).__name__}.embed returned no 'vectors' (keys: {sorted(emb)})")
            v = emb["vectors"]
            for t in thetas:
                expect = rotate_vectors(v, t)
                got = model.embed(rotate(g, t))["vectors"]
                num[t] += (got - expect).abs().sum().item()
                den[t] += expect.abs().sum().item()
    finally:
        model.train(was_training)
    return {t: (num[t] / den[t] if den[t] > 0 else float("nan")) for t in thetas}


__all__ = ["equivariance_deviation", "rotate_vectors", "vector_equivariance_deviation"]
