"""Rotations about the beam axis: invariant edge scores and equivariant vectors for the equivariant models,
measurable deviations for the others, and the ε(θ) metric of the paper's appendix B.

The edge-score and vector checks run on CPU and, where a GPU is lent, on CUDA (``device`` ``cuda``, marked ``gpu``).
"""

from __future__ import annotations

import math

import pytest
import torch
from devices import DEVICES
from torch_geometric.data import Data

from tracker.data.hitgraphs import load_npz
from tracker.data.transforms import rotate
from tracker.metrics.equivariance import equivariance_deviation, rotate_vectors, vector_equivariance_deviation
from tracker.models import build_model

torch.set_num_threads(1)

ANGLES = [float(a) for a in torch.empty(3).uniform_(-math.pi, math.pi, generator=torch.Generator().manual_seed(7))]

# every case on both paths: plain (default) and fused=True
_EQUIVARIANT = [
    ("euclidnet", {}),
    ("euclidnet", {"preset": "paper_32", "use_r": True, "edge_attr": True}),
    ("euclidnet", {"shared_block": False, "iterations": 3}),
    ("egnn", {}),
    ("hybrid", {"hidden_free": 0}),
]
_NON_EQUIVARIANT = [
    ("interaction_network", {}),
    ("interaction_network", {"node_features": "rphiz"}),
    ("euclidnet_noneq", {}),
    ("hybrid", {"hidden_free": 8}),
]
EQUIVARIANT = [(name, {**hp, "fused": fused}) for fused in (False, True) for name, hp in _EQUIVARIANT]
NON_EQUIVARIANT = [(name, {**hp, "fused": fused}) for fused in (False, True) for name, hp in _NON_EQUIVARIANT]


@pytest.fixture(scope="module")
def graph(real_npz_graphs) -> Data:
    """A real graph cut to its first 2,000 edges (all nodes kept) to keep the many forwards fast."""
    g = load_npz(real_npz_graphs[1])
    g.edge_index, g.edge_attr, g.y = g.edge_index[:, :2000], g.edge_attr[:2000], g.y[:2000]
    return g


def _on(g: Data, device: str) -> Data:
    """A copy of ``g`` on ``device`` (``Data.to`` moves in place, and the fixture is shared by every test)."""
    return g.clone().to(device)


def _double(g: Data) -> Data:
    g = g.clone()
    g.x, g.pos, g.edge_attr = g.x.double(), g.pos.double(), g.edge_attr.double()
    return g


def _model(name: str, hp: dict, *, seed: int = 0, std: float | None = None) -> torch.nn.Module:
    """A model with large random weights and coordinate steps: every path from the inputs matters (the
    coordinate updates stay below the ±100 clamp, which is not equivariant for EuclidNet, like the reference's)."""
    std = std if std is not None else (0.15 if name == "egnn" else 0.5)
    torch.manual_seed(seed)
    model = build_model(name, **hp)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * std)
    for blk in getattr(model, "blocks", []):
        blk.c = 0.2
    return model.eval()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name, hp", EQUIVARIANT)
def test_edge_scores_invariant_float32(name, hp, device, graph):
    model = _model(name, hp).to(device)
    graph = _on(graph, device)
    with torch.no_grad():
        ref = torch.sigmoid(model(graph))
        for theta in ANGLES:
            out = torch.sigmoid(model(rotate(graph, theta)))
            assert (out - ref).abs().max() < 1e-5, (name, theta)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name, hp", EQUIVARIANT)
def test_edge_scores_invariant_float64(name, hp, device, graph):
    model = _model(name, hp).double().to(device)
    g = _double(_on(graph, device))
    with torch.no_grad():
        ref = torch.sigmoid(model(g))
        for theta in ANGLES:
            out = torch.sigmoid(model(rotate(g, theta)))
            assert (out - ref).abs().max() < 1e-10, (name, theta)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name, hp", EQUIVARIANT + [("hybrid", {"hidden_free": 4}), ("hybrid", {"hidden_free": 4, "fused": True})])
@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-5), (torch.float64, 1e-10)])
def test_vector_embeddings_rotate_with_input(name, hp, dtype, tol, device, graph):
    """Vectors x_i rotate with the input (also for hybrid with a free channel: the coupling is eq → free)."""
    model = _model(name, hp).to(dtype=dtype, device=device)
    g = _on(graph, device)
    g = _double(g) if dtype == torch.float64 else g
    with torch.no_grad():
        v = model.embed(g)["vectors"]
        assert v.shape == (g.num_nodes, 2)
        moved = (v - g.pos[:, :2]).abs().max()
        assert moved > 1e-4, "vectors were not updated: the check would be vacuous"
        for theta in ANGLES:
            got = model.embed(rotate(g, theta))["vectors"]
            expect = rotate_vectors(v, theta)
            assert (got - expect).abs().max() < tol * max(1.0, float(v.abs().max())), (name, theta)
    dev = vector_equivariance_deviation(model, [g], ANGLES)
    assert max(dev.values()) < tol


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name, hp", NON_EQUIVARIANT)
def test_non_equivariant_models_change(name, hp, device, graph):
    model = _model(name, hp).to(device)
    dev = equivariance_deviation(model, [_on(graph, device)], ANGLES, scores="logit")
    assert all(d > 1e-5 for d in dev.values()), dev  # ≥ 100× the float32 round-off of the equivariant models


def test_noneq_twin_vectors_not_equivariant(graph):
    model = _model("euclidnet_noneq", {})
    dev = vector_equivariance_deviation(model, [graph], ANGLES)
    assert min(dev.values()) > 1e-4, dev


@pytest.mark.parametrize("name, hp", [EQUIVARIANT[i] for i in (0, 3, 5, 8)])
def test_equivariance_deviation_metric(name, hp, graph):
    model = _model(name, hp)
    dev = equivariance_deviation(model, [graph, graph], ANGLES + [0.0])
    assert list(dev) == ANGLES + [0.0]
    assert all(0.0 <= d < 1e-6 for d in dev.values()), dev
    dev64 = equivariance_deviation(model.double(), [graph], ANGLES)  # graphs are cast to the model's dtype
    assert all(d < 1e-12 for d in dev64.values()), dev64
    assert model.training is False
    assert graph.pos.dtype == torch.float32  # ... a cast copy: the caller's graph is left as it was


def test_equivariance_deviation_restores_training_mode(graph):
    model = _model("euclidnet", {}).train()
    equivariance_deviation(model, graph, [0.5])
    assert model.training


def test_equivariance_deviation_errors(graph):
    model = _model("euclidnet", {})
    with pytest.raises(ValueError, match="thetas is empty"):
        equivariance_deviation(model, [graph], [])
    with pytest.raises(ValueError, match="graphs is empty"):
        equivariance_deviation(model, [], [0.1])
    with pytest.raises(ValueError, match="scores="):
        equivariance_deviation(model, [graph], [0.1], scores="prob")
    with pytest.raises(TypeError, match="no embed"):
        vector_equivariance_deviation(build_model("interaction_network"), [graph], [0.1])
