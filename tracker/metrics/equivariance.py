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

import copy
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
    """A copy on the model's device with float fields in its dtype (float64 models need float64 inputs); the
    caller's graph is left as it is (PyG's ``Data.to`` would move it in place)."""
    data = copy.copy(data).to(device)
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


def _tensors(x: torch.Tensor | Sequence[torch.Tensor]) -> list[torch.Tensor]:
    return [x] if isinstance(x, torch.Tensor) else list(x)


@torch.no_grad()
def relative_deviation(
    reference: torch.Tensor | Sequence[torch.Tensor], rotated: torch.Tensor | Sequence[torch.Tensor]
) -> float:
    """ε = Σ|rotated − reference| / Σ|reference| (the module's definition) from outputs already computed.

    ``reference`` holds R_θ φ(x) (for invariant edge scores simply φ(x)) and ``rotated`` φ(R_θ x), one tensor per
    graph (or one tensor); each graph's sums are taken in the tensors' dtype and accumulated as Python floats.
    NaN when the reference is all zeros.
    """
    refs, rots = _tensors(reference), _tensors(rotated)
    if len(refs) != len(rots):
        raise ValueError(f"relative_deviation: {len(refs)} reference tensors but {len(rots)} rotated ones")
    num = den = 0.0
    for ref, rot in zip(refs, rots):
        if ref.shape != rot.shape:
            raise ValueError(f"relative_deviation: reference shape {tuple(ref.shape)} != rotated {tuple(rot.shape)}")
        num += (rot - ref).abs().sum().item()
        den += ref.abs().sum().item()
    return num / den if den > 0 else float("nan")


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
        refs: list[torch.Tensor] = []
        rots: dict[float, list[torch.Tensor]] = {t: [] for t in thetas}
        for g in graphs:
            g = _prepare(g, device, dtype)  # cast before rotating: a float64 check needs float64 rotated inputs
            ref = model(g)
            refs.append(torch.sigmoid(ref) if scores == "probability" else ref)
            for t, outs in rots.items():  # distinct angles
                out = model(rotate(g, t))
                outs.append(torch.sigmoid(out) if scores == "probability" else out)
    finally:
        model.train(was_training)
    return {t: relative_deviation(refs, rots[t]) for t in thetas}


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
        expects: dict[float, list[torch.Tensor]] = {t: [] for t in thetas}
        gots: dict[float, list[torch.Tensor]] = {t: [] for t in thetas}
        for g in graphs:
            g = _prepare(g, device, dtype)
            emb = model.embed(g)
            if "vectors" not in emb:
                raise TypeError(f"{type(model).__name__}.embed returned no 'vectors' (keys: {sorted(emb)})")
            v = emb["vectors"]
            for t, expect in expects.items():  # distinct angles
                expect.append(rotate_vectors(v, t))
                gots[t].append(model.embed(rotate(g, t))["vectors"])
    finally:
        model.train(was_training)
    return {t: relative_deviation(expects[t], gots[t]) for t in thetas}


__all__ = ["equivariance_deviation", "relative_deviation", "rotate_vectors", "vector_equivariance_deviation"]
