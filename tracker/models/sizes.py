"""Search of EuclidNet configurations whose exact parameter count is closest to a target (the paper's sizes).

``python -m tracker.models.sizes [TARGET ...]`` prints the closest configurations for each target (default: the
paper's 967 / 2,580 / 4,448) using the closed form ``tracker.models.euclidnet.param_count`` (checked against
instantiated models in tests/test_models.py). Inputs are kept as the paper's (positions only: no r, no edge
attributes) so that presets differ in size only.
"""

from __future__ import annotations

import sys
from itertools import product

from tracker.models.euclidnet import PAPER_COUNTS, param_count

SEARCH_SPACE = {
    "hidden": range(2, 60),
    "mlp_depth": range(1, 6),
    "decoder_depth": range(6),
    "shared_block": (True, False),
}


def closest(target: int, k: int = 5, *, iterations: int = 5) -> list[tuple[int, dict]]:
    """The ``k`` configurations with parameter counts closest to ``target`` (ties: shared block first)."""
    rows = []
    for h, L, D, shared in product(*SEARCH_SPACE.values()):
        cfg = {"hidden": h, "mlp_depth": L, "decoder_depth": D, "shared_block": shared, "iterations": iterations}
        rows.append((param_count(**cfg), cfg))
    rows.sort(key=lambda r: (abs(r[0] - target), not r[1]["shared_block"], -r[1]["mlp_depth"]))
    return rows[:k]


def main(argv: list[str]) -> None:
    targets = [int(a) for a in argv] or list(PAPER_COUNTS.values())
    for t in targets:
        print(f"target {t}:")
        for n, cfg in closest(t):
            print(f"  {n:6d} ({n - t:+d})  {cfg}")


if __name__ == "__main__":
    main(sys.argv[1:])
