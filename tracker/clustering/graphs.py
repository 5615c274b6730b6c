"""Graphs in a learned space and their quality: the radius graph of an embedding, same-particle pairs, and the
graph-construction metrics (``gc_efficiency``, ``gc_purity``, docs/clustering.md).

The radius graph connects every hit to at most ``max_neighbours`` nearest hits closer than ``max_radius``
(``torch.cdist`` by blocks of rows, at most ~16 M distances at once, then ``topk``); the result is undirected, one edge per pair, oriented from the
hit of smaller r to the larger (inner → outer, as the geometric graphs are).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

GC_PT_MIN = 0.9  # GeV: graph-construction metrics count particles above this pT (seed 003)
_CHUNK = 2048
_BLOCK = 1 << 24


#: above this many hits a CPU radius graph uses scikit-learn's tree search instead of the O(N²) cdist blocks
#: (benchmarks/clustering.py: the cdist blocks win at 2k hits, the tree at 10k in 8 dimensions)
SKLEARN_ABOVE = 5000


@torch.no_grad()
def radius_graph(
    emb: Tensor, *, max_radius: float, max_neighbours: int, r: Tensor | None = None, backend: str = "auto"
) -> Tensor:
    """Edges [2, E] between hits whose embeddings are closer than ``max_radius``, each hit keeping at most its
    ``max_neighbours`` nearest; one edge per unordered pair, source = smaller ``r`` (ties: smaller index).

    ``backend``: ``torch`` (``torch.cdist`` blocks + ``topk``, any device), ``sklearn`` (``NearestNeighbors`` tree
    search on the CPU) or ``auto`` (torch on CUDA or up to :data:`SKLEARN_ABOVE` hits, else sklearn)."""
    if max_radius <= 0 or max_neighbours < 1:
        raise ValueError(
            f"max_radius must be > 0 and max_neighbours >= 1 (got {max_radius}, {max_neighbours})"
        )
    if backend not in ("auto", "torch", "sklearn"):
        raise ValueError(f"backend must be auto, torch or sklearn (got {backend!r})")
    n = emb.shape[0]
    if n < 2:
        return torch.zeros(2, 0, dtype=torch.long, device=emb.device)
    k = min(max_neighbours + 1, n)  # +1: every hit is its own nearest neighbour
    if backend == "sklearn" or (backend == "auto" and not emb.is_cuda and n > SKLEARN_ABOVE):
        from sklearn.neighbors import NearestNeighbors

        x = emb.detach().cpu().double().numpy()
        dist_np, idx_np = NearestNeighbors(n_neighbors=k).fit(x).kneighbors(x)
        dist, idx = torch.from_numpy(dist_np).to(emb.device), torch.from_numpy(idx_np).to(emb.device)
        i = torch.arange(n, device=emb.device)[:, None].expand_as(idx)
        keep = (dist < max_radius) & (idx != i)
        a, b = i[keep], idx[keep]
    else:
        rows, cols = [], []
        chunk = max(1, min(_CHUNK, _BLOCK // n))  # rows per cdist block: at most ~16 M distances at once
        for start in range(0, n, chunk):
            d = torch.cdist(emb[start : start + chunk], emb)
            dist, idx = torch.topk(d, k, dim=1, largest=False)
            i = torch.arange(start, start + d.shape[0], device=emb.device)[:, None].expand_as(idx)
            keep = (dist < max_radius) & (idx != i)
            rows.append(i[keep])
            cols.append(idx[keep])
        a, b = torch.cat(rows), torch.cat(cols)
    key = r if r is not None else torch.zeros(n, device=emb.device)
    swap = (key[b] < key[a]) | ((key[b] == key[a]) & (b < a))
    src, dst = torch.where(swap, b, a), torch.where(swap, a, b)
    pairs = torch.unique(src * n + dst)
    return torch.stack([pairs // n, pairs % n])


def same_particle_pairs(pid: Tensor, keep: Tensor | None = None) -> Tensor:
    """Every unordered pair (i < j) of hits of one particle (pid > 0), restricted to hits where ``keep`` is true:
    [2, P], built by sorting hits by particle (no N² matrix)."""
    pid_np = pid.detach().cpu().numpy().astype(np.int64)
    ok = pid_np > 0
    if keep is not None:
        ok &= keep.detach().cpu().numpy().astype(bool)
    idx = np.flatnonzero(ok)
    order = idx[np.argsort(pid_np[idx], kind="stable")]
    p = pid_np[order]
    if order.size < 2:
        return torch.zeros(2, 0, dtype=torch.long, device=pid.device)
    starts = np.r_[0, np.flatnonzero(p[1:] != p[:-1]) + 1]
    longest = int(np.diff(np.r_[starts, p.size]).max())
    a_parts, b_parts = [], []
    for off in range(1, longest):
        same = p[off:] == p[:-off]
        a_parts.append(order[:-off][same])
        b_parts.append(order[off:][same])
    if not a_parts:
        return torch.zeros(2, 0, dtype=torch.long, device=pid.device)
    a, b = np.concatenate(a_parts), np.concatenate(b_parts)
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    return torch.from_numpy(np.stack([lo, hi])).to(pid.device)


def edge_truth(edge_index: Tensor, pid: Tensor) -> Tensor:
    """1.0 for edges joining two hits of one particle (pid > 0), else 0.0."""
    src, dst = edge_index
    return ((pid[src] == pid[dst]) & (pid[src] > 0)).to(torch.float32)


def gc_counts(edge_index: Tensor, pid: Tensor, pt: Tensor, *, pt_min: float = GC_PT_MIN) -> dict[str, int]:
    """Counts behind the graph-construction metrics of one event (sum them over events):

    - ``true_pairs``: unordered same-particle hit pairs of particles with pT > ``pt_min`` (an unknown pT passes);
    - ``found``: those that are edges of the graph;
    - ``edges_pt``: edges with at least one hit of a particle with pT > ``pt_min``;
    - ``true_edges_pt``: edges joining two hits of one particle with pT > ``pt_min``;
    - ``edges``, ``hits``: all edges and hits."""
    n = pid.shape[0]
    high = (pid > 0) & torch.nan_to_num(pt, nan=math.inf).gt(
        pt_min
    )  # unknown pT (npz graphs): the graph's cut
    pairs = same_particle_pairs(pid, high)
    src, dst = edge_index
    lo, hi = torch.minimum(src, dst), torch.maximum(src, dst)
    edge_keys = np.unique((lo * n + hi).cpu().numpy())
    pair_keys = (pairs[0] * n + pairs[1]).cpu().numpy()
    found = int(np.isin(pair_keys, edge_keys, assume_unique=False).sum())
    true_edge = edge_truth(edge_index, pid).bool()
    return {
        "true_pairs": int(pairs.shape[1]),
        "found": found,
        "edges_pt": int((high[src] | high[dst]).sum()),
        "true_edges_pt": int((true_edge & high[src]).sum()),
        "edges": int(edge_index.shape[1]),
        "hits": int(n),
    }


def gc_metrics(counts: list[dict[str, int]]) -> dict[str, float]:
    """``gc_efficiency`` = Σ found / Σ true_pairs; ``gc_purity`` = Σ true_edges_pt / Σ edges_pt;
    ``gc_edges_per_hit`` = Σ edges / Σ hits (NaN where a denominator is 0)."""
    tot = {
        k: sum(c[k] for c in counts)
        for k in ("true_pairs", "found", "edges_pt", "true_edges_pt", "edges", "hits")
    }

    def r(a: str, b: str) -> float:
        return tot[a] / tot[b] if tot[b] else float("nan")

    return {
        "gc_efficiency": r("found", "true_pairs"),
        "gc_purity": r("true_edges_pt", "edges_pt"),
        "gc_edges_per_hit": r("edges", "hits"),
    }
