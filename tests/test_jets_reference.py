"""The published reference-dataset histograms: the digitiser on figures with known counts, the shipped numbers,
the binned summaries on hand-computed cases, and the recipe behind the published tau32."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.image as mpimg  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from jets.data.digitize import DigitizeError, Histogram, digitize  # noqa: E402
from jets.data.generated import SAMPLE_PATH, read_arrays, write_generated  # noqa: E402
from jets.data.reference import (  # noqa: E402
    REFERENCE_PATH,
    ReferenceFormatError,
    binned_auc,
    fraction_between,
    load_reference,
    quantiles,
    write_reference,
)
from jets.data.toptag import LABEL, columns  # noqa: E402


def _figure(blue: np.ndarray, red: np.ndarray, bins) -> tuple[np.ndarray, list[float], list[float], list, tuple]:
    """A PNG (as RGB array) in the style of the reference notebook: two hist calls, blue then red, alpha 0.5,
    8x8 inches, drawn inline at 100 dpi with a tight bounding box; the visible tick values; the true bins; and
    the data units of one pixel along x and y. Drawn in matplotlib's default style, as the notebook was (other
    tests' figures may have changed the global rcParams, e.g. turned grid lines on)."""
    with plt.style.context("default"):
        return _draw(blue, red, bins)


def _draw(blue: np.ndarray, red: np.ndarray, bins) -> tuple[np.ndarray, list[float], list[float], list, tuple]:
    fig, ax = plt.subplots(figsize=(8, 8), dpi=100)
    nb, eb, _ = ax.hist(blue, bins=bins, label="signal", alpha=0.5, color="blue")
    nr, er, _ = ax.hist(red, bins=bins, label="background", alpha=0.5, color="red")
    ax.legend(fontsize=22)
    ax.tick_params(axis="both", which="major", labelsize=25)
    fig.tight_layout()
    lo, hi = ax.get_xlim()
    xt = [float(t) for t in ax.get_xticks() if lo <= t <= hi]
    lo, hi = ax.get_ylim()
    yt = [float(t) for t in ax.get_yticks() if lo <= t <= hi]
    box = ax.get_window_extent()
    pixel = (np.ptp(ax.get_xlim()) / box.width, np.ptp(ax.get_ylim()) / box.height)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    buf.seek(0)
    return mpimg.imread(buf, format="png")[..., :3], xt, yt, [(nb, eb), (nr, er)], pixel


def _samples(seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """A narrow peak and a broad falling shape of 10,000 entries each, like top and QCD jet mass."""
    rng = np.random.default_rng(seed)
    return rng.normal(174.0, 14.0, 10_000).clip(60, 330), rng.gamma(3.0, 30.0, 10_000).clip(12, 360)


def test_digitize_recovers_known_counts_on_fixed_bins():
    blue, red = _samples()
    edges = np.arange(0.0, 360.0, 10.0)
    img, xt, yt, truth, (_, per_px) = _figure(blue, red, edges)
    got = digitize(img, x_ticks=xt, y_ticks=yt, edges=edges)
    for name, (counts, _) in zip(("blue", "red"), truth):
        assert np.allclose(got[name].edges, edges)
        # bars are snapped to whole pixels: a count is exact to one pixel's worth (and the rounding to an integer)
        assert np.abs(got[name].counts - counts).max() <= per_px + 0.5, name


def test_digitize_finds_each_class_own_bins():
    blue, red = _samples(seed=5)
    img, xt, yt, truth, (x_px, per_px) = _figure(blue, red, 50)  # bins=50: each class spans its own min..max
    got = digitize(img, x_ticks=xt, y_ticks=yt, n_bins=50)
    for name, (counts, edges) in zip(("blue", "red"), truth):
        assert np.abs(got[name].edges - edges).max() < 0.5 * x_px, name
        assert np.abs(got[name].counts - counts).max() <= per_px + 0.5, name
        assert abs(got[name].counts.sum() - counts.sum()) < 0.005 * counts.sum()


def test_digitize_rejects_images_that_are_not_such_figures():
    with pytest.raises(DigitizeError, match="no axes frame"):
        digitize(np.ones((200, 200, 3)), x_ticks=[0, 1], y_ticks=[0, 1], edges=np.arange(3.0))
    blue, red = _samples()
    img, xt, yt, _, _ = _figure(blue, red, np.arange(0.0, 360.0, 10.0))
    with pytest.raises(DigitizeError, match="tick marks"):
        digitize(img, x_ticks=xt[:-1], y_ticks=yt, edges=np.arange(0.0, 360.0, 10.0))
    with plt.style.context({"axes.grid": True}):  # grid lines over the bars would cut them short
        img, xt, yt, _, _ = _draw(blue, red, np.arange(0.0, 360.0, 10.0))
    with pytest.raises(DigitizeError, match="grid lines"):
        digitize(img, x_ticks=xt, y_ticks=yt, edges=np.arange(0.0, 360.0, 10.0))


def test_shipped_reference_histograms_are_the_published_jets():
    ref = load_reference()
    assert set(ref) == {(o, c) for o in ("mass", "tau32") for c in ("top", "qcd")}
    assert len(ref[("mass", "top")].counts) == len(ref[("mass", "qcd")].counts) == 50
    assert np.allclose(ref[("tau32", "top")].edges, np.arange(0.0, 1.2, 0.05))
    # 20,000 jets were drawn; both figures hold them (within the digitisation's +-1 jet per bin)
    for observable in ("mass", "tau32"):
        total = sum(ref[(observable, c)].counts.sum() for c in ("top", "qcd"))
        assert abs(total - 20_000) < 100, observable
    for c in ("top", "qcd"):
        assert abs(ref[("mass", c)].counts.sum() - ref[("tau32", c)].counts.sum()) < 50
    # the physics the figures show: top jets peak at the top mass, QCD jets are one-prong
    assert 170 < quantiles(ref[("mass", "top")], [0.5])[0] < 178
    assert quantiles(ref[("mass", "qcd")], [0.5])[0] < 100
    assert quantiles(ref[("tau32", "top")], [0.5])[0] < quantiles(ref[("tau32", "qcd")], [0.5])[0]


def test_reference_round_trip_and_bad_files(tmp_path):
    hists = {("tau32", "top"): Histogram(np.array([0.0, 0.5, 1.0]), np.array([3.0, 1.0]))}
    path = tmp_path / "ref.csv"
    write_reference(hists, path)
    back = load_reference(path)
    assert np.allclose(back[("tau32", "top")].edges, [0.0, 0.5, 1.0])
    assert back[("tau32", "top")].counts.tolist() == [3.0, 1.0]
    path.write_text("observable,label,lo,hi,count\ntau32,top,0,0.5,3\ntau32,top,0.6,1.0,1\n")
    with pytest.raises(ReferenceFormatError, match="ref.csv.*not contiguous"):
        load_reference(path)
    path.write_text("observable,label,lo,hi,count\ntau32,top,0,half,3\n")
    with pytest.raises(ReferenceFormatError, match="ref.csv: line 2"):
        load_reference(path)
    path.write_text("a,b\n1,2\n")
    with pytest.raises(ReferenceFormatError, match="header"):
        load_reference(path)
    with pytest.raises(ReferenceFormatError, match="missing.csv.*cannot be read"):
        load_reference(tmp_path / "missing.csv")
    assert REFERENCE_PATH.is_file()


def test_binned_summaries_hand_computed():
    h = Histogram(np.array([0.0, 1.0, 2.0]), np.array([1.0, 3.0]))
    # CDF 0, 1/4, 1 at 0, 1, 2: the median is 1 + (1/2 - 1/4) / (3/4) = 4/3
    assert quantiles(h, [0.5]) == pytest.approx([4.0 / 3.0])
    assert quantiles(h, [0.25, 1.0]) == pytest.approx([1.0, 2.0])
    # half of each bin lies in [0.5, 1.5]: (1/2 + 3/2) / 4
    assert fraction_between(h, 0.5, 1.5) == pytest.approx(0.5)
    sig = Histogram(h.edges, np.array([3.0, 1.0]))
    bkg = Histogram(h.edges, np.array([1.0, 3.0]))
    # low = signal; of 16 pairs, 9 won (sig bin 0, bkg bin 1), 3 + 3 tied (same bin), 1 lost: (9 + 3) / 16
    assert binned_auc(sig, bkg, low_is_signal=True) == pytest.approx(0.75)
    assert binned_auc(sig, bkg, low_is_signal=False) == pytest.approx(0.25)
    assert binned_auc(sig, sig, low_is_signal=True) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="same bin edges"):
        binned_auc(sig, Histogram(np.array([0.0, 1.5, 2.0]), np.array([1.0, 1.0])), low_is_signal=True)


def _three_prong(phi0: float) -> np.ndarray:
    """A jet of three tight clusters of massless particles around azimuth ``phi0`` (E, px, py, pz)."""
    rng = np.random.default_rng(0)
    parts = []
    for dphi, deta, pt in ((0.0, 0.0, 200.0), (0.25, 0.1, 150.0), (-0.1, -0.3, 120.0)):
        for k in range(6):
            p = pt / 6 * (1 + 0.1 * k)
            eta = deta + rng.normal(0, 0.01)
            phi = phi0 + dphi + rng.normal(0, 0.01)
            parts.append([p * np.cosh(eta), p * np.cos(phi), p * np.sin(phi), p * np.sinh(eta)])
    return np.array(parts)


def test_reference_recipe_tau32_and_its_unwrapped_azimuth():
    pytest.importorskip("fastjet")
    from jets.data.reference import tau32_reference_recipe
    from jets.substructure import tau32

    jet = _three_prong(0.3)
    # three prongs: tau3 << tau2 in both definitions, which agree for a jet away from phi = +-pi
    assert tau32_reference_recipe(jet) < 0.2
    assert tau32_reference_recipe(jet) == pytest.approx(tau32(jet), rel=0.2)
    # rotated across phi = pi: the project's tau32 is unchanged, the recipe's distances are inflated
    across = _three_prong(-np.pi + 0.05)  # prongs on both sides of phi = +-pi
    assert tau32(across) == pytest.approx(tau32(jet), rel=1e-6)
    assert abs(tau32_reference_recipe(across) - tau32_reference_recipe(jet)) > 0.05


def test_sample_figure_script_on_a_sample_and_a_toptag_file(tmp_path):
    """scripts/jets_sample_figure.py end to end on 300 real generated jets, given once as a generated-sample file
    and once as a reference-dataset file in its exact layout: the same jets give the same tau32 histograms."""
    pytest.importorskip("fastjet")
    arr = read_arrays(SAMPLE_PATH)
    n = 300
    off = arr["offsets"][: n + 1]
    sample = write_generated(
        tmp_path / "small.npz", arr["constituents"][: off[-1]], off, arr["label"][:n], arr["jet"][:n]
    )
    padded = np.zeros((n, 4, 200))
    for i in range(n):
        c = arr["constituents"][off[i] : off[i + 1]].astype(np.float64)
        padded[i, :, : len(c)] = c.T  # (E, px, py, pz) families, each over the 200 slots
    frame = pd.DataFrame(padded.reshape(n, 800), columns=columns())
    frame[LABEL] = arr["label"][:n].astype(np.float64)
    toptag = tmp_path / "train.h5"
    frame.to_hdf(toptag, key="table", mode="w")
    out = tmp_path / "fig.png"
    script = Path(__file__).resolve().parents[1] / "scripts" / "jets_sample_figure.py"
    run = subprocess.run(
        [sys.executable, str(script), "--sample", str(sample), "--toptag", str(toptag), "--toptag-jets", str(n),
         "--out", str(out)],
        capture_output=True, text=True, timeout=300, check=True,
    )
    report = json.loads(run.stdout[run.stdout.index("{") : run.stdout.rindex("}") + 1])
    assert out.stat().st_size > 10_000
    assert set(report) >= {"generated sample", "reference, published", "reference, this file"}
    ours, theirs = report["generated sample"], report["reference, this file"]
    for c in ("top", "qcd"):
        assert ours[c]["tau32_median_q16_q84"] == theirs[c]["tau32_median_q16_q84"]
    assert ours["tau32_auc_binned"] == theirs["tau32_auc_binned"]
    assert report["reference, published"]["tau32_auc_binned"] == pytest.approx(0.815, abs=0.01)
