"""One member's trainer state: a trial's model, optimiser, scheduler, early stopping, RNG, history, checkpoint and
failure. A trial (:func:`tracker.train.run_trial`) is a bundle of one member; a bundle
(:func:`tracker.train.bundle.run_bundle`) holds K of them. The epoch loop (:mod:`tracker.train.loop`) drives them;
a strategy (:mod:`tracker.train.strategies`) trains their epochs.
"""

from __future__ import annotations

import math
import shutil
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from equitrack import trial as _core
from equitrack.checkpoint import (
    checkpoint_due,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
    trainer_state,
)
from equitrack.reporter import Reporter
from equitrack.trial import EPOCH_METRICS, EarlyStopping, TrialResult, seed_everything
from tracker.train.config import ADDED_DEFAULTS, RESULT_NEUTRAL_KEYS, TrialConfig, yaml_text
from tracker.train.data import GraphSet, PoolView, TrainPool, auto_pos_weight, epoch_plan, select_fraction
from tracker.train.errors import CheckpointMismatchError, NonFiniteLossError
from tracker.train.evaluate import SplitPrediction, predict

#: final metrics that measure time and so differ between otherwise identical runs
TIMING_METRICS = frozenset({"train_seconds", "seconds_per_epoch", "inference_ms_per_graph"})
#: the warning StepLR gives when the optimiser's own ``step`` was not called (a stacked strategy updates the
#: parameters itself, then steps each member's scheduler)
_STEPPED_OUTSIDE = r"Detected call of `lr_scheduler\.step\(\)` before `optimizer\.step\(\)`"


@dataclass
class MemberResult(TrialResult):
    """A member's :class:`TrialResult` plus its fate: ``status`` FINISHED or FAILED, ``error`` the message;
    ``final_eval`` how its final metrics were computed: ``"batched"`` (from the bundle's stacked forwards) or
    ``"per_member"`` (its own forwards, as run_trial)."""

    status: str = "FINISHED"
    error: str | None = None
    exception: BaseException | None = None
    final_eval: str | None = None


@dataclass
class EpochTraining:
    """One member's epoch of training, as a strategy returns it: the edge-weighted loss sum over its batches,
    the number of edges, the learning rate it ran at and the seconds it took (its share of a batched epoch)."""

    loss_sum: float
    n_edges: int
    lr: float
    seconds: float


def config_hash(config: TrialConfig) -> str:
    """SHA-256 of the resolved configuration (JSON, sorted keys): guards a checkpoint against reuse.

    ``train.checkpoint_every`` is left out: it changes no result, so a trial may resume with another cadence
    (and checkpoints written before the key existed still match).
    """
    return _core.config_hash(config.model_dump(mode="json"), neutral=RESULT_NEUTRAL_KEYS, added=ADDED_DEFAULTS)


class MemberState:
    """One trial inside the trainer: its own model, optimiser, scheduler, early stopping, RNG and checkpoint."""

    def __init__(self, index: int, config: TrialConfig, reporter: Reporter, workdir: Path) -> None:
        self.index = index
        self.config = config
        self.tc = config.train
        self.reporter = reporter
        self.workdir = Path(workdir)
        self.history: list[dict[str, float]] = []
        self.next_epoch = 1
        self.train_seconds = 0.0
        self.finished = False
        self.failed: BaseException | None = None
        self.result: MemberResult | None = None
        #: work a strategy owes this member's optimiser before its next checkpoint (the vmap stack's Adam state)
        self.before_checkpoint: Callable[[], None] | None = None
        #: a strategy updated the parameters itself (not ``optimizer.step``): StepLR's order warning is moot
        self.stepped_outside = False

    @property
    def training(self) -> bool:
        return self.failed is None and not self.finished and self.next_epoch <= self.tc.epochs

    def build(self, *, device: torch.device, pool: TrainPool, resume: bool, entry: str = "run_trial") -> None:
        """Model, optimiser, scheduler, early stopping and RNG as a trial starts (seeded by ``train.seed``, so a
        member equals the same cell trained alone), then its checkpoint when ``resume`` finds one (``entry``: the
        function named in a mismatch error)."""
        from tracker.models import build_model, count_parameters

        tc = self.tc
        self.view: PoolView = pool.view(select_fraction(list(range(len(pool))), tc.fraction, seed=tc.seed))
        seed_everything(tc.seed)
        self.model = build_model(self.config.model.name, **self.config.model.hparams()).to(device)
        self.n_params = int(count_parameters(self.model))
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=tc.lr, betas=tuple(tc.betas),
                                          weight_decay=tc.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.StepLR(self.optimizer, step_size=tc.lr_step, gamma=tc.lr_gamma)
        self.stopper = EarlyStopping(tc.monitor, tc.patience)
        self.generator = torch.Generator().manual_seed(tc.seed)
        self.pos_weight: float | None
        if tc.pos_weight == "auto":
            self.pos_weight = auto_pos_weight(self.view.graphs)
        else:
            self.pos_weight = None if tc.pos_weight is None else float(tc.pos_weight)
        self.base_theta = math.radians(tc.train_rotation_deg)
        self.val_theta = self.base_theta if self.base_theta != 0 else None
        self.chash = config_hash(self.config)
        self._resume(resume, entry)
        self.rng = rng_state(self.generator)  # the global RNG as this member alone would have it now

    def _resume(self, resume: bool, entry: str) -> None:
        state = load_checkpoint(self.workdir)
        if state is not None and not resume:
            shutil.rmtree(self.workdir / "checkpoint", ignore_errors=True)
            state = None
        if state is None:
            return
        if state["config_hash"] != self.chash:
            raise CheckpointMismatchError.of(self.workdir, entry=entry)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.stopper.load_state_dict(state["early_stopping"])
        set_rng_state(state["rng"], self.generator)
        # epochs are integers (bundles before the one trainer wrote them as floats)
        self.history = [{**h, "epoch": int(h["epoch"])} for h in state["history"]]
        self.next_epoch = int(state["epoch"]) + 1
        self.train_seconds = float(state["train_seconds"])
        self.finished = bool(state["finished"])

    def announce(self) -> None:
        """``reporter.start`` and the ``config.yaml`` artifact (on every start, resumed or not)."""
        resolved = self.config.model_dump(mode="json")
        self.reporter.start(config=resolved, n_params=self.n_params)
        cfg_path = self.workdir / "config.yaml"
        cfg_path.write_text(yaml_text(resolved))
        self.reporter.artifact(cfg_path)

    def plan(self) -> tuple[Tensor, Tensor, bool]:
        """This epoch's order and angles from the member's own generator (restored first, saved after), and
        whether the member rotates at all."""
        set_rng_state(self.rng, self.generator)
        order, theta = epoch_plan(len(self.view), self.generator, base_theta=self.base_theta,
                                  random_rotation=self.tc.random_rotation)
        rotate = self.tc.random_rotation or self.base_theta != 0
        return order, theta, rotate

    def save_rng(self) -> None:
        """Remember the RNG state after this member's epoch (the next epoch and the checkpoint start from it)."""
        self.rng = rng_state(self.generator)

    def end_epoch(self, trained: EpochTraining, *, val_set: GraphSet,
                  val: SplitPrediction | None = None) -> dict[str, Any]:
        """Scheduler step, validation (``val``: already made by the strategy for the whole stack), history, early
        stopping and, when due (``train.checkpoint_every``), the checkpoint; returns the ``reporter.epoch`` call."""
        epoch = self.next_epoch
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            if self.stepped_outside:
                warnings.filterwarnings("ignore", message=_STEPPED_OUTSIDE, category=UserWarning)
            self.scheduler.step()
        if val is None:
            val = predict(self.model, val_set, self.val_theta, pos_weight=self.pos_weight)
        if not math.isfinite(val.loss):
            raise NonFiniteLossError(epoch, "validation loss", val.loss)
        seconds = trained.seconds + time.perf_counter() - t0
        self.train_seconds += seconds
        metrics = {"train_loss": trained.loss_sum / max(trained.n_edges, 1), "val_loss": val.loss,
                   "val_auc": val.epoch_auc(), "lr": trained.lr, "epoch_seconds": seconds}
        self.history.append({"epoch": epoch, **metrics})
        stop = self.stopper.update(epoch, metrics, self.model)
        self.finished = stop or epoch == self.tc.epochs
        ckpt = None  # epochs between checkpoints (train.checkpoint_every) report none
        if checkpoint_due(epoch, every=self.tc.checkpoint_every, finished=self.finished):
            ckpt = self.checkpoint(epoch)
        self.next_epoch = epoch + 1
        return {"epoch": epoch, "metrics": metrics, "checkpoint_dir": ckpt}

    def checkpoint(self, epoch: int) -> Path:
        """Write the checkpoint of ``epoch`` (what a strategy owes the optimiser first); returns its folder."""
        if self.before_checkpoint is not None:
            self.before_checkpoint()
            self.before_checkpoint = None
        return save_checkpoint(self.workdir, trainer_state(
            config_hash=self.chash, epoch=epoch, finished=self.finished, model=self.model,
            optimizer=self.optimizer, scheduler=self.scheduler, early_stopping=self.stopper.state_dict(),
            rng=self.rng, history=self.history, train_seconds=self.train_seconds,
        ))

    def fail(self, exc: BaseException) -> None:
        """The member stops FAILED (``error.txt``, the reporter's ``fail``); the others go on."""
        self.failed = exc
        msg = f"{type(exc).__name__}: {exc}"
        (self.workdir / "error.txt").write_text(msg + "\n")
        self.result = MemberResult(metrics={}, artifacts_dir=self.workdir, history=list(self.history),
                                   status="FAILED", error=msg, exception=exc)
        self.reporter.fail(error=exc)


__all__ = [
    "EPOCH_METRICS",
    "TIMING_METRICS",
    "EpochTraining",
    "MemberResult",
    "MemberState",
    "TrialResult",
    "config_hash",
    "seed_everything",
]
