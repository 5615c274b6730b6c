"""Figure style and output: legible matplotlib figures saved as PNG and PDF, then logged to the sweep's parent run.

Every dashboard draws through ``new_figure`` and ``save``, so all figures share fonts, sizes and colours (one
colour per model, the same in every figure), and all end up in the MLflow UI under ``dashboards/`` of the parent run.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: dashboards run on CPU-only machines without a display

import matplotlib.pyplot as plt

STYLE = {
    "font.size": 12,
    "axes.titlesize": 13,
    "axes.labelsize": 12,
    "legend.fontsize": 10,
    "xtick.labelsize": 11,
    "ytick.labelsize": 11,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "figure.dpi": 100,
    "savefig.bbox": "tight",
}

_PALETTE = plt.get_cmap("tab10").colors
_FIXED = {"euclidnet": 0, "interaction_network": 1, "in": 1, "egnn": 2, "euclidnet_noneq": 3, "vecnet": 4,
          # jets taggers (never drawn beside the tracking models): LorentzNet blue, its non-equivariant twin red
          "lorentznet": 0, "pfn": 1, "particlenet": 2, "lorentznet_noneq": 3, "lgn": 5, "pelican": 6, "mlp": 7}
_MARKERS = "osD^vP*Xh<>"


def color(name: object, order: Sequence[object] = ()) -> tuple:
    """A fixed colour per model name (EuclidNet blue, IN orange), others by their place in ``order``."""
    key = str(name).lower()
    if key in _FIXED:
        return _PALETTE[_FIXED[key]]
    names = [str(o).lower() for o in order if str(o).lower() not in _FIXED]
    idx = names.index(key) if key in names else abs(hash(key))
    return _PALETTE[(5 + idx) % len(_PALETTE)]


def marker(i: int) -> str:
    return _MARKERS[i % len(_MARKERS)]


def new_figure(ncols: int = 1, nrows: int = 1, *, width: float = 6.4, height: float = 4.6, **kwargs):
    """A figure with the dashboards' style; returns (fig, axes) like ``plt.subplots``."""
    plt.rcParams.update(STYLE)
    kwargs.setdefault("layout", "constrained")  # no title/label overlap between panels
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False, **kwargs)
    return fig, axes


def save(fig, out: Path, name: str, *, outputs: list[Path] | None = None) -> list[Path]:
    """Write ``out/name.png`` (150 dpi) and ``out/name.pdf``; close the figure; append both paths to ``outputs``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.png", out / f"{name}.pdf"]
    fig.savefig(paths[0], dpi=150)
    fig.set_layout_engine("none")  # the PDF keeps the PNG's constrained layout instead of solving it again
    fig.savefig(paths[1])
    plt.close(fig)
    if outputs is not None:
        outputs.extend(paths)
    return paths


def log_to_parent(rs, paths: Sequence[Path], *, artifact_path: str = "dashboards") -> str | None:
    """Log files to the selected sweep's parent run under ``dashboards/`` so they show in the MLflow UI.

    Returns the parent run id, or None (with the reason printed) when no single parent run is selected."""
    from mlflow import MlflowClient

    run_id = rs.parent_run_id
    if run_id is None:
        why = "no parent run found" if len(rs.parents) == 0 else f"{len(rs.parents)} sweeps selected"
        print(f"not logged to MLflow ({why}); pass --sweep ID to log the figures to that sweep's parent run")
        return None
    client = MlflowClient(tracking_uri=rs.tracking_uri)
    for path in paths:
        client.log_artifact(run_id, str(path), artifact_path=artifact_path)
    print(f"logged {len(paths)} files to parent run {run_id} under {artifact_path}/")
    return run_id


def footnote(fig, text: str) -> None:
    """Small grey lines under the axes (e.g. which sweep, how many failed runs were left out).

    Wrapped to the figure's width, so a long note does not widen the saved (tight) figure.
    """
    width_chars = max(40, int(fig.get_figwidth() * 72 / 8 * 1.6))  # ≈ characters of 8 pt text per figure width
    fig.text(0.01, -0.02, textwrap.fill(text, width_chars), fontsize=8, color="0.4", ha="left", va="top")


def legend(ax, *, outside: bool | str = False, **kwargs) -> None:
    """A legend only when something is labelled (an empty one draws a warning and a box).

    ``outside``: off the axes, where it cannot hide a point (the constrained layout makes room for it): ``True``
    or ``"right"`` beside them, ``"below"`` under the x label (panels side by side keep their width)."""
    _handles, labels = ax.get_legend_handles_labels()
    if not labels:
        return
    if outside:
        kwargs.pop("loc", None)
        if outside == "below":
            kwargs.update(loc="upper center", bbox_to_anchor=(0.5, -0.16), borderaxespad=0.0)
        else:
            kwargs.update(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
    ax.legend(**kwargs)


def parameter_axis(ax, *, axis: str = "x") -> None:
    """A log-scale parameter-count axis labelled at 1, 2 and 5 times powers of ten in plain numbers (1,000,
    2,000, 5,000): over the one or two decades a size sweep spans, matplotlib's default minor labels collide."""
    from matplotlib import ticker

    target = ax.xaxis if axis == "x" else ax.yaxis
    (ax.set_xscale if axis == "x" else ax.set_yscale)("log")
    target.set_major_locator(ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    target.set_major_formatter(ticker.FuncFormatter(lambda v, _pos: f"{v:,.0f}"))
    target.set_minor_formatter(ticker.NullFormatter())


def shades(base: Sequence[float], n: int) -> list[tuple[float, float, float]]:
    """``n`` shades of one colour from dark to light, the first being ``base`` itself (one model, several
    curves: the model keeps its colour)."""
    from matplotlib.colors import to_rgb

    r, g, b = to_rgb(base)
    if n <= 1:
        return [(r, g, b)]
    out = []
    for k in range(n):
        t = 0.6 * k / (n - 1)  # towards white, at most 60 %
        out.append((r + (1 - r) * t, g + (1 - g) * t, b + (1 - b) * t))
    return out


def error_range(mean, std, *, low: float | None = None, high: float | None = None, log: bool = False):
    """Asymmetric ``yerr`` (2 × n) of mean ± std kept inside ``[low, high]``; on a log axis the lower end stays
    positive (at most a factor 100 below the mean), so no bar runs off the axis or past a bound like AUC 1."""
    import numpy as np

    m = np.asarray(mean, dtype=float)
    sd = np.nan_to_num(np.asarray(std, dtype=float), nan=0.0)
    lo, hi = m - sd, m + sd
    if low is not None:
        lo = np.maximum(lo, low)
    if high is not None:
        hi = np.minimum(hi, high)
    if log:
        lo = np.where(lo > 0, lo, m * 1e-2)
    return np.vstack([np.maximum(m - lo, 0.0), np.maximum(hi - m, 0.0)])


def bounds(metric: str) -> tuple[float | None, float | None]:
    """The range a metric cannot leave: [0, 1] for AUCs, efficiency and purity, else none."""
    name = metric.rsplit(".", 1)[-1]
    if "auc" in name or name in ("edge_efficiency", "edge_purity"):
        return 0.0, 1.0
    return None, None
