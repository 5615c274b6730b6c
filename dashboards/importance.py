"""Hyperparameter importance over the runs of a sweep, with Optuna's importance evaluators.

    python -m dashboards.importance --experiment my_grid --sweep ID --metric auc [--evaluator ped-anova]

Runs are averaged over seeds per configuration (the params that vary, seeds excluded); each configuration becomes
a completed trial of an in-memory Optuna study (``optuna.trial.create_trial``) with distributions inferred from
the values (numbers → Int/FloatDistribution over the observed range, anything else or a param missing in some
runs → CategoricalDistribution); ``optuna.importance.get_param_importances`` then ranks the params.
Writes ``importance.png/pdf`` (bar chart) and ``importance.csv``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from dashboards import cli, figures
from dashboards.data import DashboardError, RunSet, column, config_keys, short
from equitrack.importance import EVALUATORS, param_importances


def _distribution(values: pd.Series):
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if pd.api.types.is_numeric_dtype(values) and values.notna().all():
        v = values.astype(float)
        if np.all(np.mod(v, 1) == 0) and pd.api.types.is_integer_dtype(values):
            return IntDistribution(int(v.min()), int(v.max())), lambda x: int(x)
        return FloatDistribution(float(v.min()), float(v.max())), lambda x: float(x)
    choices = tuple(sorted({_cat(x) for x in values}))
    return CategoricalDistribution(choices), _cat


def _cat(x: object) -> str:
    return "none" if x is None or x is pd.NA or (isinstance(x, float) and np.isnan(x)) else str(x)


def importances(
    rs: RunSet,
    *,
    metric: str = "auc",
    evaluator: str = "ped-anova",
    seed: int = 0,
    params: Sequence[str] | None = None,
) -> tuple[pd.DataFrame, int]:
    """Importance per param (summing to 1) and the number of configurations it was computed from."""

    ok = rs.ok
    if ok.empty:
        raise DashboardError("no finished trial runs: nothing to rank")
    mcol = column(ok, metric, prefer="metrics.")
    keys = [column(ok, p, prefer="params.") for p in params] if params else config_keys(ok)
    keys = [k for k in keys if ok[k].astype("string").nunique(dropna=False) > 1]
    if not keys:
        raise DashboardError("no param varies between the finished runs of this selection: nothing to rank")
    per_config = ok.groupby(keys, dropna=False)[mcol].mean().reset_index().dropna(subset=[mcol])
    if len(per_config) < 2:
        raise DashboardError(f"need at least 2 configurations with {short(mcol)}, found {len(per_config)}")
    dists = {k: _distribution(per_config[k]) for k in keys}
    configs = [({short(k): conv(row[k]) for k, (_, conv) in dists.items()}, [float(row[mcol])])
               for _, row in per_config.iterrows()]
    try:
        (imp,) = param_importances(configs, {short(k): d for k, (d, _) in dists.items()}, ["maximize"],
                                   evaluator_name=evaluator, seed=seed)
    except ValueError as err:
        raise DashboardError(str(err)) from None
    table = pd.DataFrame({"param": list(imp), "importance": [float(v) for v in imp.values()]})
    table = table.sort_values("importance", ascending=False).reset_index(drop=True)
    return table, len(per_config)


def build(
    rs: RunSet,
    out: Path,
    *,
    metric: str = "auc",
    evaluator: str = "ped-anova",
    seed: int = 0,
    params: Sequence[str] | None = None,
) -> list[Path]:
    table, n_configs = importances(rs, metric=metric, evaluator=evaluator, seed=seed, params=params)
    csv = out / "importance.csv"
    table.assign(metric=metric, evaluator=evaluator, n_configs=n_configs).to_csv(
        csv, index=False, float_format="%.10g"
    )
    fig, axes = figures.new_figure(width=6.8, height=0.5 * len(table) + 2.0)
    ax = axes[0, 0]
    ax.barh(table["param"][::-1], table["importance"][::-1], color=figures.color("euclidnet"))
    for y, v in enumerate(table["importance"][::-1]):
        ax.text(v, y, f" {v:.2f}", va="center", fontsize=10)
    ax.set_xlabel(f"importance for {metric} (normalised, {evaluator})")
    ax.set_xlim(0, min(1.15, max(table["importance"].max() * 1.2, 0.1)))
    ax.set_title(f"Hyperparameter importance ({n_configs} configurations, seed means)")
    figures.footnote(fig, rs.describe())
    return figures.save(fig, out, "importance") + [csv]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--metric", default="auc", help="objective (maximised), default auc")
    p.add_argument("--evaluator", default="ped-anova", choices=EVALUATORS, help="Optuna importance evaluator")
    p.add_argument("--params", default=None, help="params to rank (comma separated; default: all that vary)")
    p.add_argument("--seed", type=int, default=0, help="seed of the fANOVA / MDI forests")


def main(argv: Sequence[str] | None = None) -> int:
    p = cli.parser("importance", __doc__.split("\n\n")[0])
    add_arguments(p)
    args = p.parse_args(argv)
    rs = cli.load(args)
    out = cli.out_dir(args, "importance")
    params = [x for x in args.params.split(",") if x] if args.params else None
    paths = build(rs, out, metric=args.metric, evaluator=args.evaluator, seed=args.seed, params=params)
    print(pd.read_csv(paths[-1]).to_string(index=False))
    cli.publish(args, rs, paths)
    return 0


if __name__ == "__main__":
    raise SystemExit(cli.run_main(main))
