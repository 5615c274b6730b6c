"""Jets on the device, batched forwards, and the final evaluation of a trial (test metrics, ROC and boost tables,
inference timing). Metric names and definitions: docs/jets.md."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.nn.functional import binary_cross_entropy_with_logits

from jets.config import EvalConfig
from jets.data.dataset import JetSet
from jets.data.transforms import boost
from jets.metrics import ant_factor_v2, auc, boost_metrics, classification_metrics, roc_table

#: jets per forward in evaluation (and per timed batch: ``inference_ms_per_batch100``)
EVAL_BATCH = 100


def resolve_device(name: str) -> torch.device:
    """``auto``: CUDA when available, else CPU; ``cuda`` without a GPU is an error naming the key."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("train.device='cuda' but torch sees no CUDA device (use 'auto' or 'cpu')")
    return torch.device(name)


class DeviceJets:
    """A jet set as tensors on ``device``: ``p4`` float32 [n, N, 4], ``mask`` bool, ``label`` float32."""

    def __init__(self, jets: JetSet, device: torch.device) -> None:
        self.device = device
        self.p4 = torch.as_tensor(np.ascontiguousarray(jets.p4), dtype=torch.float32).to(device)
        self.mask = torch.as_tensor(np.ascontiguousarray(jets.mask), dtype=torch.bool).to(device)
        self.label = torch.as_tensor(np.asarray(jets.label), dtype=torch.float32).to(device)

    def __len__(self) -> int:
        return int(self.label.shape[0])

    def batches(self, order: torch.Tensor | None, batch_size: int) -> Iterator[tuple[torch.Tensor, ...]]:
        """(p4, mask, label, index) per batch, in ``order`` (a CPU index tensor) or file order."""
        n = len(self)
        idx_all = torch.arange(n) if order is None else order
        for start in range(0, n, batch_size):
            idx = idx_all[start: start + batch_size]
            d = idx.to(self.device)
            yield self.p4[d], self.mask[d], self.label[d], idx


def model_dtype(model: nn.Module) -> torch.dtype:
    p = next(model.parameters(), None)
    return torch.float32 if p is None else p.dtype


def boosted(p4: torch.Tensor, beta, axis, dtype: torch.dtype) -> torch.Tensor:
    """``p4`` boosted (float64 arithmetic, :func:`jets.data.transforms.boost`) and cast to the model's ``dtype``."""
    return boost(p4, beta, axis).to(dtype)


@dataclass
class Prediction:
    """Logits (float64, CPU) and labels of one split, and its mean BCE loss."""

    logits: np.ndarray
    labels: np.ndarray
    loss: float

    def auc(self) -> float:
        return auc(self.labels, self.logits)


@torch.no_grad()
def predict(model: nn.Module, jets: DeviceJets, *, beta: float = 0.0, axis: str = "x",
            batch_size: int = EVAL_BATCH) -> Prediction:
    """Run ``model`` in eval mode over ``jets``, each batch boosted by ``beta`` along ``axis`` when non-zero."""
    was_training = model.training
    model.eval()
    dtype = model_dtype(model)
    logits, labels = [], []
    try:
        for p4, mask, label, _ in jets.batches(None, batch_size):
            x = boosted(p4, beta, axis, dtype) if beta else p4.to(dtype)
            logits.append(model(x, mask).detach().to("cpu", torch.float64).reshape(-1))
            labels.append(label.detach().to("cpu", torch.float64))
    finally:
        model.train(was_training)
    z = torch.cat(logits) if logits else torch.zeros(0, dtype=torch.float64)
    y = torch.cat(labels) if labels else torch.zeros(0, dtype=torch.float64)
    loss = float(binary_cross_entropy_with_logits(z, y)) if len(y) else math.nan
    return Prediction(z.numpy(), y.numpy(), loss)


@torch.no_grad()
@torch.no_grad()
def precise_batch_norm(model: nn.Module, jets: DeviceJets, *, batch_size: int, max_jets: int = 2000) -> bool:
    """Recompute every batch norm's running statistics for the current weights ("precise BN").

    Running statistics are exponential averages over training steps taken with ever-changing weights; for the
    small, fast-moving taggers of a CPU sweep, and for batch norms fed the tiny pairwise invariants of collinear
    constituents (LorentzNet), they stay far from the statistics of the final weights, and an eval-mode model
    can rank jets worse than chance while the same weights in train mode rank them well. So before every
    evaluation the statistics are reset and re-measured, as an equal-weight average over training batches (the
    first ``max_jets`` training jets in file order: deterministic, so a resumed trial gets the same numbers).
    Returns whether the model has a batch norm (nothing is done otherwise).
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return False
    momenta = [m.momentum for m in norms]
    was_training = model.training
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches below
    model.train()
    dtype = model_dtype(model)
    try:
        for p4, mask, _, idx in jets.batches(None, batch_size):
            if int(idx[0]) >= max_jets:
                break
            model(p4.to(dtype), mask)
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        model.train(was_training)
    return True


def inference_ms_per_batch(model: nn.Module, jets: DeviceJets, *, runs: int, batch: int = EVAL_BATCH) -> float:
    """Mean forward time (ms, no grad, eval mode) of one batch of the first ``batch`` test jets, after a warm-up;
    CUDA work is waited for with ``torch.cuda.synchronize``."""
    was_training = model.training
    model.eval()
    dtype = model_dtype(model)
    p4, mask = jets.p4[:batch].to(dtype), jets.mask[:batch]
    sync = torch.cuda.synchronize if jets.device.type == "cuda" else (lambda: None)
    try:
        model(p4, mask)
        sync()
        t0 = time.perf_counter()
        for _ in range(runs):
            model(p4, mask)
        sync()
    finally:
        model.train(was_training)
    return 1000.0 * (time.perf_counter() - t0) / runs


def final_metrics(
    model: nn.Module, test: DeviceJets, *, cfg: EvalConfig, n_params: int
) -> tuple[dict[str, float], pd.DataFrame, pd.DataFrame]:
    """(metrics, roc table, boost table) of ``model`` on the test split; see docs/jets.md for the names.

    The boost table has one row per β of ``eval.boosts_beta``: beta, axis, accuracy, auc, rejection_30,
    test_loss. β = 0 reuses the unboosted forward.
    """
    ref = predict(model, test)
    metrics = classification_metrics(ref.labels, ref.logits)
    metrics["test_loss"] = ref.loss
    metrics["n_params"] = float(n_params)
    metrics["ant_factor_v2"] = ant_factor_v2(metrics["auc"], n_params)
    rows, per_beta = [], {}
    for beta in cfg.boosts_beta:
        pred = ref if beta == 0 else predict(model, test, beta=beta, axis=cfg.boost_axis)
        m = classification_metrics(pred.labels, pred.logits)
        per_beta[beta] = (m["accuracy"], m["auc"])
        rows.append({"beta": float(beta), "axis": cfg.boost_axis, "accuracy": m["accuracy"], "auc": m["auc"],
                     "rejection_30": m["rejection_30"], "test_loss": pred.loss})
    metrics.update(boost_metrics(per_beta))
    if cfg.timing and len(test):
        metrics["inference_ms_per_batch100"] = inference_ms_per_batch(model, test, runs=cfg.timing_runs)
    boost_table = pd.DataFrame(rows, columns=["beta", "axis", "accuracy", "auc", "rejection_30", "test_loss"])
    return {k: float(v) for k, v in metrics.items()}, roc_table(ref.labels, ref.logits), boost_table


__all__ = ["EVAL_BATCH", "DeviceJets", "Prediction", "boosted", "final_metrics", "inference_ms_per_batch",
           "model_dtype", "predict", "resolve_device"]
