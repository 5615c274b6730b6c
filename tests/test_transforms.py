"""Rotation about the beam axis: coordinates rotate, φ shifts and wraps, edge features stay."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from tracker.data.hitgraphs import load_npz
from tracker.data.transforms import Rotate, rotate


@pytest.fixture(scope="module")
def graph(real_npz_graphs: list[Path]):
    return load_npz(real_npz_graphs[0])


@pytest.mark.parametrize("theta", [0.3, math.pi / 2, math.pi, -2.5, 7.0])
def test_rotate_consistent(graph, theta: float) -> None:
    before = graph.clone()
    h = rotate(graph, theta)
    assert h is not graph
    # input untouched
    for k in ("x", "pos", "edge_attr"):
        assert torch.equal(graph[k], before[k])
    # pos rotated: radius and z kept, azimuth shifted by theta
    assert torch.allclose(torch.hypot(h.pos[:, 0], h.pos[:, 1]), torch.hypot(graph.pos[:, 0], graph.pos[:, 1]), atol=1e-6)
    assert torch.equal(h.pos[:, 2], graph.pos[:, 2])
    phi_pos = torch.atan2(h.pos[:, 1], h.pos[:, 0]) / math.pi
    d = torch.remainder(phi_pos - h.x[:, 1] + 1, 2) - 1
    assert d.abs().max() < 1e-5  # the φ feature agrees with the rotated position
    shift = torch.remainder(h.x[:, 1] - graph.x[:, 1] - theta / math.pi + 1, 2) - 1
    assert shift.abs().max() < 1e-5
    assert h.x[:, 1].min() >= -1 and h.x[:, 1].max() < 1
    assert torch.equal(h.x[:, [0, 2]], graph.x[:, [0, 2]])
    assert torch.equal(h.edge_attr, graph.edge_attr) and torch.equal(h.edge_index, graph.edge_index)
    assert torch.equal(h.y, graph.y)


def test_edge_features_invariant_after_recompute(graph) -> None:
    """dφ recomputed from the rotated φ feature equals the stored one (so keeping edge_attr is right)."""
    h = rotate(graph, 2.0)
    src, dst = h.edge_index
    dphi = torch.remainder(h.x[dst, 1] - h.x[src, 1] + 1, 2) - 1
    assert torch.allclose(dphi, graph.edge_attr[:, 1], atol=1e-5)


def test_full_turn_is_identity(graph) -> None:
    h = rotate(graph, 2 * math.pi)
    assert torch.allclose(h.pos, graph.pos, atol=1e-6)
    d = torch.remainder(h.x[:, 1] - graph.x[:, 1] + 1, 2) - 1
    assert d.abs().max() < 1e-6


def test_transform_classes(graph) -> None:
    assert torch.equal(Rotate(0.7)(graph).pos, rotate(graph, 0.7).pos)
    assert torch.allclose(Rotate.from_degrees(90)(graph).pos, rotate(graph, math.pi / 2).pos)
