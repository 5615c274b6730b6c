"""The task seam: what a science package gives the sweeps, and the registry that finds it.

A task is an object with the attributes and methods of :class:`Task`, published by its package under the
``equitrack.tasks`` entry-point group of ``pyproject.toml``::

    [project.entry-points."equitrack.tasks"]
    tracking = "tracker.task:TASK"
    jets = "jets.task:TASK"

A grid file picks one with ``task: <name>`` (default ``tracking``). ``sweeps`` only ever talks to a task through
this protocol, so a new task needs no code in ``sweeps`` and no new logging code: its trials report through the
:class:`equitrack.reporter.Reporter`-shaped protocol and its metrics are whatever names it reports.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel

ENTRY_POINT_GROUP = "equitrack.tasks"
DEFAULT_TASK = "tracking"


class TaskError(LookupError):
    """An unknown task name, or an installed task that does not load; the message lists the installed ones."""


@dataclass(frozen=True)
class Bundling:
    """How a task trains several cells of one configuration family in one process (optional).

    ``axes``: dotted keys that may differ within a bundle; ``vmap_axes``: those the stacked (vmap) strategy allows;
    ``aliases``: short names accepted in a grid's ``bundle:`` list; ``validate(configs, strategy=...)`` raises
    ``ValueError`` naming the offending key when ``configs`` cannot share a bundle and returns the differing keys;
    ``run(configs, reporters, *, workdirs, strategy, resume, log, final_eval, on_round_end, cuda_graphs)`` trains
    them and returns one result per member with ``status`` and ``metrics``.
    """

    axes: frozenset[str]
    vmap_axes: frozenset[str]
    aliases: Mapping[str, str]
    validate: Callable[..., dict[str, list[Any]]]
    run: Callable[..., Sequence[Any]]


@runtime_checkable
class Task(Protocol):
    """What ``sweeps`` needs from a science package."""

    #: the name grids use (``task: jets``); also the MLflow tag ``task`` of every trial run
    name: str
    #: the pydantic model of one trial: its fields are the sections (at least ``data``, ``model``, ``train``, ``eval``;
    #: any further one, e.g. ``pipeline``, is a top-level section of the task's grids), frozen, extra keys forbidden
    config_type: type[BaseModel]
    #: (section, key) pairs that change no result: left out of config ids and checkpoint hashes
    result_neutral_keys: tuple[tuple[str, str], ...]
    #: keys added after sweeps existed, with their defaults: left out of config ids while they hold them
    added_defaults: Mapping[tuple[str, str], Any]
    #: names of the per-epoch metrics a trial reports (the scheduler's metric must be one of them)
    epoch_metrics: tuple[str, ...]
    #: final metrics shown in the sweep's terminal results table, name -> short column header, most important first
    headline_metrics: Mapping[str, str]
    #: optional bundled training; ``None``: one cell per Ray trial
    bundling: Bundling | None

    def run_name_parts(self, trial: Mapping[str, Any], varied: Sequence[str]) -> list[str]:
        """Readable parts of a cell's run name (model, size, the varied axes), without the seed."""

    def check_model(self, config: Any) -> None:
        """Build the configured model once; raise with a clear message if it cannot be built."""

    def prepare_data(self, config: Any) -> str:
        """Build (or find in the cache) the dataset of ``config`` on the driver; return its key."""

    def run_trial(self, config: Any, reporter: Any, *, workdir: Path, resume: bool = True) -> Any:
        """Train and evaluate one trial; the result has ``metrics`` (the final metrics)."""


_REGISTERED: dict[str, Task] = {}


def register_task(task: Task) -> None:
    """Make ``task`` available in this process under ``task.name`` (entry points cover installed packages; this
    serves tasks defined at run time, e.g. in tests or notebooks)."""
    if not isinstance(task, Task):
        raise TypeError(f"{task!r} does not implement equitrack.task.Task")
    _REGISTERED[task.name] = task


def _entry_points() -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def task_names() -> list[str]:
    """The names of every task this process can load (installed entry points and registered tasks)."""
    return sorted(set(_entry_points()) | set(_REGISTERED))


def get_task(name: str | None = None) -> Task:
    """The task called ``name`` (default ``tracking``); :class:`TaskError` names the installed ones if unknown."""
    name = name or DEFAULT_TASK
    if name in _REGISTERED:
        return _REGISTERED[name]
    eps = _entry_points()
    if name not in eps:
        raise TaskError(f"unknown task {name!r}; installed tasks: {', '.join(task_names()) or 'none'} "
                        f"(a task is an entry point of group {ENTRY_POINT_GROUP!r}; reinstall with pip install -e .)")
    try:
        task = eps[name].load()
    except Exception as err:  # a broken package: say which
        raise TaskError(f"task {name!r} ({eps[name].value}) does not load: {type(err).__name__}: {err}") from err
    if not isinstance(task, Task):
        raise TaskError(f"task {name!r} ({eps[name].value}) does not implement equitrack.task.Task")
    _REGISTERED[name] = task
    return task


def _dotted(d: Mapping[str, Any], key: str) -> Any:
    node: Any = d
    for p in key.split("."):
        if not isinstance(node, Mapping) or p not in node:
            return None
        node = node[p]
    return node


def standard_run_name_parts(trial: Mapping[str, Any], varied: Sequence[str], *, labels: Mapping[str, str],
                            formats: Mapping[str, Callable[[Any], str]] | None = None) -> list[str]:
    """``[model, size, <label><value> per varied axis]``: the run-name parts most tasks want.

    The size is ``model.preset`` or ``h<model.hidden>``; a varied axis is written as its label (``labels[key]``,
    else the key's last part) followed by the value (floats with 3 significant digits), or by ``formats[key]``.
    """
    model = trial["model"]
    parts = [str(model["name"])]
    if model.get("preset"):
        parts.append(str(model["preset"]))
    elif model.get("hidden") is not None:
        parts.append(f"h{model['hidden']}")
    for key in varied:
        if key in ("model.name", "model.preset", "model.hidden"):
            continue
        value = _dotted(trial, key)
        if value is None:
            continue
        if formats and key in formats:
            parts.append(formats[key](value))
            continue
        text = f"{value:.3g}" if isinstance(value, float) else str(value)
        parts.append(f"{labels.get(key, key.rsplit('.', 1)[-1])}{text}")
    return parts
