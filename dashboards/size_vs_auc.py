"""AUC against model size (paper Table 1): a figure (AUC vs parameter count, log x, one series per model, mean ± std
over seeds, points labelled by size and n) and the table in the paper's layout as ``table1.md`` / ``table1.csv``.

The paper's Table 1 "AUC" is the reference code's ROC AUC of thresholded 0/1 predictions (SCIENCE.md §5), i.e. our
``auc_thresholded``, not our ROC AUC from scores: ``--paper`` draws a second panel, our ``auc_thresholded`` with the
paper's points over it, and the ROC AUC panel carries no paper points.

    python -m dashboards.size_vs_auc --experiment equitrack-paper-table1 --out docs/results [--sweep ID] [--paper]
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from dashboards import cli, figures
from dashboards.data import RunSet, aggregate, fmt_pm, label, model_label, size_label
from dashboards.paper import TABLE1, paper_size

MODEL = "params.model.name"
TABLE_METRICS = [
    ("metrics.n_params", "params"),
    ("metrics.auc", "auc"),
    ("metrics.auc_thresholded", "auc_thresholded"),
    ("metrics.edge_efficiency", "efficiency"),
    ("metrics.edge_purity", "purity"),
]


def _present(df: pd.DataFrame, cols: Sequence[str]) -> list[str]:
    return [c for c in cols if c in df.columns]


def table1(rs: RunSet) -> pd.DataFrame:
    """One row per (model, size): params, AUC, thresholded AUC, efficiency, purity as mean and std over seeds, n
    finished runs and the number of failed runs of that configuration; ordered like the paper (size, then model).

    ``size`` is the paper's N_hidden label where the configuration is one of the paper's, else the run's own size
    marked ``*`` (``h=8*``), so that a size that is not the paper's never shares a label with one that is (the IN at
    h = 8 and at h = 16, the paper's "8"); ``config`` keeps the preset or hidden width. Should two configurations of
    one model still meet under one label, each gets its config appended (``8 (paper_8)``)."""
    runs = rs.runs
    if MODEL not in runs:
        return pd.DataFrame(columns=["size", "model", "n", "failed"])
    metrics = _present(runs, [m for m, _ in TABLE_METRICS])
    ok = rs.ok
    by = [MODEL, "size", "size_rank"]
    agg = aggregate(ok, by, metrics)
    failed = runs[runs["outcome"] == "failed"].groupby(by, dropna=False).size().rename("failed").reset_index()
    agg = agg.merge(failed, on=by, how="outer")
    agg["failed"] = agg["failed"].fillna(0).astype(int)
    agg["n"] = agg["n"].fillna(0).astype(int)
    paper = [paper_size(m, z) for m, z in zip(agg[MODEL], agg["size"])]
    out = pd.DataFrame(
        {
            "size": [str(p) if p is not None else f"{size_label(z)}*" for p, z in zip(paper, agg["size"])],
            "model": agg[MODEL],
            "config": [size_label(z) for z in agg["size"]],
            "size_rank": [float(p) if p is not None else r for p, r in zip(paper, agg["size_rank"])],
        }
    )
    for col, name in TABLE_METRICS:
        s = col.split(".", 1)[1]
        out[f"{name}_mean"] = agg.get(f"{s}_mean", np.nan)
        out[f"{name}_std"] = agg.get(f"{s}_std", np.nan)
    out["n"] = agg["n"]
    out["failed"] = agg["failed"]
    if "tags.config_id" in ok:  # >1 means the row pools configurations that differ in something besides size
        configs = ok.groupby(by, dropna=False)["tags.config_id"].nunique().rename("configs").reset_index()
        out["configs"] = agg[by].merge(configs, on=by, how="left")["configs"].fillna(0).astype(int).to_numpy()
    clash = out.duplicated(["model", "size"], keep=False)
    out.loc[clash, "size"] = out.loc[clash, "size"] + " (" + out.loc[clash, "config"] + ")"
    out = out.sort_values(["size_rank", "model", "params_mean"], na_position="last").drop(columns="size_rank")
    return out.reset_index(drop=True)


def table1_markdown(t: pd.DataFrame, rs: RunSet) -> str:
    lines = [
        "| size | model | config | params | ROC AUC | thresholded AUC | efficiency | purity | n | failed |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for _, r in t.iterrows():
        params = "–" if pd.isna(r["params_mean"]) else f"{r['params_mean']:.0f}"
        if not pd.isna(r["params_std"]) and r["params_std"] > 0:
            params += f" ± {r['params_std']:.0f}"
        lines.append(
            f"| {r['size']} | {model_label(r['model'])} | {r['config']} | {params} | {fmt_pm(r['auc_mean'], r['auc_std'])} | "
            f"{fmt_pm(r['auc_thresholded_mean'], r['auc_thresholded_std'])} | "
            f"{fmt_pm(r['efficiency_mean'], r['efficiency_std'])} | {fmt_pm(r['purity_mean'], r['purity_std'])} | "
            f"{int(r['n'])} | {int(r['failed'])} |"
        )
    mixed = t[t.get("configs", pd.Series(0, index=t.index)) > 1]
    if len(mixed):
        lines += [
            "",
            (
                f"Warning: {len(mixed)} rows pool several configurations (config_id) of the same model and size; "
                "split them with `python -m dashboards.compare --by model,size,KEY`."
            ),
        ]
    lines += [
        "",
        (
            "size: the paper's N_hidden label (EuclidNet preset paper_N → N; Interaction Network h = 16 / 32 / 40 → "
            "8 / 16 / 32, SCIENCE.md §4); a size marked * is not one of the paper's (the run's own preset or hidden "
            "width); config: the preset or hidden width actually run."
        ),
        f"Mean ± sample std (ddof = 1) over seeds; n = finished runs, failed runs are left out. {rs.describe()}.",
        "Efficiency = TP/(TP+FN), purity = TP/(TP+FP) at the threshold chosen on validation. ROC AUC: from the "
        "scores. Thresholded AUC: the ROC AUC of the 0/1 predictions at that threshold, (1 + TPR − FPR) / 2; the "
        "paper's Table 1 \"AUC\" is this quantity (SCIENCE.md §5), so compare the paper's AUC with this column, "
        "not with ROC AUC.",
    ]
    return "\n".join(lines) + "\n"


def write_table1(rs: RunSet, out: Path) -> tuple[pd.DataFrame, list[Path]]:
    t = table1(rs)
    csv, md = out / "table1.csv", out / "table1.md"
    t.to_csv(csv, index=False, float_format="%.10g")
    md.write_text(table1_markdown(t, rs))
    return t, [md, csv]


THRESHOLDED = "metrics.auc_thresholded"


def figure(
    rs: RunSet, out: Path, *, paper: bool = False, metric: str = "metrics.auc", name: str = "size_vs_auc"
):
    """``metric`` (default ROC AUC) vs parameter count per model, mean ± std over seeds; annotated ``size (n=…)``.

    ``paper``: the paper's Table 1 points go on a panel of our thresholded AUC, the quantity the paper calls "AUC"
    (a second panel beside ``metric`` unless ``metric`` is that one); other metrics get no paper points.
    """
    panels = [metric] if metric == THRESHOLDED or not (paper and metric == "metrics.auc") else [metric, THRESHOLDED]
    fig, axes = figures.new_figure(ncols=len(panels), width=7.2, height=5.0)
    ok = rs.ok
    models = sorted(ok[MODEL].dropna().unique()) if MODEL in ok else []
    for ax, col in zip(axes[0], panels):
        drawn = _ours(ax, ok, models, col)
        if paper and col == THRESHOLDED:
            _paper_points(ax, models)
        figures.parameter_axis(ax)
        ax.set_xlabel("trainable parameters (log scale)")
        ax.set_ylabel(label(col))
        title = "Model size vs " + label(col)
        if paper and col == "metrics.auc":
            title += "\n(from scores; the paper reports none)"
        elif paper and col == THRESHOLDED:
            title += "\n(the paper's Table 1 \"AUC\")"
        ax.set_title(title)
        if not drawn:
            ax.text(0.5, 0.5, "no finished runs with n_params and " + label(col), transform=ax.transAxes,
                    ha="center")
        figures.legend(ax, outside="below")  # off the axes: a legend inside hid points
    figures.footnote(
        fig,
        "error bars: ± sample std over seeds; labels: preset or hidden width (n finished runs). "
        + ("Paper points: Table 1's \"AUC\", the ROC AUC of thresholded predictions (SCIENCE.md §5), drawn against "
           "our thresholded AUC, not our ROC AUC. " if paper else "")
        + rs.describe(),
    )
    return figures.save(fig, out, name)


def _ours(ax, ok: pd.DataFrame, models: list[str], metric: str) -> bool:
    """This work's series of ``metric`` per model on ``ax``; whether anything was drawn."""
    if not {MODEL, "metrics.n_params", metric} <= set(ok.columns):
        return False
    drawn = False
    for i, model in enumerate(models):
        sub = ok[(ok[MODEL] == model) & ok[metric].notna()]
        if sub.empty:
            continue
        agg = aggregate(sub, ["size", "size_rank"], ["metrics.n_params", metric]).sort_values("n_params_mean")
        m = metric.split(".", 1)[1]
        std = agg[f"{m}_std"].fillna(0.0)
        c = figures.color(model, models)
        ax.errorbar(
            agg["n_params_mean"],
            agg[f"{m}_mean"],
            yerr=figures.error_range(agg[f"{m}_mean"], std, low=figures.bounds(metric)[0],
                                     high=figures.bounds(metric)[1]),  # an AUC bar never runs past 1
            marker=figures.marker(i),
            ms=7,
            capsize=4,
            lw=1.6,
            color=c,
            label=f"{model_label(model)} (this work, {_short(metric)})",
        )
        drawn = True
        for _, r in agg.iterrows():
            ax.annotate(
                f"{size_label(r['size'])} (n={int(r['n'])})",
                (r["n_params_mean"], r[f"{m}_mean"]),
                textcoords="offset points",
                xytext=(6, -12),
                fontsize=9,
                color=c,
            )
    return drawn


def _short(metric: str) -> str:
    return {"metrics.auc": "ROC AUC", THRESHOLDED: "thresholded AUC"}.get(metric, label(metric))


def _paper_points(ax, models: list[str]) -> None:
    """The paper's Table 1 "AUC" (thresholded, SCIENCE.md §5) per model, open markers and dashed lines."""
    for i, (model, sub) in enumerate(TABLE1.groupby("model")):
        c = figures.color(model, models)
        ax.errorbar(
            sub["params"],
            sub["auc"],
            yerr=figures.error_range(sub["auc"], sub["auc_std"], low=0.0, high=1.0),
            marker=figures.marker(i),
            mfc="white",
            ms=7,
            capsize=3,
            ls="--",
            lw=1.0,
            color=c,
            alpha=0.8,
            label=f"{model_label(model)} (paper Table 1 \"AUC\", thresholded)",
        )
        for _, r in sub.iterrows():
            ax.annotate(
                f"paper {r['size']}",
                (r["params"], r["auc"]),
                textcoords="offset points",
                xytext=(-8, 6),
                fontsize=8,
                color=c,
                alpha=0.8,
                ha="right",
            )


def build(rs: RunSet, out: Path, *, paper: bool = False) -> list[Path]:
    _t, tables = write_table1(rs, out)
    return figure(rs, out, paper=paper) + tables


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--paper", action="store_true",
                   help="a second panel: our thresholded AUC with the paper's Table 1 \"AUC\" (thresholded) over it")


def main(argv: Sequence[str] | None = None) -> int:
    p = cli.parser("size_vs_auc", __doc__.split("\n\n")[0])
    add_arguments(p)
    args = p.parse_args(argv)
    rs = cli.load(args)
    out = cli.out_dir(args, "size_vs_auc")
    paths = build(rs, out, paper=args.paper)
    print((out / "table1.md").read_text())
    cli.publish(args, rs, paths)
    return 0


if __name__ == "__main__":
    raise SystemExit(cli.run_main(main))
