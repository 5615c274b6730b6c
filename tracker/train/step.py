"""The training step as a pure function of (model parameters, batch, rotation angle).

Nothing here reads configs, files or global state: the vmap strategy (:mod:`tracker.train.strategies.vmap`)
vectorises :func:`loss_fn` over a stack of models with ``torch.func`` (each member with its own parameters, its
own rotation angle and a padded batch whose padding edges weigh 0) and the loop strategy calls :func:`train_step`
with the module's own parameters: one loss for every path. The rotation is applied to the batch inside the step,
as a tensor operation, so the data can stay canonical (unrotated, collated once) and differently rotated members
share it.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.data import Data

from tracker.data.transforms import rotate_batch  # noqa: F401  (the step's rotation; vmap imports it from here)


def edge_loss(
    logits: Tensor, y: Tensor, pos_weight: Tensor | float | None = None, *, weight: Tensor | None = None
) -> Tensor:
    """Mean binary cross-entropy with logits over the edges, true edges weighted by ``pos_weight``.

    ``weight`` (per edge, 0 or 1: the mask of a padded batch) makes it the mean over the edges of weight 1,
    ``sum(weight * loss) / sum(weight)`` (0, not NaN, when every weight is 0). Works under ``torch.func.vmap``
    with a per-member ``pos_weight`` tensor.
    """
    if isinstance(pos_weight, Tensor):
        pos_weight = pos_weight.to(dtype=logits.dtype, device=logits.device)
    elif pos_weight is not None:
        pos_weight = torch.as_tensor(pos_weight, dtype=logits.dtype, device=logits.device)
    y = y.to(logits.dtype)
    if weight is None:
        return F.binary_cross_entropy_with_logits(logits, y, pos_weight=pos_weight)
    per_edge = F.binary_cross_entropy_with_logits(logits, y, pos_weight=pos_weight, reduction="none")
    w = weight.to(logits.dtype)
    return (per_edge * w).sum() / w.sum().clamp_min(1.0)


def forward(
    model: nn.Module,
    batch: Data,
    theta: Tensor | float | None = None,
    *,
    params: Mapping[str, Tensor] | None = None,
) -> Tensor:
    """Edge logits of ``batch`` rotated by ``theta``; with ``params``, through ``torch.func.functional_call``."""
    batch = rotate_batch(batch, theta)
    if params is None:
        return model(batch)
    return torch.func.functional_call(model, dict(params), (batch,))


def loss_fn(
    model: nn.Module,
    params: Mapping[str, Tensor] | None,
    batch: Data,
    theta: Tensor | float | None = None,
    *,
    pos_weight: Tensor | float | None = None,
    weight: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """``(loss, logits)`` of one batch: the differentiable core of a training step (``params`` may hold the
    buffers too; ``weight``: per-edge weights, see :func:`edge_loss`)."""
    logits = forward(model, batch, theta, params=params)
    return edge_loss(logits, batch.y, pos_weight, weight=weight), logits


def train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    batch: Data,
    theta: Tensor | float | None = None,
    *,
    pos_weight: Tensor | float | None = None,
    grad_clip: float | None = None,
) -> Tensor:
    """One optimiser step on ``batch``; returns the detached loss (the caller checks it is finite)."""
    optimizer.zero_grad(set_to_none=True)
    loss, _ = loss_fn(model, None, batch, theta, pos_weight=pos_weight)
    if not torch.isfinite(loss):
        return loss.detach()
    loss.backward()
    if grad_clip is not None:
        nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    return loss.detach()
