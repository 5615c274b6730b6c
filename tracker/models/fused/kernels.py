"""Feature-major kernels of the opt-in fast path (``fused=True``), shared by the fused model forwards.

Layout (speed, see docs/benchmarks.md): node and edge features are *feature-major*, ``[channels, N]`` and
``[channels, E]``. With the zoo's small widths (4–64 channels) a row-major ``[E, 8]`` tensor makes every Linear,
LayerNorm and gather/scatter pay per-row overheads; feature-major turns a Linear into one ``addmm(W, X)`` over long
contiguous rows, LayerNorm into reductions across a few rows (a hand-written autograd function, 5× faster than
``F.layer_norm`` on width 8) and gathers/scatters into ``index_select``/``index_add_`` along dim 1. The modules
are the plain path's (``nn.Sequential`` of ``nn.Linear``, :class:`~tracker.models.common.ConcatMLP`), run
column-wise by :func:`run_fm`. The first Linear of a :class:`ConcatMLP` is applied part by part
(:func:`weight_of`): node parts are projected once per node before the gather (N ≪ E), constant parts once per
forward.

This is the only place of the zoo that uses private torch APIs (``torch._C._are_functorch_transforms_active`` and
the C++ ``Function.apply`` entry point): both for speed, both guarded so that ``torch.func`` transforms (the vmap
bundles) take the public route.
"""

from __future__ import annotations

import itertools
import math
import threading
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch_geometric.data import Data

from tracker.models.common import ConcatMLP, NoAffineLayerNorm


# -- feature-major aggregation ([C, E] -> [C, N]) ------------------------------------------------------------
def scatter_sum(src: Tensor, index: Tensor, num_nodes: int) -> Tensor:
    """Σ over the columns of ``src`` [C, E] grouped by ``index`` [E] into [C, num_nodes]."""
    return src.new_zeros((src.shape[0], num_nodes)).index_add_(1, index, src)


def in_degree(index: Tensor, num_nodes: int, dtype: torch.dtype) -> Tensor:
    """Number of entries of ``index`` per node, as ``dtype`` [num_nodes]."""
    # out-of-place: under torch.func.vmap ``index`` is batched but the fresh zeros are not (index_add_ refuses)
    return torch.zeros(num_nodes, dtype=dtype, device=index.device).index_add(
        0, index, torch.ones(index.shape[0], dtype=dtype, device=index.device)
    )


# -- feature-major MLPs ---------------------------------------------------------------------------------------
class _NormActFM(torch.autograd.Function):
    """RMS-normalisation over dim 0 of an already *centred* [C, M] tensor, fused with an activation.

    LayerNorm(W x + b) = RMSNorm(W_c x + b_c) with W_c, b_c the weight and bias centred over the output channels
    (centring is linear), so the centring costs nothing at edge scale; the normalisation and the activation share
    one autograd node and a hand-written backward with in-place temporaries (few fresh [C, M] buffers: on CPU
    with small widths, allocating and first-touching buffers costs more than the arithmetic).

    Written in the torch.func style (``forward`` without ctx, :meth:`setup_context`, ``generate_vmap_rule``) so
    ``torch.func.vmap`` can batch it (the vmap strategy of tracker.train.bundle): ``forward`` returns the result
    followed by the intermediates the backward needs, marked non-differentiable; :func:`norm_act_fm` keeps the
    first output only.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(xc: Tensor, eps: float, act: str | None) -> tuple[Tensor, ...]:  # type: ignore[override]
        r = torch.rsqrt((xc * xc).mean(0, keepdim=True) + eps)
        y = xc * r
        if act is None:
            return y, r
        s = torch.sigmoid(y)
        if act == "silu":
            return y * s, y, r, s
        if act == "sigmoid":
            return s, y, r
        raise ValueError(f"unsupported fused activation {act!r}")

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:  # type: ignore[override]
        act = ctx.act = inputs[2]
        ctx.mark_non_differentiable(*output[1:])
        ctx.set_materialize_grads(False)  # no zero-filled [C, M] gradients for the non-differentiable outputs
        if act is None:  # (y, r): y is the result itself
            ctx.save_for_backward(output[0], output[1])
        elif act == "silu":  # (y·s, y, r, s)
            ctx.save_for_backward(*output[1:])
        else:  # sigmoid: (s, y, r)
            ctx.save_for_backward(output[1], output[2], output[0])

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g: Tensor | None, *_: Tensor | None) -> tuple[Tensor | None, None, None]:  # type: ignore[override]
        if g is None:  # only the result is differentiable
            return None, None, None
        if ctx.act is None:
            y, r = ctx.saved_tensors
            gy = g.clone()
        else:
            y, r, s = ctx.saved_tensors
            gy = torch.sub(1.0, s)
            if ctx.act == "silu":  # silu'(y) = s (1 + y (1 − s))
                gy.mul_(y).add_(1.0).mul_(s).mul_(g)
            else:  # sigmoid'(y) = s (1 − s)
                gy.mul_(s).mul_(g)
        t = gy * y
        proj = t.mean(0, keepdim=True)
        if torch._C._are_functorch_transforms_active():  # vmap has no batching rule for out=
            yp = t.copy_(y).mul_(proj)
        else:  # y·proj written into t's memory in one pass (no copy of y first)
            yp = torch.mul(y, proj, out=t)
        return gy.sub_(yp).mul_(r), None, None


def norm_act_fm(xc: Tensor, act: str | None = None, eps: float = 1e-5) -> Tensor:
    """LayerNorm (no affine) of a channel-centred [C, M] tensor followed by ``act`` (silu / sigmoid / None)."""
    return apply_function(_NormActFM, xc, eps, act)[0]  # type: ignore[index]





def centred(w: Tensor) -> Tensor:
    """``w`` minus its mean over dim 0 (output channels): W_c of :class:`_NormActFM`, also for biases."""
    return w - w.mean(0, keepdim=True)


# Centred weights are computed once per model forward and reused by every iteration (a shared block is applied
# 5 times): a cache keyed by the Linear, emptied by :func:`begin_forward` at each model entry point. It lives
# outside the modules (no autograd tensors on modules: deepcopy/pickling of models stay possible), and per thread
# (forwards in several threads of one process do not share it).
_LOCAL = threading.local()


def _cache() -> dict[int, tuple[Tensor, Tensor | None]]:
    cache = getattr(_LOCAL, "centred", None)
    if cache is None:
        cache = _LOCAL.centred = {}
    return cache


def begin_forward() -> None:
    """Start a model evaluation: forget the centred weights of the previous one (they belong to its graph)."""
    _cache().clear()


def centred_params(layer: nn.Linear) -> tuple[Tensor, Tensor | None]:
    """(W_c, b_c) of ``layer`` for the current forward (computed on first use)."""
    cache = _cache()
    key = id(layer)
    hit = cache.get(key)
    if hit is None or hit[0].dtype != layer.weight.dtype or hit[0].device != layer.weight.device:
        b = layer.bias
        hit = (centred(layer.weight), centred(b) if b is not None else None)
        cache[key] = hit
    return hit


def linear_fm(layer: nn.Linear, x: Tensor, *, centre: bool = False) -> Tensor:
    """``layer`` applied to a feature-major [in, M] tensor: W x + b -> [out, M] (centred over out if asked)."""
    w, b = centred_params(layer) if centre else (layer.weight, layer.bias)
    if b is None:
        return w @ x
    return torch.addmm(b.unsqueeze(1), w, x)


_FUSABLE = {nn.SiLU: "silu", nn.Sigmoid: "sigmoid"}


def run_fm(layers: Sequence[nn.Module], x: Tensor, *, centred_input: bool = False, fresh: bool = False) -> Tensor:
    """Run MLP layers (Linear / NoAffineLayerNorm / activations) on a feature-major [C, M] tensor.

    Linear → NoAffineLayerNorm → SiLU/Sigmoid runs as a centred Linear plus one fused norm+activation;
    ``centred_input`` says that ``x`` is already centred when the first layer is a NoAffineLayerNorm. ReLU runs
    in place on intermediates (and on ``x`` itself when ``fresh``: a temporary owned by the caller).
    """
    layers = list(layers)
    i = 0
    while i < len(layers):
        layer = layers[i]
        nxt = layers[i + 1] if i + 1 < len(layers) else None
        if isinstance(layer, nn.Linear):
            if isinstance(nxt, NoAffineLayerNorm):
                x = linear_fm(layer, x, centre=True)
                i += 1
                centred_input = fresh = True
                continue
            x = linear_fm(layer, x)
            fresh = True
            i += 1
            continue
        if isinstance(layer, NoAffineLayerNorm):
            if not centred_input:
                x = x - x.mean(0, keepdim=True)
            act = _FUSABLE.get(type(nxt)) if nxt is not None else None
            x = norm_act_fm(x, act, layer.eps)
            if act is not None:
                i += 1
        elif isinstance(layer, nn.ReLU) and fresh:
            x = torch.relu_(x)
        else:
            x = layer(x)
        centred_input = False
        fresh = True
        i += 1
    return x


# -- ConcatMLP, feature-major: the first layer part by part ---------------------------------------------------
def _centre(mod: ConcatMLP) -> bool:
    """The first Linear is followed by a LayerNorm: its weight and bias are used centred (see _NormActFM)."""
    return len(mod.seq) > 1 and isinstance(mod.seq[1], NoAffineLayerNorm)


def weight_of(mod: ConcatMLP, *ks: int) -> Tensor:
    """Columns of the first weight for parts ``ks`` (a view when the parts are contiguous and in order)."""
    first = mod.seq[0]
    w = centred_params(first)[0] if _centre(mod) else first.weight
    offs = mod.offsets
    if all(b == a + 1 for a, b in itertools.pairwise(ks)):
        return w[:, offs[ks[0]] : offs[ks[-1] + 1]]
    return torch.cat([w[:, offs[k] : offs[k + 1]] for k in ks], dim=1)


def stacked(mod: ConcatMLP, x: Tensor, *ks: int) -> Tensor:
    """[W_k1 x; W_k2 x; ...] stacked along dim 0 in one matmul, for parts of equal width taking the same x."""
    return torch.cat([weight_of(mod, k) for k in ks], dim=0) @ x


def bias_col(mod: ConcatMLP) -> Tensor:
    """The first layer's bias as a column [out, 1] (centred when a LayerNorm follows, matching :func:`weight_of`)."""
    first = mod.seq[0]
    b = centred_params(first)[1] if _centre(mod) else first.bias
    return b.unsqueeze(1)


def finish(mod: ConcatMLP, pre: Tensor) -> Tensor:
    """Everything after the first Linear, feature-major, from its output (projected parts + :func:`bias_col`);
    ``pre`` must be a temporary (it may be overwritten in place)."""
    return run_fm(tuple(mod.seq)[1:], pre, centred_input=_centre(mod), fresh=True)


def addmm_into(acc: Tensor, w: Tensor, x: Tensor) -> Tensor:
    """``acc + w @ x`` written into ``acc``, a temporary of the caller's that no autograd node saved.

    ``torch.addmm(acc, w, x)`` first copies ``acc`` into a fresh [C, M] result (at edge scale a pass over memory
    as long as the product's); in place, the same BLAS call accumulates into ``acc`` (same values). Under
    ``torch.func`` transforms (the vmap bundles) it stays out of place.
    """
    if torch._C._are_functorch_transforms_active():
        return torch.addmm(acc, w, x)
    return acc.addmm_(w, x)


def gather_pair(proj: Tensor, dst: Tensor, src: Tensor) -> Tensor:
    """From stacked node projections [2H, N] = [W_i h; W_j h]: W_i h_dst + W_j h_src per edge [H, E]."""
    hid = proj.shape[0] // 2
    return proj[:hid].index_select(1, dst).add_(proj[hid:].index_select(1, src))


# -- graph inputs ---------------------------------------------------------------------------------------------
def transverse_fm(data: Data) -> tuple[Tensor, Tensor]:
    """Feature-major (x, y) [2, N] and z [1, N] in metres: from ``pos``, else from ``x`` = (r/1000, φ/π, z/1000)."""
    pos = getattr(data, "pos", None)
    if pos is not None:
        p = pos.T
        return p[:2], p[2:3]
    x = data.x
    r, phi = x[:, 0], x[:, 1] * math.pi
    return torch.stack([r * torch.cos(phi), r * torch.sin(phi)]), x[:, 2].unsqueeze(0)


def symmetrise_fm(edge_index: Tensor, edge_attr: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor | None]:
    """Both directions of every stored edge: src, dst [2E] and feature-major attr [4, 2E]; first E = stored.

    Reversed copies get (dr, dφ, dz) negated and dR kept (dR is a distance; the reference's negated dR is a defect).
    """
    s, d = edge_index[0], edge_index[1]
    src = torch.cat([s, d])
    dst = torch.cat([d, s])
    attr = None
    if edge_attr is not None:
        a = edge_attr.T
        sign = torch.ones((a.shape[0], 1), dtype=a.dtype, device=a.device)
        sign[:3] = -1.0
        attr = torch.cat([a, a * sign], dim=1)
    return src, dst, attr



# -- calling autograd functions -------------------------------------------------------------------------------
def apply_function(fn: type[torch.autograd.Function], *args: object) -> object:
    """``fn.apply(*args)`` (all arguments positional) without ``Function.apply``'s per-call Python work.

    For a functorch-style Function (``setup_context``), ``torch.autograd.Function.apply`` binds the arguments
    with ``inspect.signature`` on every call (≈ 40–70 µs on the development box) before calling the C++
    ``_FunctionBase.apply``; outside functorch transforms this calls the C++ entry point directly. Under
    ``torch.func`` transforms (vmap, grad) the full ``fn.apply`` runs, as it must.
    """
    if torch._C._are_functorch_transforms_active():
        return fn.apply(*args)
    return super(torch.autograd.Function, fn).apply(*args)  # type: ignore[misc]  # torch._C._FunctionBase.apply
