"""Bundled trials in sweeps: which grid cells share one Ray trial, and how that trial trains them.

Cells that differ only along *bundle axes* (by default the seed plus every varied grid axis that the grid's task
can bundle, ``equitrack.task.Bundling.axes``; for tracking: training angle, lr, c, fraction, …) are grouped, up to
``max_bundle_size`` per Ray trial, and trained together by the task's ``Bundling.run``; a task without bundled
training gets one cell per Ray trial. Each cell keeps its own MLflow
child run (config_id, seed, metrics, artifacts, status): every member reports through its own
:class:`~sweeps.trainable.TuneReporter`, and a member that fails sends a ``fail`` event that the driver's
:class:`~sweeps.callback.SweepCallback` turns into that run's FAILED status while the other members go on.

Grid keys (top level, all optional)::

    bundle: auto                         # default: seed + the varied bundleable axes; `none` = one cell per trial
    bundle: [seed, lr]                   # or an explicit list (short names or dotted keys)
    max_bundle_size: 25                  # cells per Ray trial at most, split evenly; default min(25, ceil(cells /
                                         # (2 x concurrent trials))): about two bundles per slot, for balance
    bundle_strategy: auto                # auto | loop | vmap (tracking: see tracker.train.bundle)
    bundle_final_eval: auto              # auto | batched | per_member (run_bundle's final_eval)
    bundle_cuda_graphs: true             # vmap on CUDA: replay the stacked step from a CUDA graph
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from typing import Any

from equitrack.task import get_task
from sweeps.schema import Cell, GridError, GridFile, varied_keys

MAX_AUTO_SIZE = 25


def bundle_axes(grid: GridFile, *, source: str = "<grid>") -> list[str]:
    """The dotted keys cells may differ in within one bundle ([] = no bundling)."""
    spec = grid.bundle
    if spec in (None, "none", False) or spec == []:
        return []
    bundling = get_task(grid.task).bundling
    if bundling is None:
        if spec == "auto":
            return []
        raise GridError(f"{source}: bundle: {spec!r}, but task {grid.task!r} has no bundled training; use bundle: none")
    allowed = bundling.axes
    if spec == "auto":
        if grid.bundle_strategy == "vmap":  # vmap batches parameters only: model.c etc. stay separate bundles
            allowed = bundling.vmap_axes
        if grid.scheduler.type == "asha":  # ASHA prunes whole Ray trials: keep one cell per trial
            return []
        return ["train.seed"] + [k for k in varied_keys(grid) if k in allowed and k != "train.seed"]
    axes = []
    for name in spec:
        key = bundling.aliases.get(str(name), str(name))
        if "." not in key:
            key = f"train.{key}"
        if key not in allowed and not key.startswith("eval."):
            raise GridError(f"{source}: bundle: axis {name!r} cannot be bundled (cells of one bundle must share "
                            f"data and model shapes); allowed: seed, {', '.join(sorted(allowed))}, eval.*")
        if key not in axes:
            axes.append(key)
    if grid.scheduler.type == "asha":
        raise GridError(f"{source}: bundle: {spec!r} cannot be combined with scheduler: asha (ASHA stops whole Ray "
                        "trials, a bundle holds several cells); use bundle: none")
    return axes


def _slots(grid: GridFile) -> int:
    """How many Ray trials run at once: resources.max_concurrent, else the CPUs (or GPUs) over a trial's share."""
    if grid.resources.max_concurrent:
        return int(grid.resources.max_concurrent)
    cpus = grid.ray.num_cpus or os.cpu_count() or 1
    slots = int(cpus // grid.resources.cpus_per_trial) or 1
    if grid.resources.gpus_per_trial > 0 and grid.ray.num_gpus:
        slots = min(slots, int(grid.ray.num_gpus // grid.resources.gpus_per_trial) or 1)
    return max(1, slots)


def auto_bundle_size(n_cells: int, grid: GridFile) -> int:
    """``max_bundle_size`` when the grid leaves it out: at most 25 (the paper's 5 angles x 5 seeds), and small
    enough that every concurrent slot gets about two bundles (models of different cost then balance out)."""
    return max(1, min(MAX_AUTO_SIZE, math.ceil(n_cells / (2 * _slots(grid)))))


def _without(trial: dict[str, Any], keys: Sequence[str]) -> str:
    t = json.loads(json.dumps(trial))
    for key in keys:
        sec, _, name = key.partition(".")
        t.get(sec, {}).pop(name, None)
    return json.dumps(t, sort_keys=True)


def plan_bundles(cells: Sequence[Cell], grid: GridFile, *, source: str = "<grid>") -> list[list[Cell]]:
    """Group ``cells`` (in order) into bundles: equal except along the bundle axes, at most ``max_bundle_size``.

    A group larger than the limit is split into ``ceil(n / max)`` bundles of nearly equal size, so no Ray trial is
    left with a small remainder. Every bundle is checked with the task's ``Bundling.validate``.
    """
    axes = bundle_axes(grid, source=source)
    if not axes:
        return [[c] for c in cells]
    task = get_task(grid.task)
    validate_bundle = task.bundling.validate  # type: ignore[union-attr]  # axes imply bundling

    groups: dict[str, list[Cell]] = {}
    for c in cells:
        groups.setdefault(_without(c.trial, axes), []).append(c)
    out: list[list[Cell]] = []
    limit = grid.max_bundle_size or auto_bundle_size(len(cells), grid)
    for members in groups.values():
        n_parts = math.ceil(len(members) / limit)
        size = math.ceil(len(members) / n_parts)
        for i in range(0, len(members), size):
            part = members[i : i + size]
            try:
                diff = validate_bundle([c.config for c in part], strategy=grid.bundle_strategy)
            except ValueError as err:
                raise GridError(f"{source}: bundle {[c.run_name for c in part]}: {err}") from None
            model_keys = [k for k in diff if k.startswith("model.")]
            if grid.bundle_final_eval == "batched" and model_keys:
                raise GridError(f"{source}: bundle_final_eval: batched, but the cells of bundle "
                                f"{[c.run_name for c in part]} differ in {model_keys[0]} ({diff[model_keys[0]]}); "
                                "stacked forwards share one module: use bundle_final_eval: per_member or auto")
            out.append(part)
    return out
