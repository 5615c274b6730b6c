"""Read bin counts back from a PNG of two overlaid matplotlib histograms (how the reference histograms were made).

The published jet mass and tau32 distributions of the Top Quark Tagging Reference Dataset that
``jets.data.reference`` compares against exist only as figures: two ``plt.hist`` calls, ``color="blue"`` then
``color="red"``, both ``alpha=0.5``, on a white axes with outward ticks. Such a figure is fully recoverable:

- matplotlib snaps bar rectangles to the pixel grid, so every column holds at most three flat colours, from the
  bottom up: the overlap of both bars (red over blue), then the taller bar's own colour, then white;
- the tick marks left of and below the axes give the pixel -> data maps (a least-squares line through them; the
  tick *values* are read off the figure by a person and passed in);
- bin edges are either known (the ``bins=`` of the notebook) or found as the lattice of column positions where
  a class's bar height changes (``n_bins`` equal bins from the class's minimum to its maximum, as ``bins=50``).

Heights are exact to the pixel snapping, +-0.5 px: +-1 jet in the figures used here. Nothing here knows physics.
"""

from __future__ import annotations

import base64
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: RGB of the three fills on white: blue at alpha 0.5, red at alpha 0.5, red drawn over blue
FILLS = {
    "blue": np.array([0.5, 0.5, 1.0]),
    "red": np.array([1.0, 0.5, 0.5]),
    "both": np.array([0.75, 0.25, 0.5]),
}
_TOL = 0.06  # colour distance that still counts as a fill (PNG rounding is 1/255)


class DigitizeError(ValueError):
    """The image is not a figure of the expected kind; the message says what was not found."""


@dataclass(frozen=True)
class Histogram:
    """Bin ``edges`` [n + 1] and ``counts`` [n] (entries per bin)."""

    edges: np.ndarray
    counts: np.ndarray


def notebook_png(path: str | Path, *, cell: int, output: int = 0) -> np.ndarray:
    """The RGB float image [H, W, 3] of the ``output``-th PNG output of code cell ``cell`` of a Jupyter notebook."""
    import matplotlib.image as mpimg

    nb = json.loads(Path(path).read_text())
    try:
        outputs = [o for o in nb["cells"][cell].get("outputs", []) if "image/png" in o.get("data", {})]
        data = outputs[output]["data"]["image/png"]
    except (IndexError, KeyError) as err:
        raise DigitizeError(f"{path}: cell {cell} has no PNG output number {output} ({err!r})") from None
    return mpimg.imread(io.BytesIO(base64.b64decode(data)), format="png")[..., :3]


def _frame(img: np.ndarray) -> tuple[int, int, int, int]:
    """Pixel rows/columns of the axes spines: (left, right, top, bottom)."""
    dark = img.sum(axis=-1) < 0.6
    cols = np.flatnonzero(dark.mean(axis=0) > 0.5)
    rows = np.flatnonzero(dark.mean(axis=1) > 0.5)
    if len(cols) < 2 or len(rows) < 2:
        raise DigitizeError("no axes frame (four dark spines) found in the image")
    return int(cols[0]), int(cols[-1]), int(rows[0]), int(rows[-1])


def _tick_centres(profile: np.ndarray) -> np.ndarray:
    """Darkness-weighted centres of the runs of dark pixels in a 1-D darkness profile (one run per tick)."""
    dark = profile > 0.5
    centres, start = [], None
    for i, d in enumerate(np.append(dark, False)):
        if d and start is None:
            start = i
        elif not d and start is not None:
            lo, hi = max(start - 1, 0), min(i + 1, len(profile))
            w = profile[lo:hi]
            centres.append(float((np.arange(lo, hi) * w).sum() / w.sum()))
            start = None
    return np.array(centres)


def _axis_map(centres: np.ndarray, values: list[float], axis: str) -> tuple[float, float]:
    """(a, b) with value = a + b * pixel, a least-squares line through the ticks; the residual must be < 0.6 px."""
    if len(centres) != len(values):
        raise DigitizeError(f"{axis} axis: found {len(centres)} tick marks, the tick values given are {values}")
    b, a = np.polyfit(centres, values, 1)
    resid = np.abs(a + b * centres - np.asarray(values)) / abs(b)
    if resid.max() > 0.6:
        raise DigitizeError(f"{axis} axis: ticks are not evenly mapped (worst {resid.max():.2f} px off the line)")
    return float(a), float(b)


def _classify(img: np.ndarray) -> np.ndarray:
    """Per pixel: 0 white/other, 1 blue only, 2 red only, 3 both."""
    out = np.zeros(img.shape[:2], dtype=np.int8)
    for code, key in ((1, "blue"), (2, "red"), (3, "both")):
        out[np.abs(img - FILLS[key]).max(axis=-1) < _TOL] = code
    return out


def column_heights(img: np.ndarray) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int, int]]:
    """Bar-top boundary row (pixel row coordinate of the bar's top edge) of blue and red in every column inside
    the axes, and the frame. A column without that colour gets the bottom boundary (height 0)."""
    left, right, top, bottom = _frame(img)
    img = img.copy()
    # the row next to the x axis is darkened by the spine's antialiasing; undo it with the factor seen on the
    # white side of the top spine, so a bar only one pixel high is still recognised
    img[bottom - 1] = np.clip(img[bottom - 1] / img[top - 1, left + 1 : right].mean(), 0.0, 1.0)
    cls = _classify(img)
    base = bottom - 0.5  # the bars rest on the x axis line (row ``bottom``)
    blue = np.full(img.shape[1], base)
    red = np.full(img.shape[1], base)
    for x in range(left + 1, right):
        col = cls[top + 1 : bottom, x]
        # walk up from the x axis through the contiguous fill; the legend, higher up, is separated by white
        r = len(col) - 1
        codes = []
        while r >= 0 and col[r] != 0:
            codes.append(int(col[r]))
            r -= 1
        if r >= 0 and left + 1 < x < right - 1 and img[top + 1 + r, x].min() < 0.97:  # spines' antialiasing aside
            # the fill ends on something that is neither white nor a fill: a grid line or text over the bars
            raise DigitizeError(
                f"column {x}: the bars are interrupted at row {top + 1 + r} by something drawn over them "
                f"(grid lines?); expected bars on a white axes"
            )
        if not codes:
            continue
        n_both = next((i for i, c in enumerate(codes) if c != 3), len(codes))
        rest = codes[n_both:]
        top_all = base - len(codes)
        top_both = base - n_both
        only = rest[0] if rest else 0
        if only == 1:
            blue[x], red[x] = top_all, top_both
        elif only == 2:
            red[x], blue[x] = top_all, top_both
        else:  # all overlap: equal heights
            blue[x] = red[x] = top_all
    return blue, red, (left, right, top, bottom)


def _lattice(steps: np.ndarray, lo: float, hi: float, n_bins: int) -> np.ndarray:
    """Bin edges (pixel columns) of ``n_bins`` equal bins covering the filled columns [lo, hi], best matching the
    column boundaries ``steps`` where the bar height changes."""
    width0 = (hi - lo) / n_bins
    best = None
    for width in np.linspace(width0 * 0.97, width0 * 1.03, 121):
        for start in np.linspace(lo - width, lo + 0.5, 41):
            edges = start + width * np.arange(n_bins + 1)
            if edges[-1] < hi - 0.5 or edges[-1] > hi + width:
                continue
            cost = np.abs(steps[:, None] - edges[None, :]).min(axis=1).sum()
            if best is None or cost < best[0]:
                best = (cost, edges)
    if best is None:
        raise DigitizeError(f"no {n_bins}-bin lattice spans the filled columns {lo:.0f}..{hi:.0f}")
    return best[1]


def digitize(
    img: np.ndarray,
    *,
    x_ticks: list[float],
    y_ticks: list[float],
    edges: np.ndarray | None = None,
    n_bins: int | None = None,
) -> dict[str, Histogram]:
    """The blue and red histograms of a figure, in data units.

    ``x_ticks`` / ``y_ticks`` are the tick values as printed on the figure, left to right and bottom to top.
    Give the bin ``edges`` (data units, shared by both colours) when the notebook fixed them, else ``n_bins``:
    each colour then gets its own ``n_bins`` equal bins found from the image (``plt.hist(bins=n)`` per class).
    """
    blue_top, red_top, (left, right, top, bottom) = column_heights(img)
    darkness = 1.0 - img.mean(axis=-1)
    # tick marks stick out of the frame; only the stretch along the frame holds ticks (labels lie further out)
    ya, yb = _axis_map(top + _tick_centres(darkness[top : bottom + 1, left - 3])[::-1], y_ticks, "y")
    xa, xb = _axis_map(left + _tick_centres(darkness[bottom + 3, left : right + 1]), x_ticks, "x")
    base = bottom - 0.5
    out = {}
    for name, tops in (("blue", blue_top), ("red", red_top)):
        height_px = base - tops  # pixels above the axis in each column
        filled = np.flatnonzero(height_px > 0)
        if len(filled) == 0:
            raise DigitizeError(f"no {name} bars found")
        if edges is not None:
            px_edges = (np.asarray(edges, dtype=float) - xa) / xb
        else:
            if n_bins is None:
                raise DigitizeError("give the bin edges or the number of bins")
            steps = np.flatnonzero(np.diff(height_px) != 0) + 0.5  # boundary between columns x and x+1
            # a bar starting at data value v starts at the column of v's tick mark: boundary + 0.5 in tick columns
            px_edges = _lattice(steps, filled[0] - 0.5, filled[-1] + 0.5, n_bins) + 0.5
        counts = []
        for lo, hi in zip(px_edges[:-1], px_edges[1:]):
            cols = np.arange(int(np.ceil(lo + 0.5)), int(np.floor(hi - 0.5)) + 1)
            cols = cols[(cols > left) & (cols < right)]
            h = float(np.median(height_px[cols])) if len(cols) else 0.0
            counts.append(h * -yb)  # rows grow downwards: counts per pixel is -yb
        out[name] = Histogram(edges=xa + xb * np.asarray(px_edges), counts=np.rint(counts))
    return out
