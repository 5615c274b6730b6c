"""Bundled trials: K cells that share data and model architecture, trained together in one process.

A *bundle* is K trial configurations that differ only in keys that do not change the data or the parameter
shapes (seed, training angle, random rotation, lr, data fraction, c, …: :data:`BUNDLEABLE`). Every member keeps
the life of a trial of its own (:class:`tracker.train.member.MemberState`): its initialisation (seeded exactly as
:func:`tracker.train.run_trial` seeds it, so a member equals the same cell trained alone), its rotation,
optimiser, scheduler, early stopping, checkpoint (in the run_trial format, so resume is per member), failure (a
NaN stops that member only) and its artifacts and final metrics through the same evaluation code. A trial alone
is a bundle of one: both run the one epoch loop of :mod:`tracker.train.loop`.

What the members share: one dataset load, the graphs moved to the device once, the training graphs collated once,
one process (imports, Ray worker, MLflow set-up: the sweeps layer), and with ``vmap`` the kernels of a step.

Strategies (:mod:`tracker.train.strategies`), with identical semantics: ``loop`` (one model and Adam per member,
trained in turn; fastest on CPU), ``vmap`` (the parameter sets stacked, one batched step, optionally replayed
from a CUDA graph; pays off on CUDA), ``auto`` (``vmap`` on CUDA when the model supports it and all model
hyper-parameters are equal, else ``loop``). Final evaluation (:mod:`tracker.train.final`): ``per_member``
(default with ``loop``) or ``batched`` (default with ``vmap``: stacked forwards of every finished member's best
weights once all have ended; member by member if they raise).

Member failures (non-finite loss, an exception in its forward or evaluation) never stop the others: the member's
result has ``status="FAILED"`` and its error, and its reporter's ``fail(error=...)`` is called. Exceptions raised
by a reporter (e.g. Ray reporting, a fault injected by a test) are infrastructure failures: they abort the whole
bundle, which a retry resumes member by member from the checkpoints.

This module is the documented import path of :func:`run_bundle`, :func:`validate_bundle`, :data:`BUNDLEABLE`,
:data:`MODEL_BUNDLEABLE`, :class:`BundleError` and :class:`MemberResult`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

from torch_geometric.data import Data

from equitrack.reporter import Reporter
from tracker.train.config import TrialConfig, flatten
from tracker.train.errors import BundleError
from tracker.train.loop import train_members
from tracker.train.member import MemberResult
from tracker.train.strategies import StrategyName as Strategy
from tracker.train.strategies import choose_strategy, vmap_supported
from tracker.train.strategies.stacked import StackedAdam
from tracker.train.strategies.vmap import final_predictions_stacked, predict_stacked

FinalEval = Literal["auto", "batched", "per_member"]

#: dotted keys that may differ between the members of a bundle (anything else must be equal)
BUNDLEABLE: frozenset[str] = frozenset(
    {
        "train.seed", "train.train_rotation_deg", "train.random_rotation", "train.lr", "train.fraction",
        "train.epochs", "train.patience", "train.monitor", "train.lr_step", "train.lr_gamma", "train.grad_clip",
        "train.weight_decay", "train.betas", "train.pos_weight", "train.checkpoint_every",
    }
)
#: model hyper-parameters that change no parameter shape; with ``vmap`` they must still be equal (Python floats
#: inside the module cannot be batched), ``loop`` builds each member's own model
MODEL_BUNDLEABLE: frozenset[str] = frozenset({"model.c"})


def bundle_differences(configs: Sequence[TrialConfig]) -> dict[str, list[Any]]:
    """Dotted keys whose values differ between ``configs``, with each member's value."""
    flat = [flatten(c.model_dump(mode="json")) for c in configs]
    keys = sorted(set().union(*flat)) if flat else []
    diff = {}
    for k in keys:
        values = [f.get(k, "<unset>") for f in flat]
        if any(v != values[0] for v in values[1:]):
            diff[k] = values
    return diff


def validate_bundle(configs: Sequence[TrialConfig], *, strategy: Strategy = "auto") -> dict[str, list[Any]]:
    """Raise :class:`BundleError` unless ``configs`` may share one bundle; return the differing keys.

    Allowed to differ: :data:`BUNDLEABLE` and every ``eval.*`` key; ``model.c``-like keys
    (:data:`MODEL_BUNDLEABLE`) except with ``strategy="vmap"``. Data, model name and shapes, device and batch size
    must be equal. Seeds must differ or something else must (two identical members are a mistake).
    """
    if len(configs) == 0:
        raise BundleError("a bundle needs at least one trial configuration (got none)")
    for i, c in enumerate(configs):
        if not isinstance(c, TrialConfig):
            raise BundleError(f"bundle member {i}: expected a TrialConfig, got {type(c).__name__}")
    diff = bundle_differences(configs)
    allowed = BUNDLEABLE | (MODEL_BUNDLEABLE if strategy != "vmap" else frozenset())
    for key, values in diff.items():
        if key in allowed or key.startswith("eval."):
            continue
        why = ("the vmap strategy batches parameters only; use strategy='loop' or bundle by this key"
               if key in MODEL_BUNDLEABLE else
               f"only {', '.join(sorted(BUNDLEABLE | MODEL_BUNDLEABLE))} and eval.* may differ within a bundle")
        raise BundleError(f"bundle members differ in {key!r}: {values} ({why})")
    dumps = [json.dumps(c.model_dump(mode="json"), sort_keys=True) for c in configs]
    for i in range(len(dumps)):
        for j in range(i):
            if dumps[i] == dumps[j]:
                raise BundleError(f"bundle members {j} and {i} are the same trial configuration")
    return diff


def run_bundle(
    configs: Sequence[TrialConfig],
    reporters: Sequence[Reporter],
    *,
    workdirs: Sequence[Path],
    strategy: Strategy = "auto",
    resume: bool = True,
    splits: tuple[Sequence[Data], Sequence[Data], Sequence[Data]] | None = None,
    log: Callable[[str], None] | None = None,
    final_eval: FinalEval = "auto",
    on_round_end: Callable[[], None] | None = None,
    cuda_graphs: bool = True,
) -> list[MemberResult]:
    """Train and evaluate the K trials of ``configs`` together; one :class:`MemberResult` per member, in order.

    Each member ``i`` reports to ``reporters[i]`` and writes its checkpoint and artifacts in ``workdirs[i]``
    exactly as ``run_trial(configs[i], reporters[i], workdir=workdirs[i], resume=resume)`` would, with the same
    metrics (up to float round-off with ``vmap`` or a batched final evaluation). ``splits`` = (train, val, test)
    graphs already in memory skips the dataset load; ``log`` is an optional ``callable(str)`` told which strategy
    runs and why. ``final_eval``: ``batched`` evaluates every member that finished at the end of the bundle from
    stacked forwards (falls back to ``per_member`` if they raise), ``per_member`` evaluates each member alone when
    its training ends, ``auto`` is ``batched`` with the vmap strategy and ``per_member`` with loop (faster on
    CPU). ``on_round_end``: called after every round (each member still training has run one epoch and made its
    reports) and once more after the final evaluation, so a reporter may buffer the members' reports of a round
    and send them together (sweeps sends one Ray report per round instead of one per member). ``cuda_graphs``:
    with ``vmap`` on CUDA, capture the stacked step (gather, forward, backward, clipping, Adam) once in a CUDA
    graph and replay it for every step; a step that cannot be captured runs eagerly (``log`` says why). Results
    equal the eager step's.
    """
    configs = list(configs)
    if len(reporters) != len(configs) or len(workdirs) != len(configs):
        raise BundleError(f"run_bundle: {len(configs)} configs but {len(reporters)} reporters and "
                          f"{len(workdirs)} workdirs (one of each per member)")
    if len({Path(w).resolve() for w in workdirs}) != len(workdirs):
        raise BundleError("run_bundle: two members share a workdir (each needs its own checkpoint and artifacts)")
    diff = validate_bundle(configs, strategy=strategy)
    if final_eval not in ("auto", "batched", "per_member"):
        raise BundleError(f"final_eval must be 'auto', 'batched' or 'per_member', got {final_eval!r}")
    model_keys = [k for k in diff if k.startswith("model.")]
    if final_eval == "batched" and model_keys:
        raise BundleError(f"final_eval 'batched': bundle members differ in {model_keys[0]!r}: {diff[model_keys[0]]} "
                          "(stacked forwards batch parameters only; use final_eval='per_member')")
    return train_members(configs, reporters, workdirs, strategy=strategy, final_eval=final_eval, resume=resume,
                         splits=splits, diff=diff, isolate=True, entry="run_bundle", log=log,
                         on_round_end=on_round_end, cuda_graphs=cuda_graphs)


__all__ = [
    "BUNDLEABLE",
    "MODEL_BUNDLEABLE",
    "BundleError",
    "MemberResult",
    "StackedAdam",
    "bundle_differences",
    "choose_strategy",
    "final_predictions_stacked",
    "predict_stacked",
    "run_bundle",
    "validate_bundle",
    "vmap_supported",
]
