"""The geometric hit-graph builder of DeZoort et al. (SCIENCE.md §3), vectorised.

Pixel hits of particles above ``pt_min`` become nodes; candidate segments join hits on connected layer pairs
(adjacent barrel layers, adjacent disks, every barrel layer to the innermost disk) and are kept when
``|dφ/dr| < phi_slope_max`` and ``|z0| < z0_max`` (z0 = z1 − r1·dz/dr). Instead of the reference's all-pairs
merge per layer pair, nodes are sorted by (layer, φ) and each inner hit only meets the outer hits in its φ window
(|dφ| ≤ phi_slope_max · max|dr|, with max|dr| bounded by the outer layer's r range and by the z0 cut; found with
``searchsorted``), in chunks that bound memory; the exact cuts (z0 first, then φ-slope, then the optional
barrel-crossing test) are applied to those candidates. The result equals the all-pairs selection bit for bit
(tests/test_graph_builder.py compares it with benchmarks/graph_build_naive.py).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch_geometric.data import Data

from tracker.data.geometry import (
    BARREL_HALF_LENGTH_MM,
    BARREL_LAYERS,
    LEFT_DISKS,
    RIGHT_DISKS,
    layer_index,
    layer_pairs,
)

#: (pt_min lower edge GeV, phi_slope_max /mm, z0_max mm): the reference's recommended cuts, loosest last
CUT_TABLE: tuple[tuple[float, float, float], ...] = (
    (1.5, 0.006, 275.0),
    (1.0, 0.007, 350.0),
    (0.9, 0.0072, 375.0),
    (0.8, 0.008, 425.0),
    (0.0, 0.0085, 500.0),
)
#: radii (mm) at which the reference tests whether a barrel->disk edge from layer 0 / 1 crosses the next barrel layer
INTERSECT_R_MM = {0: 71.56298065185547, 1: 115.37811279296875}

_CHUNK_PAIRS = 2_000_000  # candidate pairs examined at once (bounds the builder's peak memory)


def recommended_cuts(pt_min: float) -> tuple[float, float]:
    """(phi_slope_max, z0_max) of the reference table for ``pt_min``; between table rows the looser cut of the
    row at or below ``pt_min`` is used (e.g. 1.2 GeV -> the 1.0 GeV cuts), so efficiency is never lost."""
    if pt_min <= 0:
        raise ValueError(f"pt_min must be > 0 GeV (got {pt_min})")
    for lo, slope, z0 in CUT_TABLE:
        if pt_min >= lo - 1e-9:
            return slope, z0
    return CUT_TABLE[-1][1], CUT_TABLE[-1][2]


@dataclass(frozen=True)
class GraphOptions:
    """Every option of the builder; ``None`` cuts resolve to :func:`recommended_cuts` for ``pt_min``."""

    pt_min: float = 1.5
    phi_slope_max: float | None = None
    z0_max: float | None = None
    endcaps: bool = True
    remove_duplicates: bool = True
    remove_intersecting: bool = True
    undirected: bool = False
    dedup_triangles: bool = True

    def resolved(self) -> GraphOptions:
        slope, z0 = recommended_cuts(self.pt_min)
        return GraphOptions(**{**asdict(self),
                               "phi_slope_max": slope if self.phi_slope_max is None else float(self.phi_slope_max),
                               "z0_max": z0 if self.z0_max is None else float(self.z0_max)})

    def as_dict(self) -> dict:
        return asdict(self.resolved())


def _lookup(keys: np.ndarray, table_keys: np.ndarray, table_values: np.ndarray, missing) -> np.ndarray:
    """``table_values`` at the position of each of ``keys`` in ``table_keys`` (``missing`` where absent).

    A hash lookup (pandas ``Index.get_indexer``) when the table keys are unique; else the first match of a
    sorted search."""
    out = np.full(len(keys), missing, dtype=np.result_type(table_values, np.asarray(missing)))
    index = pd.Index(table_keys)
    if index.is_unique:
        pos = index.get_indexer(keys)
        found = pos >= 0
        out[found] = table_values[pos[found]]
        return out
    order = np.argsort(table_keys, kind="stable")
    sk = table_keys[order]
    pos = np.clip(np.searchsorted(sk, keys), 0, max(len(sk) - 1, 0))
    found = (sk[pos] == keys) if len(sk) else np.zeros(len(keys), bool)
    out[found] = table_values[order][pos[found]]
    return out


def select_hits(
    hits: pd.DataFrame, particles: pd.DataFrame, truth: pd.DataFrame, *, pt_min: float, endcaps: bool = True,
    remove_duplicates: bool = True, noise_hits: bool = False,
) -> pd.DataFrame:
    """Pixel hits of particles with pT > pt_min (noise dropped unless ``noise_hits``), sorted by (layer, φ, hit_id).

    With ``noise_hits`` the noise hits (particle_id 0, pT NaN) are kept too (the clustering pipeline's noise
    classifier learns to drop them); duplicate removal never merges them.

    With ``remove_duplicates`` (the reference's choice: its graphs hold exactly one hit per particle per layer)
    only the innermost (smallest r) hit of a particle on a layer is kept; module overlaps otherwise give double hits.

    Columns: hit_id, x, y, z, layer, particle_id, pt, r, phi (mm, rad, GeV). Vectorised lookups (sorted
    ``searchsorted``) instead of DataFrame merges: hits without truth, or of particles missing from the particle
    table, are dropped like the reference's inner merges drop them."""
    layer = layer_index(hits["volume_id"].to_numpy(), hits["layer_id"].to_numpy())
    keep = layer >= 0 if endcaps else (layer >= 0) & (layer <= 3)
    all_ids = hits["hit_id"].to_numpy()
    t_ids = truth["hit_id"].to_numpy()
    t_pid = truth["particle_id"].to_numpy()
    if len(t_ids) == len(all_ids) and np.array_equal(t_ids, all_ids):  # the usual case: same row order
        pid = t_pid[keep]
    else:
        pid = _lookup(all_ids[keep], t_ids, t_pid, 0)
    hit_id = all_ids[keep]
    layer = layer[keep]
    ppt = np.hypot(particles["px"].to_numpy(np.float64), particles["py"].to_numpy(np.float64))
    ppid = particles["particle_id"].to_numpy()
    good = (ppt > pt_min) & (ppid != 0)
    pt = _lookup(pid, ppid[good], ppt[good], np.nan)  # only the few particles above the cut are searched
    sel = np.isfinite(pt) & (pid != 0)
    if noise_hits:
        sel |= pid == 0
    idx = np.flatnonzero(keep)[sel]
    x = hits["x"].to_numpy(np.float64)[idx]
    y = hits["y"].to_numpy(np.float64)[idx]
    if remove_duplicates and idx.size:
        r_sel = np.hypot(x, y)
        o = np.lexsort((r_sel, layer[sel], pid[sel]))  # by particle, layer, then r: the first of a group is innermost
        first = np.ones(o.size, bool)
        first[1:] = (pid[sel][o][1:] != pid[sel][o][:-1]) | (layer[sel][o][1:] != layer[sel][o][:-1])
        first |= pid[sel][o] == 0  # noise hits (kept with noise_hits) are never duplicates of each other
        keep_sel = np.zeros(idx.size, bool)
        keep_sel[o[first]] = True
        idx, x, y = idx[keep_sel], x[keep_sel], y[keep_sel]
        sel = sel.copy()
        sel[np.flatnonzero(sel)[~keep_sel]] = False
    phi = np.arctan2(y, x)
    order = np.lexsort((hit_id[sel], phi, layer[sel]))  # by layer, then φ (the builder relies on it)
    x, y, phi = x[order], y[order], phi[order]
    return pd.DataFrame({
        "hit_id": hit_id[sel][order], "x": x, "y": y, "z": hits["z"].to_numpy(np.float64)[idx][order],
        "layer": layer[sel][order], "particle_id": pid[sel][order], "pt": pt[sel][order],
        "r": np.hypot(x, y), "phi": phi,
    })


def _wrap(dphi: np.ndarray) -> np.ndarray:
    """Wrap angle differences to [-π, π)."""
    return (dphi + np.pi) % (2 * np.pi) - np.pi


def _pair_segments(
    r: np.ndarray, phi: np.ndarray, z: np.ndarray, i1: np.ndarray, i2: np.ndarray, l1: int, l2: int,
    *, phi_slope_max: float, z0_max: float, remove_intersecting: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """Kept (source, target) node indices for one layer pair (i1: inner-layer nodes, i2: outer-layer nodes)."""
    if i1.size == 0 or i2.size == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    # φ window of each inner hit: |dφ| < phi_slope_max·|dr|, with |dr| bounded (a) by the outer layer's r range
    # and (b), when |z1| > z0_max, by the z0 cut: |z1 − z0| = r1·|dz|/|dr| > |z1| − z0_max  =>
    # |dr| < r1·max|dz| / (|z1| − z0_max). Both bounds are exact consequences of the cuts, so nothing is lost.
    r1, z1 = r[i1], z[i1]
    r2, z2 = r[i2], z[i2]
    dr_max = np.maximum(np.abs(r2.max() - r1), np.abs(r1 - r2.min()))
    dz_max = np.maximum(np.abs(z2.max() - z1), np.abs(z1 - z2.min()))
    far = np.abs(z1) > z0_max
    with np.errstate(divide="ignore", invalid="ignore"):
        bound = np.where(far, r1 * dz_max / (np.abs(z1) - z0_max), np.inf)
    dr_max = np.minimum(dr_max, bound)
    half = phi_slope_max * dr_max * (1 + 1e-9) + 1e-12
    srcs, dsts = [], []
    if half.max() >= np.pi:  # some window is the whole circle: all pairs
        lo = np.zeros(i1.size, np.int64)
        cnt = np.full(i1.size, i2.size, np.int64)
        ext = i2
    else:
        order2 = i2  # nodes are sorted by φ within a layer (select_hits)
        p2 = phi[order2]
        # extend the sorted list by ±2π copies so windows never wrap
        ext = np.concatenate([order2, order2, order2])
        pext = np.concatenate([p2 - 2 * np.pi, p2, p2 + 2 * np.pi])
        p1 = phi[i1]
        lo = np.searchsorted(pext, p1 - half, side="left")
        hi = np.searchsorted(pext, p1 + half, side="right")
        cnt = hi - lo
    start = 0
    n1 = i1.size
    while start < n1:
        csum = np.cumsum(cnt[start:])
        stop = start + max(1, int(np.searchsorted(csum, _CHUNK_PAIRS, side="right")))
        c = cnt[start:stop]
        tot = int(c.sum())
        if tot:
            rep = np.repeat(np.arange(start, stop), c)
            offs = np.arange(tot) - np.repeat(np.cumsum(c) - c, c)
            a = i1[rep]
            b = ext[lo[rep] + offs]
            ra, za = r[a], z[a]
            dr = r[b] - ra
            dz = z[b] - za
            with np.errstate(divide="ignore", invalid="ignore"):
                z0 = za - ra * dz / dr
            # the z0 cut removes most candidates: apply it first, then the φ-slope cut on the survivors
            keep = np.flatnonzero(np.abs(z0) < z0_max)
            a, b, dr, dz, z0 = a[keep], b[keep], dr[keep], dz[keep], z0[keep]
            dphi = _wrap(phi[b] - phi[a])
            with np.errstate(divide="ignore", invalid="ignore"):
                slope = dphi / dr
            ok = np.abs(slope) < phi_slope_max
            if remove_intersecting and l1 in INTERSECT_R_MM and l2 in (LEFT_DISKS[0], RIGHT_DISKS[0]):
                with np.errstate(divide="ignore", invalid="ignore"):
                    zc = INTERSECT_R_MM[l1] * dz / dr + z0
                ok &= ~((zc > -BARREL_HALF_LENGTH_MM) & (zc < BARREL_HALF_LENGTH_MM))
            srcs.append(a[ok])
            dsts.append(b[ok])
        start = stop
    return np.concatenate(srcs) if srcs else np.empty(0, np.int64), np.concatenate(dsts) if dsts else np.empty(0, np.int64)


def _dedup_triangle_labels(y: np.ndarray, src: np.ndarray, dst: np.ndarray, layer: np.ndarray, pid: np.ndarray) -> None:
    """Un-label (in place) a particle's true barrel->disk segments from all but its outermost barrel layer.

    A particle crossing barrel layers 1 and 2 before the first disk has true edges 1->disk and 2->disk: the
    reference keeps only the one from the outer barrel layer (the hit at larger |z|), so each particle contributes
    one true segment per layer transition, as counted by the efficiency."""
    disks = (LEFT_DISKS[0], RIGHT_DISKS[0])
    cand = (y > 0) & np.isin(layer[src], BARREL_LAYERS) & np.isin(layer[dst], disks)
    idx = np.flatnonzero(cand)
    if idx.size == 0:
        return
    p, d, l1 = pid[src[idx]], layer[dst[idx]], layer[src[idx]]
    order = np.lexsort((l1, d, p))  # groups (pid, disk), l1 ascending inside each
    p, d, l1, idx = p[order], d[order], l1[order], idx[order]
    last = np.ones(idx.size, bool)
    last[:-1] = (p[1:] != p[:-1]) | (d[1:] != d[:-1])
    group_end = np.flatnonzero(last)
    top = np.repeat(l1[group_end], np.diff(np.concatenate([[-1], group_end])))  # each group's max l1
    y[idx[l1 < top]] = 0


def build_graph(
    hits: pd.DataFrame,
    particles: pd.DataFrame,
    truth: pd.DataFrame,
    *,
    pt_min: float = 1.5,
    phi_slope_max: float | None = None,
    z0_max: float | None = None,
    endcaps: bool = True,
    remove_duplicates: bool = True,
    remove_intersecting: bool = True,
    undirected: bool = False,
    dedup_triangles: bool = True,
    event_id: int = -1,
    noise_hits: bool = False,
) -> Data:
    """Build the geometric hit graph of one event as a platform ``Data`` (fields of docs/architecture.md);
    ``noise_hits`` keeps the noise hits (pid 0) as nodes, whose edges are never true."""
    opt = GraphOptions(pt_min=pt_min, phi_slope_max=phi_slope_max, z0_max=z0_max, endcaps=endcaps,
                       remove_duplicates=remove_duplicates,
                       remove_intersecting=remove_intersecting, undirected=undirected,
                       dedup_triangles=dedup_triangles).resolved()
    h = select_hits(hits, particles, truth, pt_min=opt.pt_min, endcaps=opt.endcaps,
                    remove_duplicates=opt.remove_duplicates, noise_hits=noise_hits)
    r, phi, z = h.r.to_numpy(), h.phi.to_numpy(), h.z.to_numpy()
    layer = h.layer.to_numpy().astype(np.int64)
    pid = h.particle_id.to_numpy().astype(np.int64)
    bounds = np.searchsorted(layer, np.arange(19))  # nodes are sorted by layer
    srcs, dsts = [], []
    for l1, l2 in layer_pairs(endcaps=opt.endcaps):
        i1 = np.arange(bounds[l1], bounds[l1 + 1])
        i2 = np.arange(bounds[l2], bounds[l2 + 1])
        s, d = _pair_segments(r, phi, z, i1, i2, l1, l2, phi_slope_max=opt.phi_slope_max, z0_max=opt.z0_max,
                              remove_intersecting=opt.remove_intersecting)
        srcs.append(s)
        dsts.append(d)
    src = np.concatenate(srcs).astype(np.int64)
    dst = np.concatenate(dsts).astype(np.int64)

    dr = r[dst] - r[src]
    dphi = _wrap(phi[dst] - phi[src])
    dz = z[dst] - z[src]
    eta = np.arcsinh(z / r)
    d_eta = eta[dst] - eta[src]
    dR = np.sqrt(d_eta**2 + dphi**2)
    edge_attr = np.stack([dr / 1000.0, dphi / np.pi, dz / 1000.0, dR], axis=1)
    y = ((pid[src] == pid[dst]) & (pid[src] != 0)).astype(np.float32)
    if opt.dedup_triangles:
        _dedup_triangle_labels(y, src, dst, layer, pid)
    edge_index = np.stack([src, dst])
    if opt.undirected:
        edge_index = np.concatenate([edge_index, edge_index[::-1]], axis=1)
        rev = edge_attr * np.array([-1.0, -1.0, -1.0, 1.0])  # dR is a distance: kept, not negated
        edge_attr = np.concatenate([edge_attr, rev])
        y = np.concatenate([y, y])

    x = np.stack([r / 1000.0, phi / np.pi, z / 1000.0], axis=1)
    pos = np.stack([h.x.to_numpy(), h.y.to_numpy(), z], axis=1) / 1000.0
    return Data(
        x=torch.from_numpy(x.astype(np.float32)),
        pos=torch.from_numpy(pos.astype(np.float32)),
        edge_index=torch.from_numpy(np.ascontiguousarray(edge_index)),
        edge_attr=torch.from_numpy(edge_attr.astype(np.float32)),
        y=torch.from_numpy(y),
        pid=torch.from_numpy(pid),
        pt=torch.from_numpy(h.pt.to_numpy().astype(np.float32)),
        layer=torch.from_numpy(layer),
        hit_id=torch.from_numpy(h.hit_id.to_numpy().astype(np.int64)),
        event_id=int(event_id),
        num_nodes=len(h),
    )


def build_event(prefix: str | Path, **options) -> Data:
    """Read an event (``prefix`` like ``dir/event000000001``) and build its graph; options as :func:`build_graph`."""
    from tracker.data.trackml import event_id_of, load_event

    hits, particles, truth = load_event(prefix, parts=("hits", "particles", "truth"))
    return build_graph(hits, particles, truth, event_id=event_id_of(prefix), **options)
