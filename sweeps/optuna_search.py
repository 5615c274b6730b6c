"""Optuna search over a grid file's ``search.space``: Ray Tune's OptunaSearch with a seeded sampler, and the
hyperparameter importances of the finished study (rebuilt from MLflow so resumed sweeps count every trial)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from equitrack.importance import param_importances
from sweeps.schema import GridFile

log = logging.getLogger(__name__)


def distributions(grid: GridFile) -> dict[str, BaseDistribution]:
    """``search.space`` as Optuna distributions keyed by dotted trial key."""
    out: dict[str, BaseDistribution] = {}
    for key, p in grid.search.space.items():
        if p.type == "categorical":
            out[key] = CategoricalDistribution(list(p.values or []))
        elif p.type == "int":
            out[key] = IntDistribution(int(p.low), int(p.high), log=p.log, step=int(p.step or 1))  # type: ignore[arg-type]
        else:
            out[key] = FloatDistribution(float(p.low), float(p.high), log=p.log,  # type: ignore[arg-type]
                                         step=None if p.log or p.step is None else float(p.step))
    return out


@dataclass(frozen=True)
class SamplerSpec:
    """What sampler to build, as plain data: Ray pickles and deep-copies its searcher, and some samplers hold
    thread locks that do not pickle (optuna 5.1's ``NSGAIISampler``), so only this spec travels."""

    kind: Literal["tpe", "nsga2"]
    seed: int | None

    def build(self, *, offset: int = 0) -> optuna.samplers.BaseSampler:
        """A fresh sampler of this kind, seeded ``seed + offset`` (a restored search passes its trial count, so
        it does not repeat the suggestions it made before it was saved)."""
        seed = None if self.seed is None else self.seed + offset
        if self.kind == "nsga2":
            return optuna.samplers.NSGAIISampler(seed=seed)
        return optuna.samplers.TPESampler(seed=seed)


def sampler_spec(grid: GridFile) -> SamplerSpec:
    """Seeded TPE for one objective, seeded NSGA-II for several."""
    kind: Literal["tpe", "nsga2"] = "nsga2" if len(grid.search.objectives) > 1 else "tpe"
    return SamplerSpec(kind=kind, seed=grid.search.sampler_seed)


def sampler(grid: GridFile) -> optuna.samplers.BaseSampler:
    """The grid's sampler, built now (for use in this process only; see :class:`SamplerSpec`)."""
    return sampler_spec(grid).build()


def _parse(value: str) -> Any:
    try:
        return json.loads(value)
    except (json.JSONDecodeError, TypeError):
        return value


def importances(grid: GridFile, runs: Iterable[Any]) -> dict[str, dict[str, float]]:
    """Per objective, the importance of every space dimension over the finished child runs.

    ``runs`` are MLflow runs with tags ``grid.<key>`` (the suggested values) and the objective metrics; seeds
    of one configuration are averaged. Fewer than two distinct finished configurations gives ``{}``.
    """
    dists = distributions(grid)
    objs = grid.search.objectives
    by_config: dict[str, dict[str, Any]] = {}
    for run in runs:
        tags, metrics = run.data.tags, run.data.metrics
        if run.info.status != "FINISHED" or any(o.metric not in metrics for o in objs):
            continue
        try:
            params = {k: _parse(tags[f"grid.{k}"]) for k in dists}
        except KeyError:
            continue
        entry = by_config.setdefault(tags.get("config_id", run.info.run_id), {"params": params, "values": []})
        entry["values"].append([float(metrics[o.metric]) for o in objs])
    if len(by_config) < 2:
        return {}
    configs = [(e["params"], [sum(v[i] for v in e["values"]) / len(e["values"]) for i in range(len(objs))])
               for e in by_config.values()]
    try:
        ranked = param_importances(configs, dists, ["maximize" if o.mode == "max" else "minimize" for o in objs])
    except Exception as err:  # too few distinct values, a degenerate objective: the sweep's results stand
        log.warning("importances unavailable: %s", err)
        return {}
    return {o.metric: imp for o, imp in zip(objs, ranked)}
