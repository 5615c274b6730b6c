"""The npz importer on the 10 real reference graphs, and its errors on bad files."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from tracker.data.hitgraphs import HitGraphError, load_npz, load_npz_dir, parse_event_id, save_npz


def test_real_graphs_have_platform_fields(real_npz_graphs: list[Path]) -> None:
    assert len(real_npz_graphs) == 10
    graphs = load_npz_dir(real_npz_graphs[0].parent)
    assert [g.event_id for g in graphs] == list(range(1000, 1010))
    nodes = np.array([g.num_nodes for g in graphs])
    edges = np.array([g.edge_index.shape[1] for g in graphs])
    purity = np.array([g.y.mean().item() for g in graphs])
    # these 10 files: 2,459 ± 442 nodes, 7,593 ± 2,305 edges, purity 0.260 ± 0.038 (SCIENCE.md §3 quotes the
    # family as 2,247 ± 364 / 6,589 ± 1,792 / 0.27 ± 0.03): each mean within one std of the quoted figures
    assert abs(nodes.mean() - 2247) < 364 and abs(edges.mean() - 6589) < 1792 and abs(purity.mean() - 0.27) < 0.03
    assert nodes.sum() == 24593 and edges.sum() == 75932
    for g in graphs:
        n, e = g.num_nodes, g.edge_index.shape[1]
        assert g.x.dtype == torch.float32 and g.x.shape == (n, 3)
        assert g.pos.dtype == torch.float32 and g.pos.shape == (n, 3)
        assert g.edge_index.dtype == torch.int64 and g.edge_index.shape == (2, e)
        assert g.edge_attr.dtype == torch.float32 and g.edge_attr.shape == (e, 4)
        assert g.y.dtype == torch.float32 and g.y.shape == (e,)
        assert g.pid.dtype == torch.int64 and g.pt.dtype == torch.float32 and torch.isnan(g.pt).all()
        assert g.hit_id.dtype == torch.int64 and (g.hit_id == -1).all()
        assert g.layer.dtype == torch.int64 and g.layer.min() >= 0 and g.layer.max() <= 17
        assert (g.pid > 0).all()  # reference pids renumbered from 0, shifted so 0 stays "noise"
        src, dst = g.edge_index
        # labels are "same particle"; the edge features are target − source of the node features
        assert torch.equal(g.y.bool(), g.pid[src] == g.pid[dst])
        assert torch.allclose(g.edge_attr[:, 0], g.x[dst, 0] - g.x[src, 0], atol=1e-5)
        assert torch.allclose(g.edge_attr[:, 2], g.x[dst, 2] - g.x[src, 2], atol=1e-5)
        # pos is derived from (r, φ, z)
        r = torch.hypot(g.pos[:, 0], g.pos[:, 1])
        assert torch.allclose(r, g.x[:, 0], atol=1e-6)
        assert torch.allclose(torch.atan2(g.pos[:, 1], g.pos[:, 0]) / math.pi, g.x[:, 1], atol=1e-5)
        assert torch.equal(g.pos[:, 2], g.x[:, 2])


def test_first_graph_edges_match_file(real_npz_graphs: list[Path]) -> None:
    g = load_npz(real_npz_graphs[0])
    with np.load(real_npz_graphs[0]) as f:
        assert g.edge_index[0, f["Ro_cols"][3]] == f["Ro_rows"][3]
        assert g.edge_index[1, f["Ri_cols"][7]] == f["Ri_rows"][7]
        np.testing.assert_allclose(g.edge_attr.numpy(), f["Ra"].T, rtol=1e-6, atol=1e-7)


def test_layers_follow_geometry(real_npz_graphs: list[Path]) -> None:
    g = load_npz(real_npz_graphs[0])
    z = g.x[:, 2] * 1000
    barrel = g.layer <= 3
    assert (z[barrel].abs() < 550).all() and (z[g.layer.ge(4) & g.layer.le(10)] < -550).all()
    assert (z[g.layer >= 11] > 550).all()
    assert torch.bincount(g.layer, minlength=18).gt(0).all()


def test_round_trip(real_npz_graphs: list[Path], tmp_path: Path) -> None:
    g = load_npz(real_npz_graphs[1])
    h = load_npz(save_npz(g, tmp_path / "event000001001_g000.npz"))
    for k in ("x", "edge_index", "edge_attr", "y", "pid", "layer"):
        assert torch.equal(g[k], h[k]), k
    assert h.event_id == 1001


def _write(tmp_path: Path, src: Path, **changes: object) -> Path:
    with np.load(src) as f:
        arr = {k: f[k] for k in f.files}
    for k, v in changes.items():
        if v is None:
            arr.pop(k)
        else:
            arr[k] = v
    out = tmp_path / "event000000042_g000.npz"
    np.savez(out, **arr)
    return out


def test_missing_key_names_file_and_key(real_npz_graphs: list[Path], tmp_path: Path) -> None:
    bad = _write(tmp_path, real_npz_graphs[0], Ri_cols=None)
    with pytest.raises(HitGraphError, match=r"event000000042_g000\.npz.*Ri_cols"):
        load_npz(bad)


@pytest.mark.parametrize(
    ("key", "pattern"), [("y", "key y"), ("pid", "key pid"), ("X", "key X"), ("Ro_rows", "Ro_rows"), ("Ra", "Ra")]
)
def test_shape_mismatch_names_key(real_npz_graphs: list[Path], tmp_path: Path, key: str, pattern: str) -> None:
    with np.load(real_npz_graphs[0]) as f:
        v = f[key]
    bad_value = v[..., :-1] if key in ("Ra", "X") else v[:-1]
    bad = _write(tmp_path, real_npz_graphs[0], **{key: bad_value})
    with pytest.raises(HitGraphError, match=rf"event000000042_g000\.npz.*{pattern}"):
        load_npz(bad)


def test_not_an_npz(tmp_path: Path) -> None:
    p = tmp_path / "event000000001_g000.npz"
    p.write_bytes(b"not a zip")
    with pytest.raises(HitGraphError, match="event000000001_g000.npz"):
        load_npz(p)
    with pytest.raises(HitGraphError, match="no \\*.npz"):
        load_npz_dir(_empty(tmp_path))


def _empty(tmp_path: Path) -> Path:
    d = tmp_path / "empty"
    d.mkdir()
    return d


def test_parse_event_id() -> None:
    assert parse_event_id("a/event000001003_g000.npz") == 1003
    assert parse_event_id("graph.npz") == -1
