"""Jet mass and N-subjettiness tau32 of the shipped generated sample, top vs QCD (docs/jets_sample.md).

    .venv/bin/python scripts/jets_sample_figure.py [--sample PATH] [--out docs/figures/jets_sample_mass_tau32.png]

Prints the summary numbers quoted in docs/jets_sample.md (medians, quantiles, fractions in a top mass window)
and writes the two-panel figure. tau_N needs FastJet (``pip install -e ".[jetgen]"``).
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

from jets.data.generated import SAMPLE_PATH, read_arrays  # noqa: E402
from jets.substructure import tau32  # noqa: E402

#: a loose top mass window, for the fractions printed (not a tagger of the project)
MASS_WINDOW = (135.0, 210.0)


def observables(path: Path) -> dict[str, np.ndarray]:
    """Jet mass (from the jet four-momentum), tau32 (from the constituents) and the label of every jet."""
    arr = read_arrays(path)
    jet = arr["jet"].astype(np.float64)
    mass = np.sqrt(np.maximum(jet[:, 0] ** 2 - (jet[:, 1:] ** 2).sum(axis=1), 0.0))
    const, offsets = arr["constituents"], arr["offsets"]
    t32 = np.array([tau32(const[offsets[i] : offsets[i + 1]]) for i in range(len(jet))])
    n = np.diff(offsets)
    return {"mass": mass, "tau32": t32, "label": arr["label"], "n_constituents": n}


def summary(obs: dict[str, np.ndarray]) -> dict:
    """Per class: jets, median/quantiles of mass and tau32, fraction in the mass window, mean multiplicity;
    and the ROC AUC of tau32 alone."""
    out = {}
    for name, lab in (("top", 1), ("qcd", 0)):
        sel = obs["label"] == lab
        m, t = obs["mass"][sel], obs["tau32"][sel]
        t = t[np.isfinite(t)]
        out[name] = {
            "jets": int(sel.sum()),
            "mass_median": round(float(np.median(m)), 1),
            "mass_q16_q84": [round(float(x), 1) for x in np.quantile(m, [0.16, 0.84])],
            "mass_window_fraction": round(float(((m > MASS_WINDOW[0]) & (m < MASS_WINDOW[1])).mean()), 3),
            "tau32_median": round(float(np.median(t)), 3),
            "tau32_q16_q84": [round(float(x), 3) for x in np.quantile(t, [0.16, 0.84])],
            "tau32_below_0.6": round(float((t < 0.6).mean()), 3),
            "constituents_mean": round(float(obs["n_constituents"][sel].mean()), 1),
        }
    ok = np.isfinite(obs["tau32"])
    # tau32 alone as a tagger (low = top): the classic cut-based baseline the networks must beat
    out["tau32_auc"] = round(float(roc_auc_score(obs["label"][ok], -obs["tau32"][ok])), 4)
    out["tau32_undefined_jets"] = int((~ok).sum())
    return out


def figure(obs: dict[str, np.ndarray], out: Path) -> None:
    """Two panels: jet mass and tau32, normalised histograms of top and QCD jets."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), constrained_layout=True)
    for ax, key, bins, xlabel in (
        (axes[0], "mass", np.linspace(0, 300, 61), "jet mass [GeV]"),
        (axes[1], "tau32", np.linspace(0, 1, 51), r"$\tau_{32} = \tau_3/\tau_2$"),
    ):
        for lab, name, color in ((1, "top", "tab:red"), (0, "QCD", "tab:blue")):
            v = obs[key][(obs["label"] == lab) & np.isfinite(obs[key])]
            ax.hist(v, bins=bins, density=True, histtype="step", lw=1.6, color=color, label=f"{name} ({len(v)})")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("normalised jets")
        ax.legend(frameon=False)
    fig.suptitle("generated sample: anti-kT R=0.8, 550 < pT < 650 GeV, |eta| < 2 (Pythia 8, no detector)", fontsize=9)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sample", type=Path, default=SAMPLE_PATH)
    ap.add_argument("--out", type=Path, default=Path("docs/figures/jets_sample_mass_tau32.png"))
    args = ap.parse_args()
    obs = observables(args.sample)
    figure(obs, args.out)
    print(json.dumps(summary(obs), indent=1))
    print(args.out)


if __name__ == "__main__":
    main()
