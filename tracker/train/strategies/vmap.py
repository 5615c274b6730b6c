"""The ``vmap`` strategy: the K members' parameter sets stacked (:class:`~tracker.train.strategies.stacked.StackedAdam`)
and trained by one batched forward/backward per step.

Each step gathers every member's own batch (members shuffle differently) from the training graphs pre-padded once
to a common node/edge count (:class:`PaddedPool`: padding edges join two padding nodes and weigh 0 in the loss),
then per-member gradient clipping and Adam. The stack lives across epochs (rows dropped when members end); every
epoch the parameters are written back to each member's own model and the Adam state when the member writes a
checkpoint. An epoch's steps run without a host sync (a member whose loss turns non-finite is masked on the device
and failed at the end of the epoch); on CUDA the step may be captured in a CUDA graph (``cuda_graphs``). The
per-epoch validation of all members is one vmapped forward per graph (:func:`predict_stacked`), and so is a
batched final evaluation (:func:`final_predictions_stacked`). Pays off where launch overhead dominates (CUDA).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from functools import partial

import torch
from torch import Tensor, nn
from torch_geometric.data import Data

from tracker.metrics.classification import roc_auc_rows
from tracker.train.data import GraphSet
from tracker.train.errors import BundleError, NonFiniteLossError
from tracker.train.evaluate import FinalPredictions, SplitPrediction
from tracker.train.member import EpochTraining, MemberState
from tracker.train.step import edge_loss, rotate_batch
from tracker.train.strategies.stacked import MODEL_FIELDS, StackedAdam, StackedLoss

VMAP_MODEL_CHANGE = (
    "every torch.autograd.Function inside the model must support torch.func: move the ctx work of forward() into "
    "a `setup_context(ctx, inputs, output)` staticmethod (forward(xc, eps, act) without ctx; return the saved "
    "intermediates as extra outputs marked non-differentiable, or recompute them in backward) and set "
    "`generate_vmap_rule = True` (e.g. tracker.models.fused.kernels._NormActFM)"
)


class PaddedPool:
    """Training graphs padded once to a common node/edge count and stacked: ``[G + 1, ...]`` per field.

    Graph ``G`` is all padding (it fills short last batches). Padding nodes copy node 0/1 of their graph (benign,
    finite inputs); padding edges run between the last two padding nodes, never touch a real node, and have
    ``mask = 0`` so they weigh nothing in the loss.
    """

    def __init__(self, graphs: Sequence[Data], *, device: torch.device) -> None:
        graphs = list(graphs)
        fields = [f for f in MODEL_FIELDS if getattr(graphs[0], f, None) is not None]
        if "edge_index" not in fields or "x" not in fields:
            raise BundleError("vmap strategy: the training graphs need x and edge_index")
        self.fields = fields
        n_max = max(int(g.num_nodes) for g in graphs)
        e_max = max(int(g.edge_index.shape[1]) for g in graphs)
        self.n_pad, self.e_pad = n_max + 2, max(e_max, 1)
        G = len(graphs)
        self.dummy = G
        np_, ep = self.n_pad, self.e_pad
        self.node: dict[str, Tensor] = {}
        for f in (f for f in fields if f not in ("edge_index", "edge_attr")):
            ref = getattr(graphs[0], f)
            t = torch.empty((G + 1, np_, *ref.shape[1:]), dtype=ref.dtype, device=device)
            for i, g in enumerate(graphs + [graphs[0]]):
                v = getattr(g, f)
                n = int(g.num_nodes) if i < G else 0
                if n:
                    t[i, :n] = v
                t[i, n:] = v[0]
                t[i, np_ - 1] = v[1] if v.shape[0] > 1 else v[0]
            self.node[f] = t
        ei = torch.empty((G + 1, 2, ep), dtype=torch.long, device=device)
        ei[:, 0, :], ei[:, 1, :] = np_ - 2, np_ - 1
        mask = torch.zeros((G + 1, ep), dtype=torch.bool, device=device)
        y = torch.zeros((G + 1, ep), dtype=torch.float32, device=device)
        ea = None
        if "edge_attr" in fields:
            ref = graphs[0].edge_attr
            ea = torch.empty((G + 1, ep, *ref.shape[1:]), dtype=ref.dtype, device=device)
            ea[:] = ref[0]
        for i, g in enumerate(graphs):
            e = int(g.edge_index.shape[1])
            ei[i, :, :e] = g.edge_index
            mask[i, :e] = True
            y[i, :e] = g.y.reshape(-1).to(torch.float32)
            if ea is not None:
                ea[i, :e] = g.edge_attr
        self.edge_index, self.mask, self.y, self.edge_attr = ei, mask, y, ea
        self.n_edges = [int(g.edge_index.shape[1]) for g in graphs]

    def gather(self, ids: Tensor, node_theta: Tensor | None) -> dict[str, Tensor]:
        """Inputs of one step: ``ids`` [K, B] graph ids → fields stacked [K, B·n_pad, …], edges [K, 2, B·e_pad].

        ``node_theta`` [K, B] angles (radians) rotate each graph exactly as :func:`rotate_batch` does.
        """
        K, B = ids.shape
        np_, ep = self.n_pad, self.e_pad
        flat = ids.reshape(-1).to(self.mask.device)
        out: dict[str, Tensor] = {}
        for f, t in self.node.items():
            out[f] = t.index_select(0, flat).reshape(K, B * np_, *t.shape[2:])
        if node_theta is not None:
            slot = torch.arange(K * B, device=flat.device).repeat_interleave(np_)
            fake = Data(x=out["x"].reshape(K * B * np_, -1), batch=slot)
            if "pos" in out:
                fake.pos = out["pos"].reshape(K * B * np_, -1)
            rot = rotate_batch(fake, node_theta.reshape(-1))
            out["x"] = rot.x.reshape(K, B * np_, -1)
            if "pos" in out:
                out["pos"] = rot.pos.reshape(K, B * np_, -1)
        ei = self.edge_index.index_select(0, flat).reshape(K, B, 2, ep)
        if B > 1:
            ei = ei + (torch.arange(B, device=ei.device) * np_).view(1, B, 1, 1)
        out["edge_index"] = ei.permute(0, 2, 1, 3).reshape(K, 2, B * ep)
        if self.edge_attr is not None:
            out["edge_attr"] = self.edge_attr.index_select(0, flat).reshape(K, B * ep, *self.edge_attr.shape[2:])
        out["y"] = self.y.index_select(0, flat).reshape(K, B * ep)
        out["mask"] = self.mask.index_select(0, flat).reshape(K, B * ep)
        return out


def vmap_supported(model: nn.Module, graph: Data, *, k: int = 2) -> tuple[bool, str]:
    """Whether ``torch.func.vmap`` can batch ``model``'s forward and backward (tried on a tiny subgraph)."""
    e = min(16, int(graph.edge_index.shape[1]))
    ei = graph.edge_index[:, :e]
    nodes, inv = torch.unique(ei, return_inverse=True)
    fields = {f: getattr(graph, f)[nodes] for f in ("x", "pos") if getattr(graph, f, None) is not None}
    if getattr(graph, "edge_attr", None) is not None:
        fields["edge_attr"] = graph.edge_attr[:e]
    small = {f: v.unsqueeze(0).expand(k, *v.shape).clone() for f, v in fields.items()}
    small["edge_index"] = inv.reshape(2, e).unsqueeze(0).expand(k, 2, e).clone()
    small["y"] = graph.y[:e].reshape(1, e).expand(k, e).to(torch.float32).clone()
    small["mask"] = torch.ones((k, e), dtype=torch.bool, device=ei.device)
    st = StackedLoss(model)
    params = {n: p.detach().unsqueeze(0).expand(k, *p.shape).clone().requires_grad_()
              for n, p in model.named_parameters()}
    buffers = {n: b.unsqueeze(0).expand(k, *b.shape).clone() for n, b in model.named_buffers()}
    try:
        loss = st.losses(params, buffers, small, None).sum()
        loss.backward()
    except Exception as exc:  # noqa: BLE001 — any failure means "cannot vmap this model"
        return False, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return True, ""


class VmapStrategy:
    """The members still training stepped together in one stack, kept from epoch to epoch."""

    name = "vmap"

    def __init__(self, graphs: Sequence[Data], *, device: torch.device, cuda_graphs: bool,
                 log: Callable[[str], None] | None = None) -> None:
        self.padded = PaddedPool(graphs, device=device)
        self.cuda_graphs = cuda_graphs
        self.log = log
        self.rows: list[int] = []  # member indices of the stack's rows
        self.stack: StackedAdam | None = None

    def train_epoch(self, members: Sequence[MemberState]) -> dict[int, EpochTraining | Exception]:
        previous = self.stack
        try:
            out = self._epoch(list(members))
        except Exception as exc:  # noqa: BLE001 — a batched failure cannot be pinned on one member
            return {m.index: exc for m in members}
        opt = self.stack
        if self.log is not None and opt is not None and opt.cuda_graphs and opt is not previous:
            self.log(f"stacked step of {opt.K} members: "
                     + ("CUDA graph" if opt.graph_error is None else f"eager (CUDA graph failed: {opt.graph_error})"))
        return out

    def _epoch(self, members: list[MemberState]) -> dict[int, EpochTraining | Exception]:
        """One epoch of every member at once. At the end every member's parameters are written back to its own
        model (validation, early stopping) and its Adam state is owed to its next checkpoint, so checkpoints are
        per member and equal run_trial's."""
        t0 = time.perf_counter()
        K, padded = len(members), self.padded
        plans = []
        for m in members:
            order, theta, rotate = m.plan()
            plans.append((m.view.chunks(order), theta, rotate))
            m.save_rng()
        n_steps = max(len(p[0]) for p in plans)
        B = members[0].view.pool.batch_size
        models = [m.model for m in members]
        optimizers = [m.optimizer for m in members]
        lrs = [float(o.param_groups[0]["lr"]) for o in optimizers]
        who = [m.index for m in members]
        if self.stack is None:
            opt = StackedAdam(models, optimizers, grad_clips=[m.tc.grad_clip for m in members],
                              pos_weights=[m.pos_weight for m in members], cuda_graphs=self.cuda_graphs)
        else:
            opt = self.stack if self.rows == who else self.stack.select([self.rows.index(i) for i in who])
            opt.refresh(models, optimizers)
        self.rows, self.stack = who, opt
        # the whole epoch's batches, angles and activity, built on the host and moved to the device once
        ids = torch.full((n_steps, K, B), padded.dummy, dtype=torch.long)
        theta = torch.zeros((n_steps, K, B), dtype=torch.float64) if any(p[2] for p in plans) else None
        active = torch.zeros((n_steps, K), dtype=torch.bool)
        for k, (chunks, th, rot) in enumerate(plans):
            gids = members[k].view.ids
            for s, chunk in enumerate(chunks):
                active[s, k] = True
                ids[s, k, : len(chunk)] = torch.tensor([gids[i] for i in chunk])
                if rot:
                    theta[s, k, : len(chunk)] = th[torch.tensor(chunk)]
        lv = opt.run_steps(padded, ids, theta, active)
        loss_sum, n_edges = [0.0] * K, [0] * K
        failed: dict[int, Exception] = {}
        for s in range(n_steps):
            for k in range(K):
                if not active[s, k] or k in failed:
                    continue
                if not math.isfinite(float(lv[s, k])):
                    failed[k] = NonFiniteLossError(members[k].next_epoch, f"training loss in batch {s + 1}",
                                                   float(lv[s, k]))
                    continue
                e = sum(padded.n_edges[members[k].view.ids[i]] for i in plans[k][0][s])
                loss_sum[k] += float(lv[s, k]) * e
                n_edges[k] += e
        opt.write_back_params(models)
        for k, m in enumerate(members):
            m.stepped_outside = True
            m.before_checkpoint = partial(opt.write_back_state, k, m.model, m.optimizer)
        seconds = (time.perf_counter() - t0) / K  # the shared step time, split evenly
        return {m.index: failed[k] if k in failed else EpochTraining(loss_sum[k], n_edges[k], lrs[k], seconds)
                for k, m in enumerate(members)}

    def validate(self, members: Sequence[MemberState], val_set: GraphSet) -> dict[int, SplitPrediction]:
        """Every member's validation in one vmapped forward per graph; {} (each member's own) if it raises."""
        if not members:
            return {}
        try:
            preds = predict_stacked([m.model for m in members], val_set, [m.val_theta for m in members],
                                    pos_weights=[m.pos_weight for m in members])
        except Exception:  # noqa: BLE001 — fall back to each member's own predict()
            return {}
        return {m.index: p for m, p in zip(members, preds)}


@torch.no_grad()
def predict_stacked(models: Sequence[nn.Module], split: GraphSet, thetas: Sequence[float | None], *,
                    pos_weights: Sequence[float | None], epoch_auc: bool = True) -> list[SplitPrediction]:
    """:func:`tracker.train.evaluate.predict` for K models of one architecture in one vmapped forward per batch.

    Every member sees the same graphs, each rotated by its own angle (``None``: unrotated), as ``predict`` does;
    when all angles are equal the batch is rotated once and shared. With ``epoch_auc`` (the per-epoch validation)
    the members' AUCs (``SplitPrediction.epoch_auc``) are computed here in one ``roc_auc_rows`` call on the stacked
    float64 logits, on the split's device, and cached in each prediction (the same value ``epoch_auc`` gives from
    its logits); the final evaluation, whose metrics do not read them, passes False.
    """
    template = models[0]
    K = len(models)
    params, buffers = torch.func.stack_module_state(list(models))
    was_training = template.training
    template.eval()
    outs: list[Tensor] = []  # (K, edges of the batch), on the device
    labels: list[Tensor] = []
    per_member = any(t != thetas[0] for t in thetas[1:])
    try:
        for batch, _ in split.batches():
            shared = {f: getattr(batch, f) for f in ("edge_index", "edge_attr") if getattr(batch, f, None) is not None}
            node_fields = [f for f in ("x", "pos") if getattr(batch, f, None) is not None]
            if per_member:
                rotated = [rotate_batch(batch, t) for t in thetas]
                nodes = {f: torch.stack([getattr(r, f) for r in rotated]) for f in node_fields}
            else:
                one_rotation = rotate_batch(batch, thetas[0])
                nodes = {f: getattr(one_rotation, f) for f in node_fields}

            def one(p, b, node_fields, shared=shared):
                data = Data(**node_fields, **shared)
                return torch.func.functional_call(template, (p, b), (data,))

            out = torch.func.vmap(one, in_dims=(0, 0, 0 if per_member else None))(params, buffers, nodes)
            outs.append(out.detach().reshape(K, -1))
            labels.append(batch.y.detach().reshape(-1))
    finally:
        template.train(was_training)
    stacked, y = torch.cat(outs, dim=1).to(torch.float64), torch.cat(labels)
    aucs = roc_auc_rows(y, stacked).tolist() if epoch_auc else [None] * K
    stacked, all_y = stacked.to("cpu"), y.to("cpu", torch.float64)
    sizes = [o.shape[1] for o in outs]
    split_labels = list(all_y.split(sizes))
    return [SplitPrediction(list(stacked[k].split(sizes)), split_labels,
                            float(edge_loss(stacked[k], all_y, pos_weights[k])), epoch_auc_value=aucs[k])
            for k in range(K)]


def final_predictions_stacked(models: Sequence[nn.Module], *, val: GraphSet, test: GraphSet,
                              val_thetas: Sequence[float | None], rotations_deg: Sequence[Sequence[float]],
                              pos_weights: Sequence[float | None]) -> list[FinalPredictions]:
    """:func:`tracker.train.evaluate.final_predictions` of K models of one architecture, by stacked forwards.

    One vmapped forward per graph for the validation split (each member at its own ``val_thetas`` angle), one for
    the unrotated test split, and one per distinct non-zero test angle over the members whose
    ``rotations_deg`` list it (members may list different angles), instead of K × (2 + angles) forwards.
    """
    K = len(models)
    vals = predict_stacked(models, val, val_thetas, pos_weights=pos_weights, epoch_auc=False)
    tests = predict_stacked(models, test, [None] * K, pos_weights=pos_weights, epoch_auc=False)
    rotated: list[dict[float, SplitPrediction]] = [{} for _ in range(K)]
    for deg in sorted({d for r in rotations_deg for d in r if d != 0}):
        who = [k for k in range(K) if deg in rotations_deg[k]]
        preds = predict_stacked([models[k] for k in who], test, [math.radians(deg)] * len(who),
                                pos_weights=[pos_weights[k] for k in who], epoch_auc=False)
        for k, p in zip(who, preds):
            rotated[k][deg] = p
    return [FinalPredictions(val=vals[k], test=tests[k], rotated=rotated[k]) for k in range(K)]


__all__ = [
    "VMAP_MODEL_CHANGE",
    "PaddedPool",
    "VmapStrategy",
    "final_predictions_stacked",
    "predict_stacked",
    "vmap_supported",
]
