"""Group runs by any keys and summarise metrics over seeds; optionally a paired comparison of two groups.

    python -m dashboards.compare --experiment equitrack-paper-table1 --by model,size --metrics auc,edge_purity \
        --pair "model.name=euclidnet" "model.name=interaction_network"

The summary (mean, std, min, max, n per group) goes to the terminal (rich), ``compare.csv`` and ``compare.md``.
The paired comparison matches runs of the two groups on the seed and on every ``--by`` key the selectors do not
fix, takes A − B per pair, and reports the mean difference with a 95 % Student-t interval
(mean ± t₀.₉₇₅,ₙ₋₁ · s/√n) and the paired t-test p-value (``scipy.stats.ttest_rel``); ``pairs.csv`` lists the pairs.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from dashboards import cli
from dashboards.data import DashboardError, RunSet, aggregate, column, columns, short

DEFAULT_BY = "model,size"
DEFAULT_METRICS = "auc,edge_efficiency,edge_purity,n_params"


@dataclass
class Paired:
    metric: str
    a: str
    b: str
    n: int
    mean_diff: float
    std_diff: float
    ci_low: float
    ci_high: float
    p_value: float
    pairs: pd.DataFrame


def parse_selector(df: pd.DataFrame, text: str) -> dict[str, str]:
    """``"model.name=euclidnet,hidden=8"`` → {column: value}."""
    sel = {}
    for part in text.split(","):
        if not part.strip():
            continue
        if "=" not in part:
            raise DashboardError(f"--pair selector '{text}': expected KEY=VALUE[,KEY=VALUE], got '{part}'")
        key, value = part.split("=", 1)
        sel[column(df, key, prefer="params.")] = value.strip()
    return sel


def _matches(df: pd.DataFrame, col: str, value: str) -> pd.Series:
    s = df[col]
    if pd.api.types.is_numeric_dtype(s):
        try:
            return np.isclose(s.astype(float), float(value)) & s.notna()
        except ValueError:
            return pd.Series(False, index=df.index)
    return (s.astype("string") == value).fillna(False)


def select(df: pd.DataFrame, sel: dict[str, str]) -> pd.DataFrame:
    mask = pd.Series(True, index=df.index)
    for col, value in sel.items():
        mask &= _matches(df, col, value)
    return df[mask]


def paired(df: pd.DataFrame, metric: str, a: str, b: str, by: Sequence[str] = ()) -> Paired:
    """A − B over runs matched on seed and on the ``by`` keys that neither selector fixes."""
    sel_a, sel_b = parse_selector(df, a), parse_selector(df, b)
    fixed = set(sel_a) | set(sel_b)
    match = [c for c in by if c not in fixed] + ["seed"]
    ra, rb = select(df, sel_a), select(df, sel_b)
    for name, r in ((a, ra), (b, rb)):
        if r.empty:
            raise DashboardError(f"--pair group '{name}' matches no finished run")
        dup = r.duplicated(subset=match, keep=False)
        if dup.any():
            raise DashboardError(
                f"--pair group '{name}' has several runs per {', '.join(short(c) for c in match)}: add keys to the "
                "selector or to --by so each seed is one run"
            )
    left = ra[match + ["run_id", metric]].rename(columns={metric: "a", "run_id": "run_a"})
    right = rb[match + ["run_id", metric]].rename(columns={metric: "b", "run_id": "run_b"})
    pairs = left.merge(right, on=match, how="inner").dropna(subset=["a", "b"])
    pairs["diff"] = pairs["a"] - pairs["b"]
    n = len(pairs)
    if n == 0:
        raise DashboardError(
            f"--pair groups '{a}' and '{b}' share no seed (matched on {', '.join(map(short, match))})"
        )
    d = pairs["diff"].to_numpy(dtype=float)
    mean = float(d.mean())
    if n > 1:
        sd = float(d.std(ddof=1))
        half = float(stats.t.ppf(0.975, n - 1) * sd / np.sqrt(n))
        p = float(stats.ttest_rel(pairs["a"], pairs["b"]).pvalue) if sd > 0 else float("nan")
    else:
        sd, half, p = float("nan"), float("nan"), float("nan")
    return Paired(short(metric), a, b, n, mean, sd, mean - half, mean + half, p, pairs)


def summary(rs: RunSet, by: Sequence[str], metrics: Sequence[str]) -> pd.DataFrame:
    agg = aggregate(rs.ok, by, metrics)
    failed = rs.runs[rs.runs["outcome"] == "failed"]
    if len(failed) and all(c in failed for c in by):
        counts = failed.groupby(list(by), dropna=False).size().rename("failed").reset_index()
        agg = agg.merge(counts, on=list(by), how="outer")
    else:
        agg["failed"] = 0
    agg["failed"] = agg["failed"].fillna(0).astype(int)
    agg["n"] = agg["n"].fillna(0).astype(int)
    if "size" in by:  # paper_8 before paper_16: order sizes by their number, not as text
        ranks = rs.runs.drop_duplicates("size").set_index("size")["size_rank"]
        agg["_rank"] = agg["size"].map(ranks)
        keys = [("_rank" if c == "size" else c) for c in by]
        agg = agg.sort_values(keys, na_position="last").drop(columns="_rank")
    return agg.reset_index(drop=True).rename(columns={c: short(c) for c in by})


def _fmt(v: object) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA:
        return "–"
    if isinstance(v, (float, np.floating)):
        return f"{v:.4g}" if abs(v) >= 100 else f"{v:.4f}"
    return str(v)


def markdown(table: pd.DataFrame) -> str:
    cols = list(table.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, r in table.iterrows():
        lines.append("| " + " | ".join(_fmt(r[c]) for c in cols) + " |")
    return "\n".join(lines) + "\n"


def compact(table: pd.DataFrame, metrics: Sequence[str]) -> pd.DataFrame:
    """One cell per metric, ``mean ± std [min, max]``, for the terminal and Markdown (the CSV keeps the columns)."""
    names = [short(m) for m in metrics]
    stat_cols = {f"{m}_{s}" for m in names for s in ("mean", "std", "min", "max", "n")}
    out = table[[c for c in table.columns if c not in stat_cols and c not in ("n", "failed")]].copy()
    for m in names:
        if f"{m}_mean" not in table:
            continue
        out[m] = [
            "–" if pd.isna(mu) else f"{_fmt(mu)} ± {_fmt(sd)} [{_fmt(lo)}, {_fmt(hi)}]"
            for mu, sd, lo, hi in zip(
                table[f"{m}_mean"], table[f"{m}_std"], table[f"{m}_min"], table[f"{m}_max"]
            )
        ]
    out["n"] = table["n"]
    out["failed"] = table["failed"]
    return out


def paired_table(results: Sequence[Paired]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "metric": r.metric,
                "A": r.a,
                "B": r.b,
                "n_pairs": r.n,
                "mean_diff": r.mean_diff,
                "std_diff": r.std_diff,
                "ci95_low": r.ci_low,
                "ci95_high": r.ci_high,
                "p_value": r.p_value,
            }
            for r in results
        ]
    )


def print_rich(table: pd.DataFrame, title: str) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    t = Table(title=escape(title), show_lines=False)
    for c in table.columns:
        t.add_column(escape(str(c)), justify="right" if pd.api.types.is_numeric_dtype(table[c]) else "left")
    for _, r in table.iterrows():
        t.add_row(*[escape(_fmt(r[c])) for c in table.columns])
    Console(width=200).print(t)


def build(
    rs: RunSet,
    out: Path,
    *,
    by: str = DEFAULT_BY,
    metrics: str = DEFAULT_METRICS,
    pair: Sequence[str] | None = None,
    echo: bool = True,
) -> tuple[pd.DataFrame, pd.DataFrame | None, list[Path]]:
    df = rs.runs
    by_cols = columns(df, by, prefer="params.")
    if metrics == DEFAULT_METRICS:  # defaults: use those the runs have; named metrics must exist
        metrics = ",".join(m for m in metrics.split(",") if f"metrics.{m}" in df.columns)
    metric_cols = columns(df, metrics, prefer="metrics.")
    table = summary(rs, by_cols, metric_cols)
    paths = [out / "compare.csv", out / "compare.md"]
    table.to_csv(paths[0], index=False, float_format="%.10g")
    view = compact(table, metric_cols)
    md = (
        f"# Comparison by {', '.join(map(short, by_cols))}\n\n{rs.describe()}\n\n"
        "Cells: mean ± sample std [min, max] over seeds; n finished runs; failed runs left out.\n\n"
        + markdown(view)
    )
    ptable = None
    if pair:
        if len(pair) != 2:
            raise DashboardError(f"--pair takes two selectors, got {len(pair)}")
        results = [paired(rs.ok, m, pair[0], pair[1], by_cols) for m in metric_cols]
        ptable = paired_table(results)
        pairs = pd.concat([r.pairs.assign(metric=r.metric) for r in results], ignore_index=True)
        pairs.rename(columns={c: short(c) for c in pairs.columns}).to_csv(out / "pairs.csv", index=False)
        ptable.to_csv(out / "paired.csv", index=False, float_format="%.10g")
        paths += [out / "paired.csv", out / "pairs.csv"]
        md += (
            f"\n## Paired: A = `{pair[0]}` vs B = `{pair[1]}`\n\nDifference A − B over runs sharing seed"
            " (and the other grouping keys); 95 % Student-t interval; p from a paired t-test.\n\n"
            + markdown(ptable)
        )
    paths[1].write_text(md)
    if echo:
        print_rich(view, f"{rs.experiment_name}: by {', '.join(map(short, by_cols))} (mean ± std [min, max])")
        if ptable is not None:
            print_rich(ptable, "paired difference A − B (95 % t interval)")
    return table, ptable, paths


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--by", default=DEFAULT_BY, help=f"grouping keys, comma separated (default {DEFAULT_BY})")
    p.add_argument(
        "--metrics", default=DEFAULT_METRICS, help=f"metrics, comma separated (default {DEFAULT_METRICS})"
    )
    p.add_argument(
        "--pair", nargs=2, metavar=("A", "B"), help="two selectors KEY=VALUE[,KEY=VALUE] to compare"
    )


def main(argv: Sequence[str] | None = None) -> int:
    p = cli.parser("compare", __doc__.split("\n\n")[0])
    add_arguments(p)
    args = p.parse_args(argv)
    rs = cli.load(args)
    out = cli.out_dir(args, "compare")
    _, _, paths = build(rs, out, by=args.by, metrics=args.metrics, pair=args.pair)
    cli.publish(args, rs, paths)
    return 0


if __name__ == "__main__":
    raise SystemExit(cli.run_main(main))
