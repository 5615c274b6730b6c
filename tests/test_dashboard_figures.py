"""Dashboard figures drawn as promised: model colours, gaps at missing angles, error bars inside their ranges, and
(issue 22's regressions), on RunSets built from plain rows."""

from __future__ import annotations

import numpy as np
import pytest
from dashboard_helpers import figures_of, runset

from dashboards import report, rotation, size_vs_auc

SEEDS = (1, 2, 3)
ANGLES = (0, 45, 90, 135, 180)


def rot_auc(base: float, train_rot: float, angle: int) -> float:
    """AUC at an inference angle: a dip away from the training angle."""
    return base - 0.01 * abs(np.sin(np.radians(angle - train_rot)))


def _rot_rows(*, missing: dict[str, int] | None = None) -> list[dict]:
    """EuclidNet and the IN, trained at 0°, 3 seeds, auc_rot_XXX and equivariance_dev_XXX at every angle except
    ``missing[model]``."""
    rows = []
    for model, hidden, n in (("euclidnet", 8, 967), ("interaction_network", 16, 1432)):
        for seed in SEEDS:
            row = {"run_id": f"{model}-{seed}", "params.model.name": model, "params.model.hidden": hidden,
                   "params.train.seed": seed,
                   "params.train.train_rotation_deg": 0.0, "tags.config_id": f"{model}-{hidden}",
                   "metrics.n_params": n, "metrics.auc": 0.99}
            for a in ANGLES:
                if (missing or {}).get(model) == a:
                    continue
                row[f"metrics.auc_rot_{a:03d}"] = rot_auc(0.99, 0.0, a)
                row[f"metrics.equivariance_dev_{a:03d}"] = 1e-6 * (1 + a) + 1e-8 * seed
            rows.append(row)
    return rows


def test_rotation_draws_each_model_in_its_colour(tmp_path, monkeypatch):
    """rotation.png: the EuclidNet panel's curve is EuclidNet blue, the IN's is IN orange (docs/dashboards.md)."""
    from matplotlib.colors import to_rgb

    drawn = figures_of(monkeypatch, rotation)
    rotation.figure(runset(_rot_rows()), tmp_path)
    (fig,) = drawn
    panels = {ax.get_title(): ax for ax in fig.axes if ax.get_visible() and ax.lines}
    assert len(panels) == 2
    for model, title in (("euclidnet", "EuclidNet"), ("interaction_network", "Interaction Network")):
        ax = next(a for t, a in panels.items() if t.startswith(title))
        assert to_rgb(ax.lines[0].get_color()) == pytest.approx(to_rgb(rotation.figures.color(model)))
    blue, orange = (rotation.figures.color(m) for m in ("euclidnet", "interaction_network"))
    assert blue != orange


def test_equivariance_leaves_a_gap_at_a_missing_angle(tmp_path, monkeypatch):
    """equivariance.png (and rotation.png): an angle a model has no value at is a break in its line (NaN), not
    a straight line from the angle before to the angle after."""
    import math

    drawn = figures_of(monkeypatch, rotation)
    rs = runset(_rot_rows(missing={"interaction_network": 90}))
    rotation.equivariance_figure(rs, tmp_path)
    rotation.figure(rs, tmp_path)
    equi, rot = drawn
    (line,) = [ln for ln in equi.axes[0].lines if "Interaction Network" in str(ln.get_label())]
    assert list(line.get_xdata()) == list(ANGLES)
    y = list(line.get_ydata())
    assert math.isnan(y[ANGLES.index(90)]) and not any(math.isnan(v) for i, v in enumerate(y) if ANGLES[i] != 90)
    (in_ax,) = [ax for ax in rot.axes if ax.get_title().startswith("Interaction Network")]
    assert math.isnan(list(in_ax.lines[0].get_ydata())[ANGLES.index(90)])


def _bar_ends(ax) -> list[float]:
    """The y ends of every error bar on ``ax``."""
    from matplotlib.container import ErrorbarContainer

    ends = []
    for cont in ax.containers:
        if isinstance(cont, ErrorbarContainer):
            for coll in cont.lines[2]:
                ends += [float(y) for seg in coll.get_segments() for _, y in seg]
    return ends


def test_error_bars_stay_inside_auc_and_log_ranges(tmp_path, monkeypatch):
    """An AUC bar (mean ± std) stops at 1; on the ant factor's log axis every bar's lower end stays positive."""
    rows = [{"params.model.name": "euclidnet", "params.model.preset": "paper_8", "params.model.hidden": 8,
             "params.train.seed": s, "tags.config_id": "a", "metrics.n_params": 967, "metrics.auc": auc,
             "metrics.auc_thresholded": auc, "metrics.ant_factor": ant}
            for s, auc, ant in ((0, 0.97, 1.0), (1, 1.0, 200.0), (2, 1.0, 2.0))]
    rs = runset(rows)
    drawn = figures_of(monkeypatch, size_vs_auc)
    size_vs_auc.figure(rs, tmp_path, paper=True)
    report.ant_figure(rs, tmp_path)
    auc_fig, ant_fig = drawn
    for ax in auc_fig.axes:
        ends = _bar_ends(ax)
        assert ends and max(ends) <= 1.0 and min(ends) >= 0.0
    ends = _bar_ends(ant_fig.axes[0])
    assert ant_fig.axes[0].get_yscale() == "log" and ends and min(ends) > 0


def test_parameter_axis_labels_plain_counts_and_legends_sit_below(tmp_path, monkeypatch):
    """size_vs_auc over 967-4392 parameters: x ticks read 1,000 / 2,000 (no colliding 10^3 minor labels), and with
    two panels side by side each legend sits under its axes, not on the points."""
    rows = [{"params.model.name": m, "params.model.hidden": h, "params.train.seed": s, "tags.config_id": f"{m}{h}",
             "metrics.n_params": n, "metrics.auc": 0.9, "metrics.auc_thresholded": 0.85}
            for m, h, n in (("euclidnet", 8, 967), ("interaction_network", 32, 4392)) for s in SEEDS]
    drawn = figures_of(monkeypatch, size_vs_auc)
    size_vs_auc.figure(runset(rows), tmp_path, paper=True)
    (fig,) = drawn
    fig.canvas.draw()
    for ax in fig.axes:
        lo, hi = ax.get_xlim()
        shown = [t.get_text() for t in ax.get_xticklabels() if lo <= t.get_position()[0] <= hi and t.get_text()]
        assert shown and set(shown) <= {"1,000", "2,000", "5,000", "10,000"}, shown
        assert not any(t.get_text() for t in ax.get_xticklabels(minor=True))
        legend = ax.get_legend().get_window_extent()
        assert legend.y1 < ax.get_window_extent().y0  # wholly below the axes
