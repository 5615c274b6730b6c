"""Reference numbers of the paper (SCIENCE.md §5, Table 1: TrackML pixel, pT > 1.5 GeV, mean ± std over 5 runs),
for overlays. ``size`` is the paper's N_hidden label, which for the IN is not its hidden width (SCIENCE.md §4)."""

from __future__ import annotations

import re

import pandas as pd

TABLE1 = pd.DataFrame(
    [
        # size, model, params, auc, auc_std, efficiency, efficiency_std, purity, purity_std
        (8, "euclidnet", 967, 0.9913, 0.004, 0.9459, 0.022, 0.7955, 0.040),
        (8, "interaction_network", 1432, 0.9849, 0.006, 0.9314, 0.021, 0.7319, 0.052),
        (16, "euclidnet", 2580, 0.9932, 0.003, 0.9530, 0.014, 0.8194, 0.033),
        (16, "interaction_network", 4392, 0.9932, 0.004, 0.9575, 0.019, 0.8168, 0.073),
        (32, "euclidnet", 4448, 0.9941, 0.003, 0.9547, 0.019, 0.9264, 0.023),
        (32, "interaction_network", 6448, 0.9978, 0.003, 0.9785, 0.022, 0.9945, 0.043),
    ],
    columns=[
        "size",
        "model",
        "params",
        "auc",
        "auc_std",
        "efficiency",
        "efficiency_std",
        "purity",
        "purity_std",
    ],
)

#: the IN's hidden width behind each of the paper's N_hidden labels (SCIENCE.md §4: rows 8 / 16 / 32 are h = 16 / 32 / 40)
IN_HIDDEN_TO_PAPER = {16: 8, 32: 16, 40: 32}


def paper_size(model: object, size: object) -> int | None:
    """The paper's N_hidden label of a configuration: ``paper_N`` presets give N, the Interaction Network at
    h = 16 / 32 / 40 gives 8 / 16 / 32; None when the configuration is not one of the paper's."""
    text = "" if size is None or size is pd.NA else str(size)
    m = re.fullmatch(r"paper_(\d+)", text)
    if m:
        return int(m.group(1))
    if str(model).lower() in ("interaction_network", "in") and re.fullmatch(r"\d+", text):
        return IN_HIDDEN_TO_PAPER.get(int(text))
    return None
