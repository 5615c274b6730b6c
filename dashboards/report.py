"""One report of a sweep: every dashboard plus ant factor vs size, the AUC–size Pareto front, training curves with
seed bands, equivariance deviation vs angle and ROC curves, as ``report.md`` and ``report.html`` with the images.
A jets (top-tagging) experiment gets the sections of :mod:`dashboards.jets_report` instead of the tracking ones.

    python -m dashboards.report --experiment equitrack-paper-table1 --sweep ID --out reports/table1 [--paper]
"""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.ticker import MaxNLocator

from dashboards import cli, compare, figures, importance, jets_report, rotation, size_vs_auc
from dashboards.artifacts import metric_histories, read_csv_artifact
from dashboards.data import (
    DashboardError,
    RunSet,
    aggregate,
    fmt_pm,
    model_label,
    size_label,
    tracking_path,
)

MODEL = "params.model.name"
CURVES = [
    ("train_loss", "training loss (BCE)"),
    ("val_loss", "validation loss (BCE)"),
    ("val_auc", "validation AUC"),
]


# --------------------------------------------------------------------------------------------------------------
# extra figures


def config_means(rs: RunSet, metrics: Sequence[str]) -> pd.DataFrame:
    ok = rs.ok
    metrics = [m for m in metrics if m in ok.columns]
    if MODEL not in ok or ok.empty:
        return pd.DataFrame()
    return aggregate(ok, [MODEL, "size", "size_rank"], metrics)


def pareto_front(points: pd.DataFrame, *, x: str = "n_params_mean", y: str = "auc_mean") -> pd.DataFrame:
    """Configurations no other beats on both counts (fewer or equal parameters and higher AUC)."""
    pts = points.dropna(subset=[x, y]).sort_values([x, y], ascending=[True, False])
    front, best = [], -np.inf
    for idx, r in pts.iterrows():
        if r[y] > best:
            front.append(idx)
            best = r[y]
    return pts.loc[front]


def pareto_figure(rs: RunSet, out: Path) -> tuple[list[Path], pd.DataFrame]:
    pts = config_means(rs, ["metrics.n_params", "metrics.auc"])
    fig, axes = figures.new_figure(width=7.0, height=4.8)
    ax = axes[0, 0]
    front = pd.DataFrame()
    if len(pts) and "auc_mean" in pts and "n_params_mean" in pts:
        models = sorted(pts[MODEL].dropna().unique())
        for i, (model, sub) in enumerate(pts.groupby(MODEL)):
            ax.scatter(
                sub["n_params_mean"],
                sub["auc_mean"],
                marker=figures.marker(models.index(model)),
                s=50,
                color=figures.color(model, models),
                label=model_label(model),
                zorder=3,
            )
        front = pareto_front(pts)
        ax.step(
            front["n_params_mean"],
            front["auc_mean"],
            where="post",
            color="0.2",
            lw=1.2,
            ls="--",
            label="Pareto front",
            zorder=2,
        )
        for _, r in front.iterrows():
            ax.annotate(
                f"{model_label(r[MODEL])} {size_label(r['size'])}",
                (r["n_params_mean"], r["auc_mean"]),
                textcoords="offset points",
                xytext=(5, 5),
                fontsize=8,
            )
        figures.legend(ax, outside=True)  # beside the axes: a legend inside hid points
    else:
        ax.text(0.5, 0.5, "no finished runs with auc and n_params", transform=ax.transAxes, ha="center")
    figures.parameter_axis(ax)
    ax.set_xlabel("trainable parameters (log scale)")
    ax.set_ylabel("ROC AUC (mean over seeds)")
    ax.set_title("AUC–size Pareto front")
    figures.footnote(fig, rs.describe())
    return figures.save(fig, out, "pareto"), front


def ant_figure(rs: RunSet, out: Path) -> list[Path]:
    pts = config_means(rs, ["metrics.n_params", "metrics.ant_factor"])
    fig, axes = figures.new_figure(width=7.0, height=4.8)
    ax = axes[0, 0]
    if len(pts) and "ant_factor_mean" in pts and "n_params_mean" in pts:
        models = sorted(pts[MODEL].dropna().unique())
        for i, (model, sub) in enumerate(pts.groupby(MODEL)):
            sub = sub.sort_values("n_params_mean")
            c = figures.color(model, models)
            ax.errorbar(
                sub["n_params_mean"],
                sub["ant_factor_mean"],
                yerr=figures.error_range(sub["ant_factor_mean"], sub["ant_factor_std"], low=0.0, log=True),
                marker=figures.marker(i),
                capsize=4,
                color=c,
                label=model_label(model),
            )
            for _, r in sub.iterrows():
                ax.annotate(
                    f"{size_label(r['size'])} (n={int(r['n'])})",
                    (r["n_params_mean"], r["ant_factor_mean"]),
                    textcoords="offset points",
                    xytext=(5, 5),
                    fontsize=8,
                    color=c,
                )
        ax.set_yscale("log")
        figures.legend(ax)
    else:
        ax.text(0.5, 0.5, "no ant_factor metric", transform=ax.transAxes, ha="center")
    ax.set_xscale("log")
    ax.set_xlabel("trainable parameters (log scale)")
    ax.set_ylabel("ant factor 1/((1−AUC)·N_params)")
    ax.set_title("Ant factor vs model size (higher: more AUC per parameter)")
    figures.footnote(fig, "error bars: ± std over seeds. " + rs.describe())
    return figures.save(fig, out, "ant_factor")


def curves_figure(rs: RunSet, out: Path, *, cache_dir: Path | None = None) -> list[Path]:
    """Per-epoch train/val loss and val AUC (MlflowClient.get_metric_history), mean ± std over seeds per config."""
    hist = metric_histories(rs, [k for k, _ in CURVES], cache_dir=cache_dir)
    fig, axes = figures.new_figure(len(CURVES), 1, width=5.2, height=4.2)
    meta = rs.ok[["run_id", MODEL, "size", "size_rank"]] if MODEL in rs.ok else pd.DataFrame()
    if len(hist) and len(meta):
        hist = hist.merge(meta.astype({"run_id": str}), on="run_id")
        configs = hist[[MODEL, "size", "size_rank"]].drop_duplicates().sort_values([MODEL, "size_rank"])
        models = sorted(configs[MODEL].unique())
        for i, (key, title) in enumerate(CURVES):
            ax = axes[0, i]
            for j, (_, cfg) in enumerate(configs.iterrows()):
                sub = hist[(hist["key"] == key) & (hist[MODEL] == cfg[MODEL]) & (hist["size"] == cfg["size"])]
                if sub.empty:
                    continue
                g = sub.groupby("step")["value"].agg(["mean", "std", "count"]).reset_index()
                c = figures.color(cfg[MODEL], models)
                ls = ["-", "--", ":", "-."][
                    int(configs[configs[MODEL] == cfg[MODEL]]["size"].tolist().index(cfg["size"])) % 4
                ]
                ax.plot(
                    g["step"],
                    g["mean"],
                    color=c,
                    ls=ls,
                    label=f"{model_label(cfg[MODEL])} {size_label(cfg['size'])} (n={int(g['count'].max())})",
                )
                low, high = figures.bounds(key)  # a val_auc band stops at 1
                ax.fill_between(
                    g["step"],
                    (g["mean"] - g["std"].fillna(0)).clip(lower=low),
                    (g["mean"] + g["std"].fillna(0)).clip(upper=high),
                    color=c,
                    alpha=0.15,
                    lw=0,
                )
            ax.set_xlabel("epoch")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_ylabel(title)
            ax.set_title(title)
        figures.legend(axes[0, -1], fontsize=8)
    else:
        axes[0, 0].text(0.5, 0.5, "no per-epoch metrics", transform=axes[0, 0].transAxes, ha="center")
    fig.suptitle("Training curves (bands: ± std over seeds)")
    figures.footnote(fig, rs.describe())
    return figures.save(fig, out, "training_curves")


def roc_figure(rs: RunSet, out: Path, *, cache_dir: Path) -> list[Path]:
    """ROC curve (roc.csv) of the median-AUC seed of each configuration; right panel with a log FPR axis."""
    fig, axes = figures.new_figure(2, 1, width=5.6, height=4.6)
    ok = rs.ok
    drawn = 0
    if MODEL in ok and "metrics.auc" in ok and len(ok):
        models = sorted(ok[MODEL].dropna().unique())
        for (model, size, _), sub in ok.groupby([MODEL, "size", "size_rank"], dropna=False):
            sub = sub.dropna(subset=["metrics.auc"]).sort_values("metrics.auc")
            if sub.empty:
                continue
            run = sub.iloc[(len(sub) - 1) // 2]
            roc = read_csv_artifact(
                str(run["run_id"]), "roc.csv", cache_dir / "artifacts", tracking_uri=rs.tracking_uri
            )
            if roc is None or not {"fpr", "tpr"} <= set(roc.columns):
                continue
            c = figures.color(model, models)
            sizes = sorted(ok[ok[MODEL] == model]["size"].dropna().unique().tolist())
            ls = ["-", "--", ":", "-."][sizes.index(size) % 4 if size in sizes else 0]
            lab = f"{model_label(model)} {size_label(size)} (AUC {run['metrics.auc']:.4f})"
            for ax in axes[0]:
                ax.plot(roc["fpr"], roc["tpr"], color=c, ls=ls, label=lab)
            drawn += 1
    for k, ax in enumerate(axes[0]):
        ax.set_xlabel("false positive rate FP/(FP+TN)" + (" (log scale)" if k else ""))
        ax.set_ylabel("true positive rate (edge efficiency)")
        if k:
            ax.set_xscale("log")
            ax.set_xlim(1e-4, 1)
        else:
            ax.plot([0, 1], [0, 1], color="0.6", lw=0.8, ls=":")
    if drawn:
        figures.legend(axes[0, 0], fontsize=8, loc="lower right")
    else:
        axes[0, 0].text(0.5, 0.5, "no roc.csv artifacts", transform=axes[0, 0].transAxes, ha="center")
    fig.suptitle("ROC curves (median-AUC seed of each configuration)")
    figures.footnote(fig, rs.describe())
    return figures.save(fig, out, "roc")


# --------------------------------------------------------------------------------------------------------------
# report


def _img(paths: Sequence[Path], out: Path, alt: str) -> str:
    png = next(p for p in paths if p.suffix == ".png")
    pdf = next((p for p in paths if p.suffix == ".pdf"), None)
    rel = png.relative_to(out).as_posix()
    line = f"![{alt}]({rel})"
    if pdf is not None:
        line += f"\n\n[PDF]({pdf.relative_to(out).as_posix()})"
    return line


def failed_table(rs: RunSet) -> str:
    bad = rs.runs[rs.runs["outcome"] != "ok"]
    if bad.empty:
        return "No failed or unfinished trial runs.\n"
    names = {
        "tags.mlflow.runName": "run",
        MODEL: "model",
        "size": "size",
        "seed": "seed",
        "status": "MLflow status",
        "tags.status": "status tag",
        "outcome": "counted as",
        "run_id": "run id",
    }
    cols = [c for c in names if c in bad]
    return compare.markdown(bad[cols].rename(columns=names))


def markdown_to_html(md: str, title: str) -> str:
    """A standalone HTML page of the report's Markdown (CommonMark with tables, rendered by markdown-it)."""
    from markdown_it import MarkdownIt

    body = MarkdownIt("commonmark").enable("table").render(md)
    style = (
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto;line-height:1.4}img{max-width:100%}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
        "th{background:#f3f3f3}code{background:#f3f3f3;padding:0 3px}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{style}</style></head><body>\n{body}</body></html>\n"
    )


def build(
    rs: RunSet, out: Path, *, paper: bool = False, cache_dir: Path | None = None, metric: str = "auc"
) -> tuple[Path, list[Path]]:
    """Write every figure and table into ``out`` and the report as ``report.md`` / ``report.html``."""
    from dashboards.loading import default_cache_dir

    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    out.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []
    scope = ", ".join(rs.sweep_ids) if rs.sweep_ids else "all sweeps"
    md = [
        f"# equitrack report: {rs.experiment_name}",
        "",
        (
            f"Sweep(s): `{scope}`. Tracking URI: `{tracking_path(rs.tracking_uri)}`. "
            f"Generated {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M UTC}."
        ),
        "",
        (
            f"{rs.describe()}. Aggregates are mean ± sample std (ddof = 1) over seeds of finished runs; n is shown "
            "per point and row."
        ),
        "",
    ]
    if jets_report.is_jets(rs):  # top tagging: its own sections instead of the tracking ones
        jmd, jfiles = jets_report.sections(
            rs, out, image=_img, curves=lambda r: curves_figure(r, out, cache_dir=cache_dir)
        )
        return _finish(rs, out, md + jmd, files + jfiles)

    # Table 1 and size vs AUC
    t1, t1_files = size_vs_auc.write_table1(rs, out)
    fig = size_vs_auc.figure(rs, out, paper=paper)
    files += t1_files + fig
    md += [
        "## Model size and AUC (paper Table 1)",
        "",
        size_vs_auc.table1_markdown(t1, rs),
        _img(fig, out, "AUC vs size"),
        "",
        "AUC against the number of trainable parameters; error bars ± std over seeds; labels give the size "
        "(preset or hidden) and n" + (". Open markers: the paper's Table 1 \"AUC\", a ROC AUC of thresholded "
                                       "predictions, on the panel of our thresholded AUC (not our ROC AUC)."
                                       if paper else "."),
        "",
    ]

    # Pareto and ant factor
    fig, front = pareto_figure(rs, out)
    files += fig
    md += [
        "## AUC–size Pareto front",
        "",
        _img(fig, out, "Pareto front"),
        "",
        "Configurations (seed means) that no other configuration beats with fewer parameters:",
        "",
    ]
    if len(front):
        md += [
            compare.markdown(
                pd.DataFrame(
                    {
                        "model": front[MODEL].map(model_label),
                        "size": front["size"].map(size_label),
                        "params": front["n_params_mean"].round(0),
                        "AUC": [fmt_pm(a, s) for a, s in zip(front["auc_mean"], front["auc_std"])],
                        "n": front["n"],
                    }
                )
            ),
            "",
        ]
    def section(title: str, fig: list[Path], alt: str, caption: str) -> None:
        files.extend(fig)
        md.extend([f"## {title}", "", _img(fig, out, alt), "", caption, ""])

    section("Ant factor vs size", ant_figure(rs, out), "ant factor",
            "Ant factor v2 = 1/((1 − AUC)·N_params): AUC per parameter; higher is better.")

    # rotation and equivariance
    rt = rotation.rotation_table(rs)
    rt.to_csv(out / "rotation.csv", index=False, float_format="%.10g")
    files.append(out / "rotation.csv")
    section("Rotation robustness (paper fig. 2)", rotation.figure(rs, out), "AUC vs rotation",
            "AUC on the test set rotated by θ_test, one curve per training rotation, bands ± std over seeds."
            + ("" if len(rt) else " (No auc_rot_XXX metrics in these runs.)"))
    section("Equivariance deviation (paper fig. B1)", rotation.equivariance_figure(rs, out), "equivariance deviation",
            "Relative deviation of the edge scores when the inputs are rotated by θ (equivariance_dev_XXX).")

    # training curves and ROC
    section("Training curves", curves_figure(rs, out, cache_dir=cache_dir), "training curves",
            "Per-epoch metrics (MLflow metric history), mean ± std over seeds per configuration.")
    section("ROC curves", roc_figure(rs, out, cache_dir=cache_dir), "ROC curves",
            "From each configuration's roc.csv artifact, the seed with the median AUC.")

    # comparison and importance
    by = "model,size" if MODEL in rs.runs else "size"
    metrics = ",".join(
        m
        for m in ["auc", "edge_efficiency", "edge_purity", "n_params", "ant_factor"]
        if f"metrics.{m}" in rs.runs
    )
    if metrics:
        table, _, cfiles = compare.build(rs, out, by=by, metrics=metrics, echo=False)
        files += cfiles
        view = compare.compact(table, [f"metrics.{m}" for m in metrics.split(",")])
        md += [
            "## Summary by configuration",
            "",
            ("Cells: mean ± sample std [min, max] over seeds (full columns in [compare.csv](compare.csv))."),
            "",
            compare.markdown(view),
            "",
        ]
    md += ["## Hyperparameter importance", ""]
    try:
        ifiles = importance.build(rs, out, metric=metric)
        files += ifiles
        md += [
            _img(ifiles, out, "importance"),
            "",
            f"Optuna PED-ANOVA importance of each varying param for {metric}, on per-configuration seed means.",
            "",
        ]
    except DashboardError as err:
        md += [f"Not computed: {err}.", ""]

    return _finish(rs, out, md, files)


def _finish(rs: RunSet, out: Path, md: list[str], files: list[Path]) -> tuple[Path, list[Path]]:
    """The failed-runs section, then ``report.md`` and ``report.html``."""
    md = md + ["## Failed and unfinished runs", "", failed_table(rs), ""]
    report_md = out / "report.md"
    report_md.write_text("\n".join(md))
    report_html = out / "report.html"
    report_html.write_text(markdown_to_html("\n".join(md), f"equitrack report: {rs.experiment_name}"))
    return report_md, files + [report_md, report_html]


def main(argv: Sequence[str] | None = None) -> int:
    p = cli.parser("report", __doc__.split("\n\n")[0])
    p.add_argument("--paper", action="store_true", help="overlay the paper's Table 1 on the size figure")
    p.add_argument("--metric", default="auc", help="objective for the importance section (default auc)")
    args = p.parse_args(argv)
    rs = cli.load(args)
    out = cli.out_dir(args, "report")
    report_md, files = build(rs, out, paper=args.paper, cache_dir=args.cache_dir, metric=args.metric)
    print(f"wrote {report_md} and {report_md.with_suffix('.html')} ({len(files)} files)")
    if not args.no_log:
        figures.log_to_parent(rs, files)
    return 0


if __name__ == "__main__":
    raise SystemExit(cli.run_main(main))
