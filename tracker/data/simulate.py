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
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

# --------------------------------------------------------------------------------------------- constants

#: file names of the public TrackML data shipped in ``tracker/data/resources``
DETECTORS_FILE = "detectors.csv.gz"
PARTICLES_FILE = "event000001000-particles.csv.gz"

B_NOMINAL_T = 2.0
#: GeV/(T·m): R[m] = pT[GeV] / (C_LIGHT · B[T])  (the "0.3" of R = pT / (0.3 B))
C_LIGHT = 0.299792458
SILICON_X0_MM = 93.7
PION_MASS_GEV = 0.13957
#: Pileup 200 stands for the mean TrackML event, which is less busy than event 1000 (the particle table shipped):
#: the real pT > 1.5 GeV pixel graph of event 1000 (../shared/trackml/hitgraphs_plus_1GeV5, built with the
#: reference's selection) has 2,724 nodes, while the mean over real events is 2,270 (SCIENCE.md §3 table).
#: Hence 12,263 · 2,270 / 2,724 = 10,219 particles per mean event. This is the simulation's only calibrated
#: constant; every other realism figure (nodes at other pT cuts, edges, purity) follows from the physics.
REAL_EVENT_PARTICLES = 12_263
MEAN_EVENT_SCALE = 2_270 / 2_724
PARTICLES_PER_INTERACTION = REAL_EVENT_PARTICLES * MEAN_EVENT_SCALE / 200.0

DEFAULT_VOLUMES: tuple[int, ...] = (7, 8, 9)
MAX_CELLS_PER_HIT = 64
_EPS_ALPHA = 1e-9


# --------------------------------------------------------------------------------------------- resources


def resource_path(name: str) -> Path:
    """Path of a data file shipped in ``tracker/data/resources`` (the public TrackML geometry and particles)."""
    ref = resources.files(__package__ or "tracker.data").joinpath("resources", name)
    path = Path(str(ref))
    if not path.is_file():
        raise FileNotFoundError(f"packaged resource {name!r} not found at {path} (tracker/data/resources/{name})")
    return path


# --------------------------------------------------------------------------------------------- geometry


@dataclass
class Geometry:
    """Module arrays of the simulated volumes plus the per-layer lookup grid used for candidate search."""

    volume: np.ndarray  # [M] int
    layer_id: np.ndarray  # [M] int
    module_id: np.ndarray  # [M] int
    centre: np.ndarray  # [M, 3] true (possibly misaligned) centre, mm
    nominal_centre: np.ndarray  # [M, 3] nominal centre (what the written detectors file says)
    rot: np.ndarray  # [M, 3, 3] columns u, v, w in global coordinates
    minhu: np.ndarray
    maxhu: np.ndarray
    hv: np.ndarray
    thick: np.ndarray  # half thickness module_t, mm
    pitch_u: np.ndarray
    pitch_v: np.ndarray
    barrel: np.ndarray  # [M] bool: normal in the transverse plane (else w = ±z)
    layer: np.ndarray  # [M] internal layer index 0..L-1
    dead: np.ndarray  # [M] bool
    # per internal layer
    layer_barrel: np.ndarray  # [L] bool
    layer_pos: np.ndarray  # [L] mean module radius (barrel) or z (disk), mm
    layer_lo: np.ndarray  # [L] barrel: smallest module-plane distance to the axis; disk: lowest module z
    layer_hi: np.ndarray  # [L] barrel: largest radius of a module point; disk: highest module z
    grid_offset: np.ndarray  # [L] first bin of the layer in ``cand``
    grid_nphi: np.ndarray  # [L]
    grid_nzeta: np.ndarray  # [L]
    grid_zeta0: np.ndarray  # [L]
    grid_dzeta: np.ndarray  # [L]
    cand: np.ndarray  # [n_bins, K] module indices, -1 padded
    r_env: float
    z_env: float


def _wrap(a: np.ndarray) -> np.ndarray:
    return (a + np.pi) % (2.0 * np.pi) - np.pi


def _outline_points(c: np.ndarray, rot: np.ndarray, minhu, maxhu, hv, n: int = 9) -> np.ndarray:
    """Points along the trapezoid outline of each module in global coordinates: [M, 4n, 3]."""
    t = np.linspace(-1.0, 1.0, n)
    pts = []
    for v_sign in (-1.0, 1.0):  # the two u edges at v = ∓hv
        hu = minhu if v_sign < 0 else maxhu
        u = hu[:, None] * t[None, :]
        v = np.broadcast_to((v_sign * hv)[:, None], u.shape)
        pts.append((u, v))
    for u_sign in (-1.0, 1.0):  # the two slanted v edges
        v = hv[:, None] * t[None, :]
        hu = minhu[:, None] + (maxhu - minhu)[:, None] * (v + hv[:, None]) / (2.0 * hv[:, None])
        pts.append((u_sign * hu, v))
    u = np.concatenate([p[0] for p in pts], axis=1)
    v = np.concatenate([p[1] for p in pts], axis=1)
    return c[:, None, :] + u[..., None] * rot[:, None, :, 0] + v[..., None] * rot[:, None, :, 1]


def load_geometry(
    detectors: pd.DataFrame,
    *,
    volumes: Sequence[int] = DEFAULT_VOLUMES,
    misalignment_mm: float = 0.0,
    dead_module_fraction: float = 0.0,
    rng: np.random.Generator | None = None,
) -> Geometry:
    """Module arrays and lookup grid for ``volumes``; misalignment and dead modules drawn from ``rng``."""
    d = detectors[detectors["volume_id"].isin(list(volumes))].reset_index(drop=True)
    missing = sorted(set(volumes) - set(d["volume_id"].unique().tolist()))
    if missing:
        raise ValueError(f"volumes {missing} not in the detector geometry (available: "
                         f"{sorted(detectors['volume_id'].unique().tolist())})")
    rng = rng if rng is not None else np.random.default_rng(0)
    m = len(d)
    centre0 = d[["cx", "cy", "cz"]].to_numpy(np.float64)
    rot = d[["rot_xu", "rot_xv", "rot_xw", "rot_yu", "rot_yv", "rot_yw", "rot_zu", "rot_zv", "rot_zw"]].to_numpy(
        np.float64).reshape(m, 3, 3)
    # the file's matrices are rounded to 6 digits (|w| = 1 ± 5e-7, which is 26 µm at R = 50 m in the closed-form
    # helix/plane intersection): use the nearest orthonormal matrices
    uu, _, vt = np.linalg.svd(rot)
    rot = uu @ vt
    w = rot[:, :, 2]
    barrel = np.abs(w[:, 2]) < 1e-6
    disk = np.abs(np.abs(w[:, 2]) - 1.0) < 1e-6
    if not np.all(barrel | disk):
        bad = d.loc[~(barrel | disk), ["volume_id", "layer_id", "module_id"]].iloc[0].tolist()
        raise ValueError(f"module {bad}: normal neither transverse nor along z; not supported")
    shift = rng.normal(0.0, misalignment_mm, size=(m, 3)) if misalignment_mm > 0 else np.zeros((m, 3))
    centre = centre0 + shift
    dead = rng.random(m) < dead_module_fraction if dead_module_fraction > 0 else np.zeros(m, bool)
    minhu = d["module_minhu"].to_numpy(np.float64)
    maxhu = d["module_maxhu"].to_numpy(np.float64)
    hv = d["module_hv"].to_numpy(np.float64)

    keys = d["volume_id"].to_numpy() * 1000 + d["layer_id"].to_numpy()
    ukeys, layer = np.unique(keys, return_inverse=True)
    n_layers = len(ukeys)
    pts = _outline_points(centre, rot, minhu, maxhu, hv)
    pts_r = np.hypot(pts[..., 0], pts[..., 1])
    pts_phi = np.arctan2(pts[..., 1], pts[..., 0])
    cphi = np.arctan2(centre[:, 1], centre[:, 0])
    dphi = _wrap(pts_phi - cphi[:, None])
    phi_lo, phi_hi = cphi + dphi.min(1), cphi + dphi.max(1)

    layer_barrel = np.zeros(n_layers, bool)
    layer_pos = np.zeros(n_layers)
    layer_lo = np.zeros(n_layers)
    layer_hi = np.zeros(n_layers)
    offs, nphis, nzetas, zeta0s, dzetas, tables = [], [], [], [], [], []
    n_bins = 0
    sig = 3.0 * misalignment_mm
    for li in range(n_layers):
        sel = np.flatnonzero(layer == li)
        is_b = bool(barrel[sel[0]])
        layer_barrel[li] = is_b
        if is_b:
            layer_pos[li] = float(np.hypot(centre0[sel, 0], centre0[sel, 1]).mean())
            plane_d = np.abs(np.einsum("mj,mj->m", centre[sel, :2], w[sel, :2]))
            layer_lo[li] = float(plane_d.min()) - 0.01
            layer_hi[li] = float(pts_r[sel].max()) + 0.01
            zeta_lo, zeta_hi = pts[sel, :, 2].min(1), pts[sel, :, 2].max(1)
            dev = np.abs(pts_r[sel] - layer_pos[li]).max() + sig
            rmin = max(pts_r[sel].min(), 1.0)
            cot_max = max(np.abs(pts[sel, :, 2]).max() / rmin, 1.0)
            m_zeta = dev * cot_max + 1.0 + sig
            m_phi = 3.0 * dev / rmin + 0.01
        else:
            layer_pos[li] = float(centre0[sel, 2].mean())
            layer_lo[li] = float(centre[sel, 2].min())
            layer_hi[li] = float(centre[sel, 2].max())
            zeta_lo, zeta_hi = pts_r[sel].min(1), pts_r[sel].max(1)
            dev = np.abs(centre[sel, 2] - layer_pos[li]).max() + sig
            rmin = max(pts_r[sel].min(), 1.0)
            m_zeta = dev * 1.0 + 1.0 + sig
            m_phi = m_zeta / rmin + 0.01
        nphi = 128
        dzeta = max(float(np.median(zeta_hi - zeta_lo)) / 4.0, 5.0)
        z0 = float(zeta_lo.min() - m_zeta - dzeta)
        nzeta = math.ceil((zeta_hi.max() + m_zeta + dzeta - z0) / dzeta)
        # bin overlap tests: module interval expanded by the margins vs the bin interval
        edges_phi = -np.pi + 2 * np.pi * np.arange(nphi + 1) / nphi
        blo, bhi = edges_phi[:-1], edges_phi[1:]
        mlo, mhi = phi_lo[sel] - m_phi, phi_hi[sel] + m_phi
        mid, half = 0.5 * (mlo + mhi), 0.5 * (mhi - mlo)
        bmid, bhalf = 0.5 * (blo + bhi), 0.5 * (bhi - blo)
        phi_ok = np.abs(_wrap(bmid[:, None] - mid[None, :])) <= (bhalf[:, None] + half[None, :])
        zedges = z0 + dzeta * np.arange(nzeta + 1)
        z_ok = (zedges[:-1, None] <= (zeta_hi + m_zeta)[None, :]) & (
            zedges[1:, None] >= (zeta_lo - m_zeta)[None, :])
        full = phi_ok[:, None, :] & z_ok[None, :, :]  # [nphi, nzeta, M_l]
        full = full.reshape(nphi * nzeta, len(sel))
        tables.append((full, sel))
        offs.append(n_bins)
        nphis.append(nphi)
        nzetas.append(nzeta)
        zeta0s.append(z0)
        dzetas.append(dzeta)
        n_bins += nphi * nzeta
    kmax = max(int(t[0].sum(1).max()) for t in tables)
    cand = np.full((n_bins, kmax), -1, np.int64)
    for off, (full, sel) in zip(offs, tables):
        rows, cols = np.nonzero(full)
        counts = np.bincount(rows, minlength=full.shape[0])
        starts = np.cumsum(counts) - counts
        slot = np.arange(rows.size) - starts[rows]
        cand[off + rows, slot] = sel[cols]
    r_env = float(pts_r.max() + 5.0)
    z_env = float(np.abs(pts[..., 2]).max() + 5.0)
    return Geometry(
        volume=d["volume_id"].to_numpy(np.int64), layer_id=d["layer_id"].to_numpy(np.int64),
        module_id=d["module_id"].to_numpy(np.int64), centre=centre, nominal_centre=centre0, rot=rot,
        minhu=minhu, maxhu=maxhu, hv=hv, thick=d["module_t"].to_numpy(np.float64),
        pitch_u=d["pitch_u"].to_numpy(np.float64), pitch_v=d["pitch_v"].to_numpy(np.float64), barrel=barrel,
        layer=layer.astype(np.int64), dead=dead, layer_barrel=layer_barrel, layer_pos=layer_pos,
        layer_lo=layer_lo, layer_hi=layer_hi,
        grid_offset=np.array(offs, np.int64), grid_nphi=np.array(nphis, np.int64),
        grid_nzeta=np.array(nzetas, np.int64), grid_zeta0=np.array(zeta0s), grid_dzeta=np.array(dzetas),
        cand=cand, r_env=r_env, z_env=z_env,
    )


# --------------------------------------------------------------------------------------------- helix algebra
# A track state is (x0, y0, z0, φ0, λ, pT, ω): position, azimuth of the momentum, λ = pz/pT, and the sense of
# rotation ω = -sign(q·B). With R the transverse radius, after a turning angle α ≥ 0 the track is at
#   x = x0 + 2R sin(α/2) cos(φ0 + ωα/2),  y = y0 + 2R sin(α/2) sin(φ0 + ωα/2),  z = z0 + R α λ
# with momentum azimuth φ0 + ωα. The circle's centre is C = (x0 − ωR sin φ0, y0 + ωR cos φ0).


def _helix_point(x0, y0, z0, phi0, lam, radius, omega, alpha):
    chord = 2.0 * radius * np.sin(0.5 * alpha)
    mid = phi0 + omega * 0.5 * alpha
    return x0 + chord * np.cos(mid), y0 + chord * np.sin(mid), z0 + radius * alpha * lam


def _first_alpha(psi_a, psi_b, psi0, omega, ok):
    """Smallest positive turning angle reaching circle angle ψa or ψb (inf where ``ok`` is False)."""
    a1 = np.mod(omega * (psi_a - psi0), 2.0 * np.pi)
    a2 = np.mod(omega * (psi_b - psi0), 2.0 * np.pi)
    a1 = np.where(a1 > _EPS_ALPHA, a1, np.inf)
    a2 = np.where(a2 > _EPS_ALPHA, a2, np.inf)
    return np.where(ok, np.minimum(a1, a2), np.inf)


def _alpha_cylinder(cx, cy, radius, psi0, omega, rho):
    """Turning angle to the first crossing of the cylinder r = ρ (inf if none)."""
    dist = np.hypot(cx, cy)
    with np.errstate(divide="ignore", invalid="ignore"):
        q = -1.0 + (rho**2 - (dist - radius) ** 2) / (2.0 * radius * dist)
    ok = np.abs(q) <= 1.0
    ac = np.arccos(np.clip(q, -1.0, 1.0))
    gamma = np.arctan2(cy, cx)
    return _first_alpha(gamma + ac, gamma - ac, psi0, omega, ok)


def _alpha_line(cx, cy, radius, psi0, omega, nx, ny, dist):
    """Turning angle to the first crossing of the transverse line n·(x, y) = dist (a barrel module plane)."""
    q = (dist - (nx * cx + ny * cy)) / radius
    ok = np.abs(q) <= 1.0
    ac = np.arccos(np.clip(q, -1.0, 1.0))
    beta = np.arctan2(ny, nx)
    return _first_alpha(beta + ac, beta - ac, psi0, omega, ok)


def _alpha_plane_z(z0, lam, radius, zp):
    """Turning angle to the plane z = zp (inf if behind or parallel)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        a = (zp - z0) / (radius * lam)
    return np.where(np.isfinite(a) & (a > _EPS_ALPHA), a, np.inf)


def _highland(p, x_over_x0, mass=PION_MASS_GEV):
    """RMS plane scattering angle (rad) of a unit-charge particle of momentum p (GeV) through x/X0."""
    beta = p / np.sqrt(p * p + mass * mass)
    x = np.maximum(x_over_x0, 1e-12)
    return 0.0136 / (beta * p) * np.sqrt(x) * (1.0 + 0.038 * np.log(x / (beta * beta)))


# --------------------------------------------------------------------------------------------- propagation


@dataclass
class _Hits:
    particle: np.ndarray  # index into the propagated-particle arrays
    module: np.ndarray
    pos: np.ndarray  # [H, 3] true crossing position
    mom: np.ndarray  # [H, 3] momentum at the crossing
    order: np.ndarray  # step index (for the hit order along the track)
    alpha: np.ndarray  # cumulative turning angle (orders hits within a step)


def _propagate(geo: Geometry, vtx: np.ndarray, mom: np.ndarray, q: np.ndarray, rng: np.random.Generator,
               *, field_phi_modulation: float) -> _Hits:
    """Propagate particles (vertex [P,3] mm, momentum [P,3] GeV, charge [P]) through ``geo``; return hits."""
    n = len(q)
    x, y, z = vtx[:, 0].copy(), vtx[:, 1].copy(), vtx[:, 2].copy()
    pt = np.hypot(mom[:, 0], mom[:, 1])
    ptot = np.linalg.norm(mom, axis=1)
    phi = np.arctan2(mom[:, 1], mom[:, 0])
    lam = mom[:, 2] / np.maximum(pt, 1e-12)
    turned = np.zeros(n)
    n_layers = len(geo.layer_pos)
    visited = np.zeros((n, n_layers), bool)
    alive = (pt > 1e-6) & (np.hypot(x, y) < geo.r_env) & (np.abs(z) < geo.z_env) & (q != 0)
    out_p, out_m, out_pos, out_mom, out_ord, out_alpha = [], [], [], [], [], []
    barrel_l = np.flatnonzero(geo.layer_barrel)
    disk_l = np.flatnonzero(~geo.layer_barrel)
    a_mod = float(field_phi_modulation)
    mod_u, mod_v, mod_w = geo.rot[:, :, 0], geo.rot[:, :, 1], geo.rot[:, :, 2]
    mod_wx, mod_wy = mod_w[:, 0], mod_w[:, 1]
    mod_d = mod_wx * geo.centre[:, 0] + mod_wy * geo.centre[:, 1]  # barrel planes: w·(x, y) = d
    for step in range(n_layers + 1):
        idx = np.flatnonzero(alive)
        if idx.size == 0:
            break
        px_, py_, pz_ = x[idx], y[idx], z[idx]
        ph, lm, pT = phi[idx], lam[idx], pt[idx]
        sign_q = np.sign(q[idx]).astype(np.float64)

        bfield = np.full(idx.size, B_NOMINAL_T)
        for it in range(2 if a_mod != 0.0 else 1):
            radius = pT / (C_LIGHT * bfield) * 1000.0  # mm; bfield > 0 since |a| < 1
            omega = -sign_q
            cx = px_ - omega * radius * np.sin(ph)
            cy = py_ + omega * radius * np.cos(ph)
            psi0 = np.arctan2(py_ - cy, px_ - cx)
            alphas = np.full((idx.size, n_layers), np.inf)
            if barrel_l.size:  # every module point of a barrel layer lies outside r = layer_lo
                alphas[:, barrel_l] = _alpha_cylinder(cx[:, None], cy[:, None], radius[:, None], psi0[:, None],
                                                      omega[:, None], geo.layer_lo[barrel_l][None, :])
            if disk_l.size:
                alphas[:, disk_l] = _alpha_plane_z(pz_[:, None], lm[:, None], radius[:, None],
                                                   geo.layer_pos[disk_l][None, :])
            alphas[visited[idx]] = np.inf
            nxt = np.argmin(alphas, axis=1)
            a_next = alphas[np.arange(idx.size), nxt]
            if a_mod != 0.0 and it == 0:
                half = np.where(np.isfinite(a_next), 0.5 * a_next, 0.0)
                mx, my, _ = _helix_point(px_, py_, pz_, ph, lm, radius, omega, half)
                bfield = B_NOMINAL_T * (1.0 + a_mod * np.cos(np.arctan2(my, mx)))
        # envelope and loop limit
        a_env = np.minimum(_alpha_cylinder(cx, cy, radius, psi0, omega, geo.r_env),
                           np.minimum(_alpha_plane_z(pz_, lm, radius, geo.z_env),
                                      _alpha_plane_z(pz_, lm, radius, -geo.z_env)))
        go = np.isfinite(a_next) & (a_next < a_env) & (turned[idx] + a_next <= np.pi)
        alive[idx[~go]] = False
        if not go.any():
            break
        sub = np.flatnonzero(go)
        gi = idx[sub]
        li = nxt[sub]
        r_, om_, cx_, cy_, psi0_ = radius[sub], omega[sub], cx[sub], cy[sub], psi0[sub]
        x0_, y0_, z0_, ph_, lm_ = px_[sub], py_[sub], pz_[sub], ph[sub], lm[sub]
        an = a_next[sub]
        # candidate modules: grid look-ups where the track enters and leaves the layer's slab of modules
        # (barrel: cylinders r = layer_lo and layer_hi; disks: planes z = layer_lo and layer_hi)
        is_b = geo.layer_barrel[li]
        a_in = np.where(is_b, an, _alpha_plane_z(z0_, lm_, r_, np.where(lm_ >= 0, geo.layer_lo[li], geo.layer_hi[li])))
        a_out = np.where(is_b, _alpha_cylinder(cx_, cy_, r_, psi0_, om_, geo.layer_hi[li]),
                         _alpha_plane_z(z0_, lm_, r_, np.where(lm_ >= 0, geo.layer_hi[li], geo.layer_lo[li])))
        a_in = np.where(np.isfinite(a_in), a_in, an)
        a_out = np.where(np.isfinite(a_out), a_out, a_in)
        looked = []
        for a_q in (a_in, a_out):
            qx, qy, qz = _helix_point(x0_, y0_, z0_, ph_, lm_, r_, om_, a_q)
            zeta = np.where(is_b, qz, np.hypot(qx, qy))
            iphi = np.clip(((np.arctan2(qy, qx) + np.pi) / (2 * np.pi) * geo.grid_nphi[li]).astype(np.int64), 0,
                           geo.grid_nphi[li] - 1)
            izeta = np.floor((zeta - geo.grid_zeta0[li]) / geo.grid_dzeta[li]).astype(np.int64)
            inside = (izeta >= 0) & (izeta < geo.grid_nzeta[li])
            izeta = np.clip(izeta, 0, geo.grid_nzeta[li] - 1)
            found = geo.cand[geo.grid_offset[li] + iphi * geo.grid_nzeta[li] + izeta]  # [S, K]
            looked.append(np.where(inside[:, None], found, -1))
        cands = np.sort(np.concatenate(looked, axis=1), axis=1)
        cands[:, 1:][cands[:, 1:] == cands[:, :-1]] = -1  # a module found by both look-ups counts once
        valid = cands >= 0
        mods = np.where(valid, cands, 0)
        # first crossing of each candidate's plane (all candidates of a row belong to the same layer)
        am = np.full(mods.shape, np.inf)
        rb, rd = np.flatnonzero(is_b), np.flatnonzero(~is_b)
        if rb.size:
            mb = mods[rb]
            am[rb] = _alpha_line(cx_[rb, None], cy_[rb, None], r_[rb, None], psi0_[rb, None], om_[rb, None],
                                 mod_wx[mb], mod_wy[mb], mod_d[mb])
        if rd.size:
            am[rd] = _alpha_plane_z(z0_[rd, None], lm_[rd, None], r_[rd, None], geo.centre[mods[rd], 2])
        am[~valid | (am > (np.pi - turned[gi])[:, None])] = np.inf
        # crossing points and local coordinates, only where a plane is crossed
        si, ki = np.nonzero(np.isfinite(am))
        mk, ak = mods[si, ki], am[si, ki]
        hx, hy, hz = _helix_point(x0_[si], y0_[si], z0_[si], ph_[si], lm_[si], r_[si], om_[si], ak)
        rx, ry, rz = hx - geo.centre[mk, 0], hy - geo.centre[mk, 1], hz - geo.centre[mk, 2]
        lu = rx * mod_u[mk, 0] + ry * mod_u[mk, 1] + rz * mod_u[mk, 2]
        lv = rx * mod_v[mk, 0] + ry * mod_v[mk, 1] + rz * mod_v[mk, 2]
        hv = geo.hv[mk]
        hu = geo.minhu[mk] + (geo.maxhu[mk] - geo.minhu[mk]) * (lv + hv) / (2 * hv)
        inb = (np.abs(lv) <= hv) & (np.abs(lu) <= hu)
        si, mk, ak, hx, hy, hz = si[inb], mk[inb], ak[inb], hx[inb], hy[inb], hz[inb]
        # multiple scattering material of every crossed module (dead ones too)
        ang = ph_[si] + om_[si] * ak
        sin_t = 1.0 / np.sqrt(1.0 + lm_[si] ** 2)
        cos_inc = np.abs((np.cos(ang) * mod_w[mk, 0] + np.sin(ang) * mod_w[mk, 1]) * sin_t
                         + lm_[si] * sin_t * mod_w[mk, 2])
        xx0 = 2.0 * geo.thick[mk] / SILICON_X0_MM / np.maximum(cos_inc, 1e-3)
        rec = ~geo.dead[mk]
        if rec.any():
            sr = si[rec]
            gp = gi[sr]
            out_p.append(gp)
            out_m.append(mk[rec])
            out_pos.append(np.stack([hx[rec], hy[rec], hz[rec]], -1))
            pth = ptot[gp] / np.sqrt(1.0 + lam[gp] ** 2)
            out_mom.append(np.stack([pth * np.cos(ang[rec]), pth * np.sin(ang[rec]), pth * lam[gp]], -1))
            out_ord.append(np.full(sr.size, step))
            out_alpha.append(turned[gp] + ak[rec])
        # advance to the last crossing in the layer (or the nominal surface when no module was crossed)
        a_hit = np.full(gi.size, -np.inf)
        np.maximum.at(a_hit, si, ak)
        a_adv = np.where(np.isfinite(a_hit), a_hit, an)
        nx_, ny_, nz_ = _helix_point(x0_, y0_, z0_, ph_, lm_, r_, om_, a_adv)
        x[gi], y[gi], z[gi] = nx_, ny_, nz_
        phi[gi] = ph_ + om_ * a_adv
        turned[gi] += a_adv
        visited[gi, li] = True
        # Highland kick with the summed material of the layer's crossed modules
        xsum = np.bincount(si, weights=xx0, minlength=gi.size)
        kick = xsum > 0
        if kick.any():
            k = gi[kick]
            theta0 = _highland(ptot[k], xsum[kick])
            t1 = rng.normal(0.0, 1.0, k.size) * theta0
            t2 = rng.normal(0.0, 1.0, k.size) * theta0
            sin_t = 1.0 / np.sqrt(1.0 + lam[k] ** 2)
            cos_t = lam[k] * sin_t
            d = np.stack([np.cos(phi[k]) * sin_t, np.sin(phi[k]) * sin_t, cos_t], -1)
            e1 = np.stack([-np.sin(phi[k]), np.cos(phi[k]), np.zeros(k.size)], -1)
            e2 = np.cross(d, e1)
            nd = d + np.tan(t1)[:, None] * e1 + np.tan(t2)[:, None] * e2
            nd /= np.linalg.norm(nd, axis=1, keepdims=True)
            st = np.hypot(nd[:, 0], nd[:, 1])
            phi[k] = np.arctan2(nd[:, 1], nd[:, 0])
            lam[k] = nd[:, 2] / np.maximum(st, 1e-12)
            pt[k] = ptot[k] * st
    if out_p:
        return _Hits(np.concatenate(out_p), np.concatenate(out_m), np.concatenate(out_pos),
                     np.concatenate(out_mom), np.concatenate(out_ord), np.concatenate(out_alpha))
    e = np.empty(0, np.int64)
    return _Hits(e, e, np.empty((0, 3)), np.empty((0, 3)), e, np.empty(0))


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
