"""Data handling of a trial, kept apart from the loop: the training subset, device placement, batches and
the per-epoch order and rotation angles (all drawn from one seeded generator whose state is checkpointed).

The graphs are moved to the device once and never modified; rotations are angles handed to the training step
(:func:`tracker.data.transforms.rotate_batch`), so the same batches serve every training angle.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence

import numpy as np
import torch
from torch_geometric.data import Batch, Data


def select_fraction(graphs: Sequence[Data], fraction: float, *, seed: int) -> list[Data]:
    """A seeded subset of ``round(fraction * n)`` graphs (at least 1), in their original order.

    The subsets of one seed are nested: a smaller fraction keeps a prefix of the same permutation.
    """
    n = len(graphs)
    if n == 0:
        raise ValueError("the training split is empty")
    if not 0 < fraction <= 1:
        raise ValueError(f"train.fraction must be in (0, 1], got {fraction}")
    k = max(1, round(fraction * n))
    if k >= n:
        return list(graphs)
    keep = np.sort(np.random.default_rng(seed).permutation(n)[:k])
    return [graphs[i] for i in keep]


def auto_pos_weight(graphs: Sequence[Data]) -> float:
    """``n_false / n_true`` over the edges of ``graphs`` (the ``pos_weight: auto`` of the trial file)."""
    y = torch.cat([g.y.reshape(-1).to(torch.float64).cpu() for g in graphs])
    pos = float((y > 0.5).sum())
    if pos == 0:
        raise ValueError("pos_weight 'auto': the training split has no true edges")
    return (y.numel() - pos) / pos


def resolve_device(name: str) -> torch.device:
    """``auto`` → CUDA when available, else CPU; ``cuda`` without CUDA falls back to CPU (with a warning)."""
    if name == "cpu":
        return torch.device("cpu")
    if torch.cuda.is_available():
        return torch.device("cuda")
    if name == "cuda":
        import warnings

        warnings.warn("train.device is 'cuda' but CUDA is not available: running on CPU", stacklevel=2)
    return torch.device("cpu")


class GraphSet:
    """A split resident on one device, with batches of ``batch_size`` graphs in a given order.

    With ``batch_size == 1`` every graph is collated once, up front; larger batches are collated per epoch
    from the resident graphs (no copies to the device after construction).
    """

    def __init__(self, graphs: Sequence[Data], *, device: torch.device, batch_size: int = 1) -> None:
        if len(graphs) == 0:
            raise ValueError("a split with no graphs")
        # a shallow copy first: PyG's Data.to moves tensors in place, and the caller's graphs must stay where they are
        self.graphs = [copy.copy(g).to(device) for g in graphs]
        self.batch_size = batch_size
        self.device = device
        self._single = [Batch.from_data_list([g]) for g in self.graphs] if batch_size == 1 else None

    def __len__(self) -> int:
        return len(self.graphs)

    @property
    def n_edges(self) -> int:
        return sum(int(g.edge_index.shape[1]) for g in self.graphs)

    def batches(self, order: torch.Tensor | Sequence[int] | None = None) -> list[tuple[Batch, torch.Tensor]]:
        """``(batch, graph_indices)`` pairs covering the split in ``order`` (default: stored order)."""
        idx = list(range(len(self.graphs))) if order is None else [int(i) for i in order]
        out = []
        for start in range(0, len(idx), self.batch_size):
            chunk = idx[start : start + self.batch_size]
            if self._single is not None:
                b = self._single[chunk[0]]
            else:
                b = Batch.from_data_list([self.graphs[i] for i in chunk])
            out.append((b, torch.tensor(chunk, dtype=torch.long)))
        return out


def epoch_plan(
    n_graphs: int,
    generator: torch.Generator,
    *,
    shuffle: bool = True,
    base_theta: float = 0.0,
    random_rotation: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The order of the training graphs for one epoch and each graph's rotation angle (radians, float64).

    Angles are ``base_theta`` plus, with ``random_rotation``, a uniform draw from [-π, π) per graph.
    """
    order = torch.randperm(n_graphs, generator=generator) if shuffle else torch.arange(n_graphs)
    theta = torch.full((n_graphs,), float(base_theta), dtype=torch.float64)
    if random_rotation:
        theta = theta + (2.0 * torch.rand(n_graphs, generator=generator, dtype=torch.float64) - 1.0) * math.pi
    return order, theta


class TrainPool:
    """The training split resident on the device once, shared by every member of a bundle (a trial is a bundle
    of one); with batch size 1 each graph is collated once, up front, for everyone."""

    def __init__(self, graphs: Sequence[Data], *, device: torch.device, batch_size: int) -> None:
        if len(graphs) == 0:
            raise ValueError("the training split is empty")
        self.graphs = [copy.copy(g).to(device) for g in graphs]  # Data.to is in place: leave the caller's graphs
        self.batch_size = batch_size
        self.device = device
        self.single = [Batch.from_data_list([g]) for g in self.graphs] if batch_size == 1 else None

    def __len__(self) -> int:
        return len(self.graphs)

    def view(self, ids: Sequence[int]) -> PoolView:
        """The graphs ``ids`` (a member's ``train.fraction``) as a :class:`PoolView`."""
        return PoolView(self, ids)


class PoolView:
    """A member's training subset of a :class:`TrainPool`, batched like :meth:`GraphSet.batches`."""

    def __init__(self, pool: TrainPool, ids: Sequence[int]) -> None:
        self.pool = pool
        self.ids = [int(i) for i in ids]

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def graphs(self) -> list[Data]:
        return [self.pool.graphs[i] for i in self.ids]

    def chunks(self, order: torch.Tensor) -> list[list[int]]:
        """Positions (into this view) of each batch, in ``order``."""
        idx = [int(i) for i in order]
        bs = self.pool.batch_size
        return [idx[s : s + bs] for s in range(0, len(idx), bs)]

    def batches(self, order: torch.Tensor) -> list[tuple[Batch, torch.Tensor]]:
        """``(batch, positions)`` pairs covering the view in ``order``."""
        out = []
        for chunk in self.chunks(order):
            if self.pool.single is not None:
                b = self.pool.single[self.ids[chunk[0]]]
            else:
                b = Batch.from_data_list([self.pool.graphs[self.ids[i]] for i in chunk])
            out.append((b, torch.tensor(chunk, dtype=torch.long)))
        return out
