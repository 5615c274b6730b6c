"""Fused forward of DeZoort's Interaction Network: ``fused=True`` (same modules, parameters and function as the
plain path in tracker/models/interaction_network.py, tested equal in tests/test_model_paths.py).

The whole network — every iteration and R2 — is one autograd function with a hand-written backward, on
feature-major tensors ([C, N], [C, E]). Per iteration: one ``index_select`` gathers [x_i; x_j] for all edges at
once, R1's first layer is one matmul on it plus the constant W_a a_ij + b (computed once per forward), the sum
over messages is one ``index_add_``, O runs on [x; Σ m]. The backward accumulates the weight gradients of
shared blocks in place and recycles its own dead temporaries as output buffers (few fresh [h, E] buffers per
step); under ``torch.func`` transforms (the bundle's vmap strategy) it runs out of place.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch_geometric.data import Data

from tracker.models.fused.kernels import apply_function, symmetrise_fm


# -- the network as one autograd function ---------------------------------------------------------------------
# The edge gather: x.index_select(1, [dst; src]) is [3, 2E] = [3, 2, E] in memory, i.e. a [6, E] matrix with
# rows 2c + side (side 0 = x_i, the target; 1 = x_j, the source); R1's and R2's weight columns for (x_i, x_j)
# are reordered to match (no copy of the edge features).
def _interleave(w: Tensor) -> Tensor:
    """Columns (x_i c0..c2, x_j c0..c2) of ``w`` [H, 6] in the gather's row order 2c + side."""
    return w.reshape(w.shape[0], 2, 3).transpose(1, 2).reshape(w.shape[0], 6)


def _deinterleave(w: Tensor) -> Tensor:
    """Inverse of :func:`_interleave` (for the weight gradient)."""
    return w.reshape(w.shape[0], 3, 2).transpose(1, 2).reshape(w.shape[0], 6)


def _tail(z1: Tensor, w2: Tensor, b2: Tensor, w3: Tensor, b3: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """ReLU–Linear–ReLU–Linear of a fresh first-layer output z1 [H, M] (biases as columns): (out, h1, h2)."""
    h1 = z1.relu_()
    h2 = torch.addmm(b2, w2, h1).relu_()
    return torch.addmm(b3, w3, h2), h1, h2


class _Grads:
    """Gradients (w1, b1, w2, b2, w3, b3) of one MLP, summed over the iterations that share it."""

    def __init__(self, inplace: bool) -> None:
        self.g: list[Tensor | None] = [None] * 6
        self.inplace = inplace

    def mm(self, i: int, a: Tensor, bt: Tensor) -> None:
        """g[i] += a @ bt. The first layers' g[0] is accumulated transposed (x @ dzᵀ, transposed back at the
        end): MKL computes it about 2× faster than dz @ xᵀ when x has 6–10 rows."""
        acc = self.g[i]
        if acc is None:
            self.g[i] = a @ bt
        elif self.inplace:
            acc.addmm_(a, bt)
        else:
            self.g[i] = torch.addmm(acc, a, bt)

    def add(self, i: int, t: Tensor) -> None:
        """g[i] += t."""
        acc = self.g[i]
        self.g[i] = t if acc is None else (acc.add_(t) if self.inplace else acc + t)


def _mm(a: Tensor, b: Tensor, out: Tensor | None) -> Tensor:
    """a @ b, written into ``out`` (a dead buffer) when one is given with enough rows."""
    if out is None or out.shape[0] < a.shape[0]:
        return a @ b
    return torch.mm(a, b, out=out[: a.shape[0]])


def _relu_grad(g: Tensor, h: Tensor, inplace: bool) -> Tensor:
    """g where h > 0, else 0 (ReLU's backward from its output h), in place on g if asked."""
    if inplace:
        return torch.ops.aten.threshold_backward.grad_input(g, h, 0, grad_input=g)
    return torch.ops.aten.threshold_backward(g, h, 0)


def _tail_backward(g: Tensor, h1: Tensor, h2: Tensor, w2t: Tensor, w3t: Tensor, acc: _Grads,
                   spare: list[Tensor]) -> tuple[Tensor, Tensor]:
    """Backward of :func:`_tail` from d out = g: accumulates the w2, b2, w3, b3 gradients, returns (d z1, d z2).

    In place, d z2 and d z1 are written into dead temporaries of earlier steps taken from ``spare`` (same shape);
    the saved activations are left intact.
    """
    acc.mm(4, g, h2.T)
    acc.add(5, g.sum(1))
    gz2 = _relu_grad(_mm(w3t, g, spare.pop() if spare else None), h2, acc.inplace)
    acc.mm(2, gz2, h1.T)
    acc.add(3, gz2.sum(1))
    return _relu_grad(_mm(w2t, gz2, spare.pop() if spare else None), h1, acc.inplace), gz2


class _INFunction(torch.autograd.Function):
    """logits = IN(x [3, N], a [4, E]) for parameters (R1, O) per block then R2, each (w1, b1, w2, b2, w3, b3).

    functorch style (``setup_context``, ``generate_vmap_rule``) so that ``torch.func.vmap`` can batch it: the
    forward returns the logits followed by what the backward needs (non-differentiable outputs), or the logits
    alone when ``keep`` is false (no backward can follow: the intermediates are freed as soon as they are used).
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(x, attr, dst, pair, pair_out, iterations, n_blocks, keep, *params):  # type: ignore[override]
        n, e, n_out = x.shape[1], dst.shape[0], pair_out.shape[0] // 2
        blocks, w1xs = [], []
        for k in range(n_blocks):
            w1, b1, w2, b2, w3, b3, ow1, ob1, ow2, ob2, ow3, ob3 = params[12 * k : 12 * k + 12]
            w1xs.append(_interleave(w1[:, :6]))
            blocks.append((torch.addmm(b1.unsqueeze(1), w1[:, 6:], attr), w2, b2.unsqueeze(1), w3, b3.unsqueeze(1),
                           ow1, ob1.unsqueeze(1), ow2, ob2.unsqueeze(1), ow3, ob3.unsqueeze(1)))
        saved = []
        for it in range(iterations):
            k = it if n_blocks > 1 else 0
            const, w2, b2, w3, b3, ow1, ob1, ow2, ob2, ow3, ob3 = blocks[k]
            xds = x.index_select(1, pair).view(6, e)
            m, h1, h2 = _tail(torch.addmm(const, w1xs[k], xds), w2, b2, w3, b3)
            oin = torch.cat([x, m.new_zeros((m.shape[0], n)).index_add_(1, dst, m)])
            x, oh1, oh2 = _tail(torch.addmm(ob1, ow1, oin), ow2, ob2, ow3, ob3)
            if keep:  # else (inference) every intermediate is freed as soon as it is used
                saved += [xds, h1, h2, oin, oh1, oh2]
        w1, b1, w2, b2, w3, b3 = params[12 * n_blocks :]
        w1p = torch.cat([_interleave(w1[:, :6]), w1[:, 6:]], 1)
        rin = torch.cat([x.index_select(1, pair_out).view(6, n_out), m[:, :n_out]])
        out, h1, h2 = _tail(torch.addmm(b1.unsqueeze(1), w1p, rin), w2, b2.unsqueeze(1), w3, b3.unsqueeze(1))
        return (out.squeeze(0), *w1xs, w1p, rin, h1, h2, *saved) if keep else (out.squeeze(0),)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:  # type: ignore[override]
        x, attr, dst, pair, pair_out, iterations, n_blocks, keep, *params = inputs
        ctx.mark_non_differentiable(*output[1:])
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(attr, dst, pair, pair_out, *params, *output[1:])
        ctx.meta = (x.shape, iterations, n_blocks, len(params))

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g_out: Tensor | None, *_: Tensor | None) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        xshape, iterations, n_blocks, n_params = ctx.meta
        if g_out is None:
            return (None,) * (8 + n_params)
        attr, dst, pair, pair_out, *rest = ctx.saved_tensors
        params, rest = rest[:n_params], rest[n_params:]
        w1xs, (w1p, rin, rh1, rh2), saved = rest[:n_blocks], rest[n_blocks : n_blocks + 4], rest[n_blocks + 4 :]
        inplace = not torch._C._are_functorch_transforms_active()
        e, n_out = dst.shape[0], rin.shape[1]
        # R2; in place, dead temporaries are recycled through spare_e ([H, E]) and spare_n ([H, N])
        spare_e: list[Tensor] = []
        spare_n: list[Tensor] = []
        g2 = _Grads(inplace)
        _, _, w2, _, w3, _ = params[12 * n_blocks :]
        gz1, gz2 = _tail_backward(g_out.unsqueeze(0), rh1, rh2, w2.T, w3.T, g2, spare_e)
        gw1p = (rin @ gz1.T).T
        g2.g[0] = torch.cat([_deinterleave(gw1p[:, :6]), gw1p[:, 6:]], 1)
        g2.g[1] = gz1.sum(1)
        grin = _mm(w1p.T, gz1, gz2 if inplace else None)
        gx = grin.new_zeros(xshape).index_add_(1, pair_out, grin[:6].view(3, 2 * n_out))
        gm_out = grin[6:]
        if inplace and n_out == e:
            spare_e.append(gz1)
        # the iterations, last first
        grads = [(_Grads(inplace), _Grads(inplace)) for _ in range(n_blocks)]
        wts = [tuple(params[12 * k + i].T for i in (2, 4, 6, 8, 10)) for k in range(n_blocks)]
        gconst: list[Tensor | None] = [None] * n_blocks
        for it in reversed(range(iterations)):
            k = it if n_blocks > 1 else 0
            gr1, go = grads[k]
            w2t, w3t, ow1t, ow2t, ow3t = wts[k]
            xds, h1, h2, oin, oh1, oh2 = saved[6 * it : 6 * it + 6]
            # O (the node update), then the sum over messages
            gzo, gzo2 = _tail_backward(gx, oh1, oh2, ow2t, ow3t, go, spare_n)
            go.mm(0, oin, gzo.T)  # transposed
            go.add(1, gzo.sum(1))
            goin = _mm(ow1t, gzo, gzo2 if inplace else None)
            if inplace:
                spare_n.append(gzo)
            gm = goin[3:].index_select(1, dst)
            if it == iterations - 1:  # R2 also read the last messages
                if n_out == e:
                    gm = gm.add_(gm_out) if inplace else gm + gm_out
                else:
                    gm = torch.cat([gm[:, :n_out] + gm_out, gm[:, n_out:]], 1)
                if inplace and n_out == e:
                    spare_e.append(gz2)  # R2's d z2 held grin
            # R1 (the messages)
            gz1, gz2 = _tail_backward(gm, h1, h2, w2t, w3t, gr1, spare_e)
            gr1.mm(0, xds, gz1.T)  # transposed, rows in the gather's order until the end
            gc = gconst[k]
            gconst[k] = gz1 if gc is None else (gc.add_(gz1) if inplace else gc + gz1)
            if it > 0 or ctx.needs_input_grad[0]:  # d x_in (the graph's own features: usually not needed)
                gxds = _mm(w1xs[k].T, gz1, gz2 if inplace else None).view(3, 2 * e)
                gx = goin[:3].index_add_(1, pair, gxds) if inplace else goin[:3].index_add(1, pair, gxds)
            if inplace:
                spare_e += [gz2] if gc is None else [gz2, gz1]
        out: list[Tensor | None] = []
        for k in range(n_blocks):
            (gr1, go), gc = grads[k], gconst[k]
            gr1.g[0] = torch.cat([_deinterleave(gr1.g[0].T), (attr @ gc.T).T], 1)
            go.g[0] = go.g[0].T
            gr1.g[1] = gc.sum(1)
            out += [*gr1.g, *go.g]
        out += g2.g
        ga = None
        if ctx.needs_input_grad[1]:
            ga = sum(params[12 * k][:, 6:].T @ gconst[k] for k in range(n_blocks))
        return (gx if ctx.needs_input_grad[0] else None, ga, *(None,) * 6, *out)


def _mlp_params(seq: nn.Sequential) -> list[Tensor]:
    """(w1, b1, w2, b2, w3, b3) of an :func:`mlp3` (unpacked: indexing a Sequential is slow)."""
    l1, _, l2, _, l3 = seq
    return [l1.weight, l1.bias, l2.weight, l2.bias, l3.weight, l3.bias]


def forward(model: Any, data: Data) -> Tensor:
    """Logits [E] of the stored edges (``model`` an InteractionNetwork; duck-typed: no model module imported)."""
    n_out = data.edge_index.shape[1]
    if model.undirected:
        src, dst, attr = symmetrise_fm(data.edge_index, data.edge_attr)
        pair = torch.cat([dst, src])
        pair_out = torch.cat([dst[:n_out], src[:n_out]])
    else:  # [dst; src] = the stored edge_index upside down
        dst, attr = data.edge_index[1], data.edge_attr.T
        pair = pair_out = data.edge_index.flip(0).reshape(-1)
    x = model.node_inputs(data).T  # feature-major [3, N] (a transposed view)
    params = [p for r1, o in zip(model.R1, model.O) for p in (*_mlp_params(r1.seq), *_mlp_params(o))]
    params += _mlp_params(model.R2.seq)
    # keep the activations for a backward only when one can follow (inference frees them as it goes); under
    # torch.func transforms requires_grad is not visible on the wrapped tensors: keep whenever grad is enabled
    keep = torch.is_grad_enabled() and (
        torch._C._are_functorch_transforms_active() or x.requires_grad or attr.requires_grad
        or any(p.requires_grad for p in params)
    )
    return apply_function(_INFunction, x, attr, dst, pair, pair_out, model.iterations, len(model.R1), keep,
                          *params)[0]
