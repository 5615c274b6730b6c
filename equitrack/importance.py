"""Hyperparameter importances with Optuna's evaluators: one implementation for the sweeps (after an Optuna search)
and the dashboards (any finished sweep), so both rank the same way."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

EVALUATORS = ("ped-anova", "fanova", "mdi")
DEFAULT_EVALUATOR = "ped-anova"  # Optuna's own default; fANOVA and MDI need scikit-learn forests (seeded)


def evaluator(name: str, *, seed: int = 0) -> Any:
    """The Optuna importance evaluator called ``name`` (one of :data:`EVALUATORS`)."""
    import optuna

    if name == "ped-anova":
        return optuna.importance.PedAnovaImportanceEvaluator()
    if name == "fanova":
        return optuna.importance.FanovaImportanceEvaluator(seed=seed)
    if name == "mdi":
        return optuna.importance.MeanDecreaseImpurityImportanceEvaluator(seed=seed)
    raise ValueError(f"importance evaluator {name!r}: expected one of {', '.join(EVALUATORS)}")


def param_importances(configs: Sequence[tuple[Mapping[str, Any], Sequence[float]]],
                      distributions: Mapping[str, Any], directions: Sequence[str], *,
                      evaluator_name: str = DEFAULT_EVALUATOR, seed: int = 0) -> list[dict[str, float]]:
    """Normalised importance of every parameter, one mapping per objective.

    ``configs``: (params, objective values) of each configuration (seeds already averaged); ``distributions``: an
    Optuna distribution per parameter; ``directions``: ``maximize`` / ``minimize`` per objective. Configurations
    outside the distributions are skipped with a warning.
    """
    import optuna

    optuna.logging.set_verbosity(logging.WARNING)
    study = optuna.create_study(directions=list(directions))
    for params, values in configs:
        try:
            study.add_trial(optuna.trial.create_trial(params=dict(params), distributions=dict(distributions),
                                                      values=[float(v) for v in values]))
        except ValueError as err:
            logging.getLogger(__name__).warning("skipping a configuration outside the distributions: %s", err)
    out = []
    for i in range(len(directions)):
        imp = optuna.importance.get_param_importances(study, evaluator=evaluator(evaluator_name, seed=seed),
                                                      target=lambda t, i=i: t.values[i], normalize=True)
        out.append({k: float(v) for k, v in imp.items()})
    return out
