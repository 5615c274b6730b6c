"""Jet mass and tau32 of the shipped generated sample against the published reference-dataset histograms.

    .venv/bin/python scripts/jets_sample_figure.py [--sample PATH] [--toptag train.h5 [--toptag-jets N]] [--out PNG]

Prints the numbers quoted in docs/jets_sample.md, for this sample and for the Top Quark Tagging Reference
Dataset as published (the digitised histograms of ``jets.data.reference``): medians and 16%/84% quantiles,
fractions in a top mass window and below a tau32 cut, and the ROC AUC of tau32 alone. tau32 of the sample is
computed twice: with the project's definition (``jets.substructure``) and with the recipe the reference
histograms were made with (``jets.data.reference.tau32_reference_recipe``); the overlay uses the latter, so the
two differ in the jets, not in the definition. ``--toptag`` adds the first ``--toptag-jets`` (20,000, as published)
jets of a real reference file, histogrammed here with the same recipe (a check of the digitisation where the file
is at hand).
tau_N needs FastJet (``pip install -e ".[jetgen]"``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402

from jets.data.digitize import Histogram  # noqa: E402
from jets.data.generated import SAMPLE_PATH, read_arrays  # noqa: E402
from jets.data.reference import (  # noqa: E402
    binned_auc,
    fraction_between,
    load_reference,
    quantiles,
    tau32_reference_recipe,
)
from jets.data.toptag import read_toptag  # noqa: E402
from jets.substructure import jet_mass, tau32  # noqa: E402

#: a loose top mass window and a tau32 cut, for the fractions printed (not taggers of the project)
MASS_WINDOW = (135.0, 210.0)
TAU32_CUT = 0.6
CLASSES = (("top", 1), ("qcd", 0))


def sample_observables(path: Path) -> dict[str, np.ndarray]:
    """Per jet of the generated sample: mass (jet four-momentum), tau32 (project definition and reference
    recipe), label and constituent count."""
    arr = read_arrays(path)
    jet = arr["jet"].astype(np.float64)
    const, offsets = arr["constituents"], arr["offsets"]
    jets = [const[offsets[i] : offsets[i + 1]] for i in range(len(jet))]
    return {
        "mass": np.sqrt(np.maximum(jet[:, 0] ** 2 - (jet[:, 1:] ** 2).sum(axis=1), 0.0)),
        "tau32": np.array([tau32(c) for c in jets]),
        "tau32_recipe": np.array([tau32_reference_recipe(c) for c in jets]),
        "label": arr["label"],
        "n_constituents": np.diff(offsets),
    }


def toptag_observables(path: Path, n_jets: int = 20_000) -> dict[str, np.ndarray]:
    """Mass and recipe tau32 of the first ``n_jets`` jets of a reference-dataset file (as the published figures)."""
    p4, mask, label = read_toptag(path, n_jets=n_jets)
    jets = [p[m] for p, m in zip(p4, mask)]
    keep = np.array([len(j) >= 8 for j in jets])  # the published figures dropped jets of < 8 constituents
    jets = [j for j, k in zip(jets, keep) if k]
    return {
        "mass": np.array([jet_mass(j) for j in jets]),
        "tau32_recipe": np.array([tau32_reference_recipe(j) for j in jets]),
        "label": label[keep],
    }


def histograms(obs: dict[str, np.ndarray], ref: dict[tuple[str, str], Histogram]) -> dict[tuple[str, str], Histogram]:
    """A jet set's mass and recipe tau32 histogrammed on the reference's bins, per class."""
    out = {}
    for observable, key in (("mass", "mass"), ("tau32", "tau32_recipe")):
        for name, lab in CLASSES:
            edges = ref[(observable, name)].edges
            v = obs[key][obs["label"] == lab]
            out[(observable, name)] = Histogram(edges=edges, counts=np.histogram(v[np.isfinite(v)], edges)[0] * 1.0)
    return out


def binned_summary(hists: dict[tuple[str, str], Histogram]) -> dict:
    """The comparison numbers of one set of histograms (reference bins; the reference's own or a jet set's)."""
    out: dict = {}
    for name, _ in CLASSES:
        m, t = hists[("mass", name)], hists[("tau32", name)]
        out[name] = {
            "jets": int(m.counts.sum()),
            "mass_median_q16_q84": [round(x, 1) for x in quantiles(m, [0.5, 0.16, 0.84])],
            "mass_window_fraction": round(fraction_between(m, *MASS_WINDOW), 3),
            "tau32_median_q16_q84": [round(x, 3) for x in quantiles(t, [0.5, 0.16, 0.84])],
            f"tau32_below_{TAU32_CUT}": round(fraction_between(t, 0.0, TAU32_CUT), 3),
        }
    out["tau32_auc_binned"] = round(binned_auc(hists[("tau32", "top")], hists[("tau32", "qcd")], low_is_signal=True), 4)
    return out


def sample_summary(obs: dict[str, np.ndarray]) -> dict:
    """Unbinned numbers of the sample with the project's tau32 definition (the ones a user of the sample sees)."""
    out: dict = {}
    for name, lab in CLASSES:
        sel = obs["label"] == lab
        t = obs["tau32"][sel]
        t = t[np.isfinite(t)]
        out[name] = {
            "mass_median_q16_q84": [round(float(x), 1) for x in np.quantile(obs["mass"][sel], [0.5, 0.16, 0.84])],
            "tau32_median_q16_q84": [round(float(x), 3) for x in np.quantile(t, [0.5, 0.16, 0.84])],
            "constituents_mean": round(float(obs["n_constituents"][sel].mean()), 1),
        }
    ok = np.isfinite(obs["tau32"])
    out["tau32_auc"] = round(float(roc_auc_score(obs["label"][ok], -obs["tau32"][ok])), 4)
    return out


def _step(ax, h: Histogram, **kw) -> None:
    """A histogram normalised to unit area, drawn as steps."""
    ax.stairs(h.counts / (h.counts.sum() * np.diff(h.edges)), h.edges, **kw)


def figure(sets: dict[str, dict[tuple[str, str], Histogram]], out: Path) -> None:
    """Two panels, mass and tau32: each set of histograms (label -> histograms) per class, normalised."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.9), constrained_layout=True)
    styles = {0: {"lw": 1.8}, 1: {"lw": 1.4, "ls": "--"}, 2: {"lw": 1.2, "ls": ":"}}
    for ax, observable, xlabel in (
        (axes[0], "mass", "jet mass [GeV]"),
        (axes[1], "tau32", r"$\tau_{32} = \tau_3/\tau_2$ (reference recipe)"),
    ):
        for k, (set_name, hists) in enumerate(sets.items()):
            for name, color in (("top", "tab:red"), ("qcd", "tab:blue")):
                _step(ax, hists[(observable, name)], color=color, label=f"{set_name}: {name}", **styles[k])
        ax.set_xlabel(xlabel)
        ax.set_ylabel("normalised jets")
    axes[1].legend(frameon=False, fontsize=8, loc="upper left")
    fig.suptitle(
        "anti-kT R=0.8, 550 < pT < 650 GeV, |eta| < 2: generated sample (Pythia 8, no detector) against the "
        "reference dataset (Pythia 8 + Delphes), published histograms",
        fontsize=8,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sample", type=Path, default=SAMPLE_PATH)
    ap.add_argument("--toptag", type=Path, default=None, help="a reference-dataset file (train.h5) to add")
    ap.add_argument("--toptag-jets", type=int, default=20_000, help="how many of its first jets (default 20000)")
    ap.add_argument("--out", type=Path, default=Path("docs/figures/jets_sample_mass_tau32.png"))
    args = ap.parse_args()
    ref = load_reference()
    obs = sample_observables(args.sample)
    sets = {"generated sample": histograms(obs, ref), "reference, published": ref}
    if args.toptag is not None:
        sets["reference, this file"] = histograms(toptag_observables(args.toptag, args.toptag_jets), ref)
    figure(sets, args.out)
    report = {name: binned_summary(h) for name, h in sets.items()}
    report["generated sample, project tau32 definition, unbinned"] = sample_summary(obs)
    print(json.dumps(report, indent=1))
    print(args.out)


if __name__ == "__main__":
    main()
