"""Published jet mass and tau32 histograms of the Top Quark Tagging Reference Dataset, and the recipe behind them.

The reference dataset (Kasieczka, Plehn et al. 2019) itself is 2 M jets on Zenodo; what the shipped generated
sample is compared with (docs/jets_sample.md) are its jet mass and tau32 distributions as published by Khot,
Neubauer and Roy, "A detailed study of interpretability of deep neural network based top taggers", Mach. Learn.:
Sci. Technol. 4 (2023) 035003, arXiv:2210.04371. Their repository, github.com/FAIR4HEP/xAI4toptagger, keeps the
notebook that draws them (``evaluation/Multi-Body/MultiBody-FeatureHists.ipynb``): the first 20,000 jets of
``train.h5`` (jets with fewer than 8 constituents dropped), signal in blue and background in red.

The figures were read back into bin counts with :mod:`jets.data.digitize` (``python -m jets.data.reference
--notebook PATH``) and ship as ``resources/reference/toptag_mass_tau32.csv``; ``REFERENCE.md`` beside it records
the source commit and the checks. How the notebook's authors computed the observables (their
``datasets/mb8spreprocessing.py`` and ``PreProcessTools.py``), which :func:`tau32_reference_recipe` follows:

- jet mass: the invariant mass of the sum of all stored constituents (Delphes E-flow objects);
- tau_N = sum_i pT_i min_k dR(i, axis_k) / sum_i pT_i: axes are the N exclusive jets of a kT clustering with
  R = 0.4 of the constituents; dR from rapidity and azimuth, the azimuth difference *not* wrapped into [-pi, pi]
  (a jet across phi = +-pi gets inflated distances). The normalisation cancels in tau32 = tau3 / tau2.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from jets.data.digitize import Histogram, digitize, notebook_png
from jets.substructure import require_fastjet

#: the shipped digitised histograms (provenance in REFERENCE.md beside it)
REFERENCE_PATH = Path(__file__).resolve().parent / "resources" / "reference" / "toptag_mass_tau32.csv"
#: blue was signal (top), red background (QCD) in the notebook's figures
COLOURS = {"top": "blue", "qcd": "red"}
#: the notebook's figures: code cell, the tick values printed on them, and the binning of its ``plt.hist`` calls
#: (mass: ``bins=50`` per class, so each class has its own 50 bins; tau32: ``np.arange(0, 1.2, 0.05)``)
FIGURES = {
    "mass": {"cell": 2, "x_ticks": [0, 100, 200, 300], "y_ticks": list(range(0, 1201, 200)), "n_bins": 50},
    "tau32": {
        "cell": 11,
        "x_ticks": [0.0, 0.2, 0.4, 0.6, 0.8, 1.0, 1.2],
        "y_ticks": list(range(0, 1601, 200)),
        "edges": np.arange(0.0, 1.2, 0.05),
    },
}
_HEADER = ["observable", "label", "lo", "hi", "count"]


class ReferenceFormatError(ValueError):
    """A reference-histogram file that cannot be read; the message names the file and what was expected."""


def digitize_notebook(notebook: str | Path) -> dict[tuple[str, str], Histogram]:
    """Digitise the notebook's mass and tau32 figures into ``{(observable, "top"|"qcd"): Histogram}``."""
    out = {}
    for observable, spec in FIGURES.items():
        img = notebook_png(notebook, cell=spec["cell"])
        hists = digitize(
            img, x_ticks=spec["x_ticks"], y_ticks=spec["y_ticks"], edges=spec.get("edges"), n_bins=spec.get("n_bins")
        )
        for label, colour in COLOURS.items():
            out[(observable, label)] = hists[colour]
    return out


def write_reference(hists: dict[tuple[str, str], Histogram], path: str | Path) -> None:
    """Write histograms as CSV rows ``observable,label,lo,hi,count`` (edges to six significant digits)."""
    with Path(path).open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(_HEADER)
        for (observable, label), h in hists.items():
            for lo, hi, n in zip(h.edges[:-1], h.edges[1:], h.counts):
                writer.writerow([observable, label, f"{lo:.6g}", f"{hi:.6g}", int(n)])


def load_reference(path: str | Path = REFERENCE_PATH) -> dict[tuple[str, str], Histogram]:
    """The reference histograms ``{(observable, label): Histogram}``; bins of one histogram are contiguous."""
    path = Path(path)
    expected = f"a CSV with header {','.join(_HEADER)} and contiguous bins per observable and label"
    try:
        rows = list(csv.DictReader(path.open(newline="")))
    except OSError as err:
        raise ReferenceFormatError(f"{path}: cannot be read ({err.strerror}); expected {expected}") from None
    if not rows or list(rows[0]) != _HEADER:
        raise ReferenceFormatError(f"{path}: header {list(rows[0]) if rows else []}; expected {expected}")
    groups: dict[tuple[str, str], list[tuple[float, float, float]]] = {}
    for i, row in enumerate(rows, start=2):
        try:
            groups.setdefault((row["observable"], row["label"]), []).append(
                (float(row["lo"]), float(row["hi"]), float(row["count"]))
            )
        except (TypeError, ValueError):
            raise ReferenceFormatError(f"{path}: line {i} {row}: lo, hi and count must be numbers") from None
    out = {}
    for key, bins in groups.items():
        lo, hi, counts = (np.array(c) for c in zip(*bins))
        if not (np.allclose(lo[1:], hi[:-1]) and (hi > lo).all() and (counts >= 0).all()):
            raise ReferenceFormatError(f"{path}: bins of {key} are not contiguous increasing with counts >= 0")
        out[key] = Histogram(edges=np.append(lo, hi[-1]), counts=counts)
    return out


def quantiles(h: Histogram, qs: list[float]) -> list[float]:
    """Quantiles of a histogram, entries spread uniformly within each bin (linear interpolation of the CDF)."""
    cdf = np.concatenate([[0.0], np.cumsum(h.counts)]) / h.counts.sum()
    return [float(np.interp(q, cdf, h.edges)) for q in qs]


def fraction_between(h: Histogram, lo: float, hi: float) -> float:
    """Fraction of the entries between ``lo`` and ``hi`` (uniform within each bin)."""
    width = np.diff(h.edges)
    overlap = np.clip(np.minimum(h.edges[1:], hi) - np.maximum(h.edges[:-1], lo), 0.0, None) / width
    return float((h.counts * overlap).sum() / h.counts.sum())


def binned_auc(signal: Histogram, background: Histogram, *, low_is_signal: bool) -> float:
    """ROC AUC of a cut on the binned observable (ties within a bin count one half): scikit-learn on bin centres
    weighted by the counts. Both histograms must share their edges."""
    if not np.allclose(signal.edges, background.edges):
        raise ValueError("binned_auc needs the two histograms on the same bin edges")
    centres = 0.5 * (signal.edges[1:] + signal.edges[:-1])
    score = np.concatenate([centres, centres]) * (-1.0 if low_is_signal else 1.0)
    label = np.concatenate([np.ones_like(centres), np.zeros_like(centres)])
    weight = np.concatenate([signal.counts, background.counts])
    keep = weight > 0
    return float(roc_auc_score(label[keep], score[keep], sample_weight=weight[keep]))


def tau32_reference_recipe(p4: np.ndarray) -> float:
    """tau3/tau2 of one jet's (E, px, py, pz) constituents as the reference histograms computed it (module
    docstring): exclusive kT (R = 0.4) axes, unwrapped azimuth differences. NaN when tau2 = 0."""
    fj = require_fastjet()
    p4 = np.asarray(p4, dtype=np.float64)
    p4 = p4[p4[:, 0] > 0]
    pt = np.hypot(p4[:, 1], p4[:, 2])
    rap = 0.5 * np.log((p4[:, 0] + p4[:, 3]) / (p4[:, 0] - p4[:, 3]))
    phi = np.arctan2(p4[:, 2], p4[:, 1])
    seq = fj.ClusterSequence(
        [fj.PseudoJet(float(px), float(py), float(pz), float(e)) for e, px, py, pz in p4],
        fj.JetDefinition(fj.kt_algorithm, 0.4),
    )
    taus = []
    for n in (2, 3):
        axes = seq.exclusive_jets(n)
        a_rap = np.array([j.rap() for j in axes])
        a_phi = np.array([np.arctan2(j.py(), j.px()) for j in axes])
        dr = np.sqrt((rap[:, None] - a_rap[None, :]) ** 2 + (phi[:, None] - a_phi[None, :]) ** 2)
        taus.append(float((pt * dr.min(axis=1)).sum() / pt.sum()))
    return taus[1] / taus[0] if taus[0] > 0 else float("nan")


def main() -> None:
    """``python -m jets.data.reference --notebook MultiBody-FeatureHists.ipynb [--out CSV]``: digitise and write."""
    ap = argparse.ArgumentParser(description="Digitise the reference mass and tau32 histograms of a notebook.")
    ap.add_argument("--notebook", type=Path, required=True, help="MultiBody-FeatureHists.ipynb of xAI4toptagger")
    ap.add_argument("--out", type=Path, default=REFERENCE_PATH)
    args = ap.parse_args()
    hists = digitize_notebook(args.notebook)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_reference(hists, args.out)
    for (observable, label), h in hists.items():
        print(f"{observable:6s} {label:4s} {len(h.counts):3d} bins {h.edges[0]:8.3f}..{h.edges[-1]:8.3f} "
              f"{int(h.counts.sum()):6d} jets")
    print(args.out)


if __name__ == "__main__":
    main()
