"""Simulated TrackML-format events on the real detector geometry: the platform's embedded default data.

Physics model (details and formulas in docs/simulation.md):

* geometry: the real TrackML ``detectors.csv`` (module centres, rotation matrices whose columns are the module's
  u, v, w axes, half sizes with trapezoids, thickness, pitches); pixel volumes 7/8/9 by default, any volumes on
  request. Every TrackML module is either a barrel module (normal w in the transverse plane) or a disk module
  (w = ±z), so helix/plane intersections are closed-form;
* particles: resampled (with replacement) from the real particle table of TrackML event 1000, each rotated by a
  uniformly random azimuth about the beam axis (vertex and momentum together); multiplicity
  ``n_int ~ Poisson(pileup)`` interactions and ``N ~ Poisson(n_int · PARTICLES_PER_INTERACTION)`` particles.
  Particles that left no hit in the real event (``nhits == 0``, 14 %) are kept in the particles file with
  ``nhits = 0`` but not propagated, so the real hitless fraction is respected;
* propagation: helices in a solenoid field along z (``B_z = 2 T · (1 + a·cos φ)``, ``a`` = field_phi_modulation,
  piecewise constant between detector layers), layer by layer: for every live particle the next layer surface is
  found analytically, the modules near the crossing are looked up in a per-layer (φ, z|r) grid and the exact
  helix/module-plane intersections computed; every crossing inside a module's bounds is a hit (so overlapping
  modules give double hits). Multiple scattering (Highland, silicon X0 = 93.7 mm, per crossed module) is applied
  as a random angular kick after each layer. Particles stop when they leave the envelope of the simulated
  volumes or after half a turn (they would loop back);
* measurement: local (u, v) smeared by pitch/√12 (clipped to the module), transformed with the *nominal* module
  placement (so misalignment displaces hits as in a real detector); cells from the pixels crossed between entry
  and exit of the sensor; noise hits uniform on random live modules (``particle_id = 0``).

Everything is numpy-vectorised across particles; an event is deterministic for ``(seed, event_id)``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from tracker.data.sim_detector import DEFAULT_VOLUMES, DETECTORS_FILE, PARTICLES_FILE, Geometry, load_geometry
from tracker.data.sim_detector import resource_path as resource_path
from tracker.data.sim_propagation import SILICON_X0_MM, _propagate

#: Pileup 200 stands for the mean TrackML event, which is less busy than event 1000 (the particle table shipped):
#: the real pT > 1.5 GeV pixel graph of event 1000 (../shared/trackml/hitgraphs_plus_1GeV5, built with the
#: reference's selection) has 2,724 nodes, while the mean over real events is 2,270 (SCIENCE.md §3 table).
#: Hence 12,263 · 2,270 / 2,724 = 10,219 particles per mean event. This is the simulation's only calibrated
#: constant; every other realism figure (nodes at other pT cuts, edges, purity) follows from the physics.
REAL_EVENT_PARTICLES = 12_263
MEAN_EVENT_SCALE = 2_270 / 2_724
PARTICLES_PER_INTERACTION = REAL_EVENT_PARTICLES * MEAN_EVENT_SCALE / 200.0
MAX_CELLS_PER_HIT = 64


# --------------------------------------------------------------------------------------------- one event


def _sample_trapezoid(rng, minhu, maxhu, hv):
    """Uniform points inside trapezoids (rejection from the bounding rectangle)."""
    n = len(hv)
    u = np.empty(n)
    v = np.empty(n)
    todo = np.arange(n)
    while todo.size:
        uu = rng.uniform(-1, 1, todo.size) * maxhu[todo]
        vv = rng.uniform(-1, 1, todo.size) * hv[todo]
        hu = minhu[todo] + (maxhu[todo] - minhu[todo]) * (vv + hv[todo]) / (2 * hv[todo])
        ok = np.abs(uu) <= hu
        u[todo[ok]] = uu[ok]
        v[todo[ok]] = vv[ok]
        todo = todo[~ok]
    return u, v


def _cells(rng, geo: Geometry, mods, lu, lv, local_dir, is_noise):
    """Cells of each hit: the pixels crossed between entry and exit of the sensor (sampled along the track's
    projection on the module, at most ``MAX_CELLS_PER_HIT``); value ∝ the charge shared among them.

    Returns (hit index, ch0, ch1, value) arrays, grouped by hit in input order."""
    t2 = 2.0 * geo.thick[mods]
    dw = np.where(is_noise, 1.0, np.maximum(np.abs(local_dir[:, 2]), 1e-3))
    du = np.where(is_noise, 0.0, local_dir[:, 0] / dw * t2)
    dv = np.where(is_noise, 0.0, local_dir[:, 1] / dw * t2)
    pu, pv, hu, hv = geo.pitch_u[mods], geo.pitch_v[mods], geo.maxhu[mods], geo.hv[mods]
    nu = np.maximum(np.floor(2 * hu / pu), 1)
    nv = np.maximum(np.floor(2 * hv / pv), 1)

    def chan(u, v, ix=slice(None)):
        return (np.clip(np.floor((u + hu[ix]) / pu[ix]), 0, nu[ix] - 1).astype(np.int64),
                np.clip(np.floor((v + hv[ix]) / pv[ix]), 0, nv[ix] - 1).astype(np.int64))

    a0, a1 = chan(lu - du / 2, lv - dv / 2)
    b0, b1 = chan(lu + du / 2, lv + dv / 2)
    ncell = np.minimum(np.maximum(np.abs(b0 - a0), np.abs(b1 - a1)) + 1, MAX_CELLS_PER_HIT)
    hit_ix = np.repeat(np.arange(len(mods)), ncell)
    k = np.arange(hit_ix.size) - np.repeat(np.cumsum(ncell) - ncell, ncell)
    frac = (k + 0.5) / ncell[hit_ix] - 0.5
    c0, c1 = chan(lu[hit_ix] + frac * du[hit_ix], lv[hit_ix] + frac * dv[hit_ix], hit_ix)
    # samples along a straight segment visit each pixel in one run: drop the repeats
    keep = np.ones(hit_ix.size, bool)
    keep[1:] = (hit_ix[1:] != hit_ix[:-1]) | (c0[1:] != c0[:-1]) | (c1[1:] != c1[:-1])
    hit_ix, c0, c1 = hit_ix[keep], c0[keep], c1[keep]
    n_kept = np.bincount(hit_ix, minlength=len(mods))
    seg = np.sqrt(du**2 + dv**2 + t2**2)
    charge = np.where(is_noise, rng.uniform(0.05, 1.0, len(mods)), np.minimum(seg / t2, 4.0) / 4.0)
    value = charge[hit_ix] / n_kept[hit_ix] * rng.uniform(0.5, 1.5, hit_ix.size)
    return hit_ix, c0, c1, np.clip(value, 1e-4, 1.0)


def _weights(pid_idx: np.ndarray, order: np.ndarray, pt: np.ndarray, n_particles: int) -> np.ndarray:
    """TrackML-style hit weights: a pT weight times an order weight favouring each track's first and last hits;
    zero for particles with fewer than 4 hits; normalised to sum 1 over the event (noise added later with 0)."""
    w = np.zeros(pid_idx.size)
    if pid_idx.size == 0:
        return w
    nh = np.bincount(pid_idx, minlength=n_particles)
    w_pt = np.clip(0.2 + 0.8 * (pt[pid_idx] - 0.5) / 2.5, 0.2, 1.0)
    n = nh[pid_idx]
    from_end = np.minimum(order, n - 1 - order)
    w_order = np.where(from_end == 0, 3.0, np.where(from_end == 1, 2.0, 1.0))
    w = np.where(n >= 4, w_pt * w_order, 0.0)
    s = w.sum()
    return w / s if s > 0 else w


def _simulate_one(geo: Geometry, table: pd.DataFrame, rng: np.random.Generator, event_id: int, *, pileup: float,
                  noise_fraction: float, field_phi_modulation: float) -> dict[str, pd.DataFrame]:
    n_int = rng.poisson(pileup)
    n = int(rng.poisson(n_int * PARTICLES_PER_INTERACTION)) if n_int > 0 else 0
    rows = rng.integers(0, len(table), n)
    src = table.iloc[rows]
    rot_angle = rng.uniform(-np.pi, np.pi, n)
    cs, sn = np.cos(rot_angle), np.sin(rot_angle)
    v = src[["vx", "vy", "vz"]].to_numpy(np.float64)
    p = src[["px", "py", "pz"]].to_numpy(np.float64)
    vtx = np.stack([cs * v[:, 0] - sn * v[:, 1], sn * v[:, 0] + cs * v[:, 1], v[:, 2]], -1)
    mom = np.stack([cs * p[:, 0] - sn * p[:, 1], sn * p[:, 0] + cs * p[:, 1], p[:, 2]], -1)
    q = src["q"].to_numpy(np.int64)
    hits_real = src["nhits"].to_numpy() > 0
    prop = np.flatnonzero(hits_real & (q != 0))
    h = _propagate(geo, vtx[prop], mom[prop], q[prop], rng, field_phi_modulation=field_phi_modulation)
    pidx = prop[h.particle]  # index into this event's particles

    # order hits along each particle (step, then turning angle) for the weights
    o = np.lexsort((h.alpha, h.order, pidx))
    pidx, mods, tpos, tmom = pidx[o], h.module[o], h.pos[o], h.mom[o]
    first = np.r_[0, np.flatnonzero(np.diff(pidx)) + 1] if pidx.size else np.empty(0, np.int64)
    counts = np.diff(np.r_[first, pidx.size]) if pidx.size else np.empty(0, np.int64)
    rank = np.arange(pidx.size) - np.repeat(first, counts)
    pt_all = np.hypot(mom[:, 0], mom[:, 1])
    weight = _weights(pidx, rank, pt_all, n)

    # noise: noise_fraction of all hits, uniform on random live modules
    n_sig = pidx.size
    n_noise = round(noise_fraction / (1.0 - noise_fraction) * n_sig) if noise_fraction > 0 else 0
    live = np.flatnonzero(~geo.dead)
    nmods = live[rng.integers(0, live.size, n_noise)] if n_noise and live.size else np.empty(0, np.int64)
    nu, nv = _sample_trapezoid(rng, geo.minhu[nmods], geo.maxhu[nmods], geo.hv[nmods])

    # signal local coordinates on the true (possibly misaligned) module, smeared by pitch/sqrt(12)
    rel = tpos - geo.centre[mods]
    rot = geo.rot[mods]
    lu = np.einsum("hj,hj->h", rel, rot[:, :, 0])
    lv = np.einsum("hj,hj->h", rel, rot[:, :, 1])
    ldir = np.einsum("hjk,hj->hk", rot, tmom / np.linalg.norm(tmom, axis=1, keepdims=True))
    mu = np.clip(lu + rng.normal(0, 1, n_sig) * geo.pitch_u[mods] / np.sqrt(12.0), -geo.maxhu[mods], geo.maxhu[mods])
    mv = np.clip(lv + rng.normal(0, 1, n_sig) * geo.pitch_v[mods] / np.sqrt(12.0), -geo.hv[mods], geo.hv[mods])
    hu = geo.minhu[mods] + (geo.maxhu[mods] - geo.minhu[mods]) * (mv + geo.hv[mods]) / (2 * geo.hv[mods])
    mu = np.clip(mu, -hu, hu)

    all_mods = np.r_[mods, nmods]
    all_u = np.r_[mu, nu]
    all_v = np.r_[mv, nv]
    is_noise = np.r_[np.zeros(n_sig, bool), np.ones(n_noise, bool)]
    # measured global position from the nominal placement
    nrot = geo.rot[all_mods]
    meas = geo.nominal_centre[all_mods] + all_u[:, None] * nrot[:, :, 0] + all_v[:, None] * nrot[:, :, 1]
    # hit ids ordered like TrackML: by volume, layer, module (random order inside a module)
    key = np.lexsort((rng.random(all_mods.size), geo.module_id[all_mods], geo.layer_id[all_mods],
                      geo.volume[all_mods]))
    hit_id = np.empty(all_mods.size, np.int64)
    hit_id[key] = np.arange(1, all_mods.size + 1)

    pid = (np.arange(1, n + 1, dtype=np.int64) << 22) + rows.astype(np.int64)
    hit_pid = np.r_[pid[pidx], np.zeros(n_noise, np.int64)]
    nhits = np.bincount(pidx, minlength=n)
    hits = pd.DataFrame({"hit_id": hit_id, "x": meas[:, 0], "y": meas[:, 1], "z": meas[:, 2],
                         "volume_id": geo.volume[all_mods], "layer_id": geo.layer_id[all_mods],
                         "module_id": geo.module_id[all_mods]})
    truth = pd.DataFrame({"hit_id": hit_id, "particle_id": hit_pid,
                          "tx": np.r_[tpos[:, 0], meas[n_sig:, 0]], "ty": np.r_[tpos[:, 1], meas[n_sig:, 1]],
                          "tz": np.r_[tpos[:, 2], meas[n_sig:, 2]],
                          "tpx": np.r_[tmom[:, 0], np.zeros(n_noise)], "tpy": np.r_[tmom[:, 1], np.zeros(n_noise)],
                          "tpz": np.r_[tmom[:, 2], np.zeros(n_noise)], "weight": np.r_[weight, np.zeros(n_noise)]})
    hits = hits.iloc[key].reset_index(drop=True)
    truth = truth.iloc[key].reset_index(drop=True)
    # cells in hit-id order (key lists the hits by increasing hit id)
    ch_h, ch0, ch1, value = _cells(rng, geo, all_mods[key], np.r_[lu, nu][key], np.r_[lv, nv][key],
                                   np.r_[ldir, np.zeros((n_noise, 3))][key], is_noise[key])
    cells = pd.DataFrame({"hit_id": ch_h + 1, "ch0": ch0, "ch1": ch1, "value": value})
    particles = pd.DataFrame({"particle_id": pid, "particle_type": np.where(q >= 0, 211, -211) * (q != 0),
                              "vx": vtx[:, 0], "vy": vtx[:, 1], "vz": vtx[:, 2],
                              "px": mom[:, 0], "py": mom[:, 1], "pz": mom[:, 2], "q": q, "nhits": nhits})
    return {"hits": hits, "cells": cells, "particles": particles, "truth": truth}


# --------------------------------------------------------------------------------------------- public API

def _write_csv(df: pd.DataFrame, path: Path, decimals: dict[str, int] | None = None) -> None:
    """Write ``df`` as gzip CSV, fast (pyarrow's C++ writer) and byte-reproducible (gzip mtime 0).

    Floats are written as float32 (the precision of the TrackML files and of the reader's dtypes), rounded to
    ``decimals[column]`` decimal places where given (shorter text, faster to write and read)."""
    import gzip

    import pyarrow as pa
    import pyarrow.csv as pacsv

    cols = {}
    for name in df.columns:
        a = df[name].to_numpy()
        if a.dtype.kind == "f":
            if decimals and name in decimals:
                a = np.round(a, decimals[name])
            a = a.astype(np.float32)
        cols[str(name)] = a
    buf = pa.BufferOutputStream()
    pacsv.write_csv(pa.table(cols), buf, write_options=pacsv.WriteOptions(include_header=False))
    body = (",".join(map(str, df.columns)) + "\n").encode() + buf.getvalue().to_pybytes()
    path.write_bytes(gzip.compress(body, compresslevel=1, mtime=0))


#: decimals written per column: 0.1 µm for positions, 10 keV for momenta, 1e-4 for cell values
_DECIMALS = {"x": 4, "y": 4, "z": 4, "tx": 4, "ty": 4, "tz": 4, "vx": 5, "vy": 5, "vz": 5, "px": 5, "py": 5,
             "pz": 5, "tpx": 5, "tpy": 5, "tpz": 5, "value": 4}


def _package_version() -> str:
    try:
        from importlib.metadata import version

        return version("equitrack")
    except Exception:  # noqa: BLE001 - not installed (source tree)
        return "unknown"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _check_args(*, out_dir, n_events, seed, pileup, noise_fraction, first_event_id, field_phi_modulation,
                misalignment_mm, dead_module_fraction, volumes, available_volumes) -> None:
    def bad(name, value, expected):
        raise ValueError(f"{name}={value!r}: expected {expected}")

    if out_dir is None or str(out_dir) == "":
        bad("out_dir", out_dir, "a folder path")
    if isinstance(n_events, bool) or not isinstance(n_events, (int, np.integer)) or n_events < 1:
        bad("n_events", n_events, "an integer >= 1")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        bad("seed", seed, "an integer >= 0")
    if isinstance(first_event_id, bool) or not isinstance(first_event_id, (int, np.integer)) or not (
            0 <= first_event_id and first_event_id + n_events - 1 <= 999_999_999):
        bad("first_event_id", first_event_id, "an integer >= 0 with first_event_id + n_events - 1 <= 999999999")
    for name, value, lo, hi, expected in (
        ("pileup", pileup, 0.0, 10_000.0, "a number in (0, 10000]"),
        ("noise_fraction", noise_fraction, 0.0, 0.95, "a fraction in [0, 0.95]"),
        ("field_phi_modulation", field_phi_modulation, -0.9, 0.9, "a number in [-0.9, 0.9] (B_z = 2T·(1 + a·cos φ))"),
        ("misalignment_mm", misalignment_mm, 0.0, 10.0, "a shift in mm in [0, 10]"),
        ("dead_module_fraction", dead_module_fraction, 0.0, 1.0, "a fraction in [0, 1)"),
    ):
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) or not (
                math.isfinite(float(value)) and lo <= float(value) <= hi):
            bad(name, value, expected)
    if float(pileup) <= 0:
        bad("pileup", pileup, "a number in (0, 10000]")
    if float(dead_module_fraction) >= 1.0:
        bad("dead_module_fraction", dead_module_fraction, "a fraction in [0, 1)")
    vols = list(volumes) if not isinstance(volumes, (str, bytes)) else None
    if not vols or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) for v in vols):
        bad("volumes", volumes, f"a non-empty sequence of volume ids from {available_volumes}")
    unknown = sorted(set(vols) - set(available_volumes))
    if unknown:
        bad("volumes", volumes, f"volume ids from {available_volumes} (unknown: {unknown})")


def simulate_events(
    *,
    out_dir: str | Path,
    n_events: int,
    seed: int,
    pileup: float = 200.0,
    noise_fraction: float = 0.15,
    first_event_id: int = 1000,
    field_phi_modulation: float = 0.0,
    misalignment_mm: float = 0.0,
    dead_module_fraction: float = 0.0,
    volumes: Sequence[int] = DEFAULT_VOLUMES,
    progress: bool = False,
) -> list[Path]:
    """Simulate ``n_events`` events into ``out_dir``; return the event prefixes (``out_dir/eventNNNNNNNNN``).

    Writes ``eventNNNNNNNNN-{hits,cells,particles,truth}.csv.gz``, the nominal ``detectors.csv.gz`` and
    ``simulation.json`` (every parameter, formulas, package version, input checksums). Event ``i`` depends only
    on ``(seed, first_event_id + i)`` and the geometry knobs, never on ``n_events``. The detector knobs
    (misalignment, dead modules) are drawn once per call from ``seed`` and hold for all its events.
    """
    det_path = resource_path(DETECTORS_FILE)
    part_path = resource_path(PARTICLES_FILE)
    detectors = pd.read_csv(det_path)
    detectors = detectors.drop(columns=[c for c in detectors.columns if str(c).startswith("Unnamed")])
    available = sorted(int(v) for v in detectors["volume_id"].unique())
    _check_args(out_dir=out_dir, n_events=n_events, seed=seed, pileup=pileup, noise_fraction=noise_fraction,
                first_event_id=first_event_id, field_phi_modulation=field_phi_modulation,
                misalignment_mm=misalignment_mm, dead_module_fraction=dead_module_fraction, volumes=volumes,
                available_volumes=available)
    volumes = tuple(sorted(int(v) for v in volumes))
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"out_dir={str(out)!r}: exists and is not a folder")
    ids = set(range(int(first_event_id), int(first_event_id) + int(n_events)))
    stale = sorted(f.name for f in out.glob("event*-*.csv*") if out.is_dir()
                   and not any(f.name.startswith(f"event{i:09d}-") for i in ids))
    if stale:
        raise FileExistsError(f"out_dir={str(out)!r} holds events this call would not write (e.g. {stale[0]}): "
                              "use an empty folder so that simulation.json describes every event in it")
    out.mkdir(parents=True, exist_ok=True)
    table = pd.read_csv(part_path)
    geo = load_geometry(detectors, volumes=volumes, misalignment_mm=float(misalignment_mm),
                        dead_module_fraction=float(dead_module_fraction),
                        rng=np.random.default_rng([int(seed), 0]))
    _write_csv(detectors, out / "detectors.csv.gz")
    params = {
        "generator": "tracker.data.simulate", "equitrack_version": _package_version(),
        "numpy_version": np.__version__, "pandas_version": pd.__version__,
        "n_events": int(n_events), "seed": int(seed), "first_event_id": int(first_event_id),
        "pileup": float(pileup), "noise_fraction": float(noise_fraction),
        "field_phi_modulation": float(field_phi_modulation), "misalignment_mm": float(misalignment_mm),
        "dead_module_fraction": float(dead_module_fraction), "volumes": list(volumes),
        "models": {
            "field": "B_z(phi) = 2 T * (1 + field_phi_modulation * cos(phi)), phi = atan2(y, x) of the track at the "
                     "middle of each step between layers; B_x = B_y = 0",
            "misalignment": "each module centre shifted by N(0, misalignment_mm) in global x, y, z (no rotation); "
                            "hits made on the shifted modules, measured (u, v) written with the nominal placement",
            "dead_modules": "each module dead with probability dead_module_fraction: no signal or noise hits, "
                            "its material still scatters",
            "multiplicity": f"n_int ~ Poisson(pileup); N ~ Poisson(n_int * {PARTICLES_PER_INTERACTION:.4f}) "
                            f"particles resampled from {PARTICLES_FILE}",
            "multiple_scattering": f"Highland per layer, x/X0 = sum over crossed modules of 2*module_t/{SILICON_X0_MM}"
                                   "/|cos(incidence)|, pion mass",
            "resolution": "local u, v smeared by N(0, pitch/sqrt(12)), clipped to the module",
        },
        "n_modules": int(geo.dead.size), "n_dead_modules": int(geo.dead.sum()),
        "dead_modules": np.stack([geo.volume, geo.layer_id, geo.module_id], 1)[geo.dead].tolist(),
        "detectors_sha256": _sha256(det_path), "particles_sha256": _sha256(part_path),
    }
    (out / "simulation.json").write_text(json.dumps(params, indent=2) + "\n")
    prefixes, summary = [], []
    events = range(int(first_event_id), int(first_event_id) + int(n_events))
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(events, desc="simulating events", unit="event", file=sys.stderr)
        events = bar
    for event_id in events:
        rng = np.random.default_rng([int(seed), 1, int(event_id)])
        frames = _simulate_one(geo, table, rng, event_id, pileup=float(pileup), noise_fraction=float(noise_fraction),
                               field_phi_modulation=float(field_phi_modulation))
        prefix = out / f"event{event_id:09d}"
        for part in ("hits", "cells", "particles", "truth"):
            _write_csv(frames[part], Path(f"{prefix}-{part}.csv.gz"), _DECIMALS)
        prefixes.append(prefix)
        summary.append({"event_id": int(event_id), "particles": len(frames["particles"]),
                        "hits": len(frames["hits"]), "noise_hits": int((frames["truth"]["particle_id"] == 0).sum()),
                        "cells": len(frames["cells"])})
        if bar is not None:
            bar.set_postfix(hits=len(frames["hits"]), particles=len(frames["particles"]))
    params["events"] = summary
    (out / "simulation.json").write_text(json.dumps(params, indent=2) + "\n")
    return prefixes


# --------------------------------------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tracker.data.simulate --out DIR --events N --seed S [...]``."""
    ap = argparse.ArgumentParser(prog="python -m tracker.data.simulate",
                                 description="Simulate TrackML-format events on the real pixel geometry.")
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--events", type=int, required=True, help="number of events")
    ap.add_argument("--seed", type=int, required=True, help="random seed (>= 0)")
    ap.add_argument("--pileup", type=float, default=200.0, help="mean pileup (200 = a mean TrackML event)")
    ap.add_argument("--noise-fraction", type=float, default=0.15, help="fraction of noise hits (default 0.15)")
    ap.add_argument("--first-event-id", type=int, default=1000, help="id of the first event (default 1000)")
    ap.add_argument("--field-phi-modulation", type=float, default=0.0, help="a in B_z = 2T(1 + a cos φ)")
    ap.add_argument("--misalignment-mm", type=float, default=0.0, help="rms random module shift (mm)")
    ap.add_argument("--dead-module-fraction", type=float, default=0.0, help="fraction of dead modules")
    ap.add_argument("--volumes", type=int, nargs="+", default=list(DEFAULT_VOLUMES),
                    help="detector volumes to simulate (default: pixel 7 8 9)")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    try:
        prefixes = simulate_events(
            out_dir=args.out, n_events=args.events, seed=args.seed, pileup=args.pileup,
            noise_fraction=args.noise_fraction, first_event_id=args.first_event_id,
            field_phi_modulation=args.field_phi_modulation, misalignment_mm=args.misalignment_mm,
            dead_module_fraction=args.dead_module_fraction, volumes=args.volumes, progress=True)
    except (ValueError, NotADirectoryError, FileExistsError) as err:
        ap.error(str(err))
    dt = time.perf_counter() - t0
    events = json.loads((Path(args.out) / "simulation.json").read_text())["events"]
    k = len(prefixes)
    n_part = sum(e["particles"] for e in events) / k
    n_hits = sum(e["hits"] for e in events) / k
    noise = sum(e["noise_hits"] for e in events) / max(sum(e["hits"] for e in events), 1)
    print(f"wrote {k} events to {args.out} in {dt:.1f} s ({dt / k:.2f} s/event): {n_part:,.0f} particles, "
          f"{n_hits:,.0f} hits ({noise:.1%} noise) per event; parameters in {Path(args.out) / 'simulation.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
