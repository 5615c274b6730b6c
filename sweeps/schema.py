"""The grid file: a validated description of a sweep, and its resolution into trial cells.

A grid file names an MLflow experiment, the shared data section, training/evaluation defaults, per-model
defaults, grid axes over dotted trial keys (or an Optuna search space), seeds, scheduler, resources, Ray and
MLflow settings. :func:`load_grid` validates it (pydantic, unknown keys are errors); :func:`resolve` turns it
into :class:`Cell` objects, each a trial configuration validated by the grid's task (``task:``, see
:mod:`equitrack.task`) plus the identity ``sweeps`` uses in MLflow (``config_id`` = hash of the trial without its
seed, a readable run name from the task's run-name parts). Nothing here knows a task's physics.
Every error is a :class:`GridError` whose message names the grid file, the key, the value and what is allowed.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from equitrack.config import format_validation_error, identity, problems, read_yaml
from equitrack.task import DEFAULT_TASK, Task, TaskError, get_task


class GridError(ValueError):
    """A grid file that does not validate or resolve; the message names file, key, value and what is allowed."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Objective(_Strict):
    """One optimisation target: a final metric name and its direction."""

    metric: str = "auc"
    mode: Literal["max", "min"] = "max"


class SpaceParam(_Strict):
    """One Optuna search dimension over a dotted trial key."""

    type: Literal["float", "int", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    values: list[Any] | None = None

    @model_validator(mode="after")
    def _check(self) -> SpaceParam:
        if self.type == "categorical":
            if not self.values:
                raise ValueError("categorical needs a non-empty 'values' list")
        else:
            if self.low is None or self.high is None:
                raise ValueError(f"{self.type} needs 'low' and 'high'")
            if self.low > self.high:
                raise ValueError(f"low ({self.low}) must be <= high ({self.high})")
            if self.log and self.low <= 0:
                raise ValueError("log scale needs low > 0")
        return self


class Search(_Strict):
    """How cells are chosen: the full grid, or Optuna (TPE for one objective, NSGA-II for several)."""

    type: Literal["grid", "optuna"] = "grid"
    n_trials: int = Field(20, ge=1)
    sampler_seed: int = 0
    objectives: list[Objective] = Field(default_factory=lambda: [Objective()], min_length=1, max_length=3)
    space: dict[str, SpaceParam] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check(self) -> Search:
        if self.type == "optuna" and not self.space:
            raise ValueError("search.type optuna needs a non-empty search.space")
        if self.type == "grid" and self.space:
            raise ValueError("search.space is only used with search.type: optuna (use grid: for a grid)")
        return self


class Scheduler(_Strict):
    """Early stopping of whole trials across the sweep: none, or ASHA on a per-epoch metric."""

    type: Literal["none", "asha"] = "none"
    metric: str = "val_auc"
    mode: Literal["max", "min"] = "max"
    grace_period: int = Field(5, ge=1)
    reduction_factor: float = Field(3.0, gt=1)
    max_t: int | None = Field(None, ge=1)  # None: train.epochs of the cells

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, v: Any) -> Any:
        return {"type": v} if isinstance(v, str) else v


class Resources(_Strict):
    """What each Ray trial asks for; fractional GPUs let several small trials share one device."""

    cpus_per_trial: float = Field(1.0, gt=0)
    gpus_per_trial: float = Field(0.0, ge=0)
    max_concurrent: int | None = Field(None, ge=1)


class RaySettings(_Strict):
    """Local Ray (address null) with capped resources, or an existing cluster."""

    address: str | None = None
    num_cpus: int | None = Field(None, ge=1)  # local Ray only; None: all cores
    num_gpus: int | None = Field(None, ge=0)  # local Ray only; None: detected
    object_store_mb: int = Field(512, ge=75)  # local Ray only
    storage_path: str = ".equitrack/ray"  # Ray Tune results and checkpoints (shared FS or s3:// on a cluster)
    workdir: str = ".equitrack/trials"  # per-cell trainer directories (resumable across invocations)
    # one worker process runs many trials in turn (imports and data paid once per process); false: a fresh process
    # per trial, Ray Tune's own default (isolates trials, e.g. one that leaks memory, at several seconds each)
    reuse_actors: bool = True


class MlflowSettings(_Strict):
    """Where runs go: a SQLite file in the working directory and artifacts beside it by default."""

    tracking_uri: str = "sqlite:///mlflow.db"
    artifact_location: str = "./mlartifacts"


class GridFile(_Strict):
    """The whole grid file (see docs/sweeps.md for every key). Top-level keys beyond these are the extra trial
    sections of the grid's task (e.g. a ``pipeline:`` section), shared by every cell like ``data:``."""

    model_config = ConfigDict(extra="allow", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    experiment: str = Field(min_length=1)
    task: str = DEFAULT_TASK  # which science package runs the trials (equitrack.task: tracking, jets, ...)
    description: str = ""
    data: dict[str, Any] = Field(default_factory=dict)
    train: dict[str, Any] = Field(default_factory=dict)
    eval: dict[str, Any] = Field(default_factory=dict)
    models: dict[str, dict[str, Any]] = Field(default_factory=dict)
    grid: list[dict[str, list[Any]]] = Field(default_factory=lambda: [{}])
    seeds: list[int] = Field(default_factory=lambda: [0])
    search: Search = Search()
    scheduler: Scheduler = Scheduler()
    resources: Resources = Resources()
    max_retries: int = Field(1, ge=0)
    # bundled trials (sweeps/bundling.py): cells differing only along these axes share one Ray trial
    bundle: list[str] | Literal["auto", "none"] = "auto"
    max_bundle_size: int | None = Field(None, ge=1)  # None: automatic (sweeps.bundling.auto_bundle_size)
    bundle_strategy: Literal["auto", "loop", "vmap"] = "auto"
    # how a bundle's members get their final metrics (the task's bundled training: final_eval)
    bundle_final_eval: Literal["auto", "batched", "per_member"] = "auto"
    # vmap bundles on CUDA: replay the stacked step from a CUDA graph (run_bundle's cuda_graphs)
    bundle_cuda_graphs: bool = True
    ray: RaySettings = RaySettings()
    mlflow: MlflowSettings = MlflowSettings()

    @field_validator("task")
    @classmethod
    def _known_task(cls, v: str) -> str:
        try:
            get_task(v)
        except TaskError as err:
            raise ValueError(str(err)) from None
        return v

    @field_validator("grid", mode="before")
    @classmethod
    def _grid_shape(cls, v: Any) -> Any:
        if v is None:
            return [{}]
        blocks = v if isinstance(v, list) else [v]
        out = []
        for block in blocks:
            if not isinstance(block, dict):
                raise ValueError(f"each grid block must be a mapping of dotted key -> list of values, got {block!r}")
            out.append({str(k): (list(vals) if isinstance(vals, (list, tuple)) else [vals]) for k, vals in block.items()})
        return out or [{}]

    @field_validator("grid")
    @classmethod
    def _grid_keys(cls, v: list[dict[str, list[Any]]]) -> list[dict[str, list[Any]]]:
        for block in v:
            for key, vals in block.items():
                if key == "train.seed":
                    raise ValueError("train.seed is set by 'seeds:', not by a grid axis")
                if not vals:
                    raise ValueError(f"grid axis {key!r} has no values")
        return v

    @field_validator("bundle", mode="before")
    @classmethod
    def _bundle_shape(cls, v: Any) -> Any:
        if v is None or v is False:
            return "none"
        if v is True:
            return "auto"
        if isinstance(v, str) and v not in ("auto", "none"):
            return [v]
        return v

    @field_validator("seeds", mode="before")
    @classmethod
    def _seeds(cls, v: Any) -> Any:
        if isinstance(v, bool):
            raise ValueError("seeds must be a count or a list of integers")
        if isinstance(v, int):
            if v < 1:
                raise ValueError(f"a seed count must be >= 1 (got {v})")
            return list(range(v))
        return v

    @field_validator("seeds")
    @classmethod
    def _seeds_unique(cls, v: list[int]) -> list[int]:
        if not v:
            raise ValueError("seeds must not be empty")
        if len(set(v)) != len(v):
            raise ValueError(f"seeds must be distinct (got {v})")
        return v

    @model_validator(mode="after")
    def _dotted_keys(self) -> GridFile:
        sections = trial_sections(self.task)
        extra = [k for k in self.extra_sections() if k not in sections or k == "model"]
        if extra:
            raise ValueError(f"unknown top-level key(s) {extra}; allowed: {', '.join(sorted(type(self).model_fields))}"
                             f" and the sections of task {self.task!r}: {', '.join(sections)}")
        for where, keys in (("grid", [k for block in self.grid for k in block]), ("search.space", self.search.space)):
            for key in keys:
                if "." not in key or key.split(".", 1)[0] not in sections:
                    raise ValueError(f"{where} key {key!r} must be a dotted trial key starting with one of "
                                     f"{', '.join(sections)} (e.g. model.hidden, train.lr)")
        return self

    def extra_sections(self) -> dict[str, Any]:
        """Trial sections of the grid's task beyond data/train/eval (e.g. a ``pipeline:`` section)."""
        return dict(self.model_extra or {})


def trial_sections(task: str) -> tuple[str, ...]:
    """The sections of a trial of ``task`` (the heads of dotted grid keys): its config type's fields."""
    return tuple(get_task(task).config_type.model_fields)


def _unknown_top_level(raw: dict[str, Any], *, source: str) -> str | None:
    """The error for top-level keys that are neither grid-file keys nor sections of the task's trials."""
    try:
        sections = set(trial_sections(str(raw.get("task") or DEFAULT_TASK))) - {"model"}
    except TaskError:
        return None  # the task key's own validation reports it
    known = set(GridFile.model_fields) | sections
    bad = [k for k in raw if k not in known]
    if not bad:
        return None
    allowed = ", ".join(sorted(known))
    return "\n".join([f"{source}: invalid grid file"]
                     + [f"  {k}: unknown key; allowed: {allowed} (got {raw[k]!r})" for k in bad])


# ------------------------------------------------------------------------------------------------ loading


def parse_grid(raw: Any, *, source: str = "<grid>") -> GridFile:
    """Validate a mapping as a grid file."""
    if not isinstance(raw, dict):
        raise GridError(f"{source}: a grid file must be a YAML mapping, got {type(raw).__name__}")
    unknown = _unknown_top_level(raw, source=source)
    if unknown:
        raise GridError(unknown)
    try:
        return GridFile.model_validate(raw)
    except ValidationError as err:
        raise GridError(format_validation_error(err, source=source, title="invalid grid file", root=GridFile)) from None


def load_grid(path: str | Path, *, overrides: list[str] | None = None) -> GridFile:
    """Read, optionally override (``key=value`` with YAML values, see :func:`apply_override`) and validate."""
    path = Path(path)
    raw = read_yaml(path, what="grid file", error=GridError) or {}
    for item in overrides or []:
        if "=" not in item:
            raise GridError(f"{path}: override {item!r} must look like key=value (e.g. train.epochs=1)")
        key, value = item.split("=", 1)
        if not isinstance(raw, dict):
            break
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError as err:
            raise GridError(f"{path}: override {item!r}: the value is not valid YAML: {err}") from None
        apply_override(raw, key.strip(), parsed, source=str(path))
    return parse_grid(raw, source=str(path))


def apply_override(raw: dict[str, Any], key: str, value: Any, *, source: str = "<grid>") -> None:
    """Set one ``--set`` key in a raw grid mapping.

    A key is dotted into the file (``train.epochs``, ``models.<name>.hidden``), except where the file's own keys
    contain dots: grid axes and search dimensions are named by dotted trial keys, so everything after ``grid.`` is
    one axis key and everything after ``search.space.`` one dimension key:

    - ``grid.model.hidden=[8, 16]`` sets the axis ``model.hidden`` in every grid block that has it, or adds it to
      every block when none has it (a scalar is a one-value axis); ``grid.model.hidden=null`` removes the axis;
    - ``grid.1.model.hidden=[8]`` does that in block 1 only (0-based; the file's ``grid:`` list order);
    - ``search.space.model.hidden={type: int, low: 4, high: 16}`` sets that dimension (``null`` removes it).
    ``grid=...`` and ``search.space=...`` still replace the whole section.
    """
    if key.startswith("grid.") and len(key) > len("grid."):
        _override_axis(raw, key[len("grid."):], value, source=source)
    elif key.startswith("search.space.") and len(key) > len("search.space."):
        search = raw.setdefault("search", {})
        if not isinstance(search, dict):
            raise GridError(f"{source}: override {key!r}: 'search' is not a mapping in the grid file")
        space = search.setdefault("space", {})
        if not isinstance(space, dict):
            raise GridError(f"{source}: override {key!r}: 'search.space' is not a mapping in the grid file")
        dim = key[len("search.space."):]
        if value is None:
            space.pop(dim, None)
        else:
            space[dim] = value
    else:
        _set_dotted(raw, key, value)


def _override_axis(raw: dict[str, Any], rest: str, value: Any, *, source: str) -> None:
    """``--set grid.[N.]AXIS=VALUES`` (see :func:`apply_override`)."""
    grid = raw.get("grid")
    blocks: list[Any] = [{}] if grid is None else (grid if isinstance(grid, list) else [grid])
    raw["grid"] = blocks
    head, _, axis = rest.partition(".")
    if head.isdigit() and axis:
        index = int(head)
        if index >= len(blocks):
            raise GridError(f"{source}: override 'grid.{rest}': block {index} does not exist (the grid has "
                            f"{len(blocks)} block(s), numbered from 0)")
        targets = [blocks[index]]
    else:
        axis = rest
        having = [b for b in blocks if isinstance(b, dict) and axis in b]
        targets = having or blocks
    for block in targets:
        if not isinstance(block, dict):
            raise GridError(f"{source}: override 'grid.{rest}': grid block {block!r} is not a mapping")
        if value is None:
            block.pop(axis, None)
        else:
            block[axis] = value


def _set_dotted(target: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = target
    for p in parts[:-1]:
        if not isinstance(node.get(p), dict):
            node[p] = {}
        node = node[p]
    node[parts[-1]] = value


# ------------------------------------------------------------------------------------------------ cells


class Cell(BaseModel):
    """One (configuration, seed): what one MLflow child run records."""

    model_config = ConfigDict(frozen=True)

    trial: dict[str, Any]  # the task's trial config, validated, as model_dump(mode="json")
    task: str = DEFAULT_TASK
    config_id: str
    seed: int
    run_name: str
    overrides: dict[str, Any]  # the grid/space values that made this cell
    #: the validated trial config object of the task (``trial`` is its JSON form); validated once, here
    config: Any = Field(default=None, exclude=True, repr=False)

    @property
    def key(self) -> tuple[str, int]:
        return (self.config_id, self.seed)

    @property
    def model(self) -> str:
        return str(self.trial["model"]["name"])


def config_id(trial: dict[str, Any], *, task: str = DEFAULT_TASK) -> str:
    """Stable hash of a trial config without its seed (groups the seeds of one configuration)."""
    t = get_task(task)  # e.g. the checkpoint cadence changes no result; a key added later at its default neither
    stripped = identity(trial, neutral=(("train", "seed"), *t.result_neutral_keys), added=t.added_defaults)
    blob = json.dumps(stripped, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def run_name(trial: dict[str, Any], seed: int, varied: list[str], *, task: str = DEFAULT_TASK) -> str:
    """``<model>-<size>-<axis label><value>…-s<seed>``: the task's run-name parts (model, size, varied axes), the seed."""
    parts = get_task(task).run_name_parts(trial, varied)
    return "-".join([*parts, f"s{seed}"]).replace("/", "_")


def base_trial(grid: GridFile, overrides: dict[str, Any]) -> dict[str, Any]:
    """The raw trial dict of one cell before validation: shared sections, model defaults, then the overrides."""
    raw: dict[str, Any] = {
        "data": copy.deepcopy(grid.data),
        "train": copy.deepcopy(grid.train),
        "eval": copy.deepcopy(grid.eval),
        "model": {},
        **copy.deepcopy(grid.extra_sections()),
    }
    name = overrides.get("model.name")
    if name is None and len(grid.models) == 1:
        name = next(iter(grid.models))
    if name is not None:
        raw["model"]["name"] = name
        raw["model"].update(copy.deepcopy(grid.models.get(str(name), {})))
    for key, value in overrides.items():
        _set_dotted(raw, key, copy.deepcopy(value))
    path = raw["data"].get("path") if isinstance(raw["data"], dict) else None
    if isinstance(path, str) and path and not Path(path).expanduser().is_absolute():
        # trials run in Ray workers whose working directory differs: anchor relative paths at the driver's
        raw["data"]["path"] = str(Path(path).expanduser().resolve())
    return raw


def _describe(overrides: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in overrides.items()) or "no grid values"


def validate_trial(raw: dict[str, Any], *, source: str, overrides: dict[str, Any], task: Task | None = None) -> Any:
    """Validate one cell with its task's trial schema; a failure names the grid key and value (or the default
    section) and what is allowed."""
    config_type = (task or get_task()).config_type
    try:
        return config_type.model_validate(raw)
    except ValidationError as err:
        lines = [f"{source}: cell ({_describe(overrides)}) is not a valid trial"]
        for loc, msg in problems(err, root=config_type):
            dotted = ".".join(str(p) for p in loc)
            origin = next((f"grid key {k!r} value {overrides[k]!r}" for k in overrides
                           if dotted == k or dotted.startswith(k + ".") or k.startswith(dotted + ".")), None)
            if origin is None:
                origin = f"key {dotted!r} (from the '{loc[0]}:' section)" if loc else "the trial"
            lines.append(f"  {origin}: {dotted or '<root>'}: {msg}")
        raise GridError("\n".join(lines)) from None


def _check_model(cfg: Any, *, task: Task, source: str, overrides: dict[str, Any],
                 seen: dict[str, str | None]) -> None:
    """Build the model once per distinct model section so bad names/hyperparameters fail before Ray starts."""
    key = json.dumps(cfg.model.model_dump(mode="json"), sort_keys=True)
    if key not in seen:
        try:
            task.check_model(cfg)
            seen[key] = None
        except Exception as err:
            seen[key] = f"{type(err).__name__}: {err}"
    if seen[key]:
        raise GridError(f"{source}: cell ({_describe(overrides)}): model {cfg.model.model_dump()} cannot be built: "
                        f"{seen[key]}")


def grid_overrides(grid: GridFile) -> list[dict[str, Any]]:
    """Every combination of the grid axes (union over blocks, first-seen order, duplicates removed)."""
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for block in grid.grid:
        keys = list(block)
        for values in itertools.product(*(block[k] for k in keys)):
            combo = dict(zip(keys, values))
            sig = json.dumps(combo, sort_keys=True, default=str)
            if sig not in seen:
                seen.add(sig)
                out.append(combo)
    return out


def varied_keys(grid: GridFile) -> list[str]:
    """Axes with more than one value overall (they go into run names), in file order."""
    values: dict[str, set[str]] = {}
    for block in grid.grid:
        for k, vals in block.items():
            values.setdefault(k, set()).update(json.dumps(v, default=str) for v in vals)
    keys = [k for k, v in values.items() if len(v) > 1]
    keys += [k for k in grid.search.space if k not in keys]
    return keys


def make_cells(grid: GridFile, overrides: dict[str, Any], *, source: str, check_model: bool = True,
               _seen: dict[str, str | None] | None = None) -> list[Cell]:
    """The cells (one per seed) of one combination of values."""
    task = get_task(grid.task)
    raw = base_trial(grid, overrides)
    cfg = validate_trial(raw, source=source, overrides=overrides, task=task)
    if check_model:
        _check_model(cfg, task=task, source=source, overrides=overrides, seen=_seen if _seen is not None else {})
    varied = varied_keys(grid)
    cells = []
    for seed in grid.seeds:
        seeded = cfg.model_copy(update={"train": cfg.train.model_copy(update={"seed": seed})})
        trial = seeded.model_dump(mode="json")
        cells.append(Cell(trial=trial, config=seeded, task=grid.task, config_id=config_id(trial, task=grid.task), seed=seed,
                          run_name=run_name(trial, seed, varied, task=grid.task), overrides=dict(overrides)))
    return cells


def resolve(grid: GridFile, *, source: str = "<grid>", check_model: bool = True) -> list[Cell]:
    """All cells of a grid search (for Optuna: one representative cell per seed from the space's first values)."""
    seen: dict[str, str | None] = {}
    cells: list[Cell] = []
    if grid.search.type == "optuna":
        # validate the base and both ends of every dimension so bad spaces fail before Ray starts
        for ov in grid_overrides(grid):
            for probe in _space_probes(grid):
                cells += make_cells(grid, {**ov, **probe}, source=source, check_model=check_model, _seen=seen)
        return _dedupe(cells)
    for ov in grid_overrides(grid):
        cells += make_cells(grid, ov, source=source, check_model=check_model, _seen=seen)
    out = _dedupe(cells)
    names = [c.run_name for c in out]
    return [c.model_copy(update={"run_name": f"{c.run_name}-{c.config_id[:6]}"}) if names.count(c.run_name) > 1 else c
            for c in out]


def distinct_names(cells: list[Cell], taken: Mapping[str, str]) -> list[Cell]:
    """Cells whose run name another configuration already holds get the config id's first 6 digits appended.

    ``taken`` maps run names already in the sweep to their config_id: a re-run with a changed setting (e.g.
    ``--set train.epochs=12``) makes new configurations whose readable names equal the old ones'; the suffix keeps
    the two apart in MLflow, the results table and the dashboards, while the old runs keep their names.
    """
    out = []
    for c in cells:
        holder = taken.get(c.run_name)
        if holder is not None and holder != c.config_id:
            c = c.model_copy(update={"run_name": f"{c.run_name}-{c.config_id[:6]}"})
        out.append(c)
    return out


def _space_probes(grid: GridFile) -> list[dict[str, Any]]:
    lo: dict[str, Any] = {}
    hi: dict[str, Any] = {}
    for key, p in grid.search.space.items():
        if p.type == "categorical":
            lo[key], hi[key] = p.values[0], p.values[-1]  # type: ignore[index]
        elif p.type == "int":
            lo[key], hi[key] = int(p.low), int(p.high)  # type: ignore[arg-type]
        else:
            lo[key], hi[key] = float(p.low), float(p.high)  # type: ignore[arg-type]
    return [lo, hi]


def _dedupe(cells: list[Cell]) -> list[Cell]:
    seen: set[tuple[str, int]] = set()
    out = []
    for c in cells:
        if c.key not in seen:
            seen.add(c.key)
            out.append(c)
    return out
