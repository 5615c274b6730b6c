"""The end of every member (a trial alone or in a bundle): its best epoch's predictions, made by one of two final
evaluations, turned into the final metrics, the artifacts and ``reporter.finish``.

``per_member``: each member's own forwards (:func:`tracker.train.evaluate.final_predictions`), as soon as its
training ends. ``batched``: once every member has ended, stacked forwards of all finished members' best weights
(:func:`tracker.train.strategies.vmap.final_predictions_stacked`); if they raise, each member's own forwards.
Either way the metrics come from the same :func:`tracker.train.evaluate.final_metrics`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

from torch import nn

from equitrack.reporter import Reporter
from equitrack.trial import EarlyStopping, csv_text, finish_trial, order_metrics, write_table
from tracker.train.config import EvalConfig
from tracker.train.data import GraphSet
from tracker.train.evaluate import FinalPredictions, final_metrics, final_predictions
from tracker.train.member import EPOCH_METRICS, MemberResult, MemberState, TrialResult
from tracker.train.strategies.vmap import final_predictions_stacked

_ORDER = (
    "auc", "auc_thresholded", "edge_efficiency", "edge_purity", "accuracy", "balanced_accuracy", "f1", "test_loss",
    "n_params", "ant_factor", "threshold", "best_epoch", "train_seconds", "seconds_per_epoch",
)


def finalise_trial(
    model: nn.Module,
    *,
    stopper: EarlyStopping,
    history: list[dict[str, float]],
    train_seconds: float,
    val_set: GraphSet,
    test_set: GraphSet,
    eval_cfg: EvalConfig,
    val_theta: float | None,
    pos_weight: float | None,
    n_params: int,
    workdir: Path,
    reporter: Reporter,
    predictions: FinalPredictions,
) -> TrialResult:
    """The final metrics of the best epoch from ``predictions`` (its forwards, made by a final evaluation from the
    weights :meth:`EarlyStopping.restore_best` puts in ``model``), the artifacts written and reported, and the
    metrics handed to ``reporter.finish``."""
    stopper.restore_best(model)
    metrics, roc, rotation = final_metrics(
        model, val=val_set, test=test_set, cfg=eval_cfg, val_theta=val_theta, pos_weight=pos_weight,
        n_params=n_params, predictions=predictions,
    )
    metrics["best_epoch"] = float(stopper.best_epoch)
    metrics["train_seconds"] = train_seconds
    metrics["seconds_per_epoch"] = train_seconds / max(len(history), 1)
    metrics["on_cuda"] = float(test_set.device.type == "cuda")  # the device it ran on (train.device may fall back)
    return finish_trial(workdir, model=model, metrics=order_metrics(metrics, _ORDER), history=history,
                        epoch_metrics=EPOCH_METRICS, tables={"roc.csv": roc, "rotation.csv": rotation},
                        reporter=reporter)


def own_predictions(m: MemberState, *, val_set: GraphSet, test_set: GraphSet) -> FinalPredictions:
    """The per-member final evaluation's forwards: ``m``'s best weights on every split and angle it needs."""
    m.stopper.restore_best(m.model)
    return final_predictions(m.model, val=val_set, test=test_set, cfg=m.config.eval, val_theta=m.val_theta,
                             pos_weight=m.pos_weight)


def finish_member(m: MemberState, *, val_set: GraphSet, test_set: GraphSet, isolate: bool,
                  predictions: FinalPredictions | None = None) -> None:
    """Evaluate ``m`` (``predictions``: its share of the batched forwards; None: its own forwards) and set its
    result. An error fails the member when ``isolate`` (a bundle), else it propagates (a trial alone)."""
    try:
        batched = predictions is not None
        if predictions is None:
            predictions = own_predictions(m, val_set=val_set, test_set=test_set)
        res = finalise_trial(
            m.model, stopper=m.stopper, history=m.history, train_seconds=m.train_seconds, val_set=val_set,
            test_set=test_set, eval_cfg=m.config.eval, val_theta=m.val_theta, pos_weight=m.pos_weight,
            n_params=m.n_params, workdir=m.workdir, reporter=m.reporter, predictions=predictions,
        )
    except Exception as exc:
        if not isolate:
            raise
        m.fail(exc)
        return
    m.result = MemberResult(metrics=res.metrics, artifacts_dir=res.artifacts_dir, history=res.history,
                            final_eval="batched" if batched else "per_member")


def finish_batched(members: Sequence[MemberState], *, val_set: GraphSet, test_set: GraphSet,
                   log: Callable[[str], None] | None) -> None:
    """The batched final evaluation of ``members`` (all finished training): stacked forwards of their best
    weights, then each member's metrics and artifacts; member by member if the stacked forwards raise."""
    if not members:
        return
    for m in members:
        m.stopper.restore_best(m.model)  # the weights the stacked forwards and the metrics use
    t0 = time.perf_counter()
    preds: list[FinalPredictions | None]
    try:
        preds = list(final_predictions_stacked(
            [m.model for m in members], val=val_set, test=test_set, val_thetas=[m.val_theta for m in members],
            rotations_deg=[m.config.eval.rotations_deg for m in members], pos_weights=[m.pos_weight for m in members],
        ))
    except Exception as exc:  # noqa: BLE001 — each member's own forwards decide who fails
        if log is not None:
            log(f"batched final evaluation failed ({type(exc).__name__}: {exc}); evaluating member by member")
        preds = [None] * len(members)
    else:
        if log is not None:
            log(f"batched final evaluation of {len(members)} members: stacked forwards "
                f"{time.perf_counter() - t0:.3f} s")
    for m, p in zip(members, preds):
        finish_member(m, val_set=val_set, test_set=test_set, isolate=True, predictions=p)
    if log is not None:
        log(f"final evaluation of {len(members)} members: {time.perf_counter() - t0:.3f} s")


__all__ = ["csv_text", "finalise_trial", "finish_batched", "finish_member", "own_predictions", "write_table"]
