"""The interface every training strategy implements: train one epoch of some members, and optionally validate
them together. The epoch loop (:mod:`tracker.train.loop`) does everything else the same way for every strategy."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from tracker.train.data import GraphSet
from tracker.train.evaluate import SplitPrediction
from tracker.train.member import EpochTraining, MemberState


class Strategy(Protocol):
    """How the members' epochs are trained (``loop``: one after another; ``vmap``: stacked)."""

    name: str

    def train_epoch(self, members: Sequence[MemberState]) -> dict[int, EpochTraining | Exception]:
        """One epoch of training of each of ``members`` (all still training), keyed by ``member.index``: what the
        epoch gave, or the exception that ended that member (the others go on)."""
        ...

    def validate(self, members: Sequence[MemberState], val_set: GraphSet) -> dict[int, SplitPrediction]:
        """The validation predictions of ``members`` made together, keyed by index; members left out (or ``{}``)
        validate on their own (:meth:`MemberState.end_epoch`)."""
        ...


__all__ = ["Strategy"]
