"""Training strategies behind one interface (:class:`~tracker.train.strategies.base.Strategy`): ``loop``
(:mod:`.loop`), ``vmap`` (:mod:`.vmap`, with the stacked optimiser :mod:`.stacked` and CUDA graphs
:mod:`.cuda_graph`), and :func:`choose_strategy`, which picks one for a bundle (``auto``: vmap on CUDA when the
model allows it, loop on CPU)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

import torch
from torch import nn
from torch_geometric.data import Data

from tracker.train.errors import BundleError
from tracker.train.strategies.base import Strategy
from tracker.train.strategies.loop import LoopStrategy
from tracker.train.strategies.vmap import VMAP_MODEL_CHANGE, VmapStrategy, vmap_supported

StrategyName = Literal["auto", "loop", "vmap"]


def choose_strategy(strategy: StrategyName, *, device: torch.device, diff: dict[str, list[Any]],
                    model: nn.Module, graph: Data) -> tuple[str, str]:
    """The strategy to run and why: ``vmap`` on CUDA when possible, ``loop`` on CPU (measured faster there)."""
    if strategy not in ("auto", "loop", "vmap"):
        raise BundleError(f"strategy must be 'auto', 'loop' or 'vmap', got {strategy!r}")
    if strategy == "loop":
        return "loop", "asked for"
    model_keys = [k for k in diff if k.startswith("model.")]
    if strategy == "vmap":
        if model_keys:
            raise BundleError(f"strategy 'vmap': bundle members differ in {model_keys[0]!r}: {diff[model_keys[0]]} "
                              "(vmap batches parameters only; use strategy='loop')")
        ok, why = vmap_supported(model, graph)
        if not ok:
            raise BundleError(f"strategy 'vmap': torch.func.vmap cannot batch model {type(model).__name__} "
                              f"({why}); the model needs this change: {VMAP_MODEL_CHANGE}")
        return "vmap", "asked for"
    if device.type != "cuda":
        return "loop", "auto: CPU (vmap's batched kernels are slower than a loop at these widths on CPU)"
    if model_keys:
        return "loop", f"auto: members differ in {model_keys[0]}"
    ok, why = vmap_supported(model, graph)
    if not ok:
        return "loop", f"auto: model cannot be vmapped ({why})"
    return "vmap", "auto: CUDA"


def make_strategy(name: str, *, graphs: Sequence[Data], device: torch.device, cuda_graphs: bool,
                  log: Callable[[str], None] | None) -> Strategy:
    """The strategy ``name`` (as :func:`choose_strategy` returns it) for the training ``graphs``."""
    if name == "vmap":
        return VmapStrategy(graphs, device=device, cuda_graphs=cuda_graphs, log=log)
    return LoopStrategy()


__all__ = ["LoopStrategy", "Strategy", "StrategyName", "VmapStrategy", "choose_strategy", "make_strategy",
           "vmap_supported"]
