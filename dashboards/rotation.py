"""Rotation robustness (paper fig. 2): AUC against the inference rotation angle, read from the ``auc_rot_XXX``
metrics, one curve per training rotation (``train.train_rotation_deg``), one panel per model, bands = mean ± std
over seeds. Also the equivariance deviation against angle (paper fig. B1) from ``equivariance_dev_XXX``.

    python -m dashboards.rotation --experiment equitrack-paper-rotation --out docs/results [--sweep ID]
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from dashboards import cli, figures
from dashboards.data import RunSet, angle_columns, model_label, size_label

MODEL = "params.model.name"
TRAIN_ROT = "params.train.train_rotation_deg"


def _long(ok: pd.DataFrame, prefix: str, extra: Sequence[str]) -> pd.DataFrame:
    """Long table: one row per run and angle (columns: extra..., run_id, angle, value)."""
    cols = angle_columns(ok, prefix)
    if not cols or ok.empty:
        return pd.DataFrame(columns=[*extra, "run_id", "angle", "value"])
    keep = [c for c in extra if c in ok.columns]
    wide = ok[keep + ["run_id"] + [c for _, c in cols]].rename(columns={c: a for a, c in cols})
    long = wide.melt(id_vars=keep + ["run_id"], var_name="angle", value_name="value").dropna(subset=["value"])
    for c in extra:
        if c not in long:
            long[c] = 0.0 if c == TRAIN_ROT else (np.nan if c == "size_rank" else "model")
    long["angle"] = long["angle"].astype(int)
    return long


def rotation_table(rs: RunSet) -> pd.DataFrame:
    """Mean, std and n of AUC per model, training angle and inference angle."""
    long = _long(rs.ok, "auc_rot", [MODEL, TRAIN_ROT, "size", "size_rank"])
    if long.empty:
        return pd.DataFrame(columns=[MODEL, "size", "size_rank", TRAIN_ROT, "angle", "mean", "std", "n"])
    g = long.groupby([MODEL, "size_rank", "size", TRAIN_ROT, "angle"], dropna=False)["value"]
    return g.agg(["mean", "std", "count"]).rename(columns={"count": "n"}).reset_index()


def on_angles(g: pd.DataFrame, angles: Sequence[int]) -> pd.DataFrame:
    """``g`` (one curve: column ``angle`` and its values) on every angle of the figure, NaN where the curve has
    none, so that matplotlib breaks the line there instead of bridging the missing angle."""
    return g.set_index("angle").reindex(sorted(angles)).rename_axis("angle").reset_index()


def figure(rs: RunSet, out: Path, *, name: str = "rotation") -> list[Path]:
    t = rotation_table(rs)
    panels = list(t[[MODEL, "size"]].drop_duplicates().itertuples(index=False)) if len(t) else [("none", "")]
    ncols = min(len(panels), 3)
    nrows = int(np.ceil(len(panels) / ncols))
    fig, axes = figures.new_figure(ncols, nrows, width=5.6, height=4.4, sharey=True)
    rotations = sorted(t[TRAIN_ROT].dropna().unique()) if len(t) else []
    angles = sorted(t["angle"].unique()) if len(t) else []
    models = sorted(t[MODEL].dropna().unique()) if len(t) else []
    for k, (model, size) in enumerate(panels):
        ax = axes[k // ncols, k % ncols]
        sub = t[(t[MODEL] == model) & (t["size"].astype("string") == size)] if len(t) else t
        # the model's colour (EuclidNet blue, IN orange), one shade per training rotation, dark to light
        colours = figures.shades(figures.color(model, models), len(rotations))
        for j, rot in enumerate(rotations):
            cur = sub[sub[TRAIN_ROT] == rot]
            if cur.empty:
                continue
            cur = on_angles(cur, angles)  # a missing angle is a gap, not a straight line across it
            c = colours[j]
            n = int(cur["n"].min())
            std = cur["std"].fillna(0.0)
            ax.plot(cur["angle"], cur["mean"], marker=figures.marker(j), ms=4, color=c,
                    label=f"train {rot:g}° (n={n})")
            ax.fill_between(cur["angle"], (cur["mean"] - std).clip(lower=0.0), (cur["mean"] + std).clip(upper=1.0),
                            color=c, alpha=0.2, lw=0)
        title = model_label(model) + (
            f" {size_label(size)}" if size not in ("", None) and not pd.isna(size) else ""
        )
        ax.set_title(title)
        ax.set_xlabel("inference rotation θ_test [deg]")
        if k % ncols == 0:
            ax.set_ylabel("ROC AUC")
        ax.set_xticks(np.arange(0, 181, 45))
        if len(sub):
            figures.legend(ax, loc="lower left", fontsize=8)
        else:
            ax.text(0.5, 0.5, "no auc_rot_XXX metrics", transform=ax.transAxes, ha="center")
    for k in range(len(panels), nrows * ncols):
        axes[k // ncols, k % ncols].set_visible(False)
    fig.suptitle("AUC vs inference rotation, per training rotation (bands: ± std over seeds)")
    figures.footnote(fig, rs.describe())
    return figures.save(fig, out, name)


def equivariance_figure(rs: RunSet, out: Path, *, name: str = "equivariance") -> list[Path]:
    """Relative deviation of the edge scores under rotation vs angle (paper fig. B1), per model and size."""
    long = _long(rs.ok, "equivariance_dev", [MODEL, "size", "size_rank"])
    fig, axes = figures.new_figure(width=6.8, height=4.6)
    ax = axes[0, 0]
    if long.empty:
        ax.text(0.5, 0.5, "no equivariance_dev_XXX metrics", transform=ax.transAxes, ha="center")
    else:
        models = sorted(long[MODEL].dropna().unique())
        angles = sorted(long["angle"].unique())  # before dropping values <= 0: those angles become gaps
        if (long["value"] > 0).any():  # log axis: exact zeros (θ = 0, or exact invariance) cannot be drawn
            n_zero = int((long["value"] <= 0).sum())
            long = long[long["value"] > 0]
            if n_zero:
                ax.text(
                    0.01,
                    0.01,
                    f"{n_zero} values ≤ 0 not drawn (log axis)",
                    transform=ax.transAxes,
                    fontsize=8,
                    color="0.4",
                )
        groups = long.groupby([MODEL, "size_rank", "size"], dropna=False)
        for i, ((model, _, size), sub) in enumerate(groups):
            g = on_angles(sub.groupby("angle")["value"].agg(["mean", "std", "count"]).reset_index(), angles)
            c = figures.color(model, models)
            lo = np.maximum(g["mean"] - g["std"].fillna(0), g["mean"] * 1e-2)
            ax.plot(
                g["angle"],
                g["mean"],
                marker=figures.marker(i),
                color=c,
                alpha=0.9,
                label=f"{model_label(model)} {size_label(size)} (n={int(g['count'].min())})",
            )
            ax.fill_between(g["angle"], lo, g["mean"] + g["std"].fillna(0), color=c, alpha=0.15, lw=0)
        if len(long):
            ax.set_yscale("log")
        figures.legend(ax, fontsize=8)
    ax.set_xlabel("rotation angle θ [deg]")
    ax.set_ylabel("relative deviation of edge scores")
    ax.set_title("Equivariance deviation vs rotation angle")
    figures.footnote(fig, rs.describe())
    return figures.save(fig, out, name)


def build(rs: RunSet, out: Path) -> list[Path]:
    paths = figure(rs, out)
    t = rotation_table(rs)
    csv = out / "rotation.csv"
    t.to_csv(csv, index=False, float_format="%.10g")
    return paths + [csv]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--equivariance", action="store_true", help="also draw equivariance deviation vs angle (fig. B1)"
    )


def main(argv: Sequence[str] | None = None) -> int:
    p = cli.parser("rotation", __doc__.split("\n\n")[0])
    add_arguments(p)
    args = p.parse_args(argv)
    rs = cli.load(args)
    out = cli.out_dir(args, "rotation")
    paths = build(rs, out)
    if args.equivariance:
        paths += equivariance_figure(rs, out)
    cli.publish(args, rs, paths)
    return 0


if __name__ == "__main__":
    raise SystemExit(cli.run_main(main))
