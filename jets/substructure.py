"""Jet substructure observables of a jet's constituents: invariant mass and N-subjettiness tau_N.

tau_N (Thaler and Van Tilburg 2011) measures how well a jet is described by N subjets:
``tau_N = sum_i pT_i min_k dR(i, axis_k) / (sum_i pT_i R0)`` with ``R0`` the jet radius (0.8 here) and the N axes
the exclusive-kT subjets of the jet's constituents (FastJet's kT algorithm run to exactly N jets, as the
``Nsubjettiness`` contrib's ``KT_Axes``). ``dR`` uses rapidity and azimuth, as FastJet's ``delta_R``. A
three-prong top jet has small tau3/tau2, a one-prong QCD jet a value near 1: the classic cut-based top tagger.

Inputs are (E, px, py, pz) arrays in GeV, rows = constituents (zero-padded rows, E = 0, are ignored). FastJet
(``pip install -e ".[jetgen]"``) is imported only when axes are computed.
"""

from __future__ import annotations

import numpy as np

#: jet radius of the sample (anti-kT R = 0.8): the normalisation R0 of tau_N
R0 = 0.8


def require_fastjet():
    """The ``fastjet`` module, or an ImportError saying how to install it."""
    try:
        import fastjet
    except ImportError as err:  # pragma: no cover - exercised only without the extra
        raise ImportError(
            f"N-subjettiness axes need FastJet ({err}); install the generator extra: pip install -e \".[jetgen]\""
        ) from None
    return fastjet


def jet_mass(p4: np.ndarray) -> float:
    """Invariant mass (GeV) of the sum of the constituents (0 for a space-like rounding residue)."""
    s = np.asarray(p4, dtype=np.float64).sum(axis=0)
    m2 = s[0] ** 2 - s[1] ** 2 - s[2] ** 2 - s[3] ** 2
    return float(np.sqrt(max(m2, 0.0)))


def _rap_phi(p4: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Transverse momentum, rapidity and azimuth of (E, px, py, pz) rows."""
    e, px, py, pz = (p4[:, k] for k in range(4))
    pt = np.hypot(px, py)
    # rapidity; E > |pz| for physical particles, the clip guards float32 rounding of massless ones
    y = 0.5 * np.log(np.maximum(e + pz, 1e-12) / np.maximum(e - pz, 1e-12))
    return pt, y, np.arctan2(py, px)


def tau_from_axes(p4: np.ndarray, axes: np.ndarray, *, r0: float = R0) -> float:
    """tau_N of constituents ``p4`` [n, 4] for given axes [N, 4] (both (E, px, py, pz)); 0 for an empty jet."""
    p4 = np.asarray(p4, dtype=np.float64)
    axes = np.asarray(axes, dtype=np.float64)
    pt, y, phi = _rap_phi(p4)
    norm = pt.sum() * r0
    if norm <= 0 or len(axes) == 0:
        return 0.0
    _, ay, aphi = _rap_phi(axes)
    dphi = np.abs(phi[:, None] - aphi[None, :])
    dphi = np.where(dphi > np.pi, 2 * np.pi - dphi, dphi)
    dr = np.sqrt((y[:, None] - ay[None, :]) ** 2 + dphi**2)
    return float((pt * dr.min(axis=1)).sum() / norm)


def exclusive_kt_axes(p4: np.ndarray, n: int) -> np.ndarray:
    """The ``n`` exclusive-kT subjets (E, px, py, pz) [n', 4] of constituents ``p4``; n' = min(n, constituents)."""
    fj = require_fastjet()
    p4 = np.asarray(p4, dtype=np.float64)
    p4 = p4[p4[:, 0] > 0]
    if len(p4) <= n:
        return p4.copy()
    parts = [fj.PseudoJet(float(px), float(py), float(pz), float(e)) for e, px, py, pz in p4]
    jet_def = fj.JetDefinition(fj.kt_algorithm, fj.JetDefinition.max_allowable_R, fj.E_scheme)
    seq = fj.ClusterSequence(parts, jet_def)
    return np.array([[j.e(), j.px(), j.py(), j.pz()] for j in seq.exclusive_jets(int(n))], dtype=np.float64)


def nsubjettiness(p4: np.ndarray, n: int, *, r0: float = R0) -> float:
    """tau_N of one jet's constituents ``p4`` [n_constituents, 4] with exclusive-kT axes (module docstring)."""
    p4 = np.asarray(p4, dtype=np.float64)
    p4 = p4[p4[:, 0] > 0]
    return tau_from_axes(p4, exclusive_kt_axes(p4, n), r0=r0)


def tau32(p4: np.ndarray, *, r0: float = R0) -> float:
    """tau3 / tau2 of one jet (NaN when tau2 = 0, a jet of at most two constituents)."""
    t2 = nsubjettiness(p4, 2, r0=r0)
    return nsubjettiness(p4, 3, r0=r0) / t2 if t2 > 0 else float("nan")
