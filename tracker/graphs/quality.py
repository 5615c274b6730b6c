"""Quality figures of a hit graph: truth-segment efficiency and purity (SCIENCE.md §3).

True segments available are counted as the reference does: keep one hit per particle per layer (the innermost,
smallest r), order a particle's hits by layer index (barrel 0..3, then the disks of its side outwards) and count
consecutive pairs that form a connected layer pair. A segment is found when the graph holds at least one true
edge of that particle between those two layers. Purity is true edges / all edges.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from torch_geometric.data import Data

from tracker.data.geometry import layer_pairs


def truth_segments(pid: np.ndarray, layer: np.ndarray, r: np.ndarray, *, endcaps: bool = True) -> pd.DataFrame:
    """The true segments available: one row (pid, l1, l2) per particle and consecutive layer pair."""
    df = pd.DataFrame({"pid": pid, "layer": layer, "r": r})
    df = df[(df.pid != 0) & (df.layer >= 0)]
    df = df.sort_values(["pid", "layer", "r"], kind="stable").drop_duplicates(["pid", "layer"], keep="first")
    same = df.pid.to_numpy()[1:] == df.pid.to_numpy()[:-1]
    l1, l2 = df.layer.to_numpy()[:-1][same], df.layer.to_numpy()[1:][same]
    seg = pd.DataFrame({"pid": df.pid.to_numpy()[:-1][same], "l1": l1, "l2": l2})
    valid = set(layer_pairs(endcaps=endcaps))
    ok = np.fromiter(((a, b) in valid for a, b in zip(l1.tolist(), l2.tolist())), dtype=bool, count=len(seg))
    return seg[ok].reset_index(drop=True)


def graph_quality(data: Data) -> dict[str, float]:
    """Efficiency, purity and sizes of a graph whose nodes are all the selected hits (as the builder makes).

    Reverse edges of an undirected graph are ignored (only source-layer < target-layer order counts)."""
    pid = data.pid.numpy()
    layer = data.layer.numpy()
    r = data.x[:, 0].double().numpy()
    src, dst = data.edge_index.numpy()
    y = data.y.numpy() > 0.5
    segs = truth_segments(pid, layer, r)
    true = pd.DataFrame({"pid": pid[src[y]], "l1": layer[src[y]], "l2": layer[dst[y]]}).drop_duplicates()
    found = segs.merge(true, on=["pid", "l1", "l2"], how="inner")
    n_avail = len(segs)
    return {
        "nodes": int(data.num_nodes),
        "edges": int(src.size),
        "true_edges": int(y.sum()),
        "segments_available": n_avail,
        "segments_found": len(found),
        "efficiency": len(found) / n_avail if n_avail else float("nan"),
        "purity": float(y.mean()) if y.size else float("nan"),
    }
