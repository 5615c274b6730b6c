"""Published top-tagging numbers quoted in seed 002 (``../shared/seeds/002_*.txt``), for reference rows beside ours.

Both tables are "reproduced from (Gong et al., 2022)" there: LorentzNet and ParticleNet on the Top Quark Tagging
Reference Dataset (1.2 M training jets), averaged over 6 runs for Table 3. Accuracy and AUC are the same metrics as
our ``accuracy`` and ``auc``; seed 002 does not say at which signal efficiency its 1/ε_B is taken, so the
dashboards print it as published and never set it against our ``rejection_30`` / ``rejection_50``. Seed 002's
fig. 3 (accuracy vs boost β) has no numbers in the text, so the boost figure has no published overlay.
"""

from __future__ import annotations

import pandas as pd

#: seed 002 Table 3: performance by the share of the training data used
TABLE3 = pd.DataFrame(
    [
        # fraction of the training set, model, accuracy, AUC, 1/eps_B, its std
        (0.005, "particlenet", 0.913, 0.9687, 199, 14),
        (0.005, "lorentznet", 0.932, 0.9793, 562, 72),
        (0.01, "particlenet", 0.919, 0.9734, 287, 19),
        (0.01, "lorentznet", 0.932, 0.9812, 697, 58),
        (0.05, "particlenet", 0.931, 0.9807, 609, 35),
        (0.05, "lorentznet", 0.937, 0.9839, 1108, 84),
    ],
    columns=["fraction", "model", "accuracy", "auc", "inv_eps_b", "inv_eps_b_std"],
)

#: seed 002 Table 6: LorentzNet against its non-equivariant version ("LorentzNet (w/o)")
TABLE6 = pd.DataFrame(
    [
        ("lorentznet_noneq", 0.934, 0.9832, 1105, 59),
        ("lorentznet", 0.942, 0.9868, 2195, 173),
    ],
    columns=["model", "accuracy", "auc", "inv_eps_b", "inv_eps_b_std"],
)

SOURCE = "reproduced there from Gong et al. 2022 (Top Quark Tagging Reference Dataset, 1.2 M training jets)"
