"""A step function captured once in a CUDA graph and replayed (the vmap strategy's ``cuda_graphs`` option).

Every step of the vmap strategy has the same shapes (the padded pool), so one capture serves a whole bundle: a
step then costs one launch instead of hundreds of Python-dispatched kernels. Public APIs only
(``torch.cuda.CUDAGraph``, ``torch.cuda.graph``, ``torch.cuda.set_sync_debug_mode``).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping

import torch
from torch import Tensor


class CapturedStep:
    """``fn(static)`` captured in a CUDA graph on ``static`` (tensors the graph reads); calling it copies new
    inputs into ``static``, replays the graph and returns its output tensor (overwritten by the next call).

    The warm-up runs ``fn`` ``warmup`` times on a side stream with host syncs turned into errors (a sync cannot be
    captured), so ``static`` must describe a step that changes nothing (e.g. no member active). Raises whatever
    the warm-up or the capture raises; the caller runs ``fn`` eagerly then (same results).
    """

    def __init__(self, fn: Callable[[dict[str, Tensor]], Tensor], static: Mapping[str, Tensor], *,
                 device: torch.device, warmup: int = 2) -> None:
        self.static = {k: v.clone() for k, v in static.items()}
        previous = torch.cuda.get_sync_debug_mode()
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "sync debug mode is a prototype feature"
            torch.cuda.set_sync_debug_mode("error")  # a host sync inside the step cannot be captured
            try:
                for _ in range(warmup):
                    fn(self.static)
            finally:
                torch.cuda.set_sync_debug_mode(previous)
        torch.cuda.current_stream(device).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph, capture_error_mode="thread_local"):
            self.output = fn(self.static)

    def __call__(self, inputs: Mapping[str, Tensor]) -> Tensor:
        for name, value in inputs.items():
            self.static[name].copy_(value)
        self.graph.replay()
        return self.output


__all__ = ["CapturedStep"]
