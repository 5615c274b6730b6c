"""Edge-classification metrics: the honest AUC from scores, threshold choice on validation, and the
reference's quantities under their correct names (SCIENCE.md §5).

An edge is predicted true when its score is ``>= threshold`` (the convention of ``sklearn.metrics.roc_curve``).
Every function accepts array-likes (``roc_auc_rows``: tensors, on their device); scores may be probabilities or
logits (the AUC only needs the ranking, a threshold is on the scale of the scores it was chosen on).
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import auc as curve_area
from sklearn.metrics import precision_recall_curve, roc_auc_score, roc_curve
from torch import Tensor

ThresholdMethod = Literal["tpr_tnr", "max_f1"]

#: the pT cuts (GeV) of the ``edge_efficiency_pt*`` metrics and their metric-name suffixes
PT_CUTS: dict[str, float] = {"pt0p9": 0.9, "pt1p5": 1.5, "pt2p0": 2.0}


def _as_arrays(y_true, scores) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true, dtype=np.float64).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"labels and scores differ in length: {y.shape[0]} vs {s.shape[0]}")
    return y, s


def _both_classes(y: np.ndarray) -> bool:
    return y.size > 0 and 0 < np.count_nonzero(y > 0.5) < y.size


def roc_auc(y_true, scores) -> float:
    """ROC AUC from continuous scores (``sklearn.metrics.roc_auc_score``); NaN when a class is missing."""
    y, s = _as_arrays(y_true, scores)
    if not _both_classes(y):
        return math.nan
    return float(roc_auc_score(y > 0.5, s))


def roc_auc_rows(y: Tensor, scores: Tensor) -> Tensor:
    """Exact ROC AUC of every row of ``scores`` (K, E) against the shared 0/1 labels ``y`` (E,), on their device.

    The Mann–Whitney statistic: for each positive, the negatives of its row with a strictly lower score plus half
    of those with an equal score (negatives sorted per row, ``torch.searchsorted`` left and right), counted in
    int64 and divided by ``n_pos * n_neg`` once in float64. It equals ``sklearn.metrics.roc_auc_score`` (the
    trapezoid under the ROC curve with ties) up to float round-off, and is the same number on every device.
    Hand-written because no library batches the AUC over a stack of models on the device (the per-epoch
    ``val_auc`` of a bundle's K members in one call). Returns float64 (K,); NaN for every row when a class is
    missing, and for rows containing a NaN score.
    """
    if scores.dim() != 2 or y.dim() != 1 or y.shape[0] != scores.shape[1]:
        raise ValueError(f"roc_auc_rows needs labels (E,) and scores (K, E), got {tuple(y.shape)} and "
                         f"{tuple(scores.shape)}")
    if scores.dtype not in (torch.float32, torch.float64):  # half types widen exactly; integers as float64
        scores = scores.to(torch.float32 if scores.is_floating_point() else torch.float64)
    pos = y.to(scores.device) > 0.5
    n_pos = int(pos.sum())
    n_neg = y.shape[0] - n_pos
    auc = torch.full((scores.shape[0],), math.nan, dtype=torch.float64, device=scores.device)
    if n_pos == 0 or n_neg == 0 or scores.shape[0] == 0:
        return auc
    neg = torch.sort(scores[:, ~pos], dim=1).values
    p = scores[:, pos].contiguous()
    below = torch.searchsorted(neg, p, side="left")  # negatives < score
    upto = torch.searchsorted(neg, p, side="right")  # negatives <= score
    twice = (below + upto).sum(dim=1)  # 2 * (lower + equal / 2), exact in int64
    auc = twice.to(torch.float64) / (2.0 * n_pos * n_neg)
    return auc.masked_fill(torch.isnan(scores).any(dim=1), math.nan)


def choose_threshold(y_true, scores, method: ThresholdMethod = "tpr_tnr") -> float:
    """The decision threshold chosen on (validation) labels and scores.

    ``tpr_tnr``: the ROC point where the true-positive rate equals the true-negative rate (the reference's
    choice; the closest point when no exact crossing exists). ``max_f1``: the threshold of maximal F1.
    """
    y, s = _as_arrays(y_true, scores)
    if not _both_classes(y):
        raise ValueError("choose_threshold needs both true and false edges in the validation split")
    if method == "tpr_tnr":
        fpr, tpr, thr = roc_curve(y > 0.5, s, drop_intermediate=False)
        finite = np.isfinite(thr)
        gap = np.abs(tpr - (1.0 - fpr))
        gap[~finite] = np.inf
        return float(thr[int(np.argmin(gap))])
    if method == "max_f1":
        precision, recall, thr = precision_recall_curve(y > 0.5, s)
        p, r = precision[:-1], recall[:-1]
        with np.errstate(divide="ignore", invalid="ignore"):
            f1 = np.where(p + r > 0, 2 * p * r / (p + r), 0.0)
        return float(thr[int(np.argmax(f1))])
    raise ValueError(f"threshold method must be 'tpr_tnr' or 'max_f1', got {method!r}")


def confusion(y_true, predicted) -> tuple[int, int, int, int]:
    """``(tp, fp, tn, fn)`` of 0/1 labels and 0/1 (or boolean) predictions."""
    y = np.asarray(y_true).ravel() > 0.5
    p = np.asarray(predicted).ravel() > 0.5
    tp = int(np.count_nonzero(y & p))
    fp = int(np.count_nonzero(~y & p))
    tn = int(np.count_nonzero(~y & ~p))
    fn = int(np.count_nonzero(y & ~p))
    return tp, fp, tn, fn


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 else math.nan


def binary_metrics(y_true, scores, threshold: float) -> dict[str, float]:
    """Metrics of the predictions ``scores >= threshold``.

    ``edge_efficiency`` = TP/(TP+FN) (recall), ``edge_purity`` = TP/(TP+FP) (precision) — the reference code has
    these two names swapped; ``auc_thresholded`` is ``roc_auc_score`` on the 0/1 predictions, the quantity the
    reference reports as "AUC". Its ROC curve has the one point (FPR, TPR) between (0, 0) and (1, 1), so its area
    is (1 + TPR - FPR) / 2, the balanced accuracy: it is computed so from the confusion counts (a scikit-learn call
    costs ~5 ms per 8k edges, and a trial's final evaluation makes one per test angle; tests/test_metrics.py checks
    the identity against ``roc_auc_score``). Undefined ratios are NaN.
    """
    y, s = _as_arrays(y_true, scores)
    pred = s >= threshold
    tp, fp, tn, fn = confusion(y, pred)
    eff = _ratio(tp, tp + fn)
    pur = _ratio(tp, tp + fp)
    tnr = _ratio(tn, tn + fp)
    f1 = _ratio(2 * tp, 2 * tp + fp + fn)
    return {
        "edge_efficiency": eff,
        "edge_purity": pur,
        "accuracy": _ratio(tp + tn, y.size),
        "balanced_accuracy": 0.5 * (eff + tnr),
        "f1": f1,
        "auc_thresholded": 0.5 * (eff + tnr) if _both_classes(y) else math.nan,
    }


def efficiency_above_pt(y_true, scores, threshold: float, edge_pt, pt_cut: float) -> float:
    """Edge efficiency restricted to true edges whose particle has pT > ``pt_cut`` GeV.

    NaN when the pT of those edges is unknown (NaN) or no true edge passes the cut.
    """
    y, s = _as_arrays(y_true, scores)
    pt = np.asarray(edge_pt, dtype=np.float64).ravel()
    if pt.shape != y.shape:
        raise ValueError(f"edge_pt has {pt.shape[0]} entries for {y.shape[0]} edges")
    true = y > 0.5
    if true.any() and np.isnan(pt[true]).all():
        return math.nan
    sel = true & (pt > pt_cut)
    if not sel.any():
        return math.nan
    return float(np.count_nonzero(s[sel] >= threshold) / np.count_nonzero(sel))


def ant_factor(auc: float, n_params: int) -> float:
    """The "ant factor v2" of seed 002: ``1 / ((1 - auc) * n_params)`` (inf for a perfect AUC)."""
    if n_params <= 0:
        raise ValueError(f"n_params must be positive, got {n_params}")
    if math.isnan(auc):
        return math.nan
    gap = (1.0 - auc) * n_params
    return math.inf if gap <= 0 else 1.0 / gap


def roc_table(y_true, scores) -> pd.DataFrame:
    """ROC points (``fpr``, ``tpr``, ``threshold``) from ``sklearn.metrics.roc_curve`` (collinear points dropped)."""
    return roc_auc_and_table(y_true, scores)[1]


def roc_auc_and_table(y_true, scores) -> tuple[float, pd.DataFrame]:
    """:func:`roc_auc` and :func:`roc_table` from one ``roc_curve``.

    ``roc_auc_score`` is the trapezoid area (``sklearn.metrics.auc``) under this same curve, so the AUC equals
    :func:`roc_auc`'s to the bit (tests/test_metrics.py) while the ROC curve of the test split, the most
    expensive part of both, is computed once instead of twice.
    """
    y, s = _as_arrays(y_true, scores)
    if not _both_classes(y):
        return math.nan, pd.DataFrame({"fpr": [], "tpr": [], "threshold": []})
    fpr, tpr, thr = roc_curve(y > 0.5, s)
    return float(curve_area(fpr, tpr)), pd.DataFrame({"fpr": fpr, "tpr": tpr, "threshold": thr})
