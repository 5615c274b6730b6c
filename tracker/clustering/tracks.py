"""Tracks from a learned space and their metrics: DBSCAN (scikit-learn) on the condensation (or embedding)
coordinates, the ``eps`` × ``min_samples`` scan on validation, and the track metrics for particles above
``pt_min`` built on :func:`tracker.metrics.tracks.match_event` (definitions in docs/clustering.md).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
from sklearn.cluster import DBSCAN

from tracker.metrics.tracks import TrackCounts, match_event

TRACK_METRICS = ("track_dm_eff", "track_perfect_eff", "track_lhc_eff", "track_fake_rate", "trackml_score")


def singletons_for_noise(labels: np.ndarray) -> np.ndarray:
    """DBSCAN's noise label −1 replaced by a fresh label per hit (each such hit is its own component)."""
    labels = np.asarray(labels, dtype=np.int64).copy()
    noise = labels < 0
    start = labels.max() + 1 if labels.size and (~noise).any() else 0
    labels[noise] = start + np.arange(int(noise.sum()))
    return labels


def dbscan_labels(
    coords: np.ndarray, *, eps: float, min_samples: int, keep: np.ndarray | None = None
) -> np.ndarray:
    """A track label per hit: DBSCAN clusters of ``coords`` (hits where ``keep`` is false and DBSCAN's noise each
    get a label of their own)."""
    coords = np.asarray(coords, dtype=np.float64)
    n = coords.shape[0]
    keep = np.ones(n, bool) if keep is None else np.asarray(keep, bool)
    labels = np.full(n, -1, dtype=np.int64)
    if keep.any():
        labels[keep] = DBSCAN(eps=eps, min_samples=min_samples).fit_predict(coords[keep])
    return singletons_for_noise(labels)


def event_counts(labels, pid, pt, *, pt_min: float, min_hits: int = 3) -> TrackCounts:
    """Counts of one event (``match_event`` with its pT cut at ``pt_min``)."""
    return match_event(labels, pid, pt=pt, min_hits=min_hits, pt_cut=pt_min)


def track_metrics(counts: Sequence[TrackCounts]) -> dict[str, float]:
    """``track_dm_eff``, ``track_perfect_eff``, ``track_lhc_eff`` over particles (tracks) above ``pt_min``,
    ``track_fake_rate`` over all tracks, ``trackml_score`` averaged over events (docs/clustering.md)."""
    total = TrackCounts(n_events=0)
    for c in counts:
        total = total + c

    def r(a: float, b: float) -> float:
        return a / b if b > 0 else math.nan

    if total.pt_known:
        dm, perfect, particles = total.n_dm_pt, total.n_perfect_pt, total.n_particles_pt
        lhc, tracks = total.n_lhc_pt, total.n_tracks_pt
    else:
        dm, perfect, particles = total.n_dm, total.n_perfect, total.n_particles
        lhc, tracks = total.n_lhc, total.n_tracks
    return {
        "track_dm_eff": r(dm, particles),
        "track_perfect_eff": r(perfect, particles),
        "track_lhc_eff": r(lhc, tracks),
        "track_fake_rate": r(total.n_tracks - total.n_lhc, total.n_tracks),
        "trackml_score": total.score_sum / total.n_events if total.n_events else math.nan,
    }


def particle_table(labels, pid, pt, eta, *, min_hits: int = 3) -> pd.DataFrame:
    """One row per particle (pid > 0) with at least ``min_hits`` hits: ``pid``, ``pt``, ``eta`` (mean over its hits),
    ``n_hits`` and whether a track (≥ ``min_hits`` hits) matches it by double majority (``dm``) or perfectly
    (``perfect``), with the majority rule of :func:`tracker.metrics.tracks.match_event` (most hits, ties: smaller
    pid). The efficiency-vs-pT and vs-η dashboards bin these rows."""
    labels = np.asarray(labels).ravel()
    pid = np.asarray(pid).ravel().astype(np.int64)
    pt = np.asarray(pt, dtype=np.float64).ravel()
    eta = np.asarray(eta, dtype=np.float64).ravel()
    cols = ["pid", "pt", "eta", "n_hits", "dm", "perfect"]
    real = pid > 0
    if not real.any():
        return pd.DataFrame(columns=cols)
    _, track_of_hit, size = np.unique(labels, return_inverse=True, return_counts=True)
    particles, first, psize = np.unique(pid[real], return_index=True, return_counts=True)
    eta_mean = np.bincount(np.searchsorted(particles, pid[real]), weights=eta[real]) / psize
    pids, pid_of_hit = np.unique(pid, return_inverse=True)
    pair, pair_n = np.unique(track_of_hit.astype(np.int64) * len(pids) + pid_of_hit, return_counts=True)
    pair_track, pair_pid = pair // len(pids), pids[pair % len(pids)]
    order = np.lexsort((pair_pid, -pair_n, pair_track))
    top = order[
        np.r_[True, pair_track[order][1:] != pair_track[order][:-1]]
    ]  # the majority pair of each track
    major, n_major, tsize = pair_pid[top], pair_n[top], size[pair_track[top]]
    at = np.searchsorted(particles, major)
    ok = (major > 0) & (tsize >= min_hits)
    at_ok, n_ok, t_ok = at[ok], n_major[ok], tsize[ok]
    p_ok = psize[at_ok]
    dm = np.zeros(len(particles), bool)
    perfect = np.zeros(len(particles), bool)
    dm[at_ok[(n_ok / t_ok >= 0.5) & (n_ok / p_ok > 0.5)]] = True
    perfect[at_ok[(n_ok == t_ok) & (n_ok == p_ok)]] = True
    table = pd.DataFrame(
        {
            "pid": particles,
            "pt": pt[real][first],
            "eta": eta_mean,
            "n_hits": psize,
            "dm": dm,
            "perfect": perfect,
        }
    )
    return table[table["n_hits"] >= min_hits].reset_index(drop=True)


def scan_dbscan(
    events: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]],
    *,
    eps: Sequence[float],
    min_samples: Sequence[int],
    metric: str,
    pt_min: float,
    min_hits: int = 3,
) -> tuple[tuple[float, int], dict[str, float], list[dict[str, float]]]:
    """Pick (eps, min_samples) maximising ``metric`` over ``events`` = (coords, keep, pid, pt) per event (ties: the
    first in scan order). Returns the choice, its metrics and one row per tried pair."""
    if metric not in TRACK_METRICS:
        raise ValueError(f"scan metric {metric!r}: expected one of {', '.join(TRACK_METRICS)}")
    rows, best, best_metrics = [], None, {}
    for e, m in itertools.product(eps, min_samples):
        counts = [
            event_counts(
                dbscan_labels(c, eps=e, min_samples=m, keep=k), pid, pt, pt_min=pt_min, min_hits=min_hits
            )
            for c, k, pid, pt in events
        ]
        metrics = track_metrics(counts)
        rows.append({"eps": float(e), "min_samples": int(m), **metrics})
        value = metrics[metric]
        value = -math.inf if not math.isfinite(value) else value
        if best is None or value > best[0]:
            best, best_metrics = (value, (float(e), int(m))), metrics
    assert best is not None
    return best[1], best_metrics, rows


def evaluate_tracks(
    events, label_fn: Callable[..., np.ndarray], *, pt_min: float, min_hits: int = 3
) -> dict[str, float]:
    """Track metrics of ``events`` = (coords, keep, pid, pt) with ``label_fn(coords, keep)`` giving the labels."""
    return track_metrics(
        [event_counts(label_fn(c, k), pid, pt, pt_min=pt_min, min_hits=min_hits) for c, k, pid, pt in events]
    )
