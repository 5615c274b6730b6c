"""The one epoch loop: K members (a trial is K = 1) trained round by round by a strategy, then evaluated.

Every round, each member still training runs one epoch (:meth:`Strategy.train_epoch`), is validated (together
when the strategy can, :meth:`Strategy.validate`), steps its scheduler, records its history, updates its early
stopping, writes its checkpoint when due and reports the epoch (:meth:`MemberState.end_epoch`). A member whose
training ended is evaluated at once (``per_member``) or with all the others at the end (``batched``), by
:mod:`tracker.train.final`. ``isolate``: a member's error fails that member only (a bundle), else it propagates (a
trial alone). Errors raised by a reporter abort the loop: a re-run resumes each member from its checkpoint.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch_geometric.data import Data

from equitrack.reporter import Reporter
from equitrack.trial import deterministic
from tracker.train.config import TrialConfig
from tracker.train.data import GraphSet, TrainPool, resolve_device
from tracker.train.errors import BundleError
from tracker.train.final import finish_batched, finish_member
from tracker.train.member import MemberResult, MemberState
from tracker.train.strategies import Strategy, StrategyName, choose_strategy, make_strategy

Splits = tuple[Sequence[Data], Sequence[Data], Sequence[Data]]


def load_trial_splits(config: TrialConfig) -> tuple[list[Data], list[Data], list[Data], str | None]:
    """(train, val, test, dataset key) through ``tracker.data.dataset`` (built and cached on first use)."""
    from tracker.data.dataset import load_splits, prepare

    prepare(config.data)
    splits = load_splits(config.data)
    return list(splits.train), list(splits.val), list(splits.test), getattr(splits, "key", None)


def _architecture(model: torch.nn.Module) -> list[tuple[str, tuple[int, ...], torch.dtype]]:
    return [(k, tuple(v.shape), v.dtype) for k, v in model.state_dict().items()]


def train_members(
    configs: Sequence[TrialConfig],
    reporters: Sequence[Reporter],
    workdirs: Sequence[Path],
    *,
    strategy: StrategyName,
    final_eval: str,
    resume: bool,
    splits: Splits | None,
    diff: dict[str, list[Any]],
    isolate: bool,
    entry: str,
    log: Callable[[str], None] | None = None,
    on_round_end: Callable[[], None] | None = None,
    cuda_graphs: bool = False,
) -> list[MemberResult]:
    """Train and evaluate the members ``configs`` (validated to share data and architecture) in ``workdirs``;
    one :class:`MemberResult` per member. ``final_eval``: ``auto``, ``batched`` or ``per_member``; ``entry``: the
    public function named in errors (``run_trial`` or ``run_bundle``); the rest as
    :func:`tracker.train.bundle.run_bundle`."""
    with deterministic(configs[0].train.deterministic):
        return _train(list(configs), list(reporters), [Path(w) for w in workdirs], strategy=strategy,
                      final_eval=final_eval, resume=resume, splits=splits, diff=diff, isolate=isolate, entry=entry,
                      log=log, on_round_end=on_round_end or (lambda: None), cuda_graphs=cuda_graphs)


def _train(configs: list[TrialConfig], reporters: list[Reporter], workdirs: list[Path], *, strategy: StrategyName,
           final_eval: str, resume: bool, splits: Splits | None, diff: dict[str, list[Any]], isolate: bool,
           entry: str, log: Callable[[str], None] | None, on_round_end: Callable[[], None],
           cuda_graphs: bool) -> list[MemberResult]:
    first = configs[0]
    if splits is None:
        train_graphs, val_graphs, test_graphs, _ = load_trial_splits(first)
    else:
        train_graphs, val_graphs, test_graphs = (list(s) for s in splits)
    device = resolve_device(first.train.device)
    if device.type == "cuda" and first.train.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    pool = TrainPool(train_graphs, device=device, batch_size=first.train.batch_size)
    val_set = GraphSet(val_graphs, device=device)
    test_set = GraphSet(test_graphs, device=device)

    members = []
    for i, (cfg, rep, wd) in enumerate(zip(configs, reporters, workdirs)):
        wd.mkdir(parents=True, exist_ok=True)
        m = MemberState(i, cfg, rep, wd)
        m.build(device=device, pool=pool, resume=resume, entry=entry)
        members.append(m)
    arch = _architecture(members[0].model)
    for m in members[1:]:
        if _architecture(m.model) != arch:
            raise BundleError(f"bundle member {m.index} has a different model architecture (parameter names/shapes) "
                              f"from member 0: {diff}")
    chosen, why = choose_strategy(strategy, device=device, diff=diff, model=members[0].model, graph=pool.graphs[0])
    batched = final_eval == "batched" or (final_eval == "auto" and chosen == "vmap")
    if log is not None:
        log(f"bundle of {len(members)}: strategy {chosen} ({why}); final evaluation "
            f"{'batched' if batched else 'per member'}")
    for m in members:
        (m.workdir / "error.txt").unlink(missing_ok=True)
        m.announce()
    runner = make_strategy(chosen, graphs=pool.graphs, device=device, cuda_graphs=cuda_graphs, log=log)

    def ended(m: MemberState) -> None:  # per-member final evaluation as soon as a member's training ends
        if not batched and m.failed is None and not m.training:
            finish_member(m, val_set=val_set, test_set=test_set, isolate=isolate)

    for m in members:  # members resumed after their last epoch only need their evaluation
        ended(m)
    while True:
        on_round_end()
        live = [m for m in members if m.training]
        if not live:
            break
        _round(live, runner, val_set=val_set, isolate=isolate, ended=ended)
    if batched:
        finish_batched([m for m in members if m.failed is None and m.result is None], val_set=val_set,
                       test_set=test_set, log=log)
        on_round_end()
    results = [m.result for m in members]
    missing = [m.index for m, r in zip(members, results) if r is None]
    if missing:  # every member ends FINISHED or FAILED; anything else is a bug of this loop
        raise RuntimeError(f"members {missing} ended neither finished nor failed")
    return results  # type: ignore[return-value]


def _round(live: list[MemberState], runner: Strategy, *, val_set: GraphSet, isolate: bool,
           ended: Callable[[MemberState], None]) -> None:
    """One epoch of every member in ``live``: trained by ``runner``, then validated, recorded and reported."""

    def fail(m: MemberState, exc: Exception) -> None:
        if not isolate:
            raise exc
        m.fail(exc)

    trained = runner.train_epoch(live)
    ok = [m for m in live if not isinstance(trained[m.index], Exception)]
    t0 = time.perf_counter()
    vals = runner.validate(ok, val_set)
    share = (time.perf_counter() - t0) / len(ok) if vals else 0.0  # the stacked validation, split evenly
    for m in live:
        out = trained[m.index]
        if isinstance(out, Exception):
            fail(m, out)
            continue
        out.seconds += share
        try:
            report = m.end_epoch(out, val_set=val_set, val=vals.get(m.index))
        except Exception as exc:  # noqa: BLE001 — the member fails, the bundle goes on
            fail(m, exc)
            continue
        m.reporter.epoch(**report)  # reporter errors abort the bundle (resumable)
        ended(m)


__all__ = ["deterministic", "load_trial_splits", "train_members"]
