"""K models of one architecture trained as one stack: a batched loss (the one loss of
:func:`tracker.train.step.loss_fn`, vmapped) and per-member gradient clipping and Adam.

The stack is built from the members' own modules and ``torch.optim.Adam`` instances with
``torch.func.stack_module_state`` and written back into them, so checkpoints stay in run_trial's format.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Protocol

import torch
from torch import Tensor, nn
from torch_geometric.data import Data

from tracker.train.step import loss_fn
from tracker.train.strategies.cuda_graph import CapturedStep

#: the graph fields a model may read; the vmap strategy stacks only these
MODEL_FIELDS = ("x", "pos", "edge_index", "edge_attr")


class StepInputs(Protocol):
    """What the stacked step reads its batches from (:class:`tracker.train.strategies.vmap.PaddedPool`)."""

    def gather(self, ids: Tensor, node_theta: Tensor | None) -> dict[str, Tensor]: ...


class StackedLoss:
    """Per-member mean loss [K] of one step: :func:`~tracker.train.step.loss_fn` under ``torch.func.vmap``, each
    member with its own parameters, batch and ``pos_weight``; the padding edges weigh 0."""

    def __init__(self, template: nn.Module) -> None:
        self.template = template
        self.names = [n for n, _ in template.named_parameters()]
        self.buffer_names = [n for n, _ in template.named_buffers()]

    def _loss(self, params: dict[str, Tensor], buffers: dict[str, Tensor], inputs: dict[str, Tensor],
              pos_weight: Tensor | None) -> Tensor:
        data = Data(**{f: inputs[f] for f in (*MODEL_FIELDS, "y") if f in inputs})
        return loss_fn(self.template, {**params, **buffers}, data, pos_weight=pos_weight, weight=inputs["mask"])[0]

    def losses(self, params: dict[str, Tensor], buffers: dict[str, Tensor], inputs: dict[str, Tensor],
               pos_weight: Tensor | None) -> Tensor:
        in_dims = (0, 0, {k: 0 for k in inputs}, None if pos_weight is None else 0)
        return torch.func.vmap(self._loss, in_dims=in_dims, randomness="different")(
            params, buffers, inputs, pos_weight)


class StackedAdam:
    """K models of one architecture as one stack: batched loss, per-member grad clipping and Adam.

    Built from the members' own modules and ``torch.optim.Adam`` instances (state read from them, fresh or
    resumed) and written back into them (parameters: :meth:`write_back_params`, Adam state:
    :meth:`write_back_state`); :meth:`select` keeps some members' rows, :meth:`refresh` reads the lr a scheduler
    set. The update is ``torch.optim.Adam``'s single-tensor algorithm (no amsgrad) with per-member lr, betas, eps
    and weight decay; clipping is ``clip_grad_norm_`` (L2 over all parameters, coefficient clamped at 1) per
    member. ``cuda_graphs``: on CUDA, the step is captured once (:mod:`tracker.train.strategies.cuda_graph`).
    """

    def __init__(self, models: Sequence[nn.Module], optimizers: Sequence[torch.optim.Optimizer], *,
                 grad_clips: Sequence[float | None], pos_weights: Sequence[float | None],
                 cuda_graphs: bool = False) -> None:
        self.stacked = StackedLoss(models[0])
        K = len(models)
        ref = next(iter(models[0].parameters()))
        self.dtype, self.device = ref.dtype, ref.device
        names = self.stacked.names
        self.params, buffers = torch.func.stack_module_state(list(models))  # leaves that require grad
        self.buffers = {n: b.detach() for n, b in buffers.items()}
        with torch.no_grad():
            self.exp_avg, self.exp_avg_sq = {}, {}
            self.steps = torch.zeros(K, dtype=torch.float64)
            for n in names:
                a, s = [], []
                for k, (m, opt) in enumerate(zip(models, optimizers)):
                    p = m.get_parameter(n)
                    st = opt.state.get(p, {})
                    a.append(st["exp_avg"] if "exp_avg" in st else torch.zeros_like(p))
                    s.append(st["exp_avg_sq"] if "exp_avg_sq" in st else torch.zeros_like(p))
                    if "step" in st:
                        self.steps[k] = float(st["step"])
                self.exp_avg[n], self.exp_avg_sq[n] = torch.stack(a), torch.stack(s)
        groups = [opt.param_groups[0] for opt in optimizers]
        self._hyper({"lr": [float(g["lr"]) for g in groups], "betas": [tuple(g["betas"]) for g in groups],
                     "eps": [float(g["eps"]) for g in groups], "wd": [float(g["weight_decay"]) for g in groups],
                     "clip": list(grad_clips), "pos_weight": list(pos_weights)})
        self._init_graph(cuda_graphs)

    def _init_graph(self, cuda_graphs: bool) -> None:
        """Step state outside the parameters: the device ``alive`` mask and the (not yet captured) CUDA graph."""
        #: members whose loss stayed finite this epoch (device side, so that a step needs no host sync)
        self.alive = torch.ones(self.K, dtype=torch.bool, device=self.device)
        self.cuda_graphs = bool(cuda_graphs) and self.device.type == "cuda"
        self._graph: CapturedStep | None = None
        #: why the step runs eagerly although CUDA graphs were asked for (None: not tried yet or captured)
        self.graph_error: str | None = None

    def _hyper(self, hyper: dict[str, list[Any]]) -> None:
        """The per-member hyper-parameters (one list entry per member) as the step's tensors."""
        dtype, device = self.dtype, self.device
        self.hyper = hyper
        self.K = len(hyper["lr"])
        self.lrs = torch.tensor(hyper["lr"], dtype=torch.float64)
        self.beta1 = torch.tensor([float(b[0]) for b in hyper["betas"]], dtype=torch.float64)
        self.beta2 = torch.tensor([float(b[1]) for b in hyper["betas"]], dtype=torch.float64)

        def vec(values: Any) -> Tensor:
            return torch.tensor(list(values), dtype=dtype, device=device)

        self.eps = vec(hyper["eps"])
        self.wd = vec(hyper["wd"])
        self.use_wd = bool((self.wd != 0).any())
        self.use_clip = any(c is not None for c in hyper["clip"])
        self.clip_max = vec(math.inf if c is None else float(c) for c in hyper["clip"])
        self.pos_weight = (None if all(p is None for p in hyper["pos_weight"]) else
                           vec(1.0 if p is None else float(p) for p in hyper["pos_weight"]))
        self.one_m_b1 = (1 - self.beta1).to(dtype).to(device)
        self.one_m_b2 = (1 - self.beta2).to(dtype).to(device)
        self.b2 = self.beta2.to(dtype).to(device)

    def select(self, rows: Sequence[int]) -> StackedAdam:
        """A stack of the members at ``rows`` only (parameters, Adam state, steps and hyper-parameters: the same
        values a stack built from their written-back models and optimisers would hold)."""
        new = object.__new__(StackedAdam)
        new.stacked, new.dtype, new.device = self.stacked, self.dtype, self.device
        idx = torch.tensor(list(rows), dtype=torch.long)
        on = idx.to(self.device)
        with torch.no_grad():
            new.params = {n: p.detach().index_select(0, on).requires_grad_() for n, p in self.params.items()}
            new.buffers = {n: b.index_select(0, on) for n, b in self.buffers.items()}
            new.exp_avg = {n: t.index_select(0, on) for n, t in self.exp_avg.items()}
            new.exp_avg_sq = {n: t.index_select(0, on) for n, t in self.exp_avg_sq.items()}
        new.steps = self.steps.index_select(0, idx)
        new._hyper({key: [values[r] for r in rows] for key, values in self.hyper.items()})
        new._init_graph(self.cuda_graphs)  # other shapes: the stack captures its own graph
        return new

    def refresh(self, models: Sequence[nn.Module], optimizers: Sequence[torch.optim.Optimizer]) -> None:
        """Read what changed outside the stack since the last epoch: each optimiser's lr (its scheduler) and the
        models' buffers (as a stack built anew from them would). In place: a captured CUDA graph stays valid."""
        self.hyper = {**self.hyper, "lr": [float(opt.param_groups[0]["lr"]) for opt in optimizers]}
        self.lrs = torch.tensor(self.hyper["lr"], dtype=torch.float64)
        with torch.no_grad():
            for n in self.stacked.buffer_names:
                self.buffers[n].copy_(torch.stack([m.get_buffer(n) for m in models]))

    def schedule(self, active: Tensor) -> tuple[Tensor, Tensor]:
        """Adam's per-member step size ``lr / (1 - beta1^t)`` and ``sqrt(1 - beta2^t)`` for the steps ``active``
        [S, K] (CPU bool) will make, computed on the host in float64 as ``torch.optim.Adam`` does; advances the
        step counts. Members that turn non-finite are failed by the caller, so their counts no longer matter."""
        steps = self.steps.unsqueeze(0) + torch.cumsum(active.to(torch.float64), dim=0)
        st = steps.clamp_min(1.0)
        step_size = self.lrs / (1 - self.beta1**st)
        bc2s = torch.sqrt(1 - self.beta2**st)
        self.steps = steps[-1].clone()
        return step_size, bc2s

    def _core(self, padded: StepInputs, ids: Tensor, theta: Tensor | None, active: Tensor, step_size: Tensor,
              bc2s: Tensor) -> Tensor:
        """One step, device tensors in and out and no host sync (so that it can be captured in a CUDA graph):
        members active, alive and with a finite loss are updated; a non-finite loss clears ``alive``."""
        K, names = self.K, self.stacked.names
        losses = self.stacked.losses(self.params, self.buffers, padded.gather(ids, theta), self.pos_weight)
        finite = torch.isfinite(losses)
        ok = active & self.alive & finite
        self.alive.logical_and_(finite | ~active)
        total = torch.where(ok, losses, torch.zeros_like(losses)).sum()
        grads = torch.autograd.grad(total, [self.params[n] for n in names])
        with torch.no_grad():
            if self.use_clip:
                norms = torch.stack([torch.linalg.vector_norm(g.reshape(K, -1), 2, dim=1) for g in grads])
                coef = torch.clamp(self.clip_max / (torch.linalg.vector_norm(norms, 2, dim=0) + 1e-6), max=1.0)
            for n, g in zip(names, grads):
                p = self.params[n]
                shape = (K,) + (1,) * (p.dim() - 1)
                if self.use_clip:
                    g = g * coef.view(shape)
                if self.use_wd:
                    g = g + self.wd.view(shape) * p
                m1 = torch.lerp(self.exp_avg[n], g, self.one_m_b1.view(shape))
                m2 = self.exp_avg_sq[n] * self.b2.view(shape) + (g * self.one_m_b2.view(shape)) * g
                denom = m2.sqrt() / bc2s.view(shape) + self.eps.view(shape)
                newp = p - m1 * step_size.view(shape) / denom
                a = ok.view(shape)
                self.exp_avg[n].copy_(torch.where(a, m1, self.exp_avg[n]))
                self.exp_avg_sq[n].copy_(torch.where(a, m2, self.exp_avg_sq[n]))
                p.copy_(torch.where(a, newp, p))
        return losses.detach()

    def _capture(self, padded: StepInputs, ids: Tensor, theta: Tensor | None, step_size: Tensor,
                 bc2s: Tensor) -> None:
        """Capture :meth:`_core` in a CUDA graph on static copies of one step's inputs (every step of the padded
        pool has the same shapes, so one graph serves them all). The warm-up runs with no member active, which
        leaves parameters and Adam state as they are. Any failure leaves the stack eager and says why in
        :attr:`graph_error`."""
        static = {"ids": ids, "active": torch.zeros(self.K, dtype=torch.bool, device=self.device),
                  "step_size": step_size, "bc2s": bc2s}
        if theta is not None:
            static["theta"] = theta

        def core(st: dict[str, Tensor]) -> Tensor:
            return self._core(padded, st["ids"], st.get("theta"), st["active"], st["step_size"], st["bc2s"])

        try:
            self._graph = CapturedStep(core, static, device=self.device)
        except Exception as exc:  # noqa: BLE001 — the eager step computes the same
            self.graph_error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            self.alive.fill_(True)

    def _one(self, padded: StepInputs, ids: Tensor, theta: Tensor | None, active: Tensor, step_size: Tensor,
             bc2s: Tensor) -> Tensor:
        """One step on device inputs: replayed from the CUDA graph when there is one, else eager."""
        if self.cuda_graphs and self._graph is None and self.graph_error is None:
            self._capture(padded, ids, theta, step_size, bc2s)
        # eager without a graph, or when the step's angles do not match the graph's inputs (same results)
        if self._graph is None or (theta is None) != ("theta" not in self._graph.static):
            return self._core(padded, ids, theta, active, step_size, bc2s)
        inputs = {"ids": ids, "active": active, "step_size": step_size, "bc2s": bc2s}
        if theta is not None:
            inputs["theta"] = theta
        return self._graph(inputs)

    def run_steps(self, padded: StepInputs, ids: Tensor, theta: Tensor | None, active: Tensor) -> Tensor:
        """S optimiser steps, step ``s`` giving member ``k`` the graphs ``ids[s, k]`` of ``padded`` rotated by
        ``theta[s, k]`` (radians; None: no member rotates) if ``active[s, k]`` (CPU tensors [S, K, B] / [S, K]);
        returns the losses [S, K] (CPU, float64), read once at the end (the only host sync).

        Inactive members (no batch left) are neither updated nor counted as stepped; a member whose loss is not
        finite is left out of that and every later step of the call (the caller fails it).
        """
        S = int(active.shape[0])
        step_size, bc2s = self.schedule(active)
        dev = self.device
        ids_d = ids.to(dev)
        theta_d = None if theta is None else theta.to(dev)
        active_d = active.to(dev)
        step_size_d, bc2s_d = step_size.to(self.dtype).to(dev), bc2s.to(self.dtype).to(dev)
        self.alive.fill_(True)
        out = torch.empty((S, self.K), dtype=self.dtype, device=dev)
        for s in range(S):
            out[s] = self._one(padded, ids_d[s], None if theta_d is None else theta_d[s], active_d[s],
                               step_size_d[s], bc2s_d[s])
        return out.to("cpu", torch.float64)

    def write_back(self, models: Sequence[nn.Module], optimizers: Sequence[torch.optim.Optimizer]) -> None:
        """Copy member k's parameters and Adam state into ``models[k]`` / ``optimizers[k]``."""
        self.write_back_params(models)
        for k, (m, opt) in enumerate(zip(models, optimizers)):
            self.write_back_state(k, m, opt)

    def write_back_params(self, models: Sequence[nn.Module]) -> None:
        """Copy every member's parameters into ``models[k]``."""
        with torch.no_grad():
            for n in self.stacked.names:
                for m, src in zip(models, self.params[n].detach().unbind(0)):
                    m.get_parameter(n).copy_(src)

    def write_back_state(self, k: int, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        """Member k's Adam state (step, moments) into ``optimizer``, as ``torch.optim.Adam`` keeps it for ``model``.

        Read before the stack's next step: only a checkpoint reads it, so the vmap strategy defers it until then.
        """
        if not self.steps[k] > 0:
            return
        step = float(self.steps[k])
        with torch.no_grad():
            for n in self.stacked.names:
                optimizer.state[model.get_parameter(n)] = {
                    "step": torch.tensor(step, dtype=torch.float32),
                    "exp_avg": self.exp_avg[n][k].clone(),
                    "exp_avg_sq": self.exp_avg_sq[n][k].clone(),
                }


__all__ = ["MODEL_FIELDS", "StackedAdam", "StackedLoss", "StepInputs"]
