"""Radius-graph construction and DBSCAN per event: the clustering pipeline's code against a straightforward
scikit-learn baseline, side by side on the same coordinates in one run.

    python benchmarks/clustering.py [--hits 2000 10000 50000] [--dim 8] [--repeat 3] [--json out.json]

Coordinates are synthetic but shaped like a trained embedding: particles of 10 hits each around random centres in
a [0, L]^dim box (spread ``--sigma``), 15 % noise hits uniform in the box, L chosen so that the density of particles
is the same at every size. Per event size:

- *graph*: ``tracker.clustering.graphs.radius_graph`` as the pipeline calls it (``backend="auto"``: ``torch.cdist``
  blocks + ``topk`` up to 5,000 hits or on CUDA, scikit-learn's tree search above), and its ``torch`` backend
  alone (column *cdist*), against ``sklearn.neighbors.NearestNeighbors(n_neighbors=k+1).kneighbors`` with the same
  radius mask and the same one-edge-per-pair output; the edge sets are checked to be equal;
- *dbscan*: ``tracker.clustering.tracks.dbscan_labels`` (scikit-learn's DBSCAN plus the noise-to-singleton
  relabelling the track metrics need) against a bare ``sklearn.cluster.DBSCAN(eps, min_samples).fit_predict``; the
  clusterings are checked to be equal.

Times are the best of ``--repeat`` runs, wall and thread CPU time (steadier on a shared machine), one thread.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import torch
from sklearn.cluster import DBSCAN
from sklearn.neighbors import NearestNeighbors

from tracker.clustering.graphs import radius_graph
from tracker.clustering.tracks import dbscan_labels

torch.set_num_threads(1)


def synthetic_event(n_hits: int, *, dim: int, sigma: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(coords [n_hits, dim], pid) with particles of 10 hits and 15 % noise (pid 0)."""
    rng = np.random.default_rng(seed)
    n_particles = max(1, int(n_hits * 0.85) // 10)
    box = (n_particles / 100.0) ** (1.0 / dim) * 4.0  # constant particle density across sizes
    centres = rng.uniform(0, box, size=(n_particles, dim))
    pid = np.repeat(np.arange(1, n_particles + 1), 10)
    coords = centres[pid - 1] + rng.normal(scale=sigma, size=(pid.size, dim))
    n_noise = n_hits - pid.size
    coords = np.concatenate([coords, rng.uniform(0, box, size=(n_noise, dim))])
    pid = np.concatenate([pid, np.zeros(n_noise, dtype=np.int64)])
    return coords.astype(np.float32), pid


def sklearn_radius_graph(coords: np.ndarray, *, max_radius: float, max_neighbours: int) -> np.ndarray:
    """The baseline: k nearest neighbours (scikit-learn), radius mask, one edge per unordered pair [2, E]."""
    k = min(max_neighbours + 1, coords.shape[0])
    dist, idx = NearestNeighbors(n_neighbors=k).fit(coords).kneighbors(coords)
    rows = np.repeat(np.arange(coords.shape[0]), k).reshape(-1, k)
    keep = (dist < max_radius) & (idx != rows)
    a, b = rows[keep], idx[keep]
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    pairs = np.unique(lo.astype(np.int64) * coords.shape[0] + hi)
    return np.stack([pairs // coords.shape[0], pairs % coords.shape[0]])


def _best(fn, repeat: int) -> tuple[float, float, object]:
    wall, cpu, out = [], [], None
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.thread_time()
        out = fn()
        cpu.append(time.thread_time() - c0)
        wall.append(time.perf_counter() - t0)
    return min(wall), min(cpu), out


def _pairs(edges: np.ndarray, n: int) -> np.ndarray:
    lo, hi = np.minimum(edges[0], edges[1]), np.maximum(edges[0], edges[1])
    return np.sort(lo.astype(np.int64) * n + hi)


def _same_clustering(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal partitions (label values may differ); DBSCAN noise (-1) in ``b`` is a singleton in ``a``."""
    b = b.copy()
    noise = b < 0
    b[noise] = b.max() + 1 + np.arange(int(noise.sum()))
    pairs = np.unique(np.stack([a, b], axis=1), axis=0)
    return len(pairs) == len(np.unique(a)) == len(np.unique(b))


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hits", type=int, nargs="+", default=[2000, 10000, 50000])
    ap.add_argument("--dim", type=int, default=8)
    ap.add_argument("--sigma", type=float, default=0.05)
    ap.add_argument("--max-radius", type=float, default=0.5)
    ap.add_argument("--max-neighbours", type=int, default=32)
    ap.add_argument("--eps", type=float, default=0.2)
    ap.add_argument("--min-samples", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)

    rows = []
    print(
        f"{'hits':>7} {'edges':>8} | {'cdist':>9} {'ours graph':>11} {'sklearn graph':>13} {'ratio':>6} | "
        f"{'ours dbscan':>11} {'sklearn dbscan':>14} | same"
    )
    for n in args.hits:
        coords, _ = synthetic_event(n, dim=args.dim, sigma=args.sigma, seed=n)
        emb = torch.from_numpy(coords)
        tw, tc, _ = _best(
            lambda: radius_graph(
                emb, max_radius=args.max_radius, max_neighbours=args.max_neighbours, backend="torch"
            ).numpy(),
            args.repeat,
        )
        gw, gc, ours = _best(
            lambda: radius_graph(emb, max_radius=args.max_radius, max_neighbours=args.max_neighbours).numpy(),
            args.repeat,
        )
        bw, bc, base = _best(
            lambda: sklearn_radius_graph(
                coords, max_radius=args.max_radius, max_neighbours=args.max_neighbours
            ),
            args.repeat,
        )
        dw, dc, labels = _best(
            lambda: dbscan_labels(coords, eps=args.eps, min_samples=args.min_samples), args.repeat
        )
        sw, sc, ref = _best(
            lambda: DBSCAN(eps=args.eps, min_samples=args.min_samples).fit_predict(coords), args.repeat
        )
        same_graph = bool(np.array_equal(_pairs(ours, n), _pairs(base, n)))
        same_tracks = _same_clustering(labels, ref)
        row = {
            "hits": n,
            "edges": int(ours.shape[1]),
            "torch_cdist_graph_s": tw,
            "torch_cdist_graph_cpu_s": tc,
            "ours_graph_s": gw,
            "ours_graph_cpu_s": gc,
            "sklearn_graph_s": bw,
            "sklearn_graph_cpu_s": bc,
            "ours_dbscan_s": dw,
            "ours_dbscan_cpu_s": dc,
            "sklearn_dbscan_s": sw,
            "sklearn_dbscan_cpu_s": sc,
            "same_graph": same_graph,
            "same_tracks": same_tracks,
            "dim": args.dim,
            "max_radius": args.max_radius,
            "max_neighbours": args.max_neighbours,
            "eps": args.eps,
            "min_samples": args.min_samples,
        }
        rows.append(row)
        print(
            f"{n:>7} {row['edges']:>8} | {tc:>8.4f}s {gc:>10.4f}s {bc:>12.4f}s {bc / gc:>6.2f} | {dc:>10.4f}s {sc:>13.4f}s | "
            f"{same_graph and same_tracks}"
        )
    if args.json:
        args.json.write_text(json.dumps({"torch": torch.__version__, "rows": rows}, indent=2))
    return rows


if __name__ == "__main__":
    main()
