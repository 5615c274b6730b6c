"""Graph files: plain dicts of tensors written with ``torch.save`` and read back with ``weights_only=True``
(no pickled classes, so a graph file cannot execute code on load)."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import torch
from torch_geometric.data import Data

GRAPH_FORMAT = "equitrack-graph-v1"
FIELDS = ("x", "pos", "edge_index", "edge_attr", "y", "pid", "pt", "layer", "hit_id")


def to_dict(data: Data) -> dict:
    """The platform fields of ``data`` as a dict of tensors plus ``event_id``/``num_nodes`` ints."""
    out = {k: data[k].contiguous() for k in FIELDS if k in data}
    out["event_id"] = int(data.event_id) if "event_id" in data else -1
    out["num_nodes"] = int(data.num_nodes)
    return out


def from_dict(d: dict) -> Data:
    """Inverse of :func:`to_dict`."""
    fields = {k: d[k] for k in FIELDS if k in d}
    return Data(**fields, event_id=int(d.get("event_id", -1)), num_nodes=int(d["num_nodes"]))


def _atomic_save(obj: object, path: Path) -> Path:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)
    return path


def save_graph(data: Data, path: str | Path) -> Path:
    """Write one graph (atomically: temporary file, then rename)."""
    return _atomic_save({"format": GRAPH_FORMAT, "graph": to_dict(data)}, Path(path))


def save_graphs(graphs: list[Data], path: str | Path) -> Path:
    """Write a list of graphs in one file."""
    return _atomic_save({"format": GRAPH_FORMAT, "graphs": [to_dict(g) for g in graphs]}, Path(path))


def _load(path: str | Path) -> dict:
    path = Path(path)
    try:
        obj = torch.load(path, weights_only=True, map_location="cpu")
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such graph file") from None
    except (OSError, RuntimeError, ValueError, EOFError, pickle.UnpicklingError) as err:
        raise ValueError(f"{path}: not a readable graph file ({type(err).__name__}: {err})") from None
    if not isinstance(obj, dict) or obj.get("format") != GRAPH_FORMAT:
        got = obj.get("format") if isinstance(obj, dict) else type(obj).__name__
        raise ValueError(f"{path}: not an {GRAPH_FORMAT} file (format {got!r})")
    return obj


def load_graph(path: str | Path) -> Data:
    """Read a file written by :func:`save_graph`."""
    obj = _load(path)
    if "graph" not in obj:
        raise ValueError(f"{path}: holds a list of graphs; use load_graphs")
    return from_dict(obj["graph"])


def load_graphs(path: str | Path) -> list[Data]:
    """Read a file written by :func:`save_graphs` (or a single-graph file, as a list of one)."""
    obj = _load(path)
    return [from_dict(d) for d in obj["graphs"]] if "graphs" in obj else [from_dict(obj["graph"])]
