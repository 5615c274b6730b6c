"""The geometric builder (SCIENCE.md §3) on the real event subset, each option, the CLI and graph files."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from tracker.data.geometry import layer_pairs
from tracker.data.trackml import load_event
from tracker.graphs import build_graph, graph_quality, load_graph, recommended_cuts, truth_segments
from tracker.graphs.build import main as build_main

REPO = Path(__file__).resolve().parents[1]


def _naive():
    spec = importlib.util.spec_from_file_location("graph_build_naive", REPO / "benchmarks" / "graph_build_naive.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.build_edges_naive


@pytest.fixture(scope="module")
def event(shared_trackml: Path):
    return load_event(shared_trackml / "event000000001", parts=("hits", "particles", "truth"))


@pytest.fixture(scope="module")
def graph(event):
    return build_graph(*event, pt_min=1.5, event_id=1)


def test_real_event_fields_and_efficiency(graph, event) -> None:
    g = graph
    n, e = g.num_nodes, g.num_edges
    assert n == 112 and e == 103  # 24 particles above 1.5 GeV, one hit per particle per layer
    for k, dt, shape in (("x", torch.float32, (n, 3)), ("pos", torch.float32, (n, 3)),
                         ("edge_index", torch.int64, (2, e)), ("edge_attr", torch.float32, (e, 4)),
                         ("y", torch.float32, (e,)), ("pid", torch.int64, (n,)), ("pt", torch.float32, (n,)),
                         ("layer", torch.int64, (n,)), ("hit_id", torch.int64, (n,))):
        assert g[k].dtype == dt and tuple(g[k].shape) == shape, k
    assert g.event_id == 1
    assert (g.pt > 1.5).all() and (g.pid != 0).all() and (g.hit_id > 0).all()
    assert g.layer.min() >= 0 and g.layer.max() <= 17
    q = graph_quality(g)
    assert q["efficiency"] >= 0.95, q
    assert 0.5 < q["purity"] < 1.0
    # the hits are those of the hits file: positions match
    hits = event[0].set_index("hit_id").loc[g.hit_id.numpy()]
    np.testing.assert_allclose(g.pos.numpy() * 1000, hits[["x", "y", "z"]].to_numpy(), rtol=1e-5, atol=1e-3)


def test_edge_geometry(graph) -> None:
    g = graph
    src, dst = g.edge_index
    pairs = set(layer_pairs())
    assert all((a, b) in pairs for a, b in zip(g.layer[src].tolist(), g.layer[dst].tolist()))
    x = g.x.double()
    dr, dz = x[dst, 0] - x[src, 0], x[dst, 2] - x[src, 2]
    dphi = torch.remainder(x[dst, 1] - x[src, 1] + 1, 2) - 1
    assert torch.allclose(g.edge_attr[:, 0].double(), dr, atol=1e-6)
    assert torch.allclose(g.edge_attr[:, 1].double(), dphi, atol=1e-5)
    assert torch.allclose(g.edge_attr[:, 2].double(), dz, atol=1e-6)
    eta = torch.asinh(x[:, 2] / x[:, 0])
    dR = torch.sqrt((eta[dst] - eta[src]) ** 2 + (dphi * math.pi) ** 2)
    assert torch.allclose(g.edge_attr[:, 3].double(), dR, atol=1e-5)
    slope_cut, z0_cut = recommended_cuts(1.5)
    assert (dphi.abs() * math.pi / (dr.abs() * 1000) < slope_cut).all()
    z0 = x[src, 2] * 1000 - x[src, 0] * 1000 * dz / dr
    assert (z0.abs() < z0_cut).all()
    # labels: same particle (the triangle fix only removes labels)
    same = g.pid[src] == g.pid[dst]
    assert (g.y.bool() <= same).all() and g.y.sum() >= 0.9 * same.sum()


@pytest.mark.parametrize("pt_min", [2.0, 1.0, 0.5])
@pytest.mark.parametrize(("remove_intersecting", "remove_duplicates"), [(True, True), (False, False)])
def test_equals_all_pairs_reference(event, pt_min: float, remove_intersecting: bool, remove_duplicates: bool) -> None:
    opts = {"pt_min": pt_min, "remove_intersecting": remove_intersecting, "remove_duplicates": remove_duplicates}
    g = build_graph(*event, dedup_triangles=False, **opts)
    ei, y = _naive()(*event, **opts)
    fe = g.edge_index.numpy()
    order = np.lexsort((fe[1], fe[0]))
    assert np.array_equal(fe[:, order], ei)
    assert np.array_equal(g.y.numpy()[order], y)
    if pt_min == 0.5:
        assert graph_quality(g)["efficiency"] >= 0.95


def test_recommended_cuts() -> None:
    assert recommended_cuts(2.0) == (0.006, 275.0) and recommended_cuts(1.5) == (0.006, 275.0)
    assert recommended_cuts(1.0) == (0.007, 350.0) and recommended_cuts(1.2) == (0.007, 350.0)
    assert recommended_cuts(0.9) == (0.0072, 375.0) and recommended_cuts(0.8) == (0.008, 425.0)
    assert recommended_cuts(0.7) == (0.0085, 500.0) and recommended_cuts(0.5) == (0.0085, 500.0)
    with pytest.raises(ValueError, match="pt_min"):
        recommended_cuts(0)


def test_options(event, graph) -> None:
    barrel = build_graph(*event, pt_min=1.5, endcaps=False)
    assert barrel.layer.max() <= 3 and 0 < barrel.num_edges < graph.num_edges
    tight = build_graph(*event, pt_min=1.5, phi_slope_max=0.002, z0_max=100)
    assert tight.num_nodes == graph.num_nodes and tight.num_edges < graph.num_edges
    keep = build_graph(*event, pt_min=1.5, remove_intersecting=False)
    assert keep.num_edges > graph.num_edges
    und = build_graph(*event, pt_min=1.5, undirected=True)
    e = graph.num_edges
    assert und.num_edges == 2 * e
    assert torch.equal(und.edge_index[:, e:], graph.edge_index.flip(0))
    assert torch.equal(und.edge_attr[e:, :3], -graph.edge_attr[:, :3])
    assert torch.equal(und.edge_attr[e:, 3], graph.edge_attr[:, 3])  # dR kept, not negated
    assert torch.equal(und.y[e:], graph.y)


def test_duplicates(event, graph) -> None:
    """Default: one hit per particle per layer, the innermost (as the reference graphs); option: all hits."""
    import pandas as pd

    df = pd.DataFrame({"pid": graph.pid.numpy(), "layer": graph.layer.numpy()})
    assert not df.duplicated().any()
    full = build_graph(*event, pt_min=1.5, remove_duplicates=False)
    assert (full.num_nodes, full.num_edges) == (165, 227)
    r_full = torch.hypot(full.pos[:, 0], full.pos[:, 1])
    full_df = pd.DataFrame({"pid": full.pid.numpy(), "layer": full.layer.numpy(), "r": r_full.numpy(),
                            "hit_id": full.hit_id.numpy()})
    inner = full_df.loc[full_df.groupby(["pid", "layer"]).r.idxmin()]
    assert sorted(inner.hit_id) == sorted(graph.hit_id.tolist())
    q, qf = graph_quality(graph), graph_quality(full)
    assert q["segments_available"] == qf["segments_available"] == q["true_edges"] == 87
    assert q["efficiency"] == qf["efficiency"] == 1.0


def _line_event(slope: float = 3.5, phi: float = 0.3) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """One straight, high-pT particle crossing barrel layers 0..2 and the first right disk (z = r·slope)."""
    pts = [(32.0, 8, 2), (72.0, 8, 4), (116.0, 8, 6), (600.0 / slope, 9, 2), (700.0 / slope, 9, 4)]
    rows = [{"hit_id": i + 1, "x": r * math.cos(phi), "y": r * math.sin(phi), "z": r * slope,
             "volume_id": v, "layer_id": lay, "module_id": 1} for i, (r, v, lay) in enumerate(pts)]
    hits = pd.DataFrame(rows)
    particles = pd.DataFrame({"particle_id": [42], "px": [50.0 * math.cos(phi)], "py": [50.0 * math.sin(phi)]})
    truth = pd.DataFrame({"hit_id": hits.hit_id, "particle_id": 42})
    return hits, particles, truth


def test_triangle_dedup_keeps_outermost_barrel_layer() -> None:
    ev = _line_event()
    g = build_graph(*ev, pt_min=1.0, remove_intersecting=False, dedup_triangles=False)
    src, dst = g.edge_index
    l1, l2 = g.layer[src], g.layer[dst]
    to_disk = l2 == 11
    assert sorted(l1[to_disk].tolist()) == [0, 1, 2] and g.y[to_disk].sum() == 3
    d = build_graph(*ev, pt_min=1.0, remove_intersecting=False, dedup_triangles=True)
    assert torch.equal(d.edge_index, g.edge_index)
    true_to_disk = d.layer[d.edge_index[0]][(d.layer[d.edge_index[1]] == 11) & d.y.bool()]
    assert true_to_disk.tolist() == [2]
    q = graph_quality(d)
    assert q["segments_available"] == 4 and q["efficiency"] == 1.0  # 0-1, 1-2, 2-11, 11-12
    # the reference's crossing test drops 0->disk and 1->disk here (they pass through the barrel)
    r = build_graph(*ev, pt_min=1.0, remove_intersecting=True)
    assert sorted(r.layer[r.edge_index[0]][r.layer[r.edge_index[1]] == 11].tolist()) == [2]
    # below the pT cut nothing is kept
    assert build_graph(*ev, pt_min=100.0).num_nodes == 0


def test_truth_segments_innermost_hit_per_layer() -> None:
    seg = truth_segments(np.array([5, 5, 5, 5, 0]), np.array([0, 1, 1, 2, 1]), np.array([32.0, 73.0, 71.0, 116.0, 72.0]))
    assert seg.values.tolist() == [[5, 0, 1], [5, 1, 2]]


def test_cli_and_graph_files(shared_trackml: Path, tmp_path: Path, graph) -> None:
    out, summ = tmp_path / "graphs", tmp_path / "summary.json"
    build_main(["--input", str(shared_trackml), "--out", str(out), "--pt-min", "1.5", "--summary", str(summ)])
    s = json.loads(summ.read_text())
    for k in ("events", "nodes_mean", "nodes_std", "edges_mean", "edges_std", "purity_mean", "efficiency_mean",
              "seconds_per_event"):
        assert k in s, k
    assert s["events"] == 1 and s["nodes_mean"] == 112 and s["efficiency_mean"] >= 0.95
    g = load_graph(out / "event000000001.pt")
    raw = torch.load(out / "event000000001.pt", weights_only=True)  # a safe, plain-tensor file
    assert raw["format"] == "equitrack-graph-v1"
    for k in ("x", "pos", "edge_index", "edge_attr", "y", "pid", "pt", "layer", "hit_id"):
        assert torch.equal(g[k], graph[k]), k
    assert g.event_id == 1
