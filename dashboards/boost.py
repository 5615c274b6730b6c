"""Robustness to Lorentz boosts (seed 002 fig. 3): accuracy and ROC AUC of the test jets boosted by β, read from the
``acc_boost_XXX`` / ``auc_boost_XXX`` metrics (XXX = round(β·100)), one curve per model and training mode (plain,
``aug<β>`` = random-boost augmentation, ``boosted <β>`` = trained in a boosted frame), bands = mean ± std over seeds.
Also ``boost.md``: per curve the parameters, the AUC at β = 0 and ``boost_spread`` (max − min AUC over β).

    python -m dashboards.boost --experiment equitrack-jets-boost --out docs/results [--sweep ID]
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from dashboards import cli, compare, figures
from dashboards.data import RunSet, aggregate, fmt_pm, model_label, size_label
from dashboards.jets_runs import MODE, MODEL, beta_columns, mode_order, ok_runs

GROUP = [MODEL, "size", MODE]
PANELS = [("acc_boost", "accuracy"), ("auc_boost", "auc")]
TITLES = {"accuracy": "Accuracy", "auc": "ROC AUC"}
STYLES = ["-", "--", ":", "-."]
NO_PAPER = (
    "No published points: seed 002's fig. 3 (reproduced from Gong et al. 2022 and Bogatskiy et al. 2022) gives its "
    "curves only as images, with no numbers for the same metric to overlay."
)


def _long(ok: pd.DataFrame, prefix: str) -> pd.DataFrame:
    """One row per run and β: GROUP columns, run_id, beta, value."""
    cols = beta_columns(ok, prefix)
    if not cols or ok.empty:
        return pd.DataFrame(columns=[*GROUP, "run_id", "beta", "value"])
    wide = ok[GROUP + ["run_id"] + [c for _, c in cols]].rename(columns={c: b for b, c in cols})
    long = wide.melt(id_vars=GROUP + ["run_id"], var_name="beta", value_name="value").dropna(subset=["value"])
    long["beta"] = long["beta"].astype(float)
    return long


def boost_table(rs: RunSet) -> pd.DataFrame:
    """Mean, sample std and n of accuracy and AUC per model, size, training mode and test boost β."""
    ok = ok_runs(rs)
    cols = GROUP + ["beta"] + [f"{n}_{s}" for _, n in PANELS for s in ("mean", "std", "n")]
    pieces = []
    for prefix, name in PANELS:
        long = _long(ok, prefix)
        if long.empty:
            continue
        stats = long.groupby(GROUP + ["beta"], dropna=False)["value"].agg(["mean", "std", "count"])
        pieces.append(
            stats.rename(columns={"mean": f"{name}_mean", "std": f"{name}_std", "count": f"{name}_n"})
        )
    if not pieces:
        return pd.DataFrame(columns=cols)
    table = pd.concat(pieces, axis=1).reset_index().reindex(columns=cols)
    return _ordered(table, extra=["beta"])


def _ordered(table: pd.DataFrame, *, extra: Sequence[str] = ()) -> pd.DataFrame:
    """Rows by model, size and training mode (plain, augmented, boosted frames), then ``extra``."""
    if table.empty:
        return table
    order = {m: i for i, m in enumerate(mode_order(table[MODE].dropna()))}
    table = table.assign(_mode=table[MODE].map(order))
    return (
        table.sort_values([MODEL, "size", "_mode", *extra], na_position="last")
        .drop(columns="_mode")
        .reset_index(drop=True)
    )


def curves(table: pd.DataFrame) -> pd.DataFrame:
    """The (model, size, mode) curves of a boost table, in drawing order."""
    if table.empty:
        return pd.DataFrame(columns=GROUP)
    return _ordered(table[GROUP].drop_duplicates())


def curve_label(model: object, size: object, mode: str, n: int, *, show_size: bool) -> str:
    text = model_label(model) + (f" {size_label(size)}" if show_size else "")
    return f"{text}, {mode} (n={n})"


def draw(rs: RunSet):
    """The two-panel figure (accuracy, AUC vs β); returns (figure, boost table). ``figure`` saves it."""
    table = boost_table(rs)
    fig, axes = figures.new_figure(2, 1, width=5.4, height=4.4)
    lines = curves(table)
    models = sorted(lines[MODEL].dropna().astype(str).unique()) if len(lines) else []
    modes = mode_order(lines[MODE].dropna()) if len(lines) else []
    sizes_per_model = (
        lines.groupby(MODEL)["size"].nunique(dropna=False) if len(lines) else pd.Series(dtype=int)
    )
    for ax, (prefix, name) in zip(axes[0], PANELS):
        for _, cur in lines.iterrows():
            sel = (table[MODEL] == cur[MODEL]) & (table[MODE] == cur[MODE])
            sel &= table["size"].isna() if pd.isna(cur["size"]) else (table["size"] == cur["size"])
            sub = table[sel & table[f"{name}_mean"].notna()].sort_values("beta")
            if sub.empty:
                continue
            mean = sub[f"{name}_mean"].to_numpy(dtype=float)
            std = sub[f"{name}_std"].fillna(0.0).to_numpy(dtype=float)
            c = figures.color(cur[MODEL], models)
            model_idx = models.index(str(cur[MODEL]))
            label = curve_label(
                cur[MODEL],
                cur["size"],
                str(cur[MODE]),
                int(sub[f"{name}_n"].min()),
                show_size=int(sizes_per_model.get(cur[MODEL], 1)) > 1,
            )
            ax.plot(
                sub["beta"],
                mean,
                color=c,
                ls=STYLES[modes.index(str(cur[MODE])) % len(STYLES)],
                marker=figures.marker(model_idx),
                ms=5,
                lw=1.6,
                label=label,
            )
            ax.fill_between(
                sub["beta"], np.clip(mean - std, 0, 1), np.clip(mean + std, 0, 1), color=c, alpha=0.15, lw=0
            )
        ax.set_xlabel("boost of the test jets β = v/c")
        ax.set_ylabel(TITLES[name])
        ax.set_title(f"{TITLES[name]} vs Lorentz boost")
        if not ax.get_lines():
            ax.text(0.5, 0.5, f"no {prefix}_XXX metrics", transform=ax.transAxes, ha="center")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    if not labels:
        handles, labels = axes[0, 1].get_legend_handles_labels()
    if labels:  # outside the axes, so no curve is hidden behind it
        fig.legend(handles, labels, loc="outside right upper", fontsize=9, title="model, training mode")
    axis = _boost_axis(rs)
    figures.footnote(
        fig,
        f"Test jets boosted along {axis} by β; bands: ± sample std over seeds (clipped to [0, 1]); line style: "
        f"training mode (plain; augX = random boosts up to β = X in training; boosted X = trained in a frame "
        f"boosted by X). {NO_PAPER} {rs.describe()}",
    )
    return fig, table


def _boost_axis(rs: RunSet) -> str:
    col = "params.eval.boost_axis"
    if col in rs.ok and rs.ok[col].notna().any():
        return "/".join(sorted(str(a) for a in rs.ok[col].dropna().unique()))
    return "x"


def figure(rs: RunSet, out: Path, *, name: str = "boost") -> tuple[list[Path], pd.DataFrame]:
    fig, table = draw(rs)
    return figures.save(fig, out, name), table


def summary(rs: RunSet) -> pd.DataFrame:
    """Per (model, size, mode): parameters, AUC at β = 0 (``auc_boost_000``) and ``boost_spread``, mean and std."""
    ok = ok_runs(rs)
    metrics = [m for m in ("metrics.n_params", "metrics.auc_boost_000", "metrics.boost_spread") if m in ok]
    if ok.empty:
        return pd.DataFrame(columns=GROUP + ["n"])
    return _ordered(aggregate(ok, GROUP, metrics))


def summary_markdown(s: pd.DataFrame, rs: RunSet) -> str:
    rows = []
    for _, r in s.iterrows():
        params = r.get("n_params_mean", np.nan)
        rows.append(
            {
                "model": model_label(r[MODEL]),
                "size": size_label(r["size"]),
                "mode": r[MODE],
                "params": "–" if pd.isna(params) else f"{params:.0f}",
                "AUC at β = 0": fmt_pm(
                    r.get("auc_boost_000_mean", np.nan), r.get("auc_boost_000_std", np.nan)
                ),
                "boost_spread": fmt_pm(r.get("boost_spread_mean", np.nan), r.get("boost_spread_std", np.nan)),
                "n": int(r["n"]),
            }
        )
    cols = ["model", "size", "mode", "params", "AUC at β = 0", "boost_spread", "n"]
    table = compare.markdown(pd.DataFrame(rows, columns=cols))
    return (
        table
        + "\nMean ± sample std (ddof = 1) over seeds of finished runs. AUC at β = 0: `auc_boost_000`; boost_spread: "
        "max − min of the AUCs over the test boosts (0 = perfectly robust). Modes: plain; augX = each training jet "
        f"boosted by a random |β| ≤ X every epoch; boosted X = trained in a frame boosted by X. {rs.describe()}.\n"
    )


def build(rs: RunSet, out: Path) -> list[Path]:
    """``boost.png/pdf``, ``boost.csv`` (every curve point) and ``boost.md`` (the summary table)."""
    out.mkdir(parents=True, exist_ok=True)
    paths, table = figure(rs, out)
    csv, md = out / "boost.csv", out / "boost.md"
    table.rename(columns={MODEL: "model"}).to_csv(csv, index=False, float_format="%.10g")
    md.write_text(summary_markdown(summary(rs), rs))
    return paths + [csv, md]


def main(argv: Sequence[str] | None = None) -> int:
    p = cli.parser("boost", __doc__.split("\n\n")[0])
    args = p.parse_args(argv)
    rs = cli.load(args)
    out = cli.out_dir(args, "boost")
    paths = build(rs, out)
    print((out / "boost.md").read_text())
    cli.publish(args, rs, paths)
    return 0


if __name__ == "__main__":
    raise SystemExit(cli.run_main(main))
