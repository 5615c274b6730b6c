"""The reference approach to geometric graph building, kept only as a speed and correctness baseline.

For every layer pair, all hit pairs are formed with a pandas merge (a cross join, as the reference's merge on
the event id), their dφ, dz, dr, dR, φ-slope and z0 computed, and then cut; this is O(n1·n2) in time and memory.
(dφ is wrapped with the same modulo formula as the platform's builder, so the two agree bit for bit.) The selected hits and cuts are the platform's
(tracker.graphs.builder), so both builders must return the same edge set.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from tracker.data.geometry import BARREL_HALF_LENGTH_MM, LEFT_DISKS, RIGHT_DISKS, layer_pairs
from tracker.graphs.builder import INTERSECT_R_MM, GraphOptions, select_hits


def build_edges_naive(hits: pd.DataFrame, particles: pd.DataFrame, truth: pd.DataFrame, **options) -> tuple[np.ndarray, np.ndarray]:
    """(edge_index [2, E] sorted by (source, target), y [E]) with the all-pairs merge; options as build_graph."""
    opt = GraphOptions(**options).resolved()
    h = select_hits(hits, particles, truth, pt_min=opt.pt_min, endcaps=opt.endcaps,
                    remove_duplicates=opt.remove_duplicates)
    h = h.assign(node=np.arange(len(h)))
    keys = ["node", "r", "phi", "z", "particle_id"]
    by_layer = {layer: g[keys] for layer, g in h.groupby("layer")}
    segs = []
    for l1, l2 in layer_pairs(endcaps=opt.endcaps):
        if l1 not in by_layer or l2 not in by_layer:
            continue
        pairs = by_layer[l1].merge(by_layer[l2], how="cross", suffixes=("_1", "_2"))
        dphi = pairs.phi_2 - pairs.phi_1
        dphi = (dphi + np.pi) % (2 * np.pi) - np.pi
        dz = pairs.z_2 - pairs.z_1
        dr = pairs.r_2 - pairs.r_1
        # the reference computes the edge features of every pair before cutting
        deta = np.arcsinh(pairs.z_2 / pairs.r_2) - np.arcsinh(pairs.z_1 / pairs.r_1)
        dR = np.sqrt(deta**2 + dphi**2)
        phi_slope = dphi / dr
        z0 = pairs.z_1 - pairs.r_1 * dz / dr
        mask = (phi_slope.abs() < opt.phi_slope_max) & (z0.abs() < opt.z0_max)
        if opt.remove_intersecting and l1 in INTERSECT_R_MM and l2 in (LEFT_DISKS[0], RIGHT_DISKS[0]):
            zc = INTERSECT_R_MM[l1] * dz / dr + z0
            mask &= ~((zc > -BARREL_HALF_LENGTH_MM) & (zc < BARREL_HALF_LENGTH_MM))
        sel = pairs[mask]
        segs.append(pd.DataFrame({"src": sel.node_1.to_numpy(), "dst": sel.node_2.to_numpy(), "dR": dR[mask].to_numpy(),
                                  "y": (sel.particle_id_1.to_numpy() == sel.particle_id_2.to_numpy())}))
    seg = pd.concat(segs, ignore_index=True).sort_values(["src", "dst"])
    return np.stack([seg.src.to_numpy(), seg.dst.to_numpy()]).astype(np.int64), seg.y.to_numpy().astype(np.float32)
