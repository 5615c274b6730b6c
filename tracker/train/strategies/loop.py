"""The ``loop`` strategy: each member trains its epoch on its own model and ``torch.optim.Adam``, one member after
another, on the batches the members share (:class:`~tracker.train.data.TrainPool`). Exactly a trial's step
(:func:`tracker.train.step.train_step`), so a member is bit-identical to the same cell trained alone; on CPU with
the zoo's small widths the fastest strategy (vmap's batched kernels are slower there)."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

from tracker.train.data import GraphSet
from tracker.train.errors import NonFiniteLossError
from tracker.train.evaluate import SplitPrediction
from tracker.train.member import EpochTraining, MemberState
from tracker.train.step import train_step


def train_member_epoch(m: MemberState) -> EpochTraining:
    """One epoch of ``m``: its order and angles, one :func:`train_step` per batch; raises
    :class:`NonFiniteLossError` at the first non-finite batch loss."""
    t0 = time.perf_counter()
    lr = m.optimizer.param_groups[0]["lr"]
    order, theta, rotate = m.plan()
    loss_sum, n_edges = 0.0, 0
    m.model.train()
    for i, (batch, idx) in enumerate(m.view.batches(order)):
        angles = theta[idx] if rotate else None
        loss = float(train_step(m.model, m.optimizer, batch, angles, pos_weight=m.pos_weight,
                                grad_clip=m.tc.grad_clip))
        if not math.isfinite(loss):
            raise NonFiniteLossError(m.next_epoch, f"training loss in batch {i + 1}", loss)
        e = int(batch.edge_index.shape[1])
        loss_sum += loss * e
        n_edges += e
    m.save_rng()
    return EpochTraining(loss_sum, n_edges, lr, time.perf_counter() - t0)


class LoopStrategy:
    """Members trained one after another, each with its own model and optimiser."""

    name = "loop"

    def train_epoch(self, members: Sequence[MemberState]) -> dict[int, EpochTraining | Exception]:
        out: dict[int, EpochTraining | Exception] = {}
        for m in members:
            try:
                out[m.index] = train_member_epoch(m)
            except Exception as exc:  # noqa: BLE001 — the member fails, the others go on
                out[m.index] = exc
        return out

    def validate(self, members: Sequence[MemberState], val_set: GraphSet) -> dict[int, SplitPrediction]:
        return {}  # each member's own predict()


__all__ = ["LoopStrategy", "train_member_epoch"]
