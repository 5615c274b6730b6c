"""Learned-clustering dashboards (``task: clustering``, docs/clustering.md): track efficiency against the particle's
pT and η, one curve per model (bands: ± std over seeds), from each trial's ``particles.csv`` artifact; and the
track-level rotation robustness, ``track_dm_eff`` (or perfect / TrackML) against the test events' rotation angle
from the ``<metric>_rot_XXX`` metrics.

    python -m dashboards.clustering --experiment equitrack-oc-equivariance --out docs/results [--sweep ID]

A *model* here is the pipeline's equivariance setting: ``plain``, ``so2`` or ``mixed [ml+ec]`` (``model.name`` and
``model.equivariant``) with the preset; runs differing only in the seed are pooled.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from dashboards import cli, figures
from dashboards.artifacts import read_csv_artifact
from dashboards.data import RunSet, angle_columns
from dashboards.loading import default_cache_dir

PT_BINS = (0.9, 1.0, 1.2, 1.5, 2.0, 3.0, 5.0, 10.0, 100.0)
ETA_BINS = tuple(np.round(np.linspace(-4.0, 4.0, 9), 3))
_SHORT = {
    "noise_classifier": "nc",
    "metric_learning": "ml",
    "edge_classifier": "ec",
    "object_condensation": "oc",
}
MATCH = {"dm": "double-majority", "perfect": "perfect-match"}


def model_key(run: pd.Series) -> str:
    """``plain``, ``so2`` or ``mixed [ml+ec]``, followed by the preset when there is one."""
    name = str(run.get("params.model.name", "model"))
    if name == "mixed":
        eq = str(run.get("params.model.equivariant", ""))
        stages = [s for s in _SHORT if s in eq]
        name = f"mixed [{'+'.join(_SHORT[s] for s in stages) or 'none'}]"
    preset = run.get("params.model.preset")
    return name if preset is None or pd.isna(preset) or str(preset) in ("", "None") else f"{name} {preset}"


def particles(rs: RunSet, *, cache_dir: Path | None = None) -> pd.DataFrame:
    """The ``particles.csv`` rows of every finished run, with columns ``run_id`` and ``model`` added."""
    dest = (cache_dir or default_cache_dir()) / "artifacts"
    frames = []
    for _, run in rs.ok.iterrows():
        table = read_csv_artifact(str(run["run_id"]), "particles.csv", dest, tracking_uri=rs.tracking_uri)
        if table is None or table.empty:
            continue
        table = table.assign(run_id=str(run["run_id"]), model=model_key(run))
        frames.append(table)
    cols = ["run_id", "model", "event", "pid", "pt", "eta", "n_hits", "dm", "perfect"]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=cols)


def efficiency_table(
    parts: pd.DataFrame, variable: str, bins: Sequence[float], *, match: str = "dm", pt_min: float = 0.9
) -> pd.DataFrame:
    """Efficiency per model and bin of ``variable`` (``pt`` or ``eta``; particles above ``pt_min``): computed per
    run, then mean, std (ddof 1) and n over the runs of the model; ``particles`` = particles per run and bin."""
    cols = ["model", "bin", "lo", "hi", "mean", "std", "n", "particles"]
    if variable not in ("pt", "eta") or match not in MATCH:
        raise ValueError(
            f"variable must be pt or eta and match one of {list(MATCH)} (got {variable!r}, {match!r})"
        )
    sel = parts[parts["pt"] > pt_min]
    if sel.empty:
        return pd.DataFrame(columns=cols)
    edges = np.asarray(bins, dtype=float)
    idx = np.digitize(sel[variable].to_numpy(float), edges) - 1
    sel = sel.assign(bin=idx)[(idx >= 0) & (idx < len(edges) - 1)]
    per_run = (
        sel.groupby(["model", "run_id", "bin"])
        .agg(eff=(match, "mean"), particles=(match, "size"))
        .reset_index()
    )
    g = per_run.groupby(["model", "bin"])
    out = g["eff"].agg(["mean", "std", "count"]).rename(columns={"count": "n"})
    out["particles"] = g["particles"].mean()
    out = out.reset_index()
    out["lo"], out["hi"] = edges[out["bin"]], edges[out["bin"] + 1]
    return out[cols]


def efficiency_figure(
    rs: RunSet,
    out: Path,
    *,
    match: str = "dm",
    pt_min: float = 0.9,
    cache_dir: Path | None = None,
    name: str = "clustering_efficiency",
) -> list[Path]:
    """Two panels: efficiency vs pT (log axis) and vs η, one curve per model."""
    parts = particles(rs, cache_dir=cache_dir)
    fig, axes = figures.new_figure(2, 1, width=6.0, height=4.4, sharey=True)
    tables = []
    for k, (variable, bins, label) in enumerate(
        (("pt", PT_BINS, "particle pT [GeV]"), ("eta", ETA_BINS, "η"))
    ):
        ax = axes[0, k]
        t = efficiency_table(parts, variable, bins, match=match, pt_min=pt_min)
        tables.append(t.assign(variable=variable))
        models = sorted(t["model"].unique())
        for i, model in enumerate(models):
            cur = t[t["model"] == model]
            x = np.sqrt(cur["lo"] * cur["hi"]) if variable == "pt" else (cur["lo"] + cur["hi"]) / 2
            c = figures.color(model, models)
            std = cur["std"].fillna(0.0)
            ax.plot(
                x, cur["mean"], marker=figures.marker(i), color=c, label=f"{model} (n={int(cur['n'].max())})"
            )
            ax.fill_between(
                x,
                (cur["mean"] - std).clip(lower=0),
                (cur["mean"] + std).clip(upper=1),
                color=c,
                alpha=0.2,
                lw=0,
            )
        if variable == "pt":
            from matplotlib.ticker import NullFormatter, ScalarFormatter

            ax.set_xscale("log")
            ax.set_xticks([1, 2, 5, 10, 20, 50])
            ax.xaxis.set_major_formatter(ScalarFormatter())
            ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(label)
        ax.set_ylim(0, 1.02)
        if k == 0:
            ax.set_ylabel(f"{MATCH[match]} track efficiency")
        if models:
            figures.legend(ax, loc="lower right", fontsize=8)
        else:
            ax.text(0.5, 0.5, "no particles.csv artifacts", transform=ax.transAxes, ha="center")
    fig.suptitle(
        f"Track efficiency ({MATCH[match]}, particles with pT > {pt_min:g} GeV); bands ± std over seeds"
    )
    figures.footnote(fig, rs.describe())
    paths = figures.save(fig, out, name)
    csv = out / f"{name}.csv"
    pd.concat(tables, ignore_index=True).to_csv(csv, index=False)
    return [*paths, csv]


def rotation_table(rs: RunSet, metric: str = "track_dm_eff") -> pd.DataFrame:
    """Mean, std and n of ``<metric>_rot_XXX`` per model and angle."""
    ok = rs.ok
    cols = angle_columns(ok, f"{metric}_rot")
    if ok.empty or not cols:
        return pd.DataFrame(columns=["model", "angle", "mean", "std", "n"])
    wide = ok[["run_id"] + [c for _, c in cols]].rename(columns={c: a for a, c in cols})
    wide["model"] = [model_key(r) for _, r in ok.iterrows()]
    long = wide.melt(id_vars=["run_id", "model"], var_name="angle", value_name="value").dropna(
        subset=["value"]
    )
    long["angle"] = long["angle"].astype(int)
    g = long.groupby(["model", "angle"])["value"].agg(["mean", "std", "count"]).rename(columns={"count": "n"})
    return g.reset_index()


def rotation_figure(
    rs: RunSet, out: Path, *, metric: str = "track_dm_eff", name: str = "clustering_rotation"
) -> list[Path]:
    """``metric`` against the test events' rotation angle, one curve per model (bands ± std over seeds)."""
    t = rotation_table(rs, metric)
    fig, axes = figures.new_figure(width=6.8, height=4.6)
    ax = axes[0, 0]
    models = sorted(t["model"].unique())
    angles = sorted(t["angle"].unique())
    for i, model in enumerate(models):
        cur = t[t["model"] == model].set_index("angle").reindex(angles).reset_index()  # missing angles: gaps
        c = figures.color(model, models)
        std = cur["std"].fillna(0.0)
        ax.plot(
            cur["angle"],
            cur["mean"],
            marker=figures.marker(i),
            color=c,
            label=f"{model} (n={int(cur['n'].min()) if cur['n'].notna().all() else int(cur['n'].max())})",
        )
        ax.fill_between(
            cur["angle"],
            (cur["mean"] - std).clip(lower=0),
            (cur["mean"] + std).clip(upper=1),
            color=c,
            alpha=0.2,
            lw=0,
        )
    if models:
        figures.legend(ax, outside=True, fontsize=8)
    else:
        ax.text(0.5, 0.5, f"no {metric}_rot_XXX metrics", transform=ax.transAxes, ha="center")
    ax.set_xlabel("test rotation θ [deg]")
    ax.set_ylabel(metric)
    ax.set_title(f"Track-level rotation robustness: {metric} vs rotation of the test events")
    figures.footnote(fig, rs.describe())
    paths = figures.save(fig, out, name)
    csv = out / f"{name}.csv"
    t.to_csv(csv, index=False)
    return [*paths, csv]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--match", choices=sorted(MATCH), default="dm", help="efficiency definition (default dm)")
    p.add_argument(
        "--pt-min", type=float, default=0.9, help="particles above this pT (GeV) in the efficiency plots"
    )
    p.add_argument(
        "--rotation-metric",
        default="track_dm_eff",
        choices=["track_dm_eff", "track_perfect_eff", "trackml_score"],
    )


def main(argv: Sequence[str] | None = None) -> int:
    p = cli.parser("clustering", __doc__.split("\n\n")[0])
    add_arguments(p)
    args = p.parse_args(argv)
    rs = cli.load(args)
    out = cli.out_dir(args, "clustering")
    paths = efficiency_figure(rs, out, match=args.match, pt_min=args.pt_min, cache_dir=args.cache_dir)
    paths += rotation_figure(rs, out, metric=args.rotation_metric)
    cli.publish(args, rs, paths)
    return 0


if __name__ == "__main__":
    raise SystemExit(cli.run_main(main))
