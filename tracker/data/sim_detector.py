"""The simulation's detector: the real TrackML modules (placement, bounds, thickness, pitches) of the shipped
``detectors.csv.gz``, with the per-layer (φ, z|r) lookup grids the propagation uses (docs/simulation.md).

Misalignment and dead modules (the symmetry-breaking knobs) are applied here when the geometry is loaded.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

#: file names of the public TrackML data shipped in ``tracker/data/resources``
DETECTORS_FILE = "detectors.csv.gz"
PARTICLES_FILE = "event000001000-particles.csv.gz"
DEFAULT_VOLUMES: tuple[int, ...] = (7, 8, 9)


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
