"""The jets tables in seed 002's layouts: data efficiency (Table 3: rows model, columns ``train.fraction``, cells
accuracy / AUC as mean ± std over seeds) and the equivariance ablation (Table 6: rows model variants —
LorentzNet against ``lorentznet_noneq``, VecNet's ``hidden_equivariant`` / ``hidden_free`` dial —, columns accuracy,
AUC, rejection_30, rejection_50, parameters). Published numbers follow each table as separate reference rows.

    python -m dashboards.jets_tables --experiment equitrack-jets-data-efficiency --out docs/results [--sweep ID]
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from dashboards import cli, compare
from dashboards.data import RunSet, aggregate, fmt_pm, model_label, size_label
from dashboards.jets_paper import SOURCE, TABLE3, TABLE6
from dashboards.jets_runs import FRACTION, MODE, MODEL, VARIANT, mode_order, ok_runs

ABLATION_METRICS = [
    ("metrics.accuracy", "accuracy"),
    ("metrics.auc", "auc"),
    ("metrics.rejection_30", "rejection_30"),
    ("metrics.rejection_50", "rejection_50"),
    ("metrics.n_params", "n_params"),
]
#: logits invariant under SO+(1,3) by construction (VecNet: only with no free channels, hidden_free = 0)
EQUIVARIANT = {
    "lorentznet": "yes",
    "lgn": "yes",
    "pelican": "yes",
    "lorentznet_noneq": "no",
    "particlenet": "no",
    "pfn": "no",
    "mlp": "no",
}


def _with_fraction(ok: pd.DataFrame) -> pd.DataFrame:
    if FRACTION not in ok:  # the trial default: the whole training split
        ok = ok.assign(**{FRACTION: 1.0})
    ok[FRACTION] = pd.to_numeric(ok[FRACTION], errors="coerce")
    return ok


def _order(table: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    if table.empty:
        return table
    ranks = {m: i for i, m in enumerate(mode_order(table[MODE].dropna()))} if MODE in table else {}
    tmp = table.assign(_mode=table[MODE].map(ranks) if MODE in table else 0)
    keys = [("_mode" if k == MODE else k) for k in keys]
    return tmp.sort_values(keys, na_position="last").drop(columns="_mode").reset_index(drop=True)


# --------------------------------------------------------------------------------------------------------------
# data efficiency (Table 3)


def data_efficiency(rs: RunSet) -> pd.DataFrame:
    """One row per model, size, training mode and fraction: accuracy and AUC mean / std / n over seeds."""
    ok = _with_fraction(ok_runs(rs))
    metrics = [m for m in ("metrics.accuracy", "metrics.auc") if m in ok]
    by = [MODEL, "size", MODE, FRACTION]
    if ok.empty:
        return pd.DataFrame(columns=by + ["n"])
    t = aggregate(ok, by, metrics)
    for name in ("accuracy", "auc"):
        for stat in ("mean", "std", "n"):
            if f"{name}_{stat}" not in t:
                t[f"{name}_{stat}"] = np.nan
    return _order(t, [MODEL, "size", MODE, FRACTION])


def _train_jets(rs: RunSet) -> float | None:
    col = "params.data.jets.train"
    if col in rs.ok:
        values = pd.to_numeric(rs.ok[col], errors="coerce").dropna().unique()
        if len(values) == 1:
            return float(values[0])
    return None


def _fraction_header(fraction: float, n_train: float | None) -> str:
    text = f"{fraction * 100:g} %"
    return text + (f" (≈{round(fraction * n_train):,} jets)" if n_train else "")


def _row_labels(t: pd.DataFrame) -> pd.Series:
    """Model name, plus the size and mode when the table holds several of them."""
    many_sizes = t["size"].nunique(dropna=False) > 1
    many_modes = t[MODE].nunique(dropna=False) > 1
    labels = []
    for _, r in t.iterrows():
        text = model_label(r[MODEL])
        if many_sizes:
            text += f" {size_label(r['size'])}"
        if many_modes:
            text += f", {r[MODE]}"
        labels.append(text)
    return pd.Series(labels, index=t.index)


def data_efficiency_markdown(t: pd.DataFrame, rs: RunSet) -> str:
    """Rows model, columns training fraction, cells ``accuracy / AUC (n=…)``; then the published Table 3."""
    lines: list[str] = []
    if t.empty:
        lines.append("No finished runs.\n")
    else:
        n_train = _train_jets(rs)
        fractions = sorted(t[FRACTION].dropna().unique())
        t = t.assign(_row=_row_labels(t))
        rows = []
        for label in dict.fromkeys(t["_row"]):
            sub = t[t["_row"] == label]
            row = {"model": label}
            for f in fractions:
                cell = sub[sub[FRACTION] == f]
                if cell.empty:
                    row[_fraction_header(f, n_train)] = "–"
                    continue
                r = cell.iloc[0]
                row[_fraction_header(f, n_train)] = (
                    f"{fmt_pm(r['accuracy_mean'], r['accuracy_std'])} / {fmt_pm(r['auc_mean'], r['auc_std'])} "
                    f"(n={int(r['n'])})"
                )
            rows.append(row)
        lines.append(compare.markdown(pd.DataFrame(rows)))
        lines.append(
            "Cells: accuracy / ROC AUC, mean ± sample std (ddof = 1) over seeds (n finished runs); columns: "
            "`train.fraction`, the class-balanced share of the training split"
            + (f" of {n_train:,.0f} jets" if n_train else "")
            + f". {rs.describe()}.\n"
        )
    pub = TABLE3.assign(
        model=TABLE3["model"].map(model_label),
        accuracy=[f"{v:g}" for v in TABLE3["accuracy"]],
        auc=[f"{v:g}" for v in TABLE3["auc"]],
        fraction=[f"{f * 100:g} %" for f in TABLE3["fraction"]],
        inv_eps_b=[f"{v} ± {s}" for v, s in zip(TABLE3["inv_eps_b"], TABLE3["inv_eps_b_std"])],
    ).drop(columns="inv_eps_b_std")
    pub = pub.rename(
        columns={
            "fraction": "training %",
            "accuracy": "accuracy",
            "auc": "AUC",
            "inv_eps_b": "1/ε_B (as published)",
        }
    )
    lines += [
        f"Published (seed 002 Table 3; {SOURCE}). Same metrics (accuracy, ROC AUC), but a different training set: "
        "a fraction there is of 1.2 M jets, so set them against ours by the number of jets, not the percentage. "
        "1/ε_B's signal efficiency is not stated in seed 002.",
        "",
        compare.markdown(pub[["training %", "model", "accuracy", "AUC", "1/ε_B (as published)"]]),
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------------------
# ablation (Table 6)


def equivariant(model: object, hidden_free: object) -> str:
    """``yes`` / ``no`` / ``?``: whether the variant's output is Lorentz invariant by construction."""
    name = str(model).lower()
    if name == "vecnet":
        free = pd.to_numeric(pd.Series([hidden_free]), errors="coerce").iloc[0]
        return "?" if pd.isna(free) else ("yes" if free == 0 else "no")
    return EQUIVARIANT.get(name, "?")


def ablation(rs: RunSet) -> pd.DataFrame:
    """One row per model variant (model, size, VecNet channel split; and mode / fraction when those vary):
    accuracy, AUC, rejection at ε_S = 30 % and 50 %, parameters as mean / std / n over seeds."""
    ok = _with_fraction(ok_runs(rs))
    if ok.empty:
        return pd.DataFrame(columns=[MODEL, VARIANT, "n"])
    extra = [c for c in (MODE, FRACTION) if ok[c].nunique(dropna=False) > 1]
    free = (
        ok["params.model.hidden_free"]
        if "params.model.hidden_free" in ok
        else pd.Series(None, index=ok.index)
    )
    # a function of the model and its variant label (which holds free=), so it splits no group
    ok["equivariant"] = [equivariant(m, f) for m, f in zip(ok[MODEL], free)]
    by = [MODEL, VARIANT, "equivariant", *extra]
    metrics = [m for m, _ in ABLATION_METRICS if m in ok]
    t = aggregate(ok, by, metrics)
    for _, name in ABLATION_METRICS:
        for stat in ("mean", "std", "n"):
            if f"{name}_{stat}" not in t:
                t[f"{name}_{stat}"] = np.nan
    return _order(t, [MODEL, *extra, "n_params_mean", VARIANT])


def ablation_markdown(t: pd.DataFrame, rs: RunSet) -> str:
    lines: list[str] = []
    if t.empty:
        lines.append("No finished runs.\n")
    else:
        rows = []
        for _, r in t.iterrows():
            row = {
                "model": model_label(r[MODEL]),
                "variant": r[VARIANT],
                "Lorentz-equivariant": r["equivariant"],
            }
            if MODE in t:
                row["mode"] = r[MODE]
            if FRACTION in t:
                row["fraction"] = f"{r[FRACTION]:g}"
            params = r["n_params_mean"]
            row.update(
                {
                    "accuracy": fmt_pm(r["accuracy_mean"], r["accuracy_std"]),
                    "AUC": fmt_pm(r["auc_mean"], r["auc_std"]),
                    "rejection_30": fmt_pm(r["rejection_30_mean"], r["rejection_30_std"], digits=1),
                    "rejection_50": fmt_pm(r["rejection_50_mean"], r["rejection_50_std"], digits=1),
                    "params": "–" if pd.isna(params) else f"{params:.0f}",
                    "n": int(r["n"]),
                }
            )
            rows.append(row)
        lines.append(compare.markdown(pd.DataFrame(rows)))
        lines.append(
            "Mean ± sample std (ddof = 1) over seeds of finished runs. rejection_30 / rejection_50: background "
            "rejection 1/ε_B at signal efficiency ε_S = 30 % / 50 %. variant: preset or hidden width, and VecNet's "
            "equivariant / free channels (eq=, free=; free = 0 is fully equivariant). "
            f"{rs.describe()}.\n"
        )
    pub = TABLE6.assign(
        model=TABLE6["model"].map(model_label),
        accuracy=[f"{v:g}" for v in TABLE6["accuracy"]],
        auc=[f"{v:g}" for v in TABLE6["auc"]],
        inv_eps_b=[f"{v} ± {s}" for v, s in zip(TABLE6["inv_eps_b"], TABLE6["inv_eps_b_std"])],
    )
    lines += [
        f"Published (seed 002 Table 6; {SOURCE}). Same accuracy and ROC AUC; 1/ε_B as published (its signal "
        "efficiency is not stated in seed 002, so it is not put in our rejection columns).",
        "",
        compare.markdown(
            pub[["model", "accuracy", "auc", "inv_eps_b"]].rename(
                columns={"auc": "AUC", "inv_eps_b": "1/ε_B (as published)"}
            )
        ),
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------------------
# files and CLI


def _csv(t: pd.DataFrame) -> pd.DataFrame:
    return t.rename(columns={MODEL: "model", FRACTION: "fraction"})


def build(rs: RunSet, out: Path) -> tuple[list[Path], dict[str, str]]:
    """``data_efficiency.md/csv`` and ``ablation.md/csv``; also returns the two Markdown texts by name."""
    out.mkdir(parents=True, exist_ok=True)
    de, ab = data_efficiency(rs), ablation(rs)
    texts = {"data_efficiency": data_efficiency_markdown(de, rs), "ablation": ablation_markdown(ab, rs)}
    paths = []
    for name, table in (("data_efficiency", de), ("ablation", ab)):
        md, csv = out / f"{name}.md", out / f"{name}.csv"
        md.write_text(texts[name])
        _csv(table).to_csv(csv, index=False, float_format="%.10g")
        paths += [md, csv]
    return paths, texts


def main(argv: Sequence[str] | None = None) -> int:
    p = cli.parser("jets_tables", __doc__.split("\n\n")[0])
    args = p.parse_args(argv)
    rs = cli.load(args)
    out = cli.out_dir(args, "jets_tables")
    paths, texts = build(rs, out)
    for name, text in texts.items():
        print(f"## {name}\n\n{text}")
    cli.publish(args, rs, paths)
    return 0


if __name__ == "__main__":
    raise SystemExit(cli.run_main(main))
