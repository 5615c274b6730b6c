"""Importer for pre-built hit graphs in the npz format of the Interaction Network reference.

Keys: ``X`` [N, 3] (r/1000, φ/π, z/1000); ``Ra`` [4, E] (dr/1000, dφ/π, dz/1000, dR) — the real files also
accept the transposed [E, 4]; ``Ri_rows``/``Ri_cols`` (target node of each edge / edge id); ``Ro_rows``/``Ro_cols``
(source node / edge id); ``y`` [E]; ``pid`` [N]. The result is a PyG ``Data`` in the platform's graph format
(docs/architecture.md): ``pos`` is derived from ``X``, ``pt`` is NaN, ``layer`` is inferred from (r, z),
``hit_id`` is -1 and ``event_id`` is parsed from the file name (``event000001000_g000.npz`` -> 1000).

The reference renumbers particles 0..P-1 and its truth-filtered graphs contain no noise, so its pid 0 is a
real particle; ``pid_offset`` (default 1) shifts ids so that the platform's pid 0 keeps meaning noise/unknown.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import numpy as np
import torch
from torch_geometric.data import Data

from tracker.data.geometry import layer_from_rz

NPZ_KEYS = ("X", "Ra", "Ri_rows", "Ri_cols", "Ro_rows", "Ro_cols", "y", "pid")
_EVENT_RE = re.compile(r"event0*(\d+)")


class HitGraphError(ValueError):
    """A hit-graph file that cannot be imported; the message names the file and the key."""


def parse_event_id(path: str | Path) -> int:
    """Event number from a file name like ``event000001000_g000.npz``; -1 when the name has none."""
    m = _EVENT_RE.search(Path(path).name)
    return int(m.group(1)) if m else -1


def _edge_nodes(path: Path, rows: np.ndarray, cols: np.ndarray, n_edges: int, n_nodes: int, name: str) -> np.ndarray:
    """Node of every edge from a sparse (row = node, col = edge) incidence list; each edge exactly once."""
    if rows.shape != cols.shape or rows.ndim != 1:
        raise HitGraphError(f"{path}: {name}_rows {rows.shape} and {name}_cols {cols.shape} must be 1-d of equal length")
    if rows.shape[0] != n_edges:
        raise HitGraphError(f"{path}: {name}_rows has {rows.shape[0]} entries, expected one per edge ({n_edges} from Ra)")
    if n_edges and (cols.min() < 0 or cols.max() >= n_edges):
        raise HitGraphError(f"{path}: {name}_cols has edge ids outside [0, {n_edges})")
    if n_edges and (rows.min() < 0 or rows.max() >= n_nodes):
        raise HitGraphError(f"{path}: {name}_rows has node ids outside [0, {n_nodes}) (X has {n_nodes} rows)")
    if np.unique(cols).size != n_edges:
        raise HitGraphError(f"{path}: {name}_cols does not name every edge exactly once")
    out = np.empty(n_edges, dtype=np.int64)
    out[cols.astype(np.int64)] = rows.astype(np.int64)
    return out


def load_npz(path: str | Path, *, pid_offset: int = 1) -> Data:
    """Read one reference npz hit graph as a platform ``Data`` (see the module docstring)."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as f:
            missing = [k for k in NPZ_KEYS if k not in f.files]
            if missing:
                raise HitGraphError(f"{path}: missing key(s) {missing}; expected {list(NPZ_KEYS)}, found {f.files}")
            arr = {k: np.asarray(f[k]) for k in NPZ_KEYS}
    except FileNotFoundError:
        raise HitGraphError(f"{path}: no such file") from None
    except HitGraphError:
        raise
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as err:
        raise HitGraphError(f"{path}: not a readable npz file ({type(err).__name__}: {err})") from None

    X = arr["X"]
    if X.ndim != 2 or X.shape[1] != 3:
        raise HitGraphError(f"{path}: key X has shape {X.shape}, expected [N, 3] (r/1000, phi/pi, z/1000)")
    n = X.shape[0]
    Ra = arr["Ra"]
    if Ra.ndim == 2 and Ra.shape[0] == 4:
        ea = Ra.T
    elif Ra.ndim == 2 and Ra.shape[1] == 4:
        ea = Ra
    else:
        raise HitGraphError(f"{path}: key Ra has shape {Ra.shape}, expected [4, E] (dr, dphi, dz, dR)")
    e = ea.shape[0]
    y = arr["y"].reshape(-1)
    if y.shape[0] != e:
        raise HitGraphError(f"{path}: key y has {y.shape[0]} entries, expected one per edge ({e} from Ra)")
    pid = arr["pid"].reshape(-1)
    if pid.shape[0] != n:
        raise HitGraphError(f"{path}: key pid has {pid.shape[0]} entries, expected one per node ({n} from X)")
    dst = _edge_nodes(path, arr["Ri_rows"], arr["Ri_cols"], e, n, "Ri")
    src = _edge_nodes(path, arr["Ro_rows"], arr["Ro_cols"], e, n, "Ro")
    if not np.isfinite(X).all() or not np.isfinite(ea).all():
        raise HitGraphError(f"{path}: X or Ra contains non-finite values")

    x = X.astype(np.float64)
    r, phi, z = x[:, 0], x[:, 1] * np.pi, x[:, 2]
    pos = np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=1)
    return Data(
        x=torch.from_numpy(X.astype(np.float32)),
        pos=torch.from_numpy(pos.astype(np.float32)),
        edge_index=torch.from_numpy(np.stack([src, dst])),
        edge_attr=torch.from_numpy(np.ascontiguousarray(ea, dtype=np.float32)),
        y=torch.from_numpy(y.astype(np.float32)),
        pid=torch.from_numpy(pid.astype(np.int64) + int(pid_offset)),
        pt=torch.full((n,), float("nan"), dtype=torch.float32),
        layer=torch.from_numpy(layer_from_rz(r * 1000.0, z * 1000.0)),
        hit_id=torch.full((n,), -1, dtype=torch.int64),
        event_id=parse_event_id(path),
        num_nodes=n,
    )


def load_npz_dir(folder: str | Path, n: int | None = None, *, pid_offset: int = 1) -> list[Data]:
    """Load the first ``n`` (all when None) ``*.npz`` graphs of ``folder`` in sorted file-name order."""
    folder = Path(folder)
    if not folder.is_dir():
        raise HitGraphError(f"{folder}: not a folder of npz hit graphs")
    files = sorted(folder.glob("*.npz"))
    if not files:
        raise HitGraphError(f"{folder}: contains no *.npz files")
    if n is not None:
        files = files[:n]
    return [load_npz(p, pid_offset=pid_offset) for p in files]


def save_npz(data: Data, path: str | Path, *, pid_offset: int = 1) -> Path:
    """Write a platform graph in the reference npz format (the inverse of :func:`load_npz`)."""
    path = Path(path)
    src, dst = data.edge_index.numpy()
    eid = np.arange(src.shape[0], dtype=np.int64)
    np.savez(
        path,
        X=data.x.numpy().astype(np.float32),
        Ra=data.edge_attr.numpy().T.astype(np.float32),
        Ri_rows=dst, Ri_cols=eid, Ro_rows=src, Ro_cols=eid,
        y=data.y.numpy().astype(np.float32),
        pid=data.pid.numpy().astype(np.int64) - int(pid_offset),
    )
    return path
