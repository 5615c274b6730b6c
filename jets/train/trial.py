"""One jets trial: train a tagger from a :class:`~jets.config.JetsTrialConfig`, keep the best epoch (lowest
val_loss), evaluate it on the test split (also boosted), write the artifacts and tell a
:class:`~equitrack.reporter.Reporter` what happened — the contract of :func:`tracker.train.run_trial`.

Training: Adam (``train.lr``, ``betas``, ``weight_decay``), the learning rate scheduled per epoch
(``train.schedule``: cosine by default, or step, or constant), BCE-with-logits loss averaged over jets, early
stopping on ``val_loss`` after ``train.patience`` epochs without improvement. Everything random (weights, batch
order, boost augmentation) comes from ``train.seed``; checkpoints hold every random state, so a resumed trial
ends with the same metrics as an uninterrupted one.
"""

from __future__ import annotations

import math
import os
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.functional import binary_cross_entropy_with_logits

from equitrack import trial as _core
from equitrack.checkpoint import (
    checkpoint_due,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
    trainer_state,
)
from equitrack.config import yaml_text
from equitrack.reporter import Reporter
from equitrack.trial import (
    EPOCH_METRICS,
    CheckpointMismatchError,
    EarlyStopping,
    TrialResult,
    deterministic,
    finish_trial,
    order_metrics,
    seed_everything,
)
from jets.config import RESULT_NEUTRAL_KEYS, JetsTrialConfig
from jets.data.dataset import JetSet, Splits
from jets.data.transforms import boost, random_boosts
from jets.train.evaluate import (
    DeviceJets,
    boosted,
    final_metrics,
    model_dtype,
    precise_batch_norm,
    predict,
    resolve_device,
)

#: final metrics that measure time and so differ between otherwise identical runs
TIMING_METRICS = frozenset({"train_seconds", "seconds_per_epoch", "inference_ms_per_batch100"})


class NonFiniteLossError(_core.NonFiniteLossError):
    """The loss became NaN or infinite; the trial stops (the message names the epoch)."""

    inputs = "the jets"


def config_hash(config: JetsTrialConfig) -> str:
    """SHA-256 of the resolved configuration without the result-neutral keys: guards a checkpoint against reuse."""
    return _core.config_hash(config.model_dump(mode="json"), neutral=RESULT_NEUTRAL_KEYS)


def select_fraction(jets: JetSet, fraction: float, *, seed: int) -> JetSet:
    """``fraction`` of the jets of each class (at least one), chosen with ``seed``, in their original order."""
    if fraction >= 1:
        return jets
    rng = np.random.default_rng(seed)
    keep = []
    for cls in (0, 1):
        idx = np.flatnonzero(jets.label == cls)
        if idx.size:
            keep.append(rng.permutation(idx)[: max(1, round(fraction * idx.size))])
    return jets.take(np.sort(np.concatenate(keep)))


def _boost_set(jets: JetSet, beta: float, axis: str) -> JetSet:
    return JetSet(boost(jets.p4.astype(np.float64), beta, axis).astype(np.float32), jets.mask, jets.label)


def load_jet_splits(config: JetsTrialConfig) -> Splits:
    """The cached splits of ``config.data`` (built on first use, :mod:`jets.data.dataset`)."""
    from jets.data.dataset import load_splits

    return load_splits(config.data)


def _scheduler(optimizer: torch.optim.Optimizer, config: JetsTrialConfig):
    tc = config.train
    if tc.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=tc.epochs)
    if tc.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=tc.lr_step, gamma=tc.lr_gamma)
    return torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=1.0)  # constant


def run_trial(config: JetsTrialConfig, reporter: Reporter, *, workdir: Path, resume: bool = True,
              splits: Splits | tuple[JetSet, JetSet, JetSet] | None = None) -> TrialResult:
    """Train and evaluate one trial in ``workdir`` (created if needed) and return its final metrics.

    ``resume=True`` continues from ``workdir/checkpoint`` when it exists (same config required), giving the same
    metrics as an uninterrupted run; ``resume=False`` discards it. ``splits``: (train, val, test) jet sets already
    in memory, instead of ``config.data`` through the dataset cache.
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    with deterministic(config.train.deterministic):
        return _run(config, reporter, workdir=workdir, resume=resume, splits=splits)


def _run(config: JetsTrialConfig, reporter: Reporter, *, workdir: Path, resume: bool, splits) -> TrialResult:
    from jets.models import build_model, count_parameters

    tc = config.train
    if splits is None:
        splits = load_jet_splits(config)
    train_jets, val_jets, test_jets = (
        (splits.train, splits.val, splits.test) if isinstance(splits, Splits) else tuple(splits))
    train_jets = select_fraction(train_jets, tc.fraction, seed=tc.seed)
    if tc.boost_beta:  # a boosted frame for training and validation; the test split stays in the lab frame
        train_jets = _boost_set(train_jets, tc.boost_beta, tc.boost_axis)
        val_jets = _boost_set(val_jets, tc.boost_beta, tc.boost_axis)
    device = resolve_device(tc.device)
    if device.type == "cuda" and tc.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

    seed_everything(tc.seed)
    model = build_model(config.model.name, **config.model.hparams()).to(device)
    n_params = int(count_parameters(model))
    optimizer = torch.optim.Adam(model.parameters(), lr=tc.lr, betas=tuple(tc.betas), weight_decay=tc.weight_decay)
    scheduler = _scheduler(optimizer, config)
    stopper = EarlyStopping("val_loss", tc.patience)  # jets monitor only the validation loss
    generator = torch.Generator().manual_seed(tc.seed)
    train_set, val_set, test_set = (DeviceJets(j, device) for j in (train_jets, val_jets, test_jets))

    chash = config_hash(config)
    history: list[dict[str, float]] = []
    start_epoch, train_seconds, finished = 1, 0.0, False
    state = load_checkpoint(workdir)
    if state is not None and not resume:
        shutil.rmtree(workdir / "checkpoint", ignore_errors=True)
        state = None
    if state is not None:
        if state["config_hash"] != chash:
            raise CheckpointMismatchError.of(workdir)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        stopper.load_state_dict(state["early_stopping"])
        set_rng_state(state["rng"], generator)
        history = [dict(h) for h in state["history"]]
        start_epoch, train_seconds = int(state["epoch"]) + 1, float(state["train_seconds"])
        finished = bool(state["finished"])

    resolved = config.model_dump(mode="json")
    reporter.start(config=resolved, n_params=n_params)
    cfg_path = workdir / "config.yaml"
    cfg_path.write_text(yaml_text(resolved))
    reporter.artifact(cfg_path)

    dtype = model_dtype(model)
    model.train()
    for epoch in range(start_epoch, tc.epochs + 1):
        if finished:
            break
        t0 = time.perf_counter()
        lr = optimizer.param_groups[0]["lr"]
        order = torch.randperm(len(train_set), generator=generator)
        aug = random_boosts(len(train_set), tc.boost_augment, generator) if tc.boost_augment else None
        loss_sum, n_jets = 0.0, 0
        for p4, mask, label, idx in train_set.batches(order, tc.batch_size):
            x = boosted(p4, aug[0][idx], aug[1][idx], dtype) if aug is not None else p4.to(dtype)
            optimizer.zero_grad(set_to_none=True)
            loss = binary_cross_entropy_with_logits(model(x, mask).reshape(-1), label.to(dtype))
            value = float(loss.detach())
            if not math.isfinite(value):
                raise NonFiniteLossError(epoch, "training loss", value)
            loss.backward()
            if tc.grad_clip is not None:
                nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
            optimizer.step()
            loss_sum += value * len(idx)
            n_jets += len(idx)
        scheduler.step()
        precise_batch_norm(model, train_set, batch_size=tc.batch_size)  # eval-mode statistics of these weights
        val = predict(model, val_set)
        if not math.isfinite(val.loss):
            raise NonFiniteLossError(epoch, "validation loss", val.loss)
        seconds = time.perf_counter() - t0
        train_seconds += seconds
        metrics = {"train_loss": loss_sum / max(n_jets, 1), "val_loss": val.loss, "val_auc": val.auc(), "lr": lr,
                   "epoch_seconds": seconds}
        history.append({"epoch": epoch, **metrics})
        stop = stopper.update(epoch, metrics, model)
        finished = stop or epoch == tc.epochs
        ckpt = None
        if checkpoint_due(epoch, every=tc.checkpoint_every, finished=finished):
            ckpt = save_checkpoint(workdir, trainer_state(
                config_hash=chash, epoch=epoch, finished=finished, model=model, optimizer=optimizer,
                scheduler=scheduler, early_stopping=stopper.state_dict(), rng=rng_state(generator), history=history,
                train_seconds=train_seconds))
        reporter.epoch(epoch=epoch, metrics=metrics, checkpoint_dir=ckpt)
        if stop:
            break

    return _finalise(model, stopper=stopper, history=history, train_seconds=train_seconds, test_set=test_set,
                     config=config, n_params=n_params, workdir=workdir, reporter=reporter)


_ORDER = ("accuracy", "auc", "rejection_30", "rejection_50", "ant_factor_v2", "n_params", "test_loss", "threshold",
          "best_epoch", "train_seconds", "seconds_per_epoch", "inference_ms_per_batch100", "on_cuda")


def _finalise(model: nn.Module, *, stopper: EarlyStopping, history: list[dict[str, float]], train_seconds: float,
              test_set: DeviceJets, config: JetsTrialConfig, n_params: int, workdir: Path,
              reporter: Reporter) -> TrialResult:
    """The best epoch's weights evaluated on the test split; artifacts written and reported; ``reporter.finish``."""
    stopper.restore_best(model)
    metrics, roc, boosts = final_metrics(model, test_set, cfg=config.eval, n_params=n_params)
    metrics["best_epoch"] = float(stopper.best_epoch)
    metrics["train_seconds"] = train_seconds
    metrics["seconds_per_epoch"] = train_seconds / max(len(history), 1)
    metrics["on_cuda"] = float(test_set.device.type == "cuda")
    finite = {k: v for k, v in metrics.items() if math.isfinite(v)}  # non-finite values are left out
    return finish_trial(workdir, model=model, metrics=order_metrics(finite, _ORDER), history=history,
                        epoch_metrics=EPOCH_METRICS, tables={"roc.csv": roc, "boost.csv": boosts}, reporter=reporter)


__all__ = ["EPOCH_METRICS", "TIMING_METRICS", "CheckpointMismatchError", "EarlyStopping", "NonFiniteLossError",
           "TrialResult", "config_hash", "load_jet_splits", "run_trial", "seed_everything", "select_fraction"]
