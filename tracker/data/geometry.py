"""Pixel-detector geometry used by the graph builder: the 18-layer numbering of SCIENCE.md §3.

Barrel (8,2),(8,4),(8,6),(8,8) -> 0..3; left endcap (7,14),(7,12),...,(7,2) -> 4..10 and right endcap
(9,2),(9,4),...,(9,14) -> 11..17, both ordered from the innermost disk (|z| ~ 600 mm) outwards.
"""

from __future__ import annotations

import numpy as np

PIXEL_VOLUMES: tuple[int, ...] = (7, 8, 9)
N_LAYERS = 18

#: (volume_id, layer_id) -> platform layer index 0..17
LAYER_INDEX: dict[tuple[int, int], int] = {}
for _i, _l in enumerate((2, 4, 6, 8)):
    LAYER_INDEX[(8, _l)] = _i
for _i, _l in enumerate((14, 12, 10, 8, 6, 4, 2)):
    LAYER_INDEX[(7, _l)] = 4 + _i
for _i, _l in enumerate((2, 4, 6, 8, 10, 12, 14)):
    LAYER_INDEX[(9, _l)] = 11 + _i

BARREL_LAYERS: tuple[int, ...] = (0, 1, 2, 3)
LEFT_DISKS: tuple[int, ...] = tuple(range(4, 11))
RIGHT_DISKS: tuple[int, ...] = tuple(range(11, 18))

#: nominal radii (mm) of the barrel layers and |z| (mm) of the disks, innermost first
BARREL_R_MM = np.array([32.0, 72.0, 116.0, 172.0])
DISK_ABS_Z_MM = np.array([600.0, 700.0, 820.0, 960.0, 1100.0, 1300.0, 1500.0])
#: the barrel's half length (mm) used by the reference's intersecting-edge test
BARREL_HALF_LENGTH_MM = 490.975


def layer_pairs(*, endcaps: bool = True) -> list[tuple[int, int]]:
    """Connected (inner, outer) layer pairs: adjacent barrel layers, adjacent disks on each side, and every
    barrel layer to the innermost disk of each side (SCIENCE.md §3 step 3)."""
    pairs = [(i, i + 1) for i in range(3)]
    if endcaps:
        for disks in (LEFT_DISKS, RIGHT_DISKS):
            pairs += [(b, disks[0]) for b in BARREL_LAYERS]
            pairs += [(disks[k], disks[k + 1]) for k in range(len(disks) - 1)]
    return pairs


def layer_index(volume_id: np.ndarray, layer_id: np.ndarray) -> np.ndarray:
    """Vectorised (volume_id, layer_id) -> layer 0..17; -1 for anything outside the pixel detector."""
    volume_id = np.asarray(volume_id, dtype=np.int64)
    layer_id = np.asarray(layer_id, dtype=np.int64)
    table = np.full((10, 16), -1, dtype=np.int64)
    for (v, lay), i in LAYER_INDEX.items():
        table[v, lay] = i
    ok = (volume_id >= 0) & (volume_id < 10) & (layer_id >= 0) & (layer_id < 16)
    out = np.full(volume_id.shape, -1, dtype=np.int64)
    out[ok] = table[volume_id[ok], layer_id[ok]]
    return out


def layer_from_rz(r_mm: np.ndarray, z_mm: np.ndarray, *, tol_r: float = 15.0, tol_z: float = 30.0) -> np.ndarray:
    """Infer the layer index from hit (r, z) in mm (for graphs imported without volume/layer ids).

    Barrel when |z| < 550 mm and r within ``tol_r`` of a nominal radius, disk when |z| within ``tol_z`` of a
    nominal disk position; -1 otherwise.
    """
    r = np.asarray(r_mm, dtype=np.float64)
    z = np.asarray(z_mm, dtype=np.float64)
    out = np.full(r.shape, -1, dtype=np.int64)
    barrel = np.abs(z) < 550.0
    ib = np.abs(r[:, None] - BARREL_R_MM[None, :]).argmin(axis=1)
    okb = barrel & (np.abs(r - BARREL_R_MM[ib]) < tol_r)
    out[okb] = ib[okb]
    idk = np.abs(np.abs(z)[:, None] - DISK_ABS_Z_MM[None, :]).argmin(axis=1)
    okd = ~barrel & (np.abs(np.abs(z) - DISK_ABS_Z_MM[idk]) < tol_z)
    out[okd & (z < 0)] = 4 + idk[okd & (z < 0)]
    out[okd & (z > 0)] = 11 + idk[okd & (z > 0)]
    return out
