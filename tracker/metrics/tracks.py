"""Track-level evaluation (seed 003, SCIENCE.md §6): tracks are the connected components of the edges kept by
the classifier; each is matched to the particle that holds most of its hits.

Definitions (per event, then summed over events; the TrackML score is averaged over events):

- a *particle* counts when its ``pid`` is not 0 and it has at least ``min_hits`` hits in the graph; a *track*
  is a component with at least ``min_hits`` hits (isolated hits and pairs are not track candidates);
- *perfect match*: the track holds all hits of its majority particle and nothing else;
- *double majority* (DM): at least 50 % of the track's hits come from its majority particle and the track holds
  more than 50 % of that particle's hits;
- *LHC-style*: at least 75 % of the track's hits come from one particle;
- ``track_perfect_eff`` and ``track_dm_eff`` are matched tracks / particles; ``track_lhc_eff`` is matched tracks /
  tracks (normalised to reconstructed tracks, as in seed 003). The ``_pt0p9`` variants keep only particles
  (and, for LHC, tracks whose majority particle) with pT > 0.9 GeV; they are omitted when pT is unknown;
- ``trackml_score``: the TrackML challenge score over *all* components (every hit belongs to one): a component
  whose majority particle holds more than 50 % of the component and more than 50 % of its own hits contributes the
  weights of their common hits. Hit weights are ``weight`` when the graph has them (normalised to 1 per event),
  otherwise uniform over non-noise hits. Particle hit counts are those inside the graph (after its pT filter).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, fields

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

PT_CUT_TRACKS = 0.9


def connected_tracks(edge_index, scores, threshold: float, num_nodes: int) -> np.ndarray:
    """Component label of every node, using the edges with ``score >= threshold`` (direction ignored)."""
    ei = np.asarray(edge_index)
    keep = np.asarray(scores).ravel() >= threshold
    if ei.shape[0] != 2 or ei.shape[1] != keep.shape[0]:
        raise ValueError(f"edge_index must be [2, E] with E = {keep.shape[0]} scores, got {ei.shape}")
    rows, cols = ei[0, keep], ei[1, keep]
    adj = coo_matrix((np.ones(rows.shape[0], dtype=np.int8), (rows, cols)), shape=(num_nodes, num_nodes))
    _, labels = connected_components(adj, directed=False)
    return labels


@dataclass
class TrackCounts:
    """Counts of one or more events; add them with ``+`` and turn them into metrics with :meth:`metrics`."""

    n_particles: int = 0
    n_perfect: int = 0
    n_dm: int = 0
    n_tracks: int = 0
    n_lhc: int = 0
    n_particles_pt: int = 0
    n_perfect_pt: int = 0
    n_dm_pt: int = 0
    n_tracks_pt: int = 0
    n_lhc_pt: int = 0
    score_sum: float = 0.0
    n_events: int = 0
    pt_known: bool = True

    def __add__(self, other: TrackCounts) -> TrackCounts:
        out = TrackCounts()
        for f in fields(self):
            a, b = getattr(self, f.name), getattr(other, f.name)
            setattr(out, f.name, (a and b) if f.name == "pt_known" else a + b)
        return out

    def metrics(self) -> dict[str, float]:
        """``track_dm_eff``, ``track_perfect_eff``, ``track_lhc_eff``, ``trackml_score`` (+ ``_pt0p9`` variants)."""

        def r(a: int, b: int) -> float:
            return a / b if b > 0 else math.nan

        out = {
            "track_dm_eff": r(self.n_dm, self.n_particles),
            "track_perfect_eff": r(self.n_perfect, self.n_particles),
            "track_lhc_eff": r(self.n_lhc, self.n_tracks),
            "trackml_score": self.score_sum / self.n_events if self.n_events else math.nan,
        }
        if self.pt_known:
            out["track_dm_eff_pt0p9"] = r(self.n_dm_pt, self.n_particles_pt)
            out["track_perfect_eff_pt0p9"] = r(self.n_perfect_pt, self.n_particles_pt)
            out["track_lhc_eff_pt0p9"] = r(self.n_lhc_pt, self.n_tracks_pt)
        return out


def match_event(
    labels,
    pid,
    *,
    pt=None,
    weight=None,
    min_hits: int = 3,
    pt_cut: float = PT_CUT_TRACKS,
) -> TrackCounts:
    """Match the components ``labels`` (one per hit) of one event against the truth ``pid`` (0 = noise).

    Vectorised with ``np.unique`` over (component, particle) pairs: one pass per event, no per-hit Python loop
    (a bundle evaluates this for every member)."""
    labels = np.asarray(labels).ravel()
    pid = np.asarray(pid).ravel().astype(np.int64)
    n = labels.shape[0]
    if pid.shape[0] != n:
        raise ValueError(f"pid has {pid.shape[0]} entries for {n} hits")
    pt_arr = None if pt is None else np.asarray(pt, dtype=np.float64).ravel()
    real = pid > 0
    pt_known = pt_arr is not None and bool(np.isfinite(pt_arr[real]).any())
    if n == 0:
        return TrackCounts(score_sum=0.0, n_events=1, pt_known=False)

    _, track_of_hit, size = np.unique(labels, return_inverse=True, return_counts=True)  # per component
    particles, psize_all = np.unique(pid[real], return_counts=True)  # per particle (noise excluded)
    pids, pid_of_hit = np.unique(pid, return_inverse=True)
    pair, pair_n = np.unique(track_of_hit.astype(np.int64) * len(pids) + pid_of_hit, return_counts=True)
    pair_track, pair_pid = pair // len(pids), pids[pair % len(pids)]
    # majority particle of each component: most hits, ties broken by the smaller pid (noise 0 can be the majority)
    order = np.lexsort((pair_pid, -pair_n, pair_track))
    first = order[np.r_[True, pair_track[order][1:] != pair_track[order][:-1]]]  # one per component, in order
    major, n_major = pair_pid[first], pair_n[first]
    psize = np.zeros_like(n_major)  # hits of the majority particle in the event (0 for noise)
    if len(particles):
        at = np.minimum(np.searchsorted(particles, major), len(particles) - 1)
        psize = np.where(particles[at] == major, psize_all[at], 0)
    valid = major > 0
    frac_track = n_major / size
    frac_particle = np.where(psize > 0, n_major / np.maximum(psize, 1), 0.0)

    # TrackML score over all components
    if weight is not None:
        w = np.asarray(weight, dtype=np.float64).ravel()
    else:
        w = real.astype(np.float64)
    total = w.sum()
    good = valid & (frac_track > 0.5) & (frac_particle > 0.5)
    if total > 0 and bool(good.any()):
        # a hit scores when its component is good and the hit belongs to that component's majority particle
        on_good = good[track_of_hit] & (pid == major[track_of_hit])
        score = float(w[on_good].sum() / total)
    else:
        score = 0.0

    # efficiencies over track candidates and reconstructable particles
    is_track = size >= min_hits
    reco_particle = particles[psize_all >= min_hits]
    counted = valid & is_track & (psize >= min_hits)
    perfect = counted & (n_major == size) & (n_major == psize)
    dm = counted & (frac_track >= 0.5) & (frac_particle > 0.5)
    lhc = valid & is_track & (frac_track >= 0.75)

    out = TrackCounts(
        n_particles=int(reco_particle.shape[0]),
        n_perfect=int(perfect.sum()),
        n_dm=int(dm.sum()),
        n_tracks=int(is_track.sum()),
        n_lhc=int(lhc.sum()),
        score_sum=score,
        n_events=1,
        pt_known=pt_known,
    )
    if pt_known:
        # a particle's pT: its first hit with a pT value (hits of one particle carry the same pT)
        has_pt = real & ~np.isnan(pt_arr)
        with_pt, first_hit = np.unique(pid[has_pt], return_index=True)
        high = with_pt[pt_arr[has_pt][first_hit] > pt_cut]
        maj_high = np.isin(major, high)
        out.n_particles_pt = int(np.isin(reco_particle, high).sum())
        out.n_perfect_pt = int((perfect & maj_high).sum())
        out.n_dm_pt = int((dm & maj_high).sum())
        out.n_tracks_pt = int((is_track & maj_high).sum())
        out.n_lhc_pt = int((lhc & maj_high).sum())
    return out


def track_metrics(events: Iterable[TrackCounts]) -> dict[str, float]:
    """Sum the per-event counts and return the track metrics (NaN where a denominator is zero)."""
    total = TrackCounts(n_events=0)
    for c in events:
        total = total + c
    return total.metrics()
