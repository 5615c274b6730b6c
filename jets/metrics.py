"""Jet-tagging metrics: accuracy, the true ROC AUC, background rejection at fixed signal efficiency, the ant factor
v2 and the boost-robustness summary. Definitions in docs/jets.md; top jets are the signal (label 1).

Scores may be probabilities or logits (the ROC only needs the ranking); :func:`accuracy` thresholds the
probability at 0.5 (the sigmoid of the logit), i.e. the logit at 0. Metrics that cannot be computed are NaN
(a class missing) or infinite (no background passes), and the trainer leaves non-finite values out.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd
from scipy.special import expit
from sklearn.metrics import roc_auc_score, roc_curve

from jets.config import beta_name

#: the signal efficiencies of ``rejection_30`` and ``rejection_50``
REJECTION_EFFICIENCIES: dict[str, float] = {"rejection_30": 0.3, "rejection_50": 0.5}
#: the probability threshold of ``accuracy`` (reported as the metric ``threshold``)
THRESHOLD = 0.5


def _arrays(labels, scores) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels).ravel().astype(np.float64)
    s = np.asarray(scores, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"labels and scores differ in length: {y.shape[0]} vs {s.shape[0]}")
    return y > 0.5, s


def _both_classes(y: np.ndarray) -> bool:
    return 0 < int(y.sum()) < y.size


def accuracy(labels, probabilities, threshold: float = THRESHOLD) -> float:
    """Share of jets whose predicted class (probability >= ``threshold``) is the true one; NaN for no jets."""
    y, p = _arrays(labels, probabilities)
    return float(np.mean((p >= threshold) == y)) if y.size else math.nan


def auc(labels, scores) -> float:
    """ROC AUC from continuous scores (``sklearn.metrics.roc_auc_score``); NaN when a class is missing."""
    y, s = _arrays(labels, scores)
    return float(roc_auc_score(y, s)) if _both_classes(y) else math.nan


def roc_table(labels, scores) -> pd.DataFrame:
    """The ROC curve (``sklearn.metrics.roc_curve``, every threshold kept): columns ``fpr`` (ε_B), ``tpr`` (ε_S),
    ``threshold`` (a jet is tagged when its score >= threshold; the first row's is +inf: nothing tagged). Empty
    when a class is missing."""
    y, s = _arrays(labels, scores)
    if not _both_classes(y):
        return pd.DataFrame({"fpr": [], "tpr": [], "threshold": []}, dtype=np.float64)
    fpr, tpr, thr = roc_curve(y, s, drop_intermediate=False)
    return pd.DataFrame({"fpr": fpr, "tpr": tpr, "threshold": thr.astype(np.float64)})


def background_efficiency(fpr: np.ndarray, tpr: np.ndarray, signal_efficiency: float) -> float:
    """ε_B at signal efficiency ε_S on a ROC curve (``tpr`` non-decreasing): linear interpolation between the two
    ROC points around ε_S; where the curve reaches ε_S exactly, the smallest ε_B it has there."""
    fpr = np.asarray(fpr, dtype=np.float64)
    tpr = np.asarray(tpr, dtype=np.float64)
    if tpr.size == 0 or not 0 < signal_efficiency <= 1:
        return math.nan
    i = int(np.searchsorted(tpr, signal_efficiency, side="left"))  # first point with tpr >= eps_S
    if i >= tpr.size:
        return math.nan
    if tpr[i] == signal_efficiency or i == 0:
        return float(fpr[i])
    t0, t1, f0, f1 = tpr[i - 1], tpr[i], fpr[i - 1], fpr[i]
    return float(f0 + (signal_efficiency - t0) * (f1 - f0) / (t1 - t0))


def rejection(labels, scores, signal_efficiency: float) -> float:
    """Background rejection 1/ε_B at signal efficiency ε_S (interpolated on the ROC curve; inf when ε_B = 0)."""
    roc = roc_table(labels, scores)
    eps_b = background_efficiency(roc["fpr"].to_numpy(), roc["tpr"].to_numpy(), signal_efficiency)
    if math.isnan(eps_b):
        return math.nan
    return math.inf if eps_b == 0 else 1.0 / eps_b


def ant_factor_v2(auc_value: float, n_params: int) -> float:
    """``1 / ((1 − AUC) · N_params)`` (seed 002, after Murnane et al.); inf for AUC = 1, NaN for a NaN AUC."""
    if math.isnan(auc_value) or n_params <= 0:
        return math.nan
    denominator = (1.0 - auc_value) * n_params
    return math.inf if denominator == 0 else 1.0 / denominator


def classification_metrics(labels, logits) -> dict[str, float]:
    """``accuracy``, ``auc``, ``rejection_30``, ``rejection_50`` and ``threshold`` of one split's logits."""
    y, z = _arrays(labels, logits)
    prob = expit(z)
    out = {"accuracy": accuracy(y, prob), "auc": auc(y, z)}
    roc = roc_table(y, z)
    fpr, tpr = roc["fpr"].to_numpy(), roc["tpr"].to_numpy()
    for name, eff in REJECTION_EFFICIENCIES.items():
        eps_b = background_efficiency(fpr, tpr, eff)
        out[name] = math.nan if math.isnan(eps_b) else (math.inf if eps_b == 0 else 1.0 / eps_b)
    out["threshold"] = THRESHOLD
    return out


def boost_metrics(results: Mapping[float, tuple[float, float]]) -> dict[str, float]:
    """``acc_boost_{β·100:03d}``, ``auc_boost_{β·100:03d}`` for each β of ``results`` (β -> (accuracy, AUC)), and
    ``boost_spread`` = max − min of the AUCs (0 for one β; left out without betas)."""
    out: dict[str, float] = {}
    for beta, (acc, auc_value) in results.items():
        out[f"acc_boost_{beta_name(beta)}"] = float(acc)
        out[f"auc_boost_{beta_name(beta)}"] = float(auc_value)
    aucs = [float(a) for _, a in results.values()]
    if aucs:
        out["boost_spread"] = float(max(aucs) - min(aucs)) if not any(math.isnan(a) for a in aucs) else math.nan
    return out


__all__ = ["REJECTION_EFFICIENCIES", "THRESHOLD", "accuracy", "ant_factor_v2", "auc", "background_efficiency",
           "boost_metrics", "classification_metrics", "rejection", "roc_table"]
