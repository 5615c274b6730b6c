"""Evaluation of a trained model: per-epoch validation, and the final test metrics of a trial
(threshold from validation, rotation robustness, equivariance, timing, tracks). Names follow
docs/architecture.md; metrics that cannot be computed (NaN, e.g. pT unknown) are left out."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn

from tracker.metrics.classification import (
    PT_CUTS,
    ant_factor,
    binary_metrics,
    choose_threshold,
    efficiency_above_pt,
    roc_auc,
    roc_auc_and_table,
    roc_auc_rows,
)
from tracker.metrics.tracks import connected_tracks, match_event, track_metrics
from tracker.train.config import EvalConfig
from tracker.train.data import GraphSet
from tracker.train.step import edge_loss, forward


@dataclass
class SplitPrediction:
    """Logits and labels of every graph of a split (CPU, float64) and the split's loss.

    ``epoch_auc_value``: :meth:`epoch_auc` of these logits when already computed (a vmap bundle computes its
    members' in one batched call, :func:`tracker.train.strategies.vmap.predict_stacked`); ``None``: computed on demand.
    """

    logits: list[torch.Tensor]
    labels: list[torch.Tensor]
    loss: float
    epoch_auc_value: float | None = None

    @property
    def scores(self) -> np.ndarray:
        """Probabilities of all edges, concatenated (float64 keeps the ranking of large logits)."""
        return torch.sigmoid(torch.cat(self.logits)).numpy()

    @property
    def y(self) -> np.ndarray:
        return torch.cat(self.labels).numpy()

    def auc(self) -> float:
        """ROC AUC of the probabilities (scikit-learn), the final metrics' ``auc``."""
        return roc_auc(self.y, self.scores)

    def epoch_auc(self) -> float:
        """The per-epoch ``val_auc``: exact rank AUC (:func:`~tracker.metrics.classification.roc_auc_rows`) of
        the float64 logits, same ranking as the probabilities without the ties of a saturated float64 sigmoid;
        ``epoch_auc_value`` when set."""
        if self.epoch_auc_value is not None:
            return self.epoch_auc_value
        return float(roc_auc_rows(torch.cat(self.labels), torch.cat(self.logits).to(torch.float64)[None])[0])


@torch.no_grad()
def predict(
    model: nn.Module, split: GraphSet, theta: float | None = None, *, pos_weight: float | None = None
) -> SplitPrediction:
    """Run ``model`` (in eval mode) on every graph of ``split``, rotated by ``theta`` radians if given."""
    was_training = model.training
    model.eval()
    logits, labels = [], []
    try:
        for batch, _ in split.batches():
            logits.append(forward(model, batch, theta).detach().to("cpu", torch.float64).reshape(-1))
            labels.append(batch.y.detach().to("cpu", torch.float64).reshape(-1))
    finally:
        model.train(was_training)
    all_logits, all_y = torch.cat(logits), torch.cat(labels)
    loss = float(edge_loss(all_logits, all_y, pos_weight))
    return SplitPrediction(logits, labels, loss)


def _edge_pt(split: GraphSet) -> np.ndarray:
    """pT of each edge's source hit (NaN where unknown), concatenated over the split."""
    out = []
    for g in split.graphs:
        pt = getattr(g, "pt", None)
        e = g.edge_index.shape[1]
        out.append(np.full(e, np.nan) if pt is None else pt[g.edge_index[0]].detach().cpu().double().numpy())
    return np.concatenate(out)


@torch.no_grad()
def inference_ms_per_graph(model: nn.Module, split: GraphSet, *, runs: int) -> float:
    """Mean forward time per graph (ms, batch of one graph, no grad, after one warm-up pass)."""
    model.eval()
    batches = [b for b, _ in split.batches()]
    sync = torch.cuda.synchronize if split.device.type == "cuda" else (lambda: None)
    for b in batches:
        model(b)
    sync()
    t0 = time.perf_counter()
    for _ in range(runs):
        for b in batches:
            model(b)
    sync()
    return 1000.0 * (time.perf_counter() - t0) / (runs * len(batches))


def _angle_name(deg: float) -> str:
    return f"{round(deg):03d}"


def equivariance_metrics(
    reference: SplitPrediction, rotated: dict[float, SplitPrediction], *, dtype: torch.dtype = torch.float32
) -> dict[str, float]:
    """``equivariance_dev_{deg:03d}`` from predictions already made (unrotated ``reference``, ``rotated`` by degrees).

    Same value as :func:`tracker.metrics.equivariance.equivariance_deviation` on the split (probabilities, shared
    definition :func:`~tracker.metrics.equivariance.relative_deviation`) without running the rotated forwards a
    second time; the float64 logits are cast back to the model's ``dtype`` (exact: they came from it) so the
    sigmoid and the sums are the ones that function computes.
    """
    from tracker.metrics.equivariance import relative_deviation

    def probs(pred: SplitPrediction) -> list[torch.Tensor]:
        return [torch.sigmoid(lg.to(dtype)) for lg in pred.logits]

    ref = probs(reference)
    return {f"equivariance_dev_{_angle_name(d)}": float(relative_deviation(ref, probs(p))) for d, p in rotated.items()}


def _model_dtype(model: nn.Module) -> torch.dtype:
    p = next(model.parameters(), None)
    return torch.float32 if p is None else p.dtype


@dataclass
class FinalPredictions:
    """Every prediction :func:`final_metrics` reads: the validation split at the training angle, the test split
    unrotated, and the test split at each non-zero angle of ``eval.rotations_deg`` (keyed by degrees, as in the
    config; angle 0 is the unrotated ``test``)."""

    val: SplitPrediction
    test: SplitPrediction
    rotated: dict[float, SplitPrediction]


def final_predictions(
    model: nn.Module,
    *,
    val: GraphSet,
    test: GraphSet,
    cfg: EvalConfig,
    val_theta: float | None,
    pos_weight: float | None,
) -> FinalPredictions:
    """The :class:`FinalPredictions` of one model, one forward per split and angle (``predict``)."""
    return FinalPredictions(
        val=predict(model, val, val_theta, pos_weight=pos_weight),
        test=predict(model, test, None, pos_weight=pos_weight),
        rotated={deg: predict(model, test, math.radians(deg), pos_weight=pos_weight)
                 for deg in cfg.rotations_deg if deg != 0},
    )


def final_metrics(
    model: nn.Module,
    *,
    val: GraphSet,
    test: GraphSet,
    cfg: EvalConfig,
    val_theta: float | None,
    pos_weight: float | None,
    n_params: int,
    predictions: FinalPredictions | None = None,
) -> tuple[dict[str, float], pd.DataFrame, pd.DataFrame]:
    """Test metrics of ``model``, the test ROC table and the rotation table.

    The threshold is chosen on the validation split (rotated by ``val_theta``, the training angle) with
    ``cfg.threshold``; the test split is evaluated unrotated, then rotated by each of ``cfg.rotations_deg``.
    ``predictions``: those forwards already made for this model (e.g. all members of a bundle in one stacked
    forward, :func:`tracker.train.strategies.vmap.final_predictions_stacked`); without it they are made here
    (:func:`final_predictions`). ``model`` is still used for the timing metric and its dtype.
    """
    if predictions is None:
        predictions = final_predictions(model, val=val, test=test, cfg=cfg, val_theta=val_theta,
                                        pos_weight=pos_weight)
    missing = [d for d in cfg.rotations_deg if d != 0 and d not in predictions.rotated]
    if missing:
        raise ValueError(f"final_metrics: the precomputed predictions lack the test split rotated by {missing} deg")
    val_pred = predictions.val
    threshold = choose_threshold(val_pred.y, val_pred.scores, cfg.threshold)

    test_pred = predictions.test
    y, s = test_pred.y, test_pred.scores
    auc, roc = roc_auc_and_table(y, s)  # one ROC curve of the test split for both
    m: dict[str, float] = {"auc": auc, **binary_metrics(y, s, threshold)}
    m["test_loss"] = test_pred.loss
    m["n_params"] = float(n_params)
    m["ant_factor"] = ant_factor(auc, n_params)
    m["threshold"] = threshold
    edge_pt = _edge_pt(test)
    for suffix, cut in PT_CUTS.items():
        m[f"edge_efficiency_{suffix}"] = efficiency_above_pt(y, s, threshold, edge_pt, cut)

    rows = []
    rotated = {deg: test_pred if deg == 0 else predictions.rotated[deg] for deg in cfg.rotations_deg}
    # each angle's labels and scores once (angle 0: the test split's, computed above)
    labels = {deg: y if deg == 0 else pred.y for deg, pred in rotated.items()}
    scores = {deg: s if deg == 0 else pred.scores for deg, pred in rotated.items()}
    # a rotation moves no edge and changes no label: the exact rank AUC of every angle's probabilities in one
    # call (the test labels' negatives sorted once per angle; equal to scikit-learn's up to float round-off)
    nonzero = [deg for deg in cfg.rotations_deg if deg != 0]
    if nonzero and all(np.array_equal(labels[deg], y) for deg in nonzero):
        stacked = torch.from_numpy(np.stack([scores[deg] for deg in nonzero]))
        rot_auc = dict(zip(nonzero, roc_auc_rows(torch.from_numpy(y), stacked).tolist()))
    else:
        rot_auc = {deg: roc_auc(labels[deg], scores[deg]) for deg in nonzero}
    for deg in cfg.rotations_deg:
        pred = rotated[deg]
        bm = m if deg == 0 else binary_metrics(labels[deg], scores[deg], threshold)  # angle 0: the test metrics
        rows.append(
            {
                "angle_deg": float(deg),
                "auc": auc if deg == 0 else rot_auc[deg],
                "auc_thresholded": bm["auc_thresholded"],
                "edge_efficiency": bm["edge_efficiency"],
                "edge_purity": bm["edge_purity"],
                "test_loss": pred.loss,
            }
        )
    rotation = pd.DataFrame(
        rows, columns=["angle_deg", "auc", "auc_thresholded", "edge_efficiency", "edge_purity", "test_loss"]
    )
    for row in rows:
        m[f"auc_rot_{_angle_name(row['angle_deg'])}"] = row["auc"]
    if rows:
        m["auc_rot_spread"] = float(rotation.auc.max() - rotation.auc.min())

    if cfg.equivariance and cfg.rotations_deg:
        # from the rotated predictions above: no second pass of rotated forwards
        eq = equivariance_metrics(test_pred, rotated, dtype=_model_dtype(model))
        m.update(eq)
        rotation["equivariance_dev"] = [eq[f"equivariance_dev_{_angle_name(d)}"] for d in cfg.rotations_deg]

    if cfg.track_metrics:
        counts = []
        for g, logits in zip(test.graphs, test_pred.logits):
            scores = torch.sigmoid(logits).numpy()
            labels = connected_tracks(g.edge_index.cpu().numpy(), scores, threshold, g.num_nodes)
            pt = getattr(g, "pt", None)
            weight = getattr(g, "weight", None)
            counts.append(
                match_event(
                    labels,
                    g.pid.cpu().numpy(),
                    pt=None if pt is None else pt.cpu().numpy(),
                    weight=None if weight is None else weight.cpu().numpy(),
                )
            )
        m.update(track_metrics(counts))

    if cfg.timing:
        m["inference_ms_per_graph"] = inference_ms_per_graph(model, test, runs=cfg.timing_runs)

    clean = {k: float(v) for k, v in m.items() if v is not None and math.isfinite(float(v))}
    return clean, roc, rotation
