"""Charged particles through the simulated detector: closed-form helix/surface intersections in a solenoid field,
layer by layer, with multiple scattering (Highland) after each crossed layer (docs/simulation.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tracker.data.sim_detector import Geometry

B_NOMINAL_T = 2.0
#: GeV/(T·m): R[m] = pT[GeV] / (C_LIGHT · B[T])  (the "0.3" of R = pT / (0.3 B))
C_LIGHT = 0.299792458
SILICON_X0_MM = 93.7
PION_MASS_GEV = 0.13957
_EPS_ALPHA = 1e-9


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
