"""EuclidNet's fused training step spends its edge-scale passes on the model's arithmetic (issue 18, item 6).

Every aten call of a forward and backward of EuclidNet paper_8 (``fused=True``, the fast path) on a real graph is recorded (a TorchDispatchMode,
which also sees what autograd runs); passes over edge-sized tensors that compute nothing are refused: an ``addmm``
that first copies a full [C, 2E] accumulator (instead of adding into it), a copy of an edge-sized tensor, and the
zero-filled gradient of ``sign`` in ψ. The speed itself is measured in benchmarks/euclidnet_cost.py
(docs/benchmarks.md), never asserted here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from tracker.data.hitgraphs import load_npz
from tracker.models import build_model


class _Record(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, list[Any]]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[override]
        self.calls.append((str(func), list(args)))
        return func(*args, **(kwargs or {}))


def _edge_sized(t: Any, n_edges: int) -> bool:
    """A tensor with a full (not broadcast) dimension over the 2E symmetrised edges."""
    return isinstance(t, torch.Tensor) and any(
        size == 2 * n_edges and stride != 0 for size, stride in zip(t.shape, t.stride()))


@pytest.fixture(scope="module")
def graph(real_npz_graphs: list[Path]) -> Any:
    return load_npz(real_npz_graphs[0])


def test_euclidnet_step_makes_no_edge_scale_copies(graph: Any) -> None:
    torch.manual_seed(0)
    model = build_model("euclidnet", preset="paper_8", fused=True)
    n_edges = graph.edge_index.shape[1]
    with _Record() as rec:
        logits = model(graph)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, graph.y.to(logits.dtype))
        loss.backward()
    assert all(p.grad is not None for p in model.parameters())
    names = {name for name, _ in rec.calls}
    assert {"aten.index_select.default", "aten.mm.default", "aten.index_add_.default"} <= names, names  # it recorded
    copied_accumulators = [name for name, args in rec.calls
                           if name == "aten.addmm.default" and _edge_sized(args[0], n_edges)]
    copies = [name for name, args in rec.calls
              if name in ("aten.copy_.default", "aten.clone.default") and _edge_sized(args[0], n_edges)]
    zero_grads = [name for name, args in rec.calls
                  if name == "aten.zeros_like.default" and _edge_sized(args[0], n_edges)]
    assert copied_accumulators == [], f"{len(copied_accumulators)} addmm copied an edge-sized accumulator"
    assert copies == [], f"{len(copies)} copies of edge-sized tensors"
    assert zero_grads == [], f"{len(zero_grads)} zero-filled edge-sized gradients (sign in psi)"


def test_vmap_keeps_out_of_place_addmm() -> None:
    """Under torch.func transforms the accumulation stays out of place (the vmap bundles' batched rule)."""
    from tracker.models.fused.kernels import addmm_into

    acc, w, x = torch.randn(3, 5), torch.randn(3, 2), torch.randn(2, 5)
    expected = acc + w @ x
    out = torch.func.vmap(lambda a: addmm_into(a, w, x))(acc.unsqueeze(0))[0]
    assert torch.allclose(out, expected) and torch.equal(acc, acc.clone())
    same = acc.clone()
    assert addmm_into(same, w, x) is same and torch.allclose(same, expected)
