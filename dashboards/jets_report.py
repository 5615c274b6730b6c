"""The jets sections of ``python -m dashboards.report``: what replaces the tracking sections (Table 1, rotation,
edge metrics) when an experiment's runs are top-tagging trials (``task=jets``, see :mod:`dashboards.jets_runs`).

Sections: size vs AUC and vs rejection_30 (parameters on the x axis, :mod:`dashboards.size_vs_auc`'s series), the
boost figure and table (:mod:`dashboards.boost`), the data-efficiency and ablation tables
(:mod:`dashboards.jets_tables`) and the training curves (the report's own figure, one line per model variant and
training mode). :mod:`dashboards.report` calls :func:`sections` and passes in its image and curve helpers, so this
module does not import it back.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import pandas as pd

from dashboards import boost, figures, jets_tables, size_vs_auc
from dashboards.data import RunSet, label
from dashboards.jets_runs import MODE, MODEL, VARIANT, is_jets, ok_runs, with_jets_columns

__all__ = ["is_jets", "sections", "size_figure"]

SIZE_PANELS = [("metrics.auc", False), ("metrics.rejection_30", True)]  # (metric, log y)


def _labelled(df: pd.DataFrame, *, with_mode: bool) -> pd.DataFrame:
    """``size`` replaced by the variant label (and the training mode), so series and curves split by them."""
    size = df[VARIANT].astype("string")
    if with_mode:
        size = size + ", " + df[MODE].astype("string")
    return df.assign(size=size)


def size_figure(rs: RunSet, out: Path, *, name: str = "jets_size") -> tuple[list[Path], str]:
    """ROC AUC and rejection_30 against trainable parameters (log x), one series per model, mean ± std over seeds;
    plain-trained runs only when there are any (boosted training is the boost figure's subject)."""
    ok = ok_runs(rs)
    plain = ok[ok[MODE] == "plain"]
    note = "plain training only" if len(plain) and len(plain) < len(ok) else "all runs"
    frame = _labelled(plain if len(plain) else ok, with_mode=not len(plain))
    models = sorted(frame[MODEL].dropna().astype(str).unique())
    fig, axes = figures.new_figure(len(SIZE_PANELS), 1, width=6.4, height=4.8)
    for ax, (metric, log_y) in zip(axes[0], SIZE_PANELS):
        drawn = size_vs_auc._ours(ax, frame, models, metric)
        figures.parameter_axis(ax)
        if log_y and drawn:
            ax.set_yscale("log")
        ax.set_xlabel("trainable parameters (log scale)")
        ax.set_ylabel(label(metric))
        ax.set_title(f"Model size vs {label(metric).split(' at ')[0]}")
        if not drawn:
            ax.text(
                0.5,
                0.5,
                f"no finished runs with n_params and {label(metric)}",
                transform=ax.transAxes,
                ha="center",
            )
        figures.legend(ax, loc="lower right", fontsize=9)
    figures.footnote(
        fig,
        f"error bars: ± sample std over seeds; labels: variant (n finished runs); {note}. No published points (the "
        f"published sizes are for the full Top Tagging dataset). {rs.describe()}",
    )
    return figures.save(fig, out, name), note


def sections(
    rs: RunSet,
    out: Path,
    *,
    image: Callable[[Sequence[Path], Path, str], str],
    curves: Callable[[RunSet], list[Path]],
) -> tuple[list[str], list[Path]]:
    """The jets report's Markdown lines and files; ``image`` renders a figure link, ``curves`` draws the
    training curves of a RunSet (the report's ``curves_figure``)."""
    md: list[str] = []
    files: list[Path] = []

    paths, note = size_figure(rs, out)
    files += paths
    md += [
        "## Model size: AUC and background rejection",
        "",
        image(paths, out, "AUC and rejection vs size"),
        "",
        "ROC AUC (left) and background rejection 1/ε_B at signal efficiency 30 % (right, log y) against the number "
        f"of trainable parameters; error bars ± std over seeds; labels give the variant and n ({note}).",
        "",
    ]

    paths = boost.build(rs, out)
    files += paths
    md += [
        "## Robustness to Lorentz boosts (seed 002 fig. 3)",
        "",
        image(paths, out, "accuracy and AUC vs boost"),
        "",
        "Accuracy (left) and ROC AUC (right) of the test jets boosted by β (`acc_boost_XXX`, `auc_boost_XXX`), one "
        "curve per model and training mode, bands ± std over seeds. " + boost.NO_PAPER + " All points: "
        "[boost.csv](boost.csv).",
        "",
        (out / "boost.md").read_text(),
    ]

    paths, texts = jets_tables.build(rs, out)
    files += paths
    md += [
        "## Data efficiency (seed 002 Table 3)",
        "",
        texts["data_efficiency"],
        "## Equivariance ablation (seed 002 Table 6)",
        "",
        texts["ablation"],
    ]

    ok = with_jets_columns(rs.runs)
    curve_rs = replace(rs, runs=_labelled(ok, with_mode=ok[MODE].nunique(dropna=False) > 1))
    paths = curves(curve_rs)
    files += paths
    md += [
        "## Training curves",
        "",
        image(paths, out, "training curves"),
        "",
        "Per-epoch train_loss, val_loss and val_auc (MLflow metric history), mean ± std over seeds per model "
        "variant and training mode.",
        "",
    ]
    return md, files
