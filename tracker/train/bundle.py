"""Bundled trials: K cells that share data and model architecture, trained together in one process.

A *bundle* is K trial configurations that differ only in keys that do not change the data or the parameter
shapes (seed, training angle, random rotation, lr, data fraction, c, …: :data:`BUNDLEABLE`). Every member keeps
the life of a trial of its own: its initialisation (seeded exactly as :func:`tracker.train.run_trial` seeds it, so a
member equals the same cell trained alone), its rotation, optimiser, scheduler, early stopping, checkpoint (in the
run_trial format, so resume is per member), failure (a NaN stops that member only) and its artifacts and final
metrics through the same evaluation code (:func:`tracker.train.evaluate.final_metrics`).

What the members share: one dataset load, the graphs moved to the device once, the training graphs collated once,
one process (imports, Ray worker, MLflow set-up: the sweeps layer), and with ``vmap`` the kernels of a step.

Two strategies with identical semantics:

``loop``
    one ordinary model / Adam / StepLR per member, trained epoch by epoch in turn on the shared resident batches.
    On CPU with the zoo's small widths this is the fastest (vmap's batched matmul/gather rules are slower there).
``vmap``
    the K parameter sets stacked (``torch.func.functional_call`` + ``vmap``); each step gathers every member's own
    batch (members shuffle differently) from the training graphs pre-padded once to a common node/edge count
    (padding edges join two padding nodes and are masked out of the loss), one batched forward/backward, then
    per-member gradient clipping and a functional Adam with per-member lr/betas/weight decay; the stack lives
    across epochs (rows dropped when members end), the parameters are written back to each member's own model
    every epoch and the Adam state only when the member writes a checkpoint (identical to run_trial's);
    the per-epoch validation of all members is one vmapped forward per graph (:func:`predict_stacked`). An
    epoch's steps run without a host sync (a member whose loss turns non-finite is masked on the device and failed
    at the end of the epoch), and on CUDA the step is captured once in a CUDA graph and replayed (``cuda_graphs``).
    Pays off where launch overhead dominates (CUDA). Needs a model that ``vmap`` can batch: a custom
    ``torch.autograd.Function`` must define ``setup_context`` and ``generate_vmap_rule = True`` (or ``vmap``).
``auto``
    ``vmap`` on CUDA when the model supports it and all model hyper-parameters are equal, else ``loop``.

Final evaluation (``final_eval``): ``per_member`` (default with ``loop``) evaluates each member alone when its
training ends, as run_trial does. ``batched`` (default with ``vmap``) waits until every member has ended, then
makes the predictions all finished members need (validation at their training angle, test unrotated and at each of
their ``eval.rotations_deg``) with stacked forwards of their best weights (:func:`final_predictions_stacked`) and
hands each member its share: the metrics come from the same :func:`~tracker.train.evaluate.final_metrics` code,
and ``inference_ms_per_graph`` is still timed on the member's own model. If the stacked forwards raise, every
member is evaluated alone, so a failure stays the member's.

Member failures (non-finite loss, an exception in its forward or evaluation) never stop the others: the member's
result has ``status="FAILED"`` and its error, and its reporter's optional ``fail(error=...)`` is called.
Exceptions raised by a reporter (e.g. Ray reporting, a fault injected by a test) are infrastructure failures: they
abort the whole bundle, which a retry resumes member by member from the checkpoints.
"""

from __future__ import annotations

import copy
import json
import math
import shutil
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch_geometric.data import Batch, Data

from tracker.metrics.classification import roc_auc_rows
from tracker.train.checkpoint import (
    checkpoint_due,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
    trainer_state,
)
from tracker.train.config import TrialConfig, flatten, yaml_text
from tracker.train.data import GraphSet, auto_pos_weight, epoch_plan, resolve_device, select_fraction
from tracker.train.evaluate import FinalPredictions, SplitPrediction, predict
from tracker.train.reporter import Reporter
from tracker.train.step import edge_loss, rotate_batch, train_step
from tracker.train.trial import (
    CheckpointMismatchError,
    EarlyStopping,
    NonFiniteLossError,
    TrialResult,
    config_hash,
    finalise_trial,
    load_trial_splits,
    restore_best,
    seed_everything,
)

Strategy = Literal["auto", "loop", "vmap"]
FinalEval = Literal["auto", "batched", "per_member"]

#: dotted keys that may differ between the members of a bundle (anything else must be equal)
BUNDLEABLE: frozenset[str] = frozenset(
    {
        "train.seed", "train.train_rotation_deg", "train.random_rotation", "train.lr", "train.fraction",
        "train.epochs", "train.patience", "train.monitor", "train.lr_step", "train.lr_gamma", "train.grad_clip",
        "train.weight_decay", "train.betas", "train.pos_weight", "train.checkpoint_every",
    }
)
#: model hyper-parameters that change no parameter shape; with ``vmap`` they must still be equal (Python floats
#: inside the module cannot be batched), ``loop`` builds each member's own model
MODEL_BUNDLEABLE: frozenset[str] = frozenset({"model.c"})
#: the graph fields a model may read; the vmap strategy stacks only these
MODEL_FIELDS = ("x", "pos", "edge_index", "edge_attr")

VMAP_MODEL_CHANGE = (
    "every torch.autograd.Function inside the model must support torch.func: move the ctx work of forward() into "
    "a `setup_context(ctx, inputs, output)` staticmethod (forward(xc, eps, act) without ctx; return the saved "
    "intermediates as extra outputs marked non-differentiable, or recompute them in backward) and set "
    "`generate_vmap_rule = True` (e.g. tracker.models.common._NormActFM)"
)


class BundleError(ValueError):
    """Configurations that cannot be trained as one bundle; the message names the key, members and values."""


@dataclass
class MemberResult(TrialResult):
    """A member's :class:`TrialResult` plus its fate: ``status`` FINISHED or FAILED, ``error`` the message;
    ``final_eval`` how its final metrics were computed: ``"batched"`` (from the bundle's stacked forwards) or
    ``"per_member"`` (its own forwards, as run_trial)."""

    status: str = "FINISHED"
    error: str | None = None
    exception: BaseException | None = None
    final_eval: str | None = None


# -- validation --------------------------------------------------------------------------------------------------
def bundle_differences(configs: Sequence[TrialConfig]) -> dict[str, list[Any]]:
    """Dotted keys whose values differ between ``configs``, with each member's value."""
    flat = [flatten(c.model_dump(mode="json")) for c in configs]
    keys = sorted(set().union(*flat)) if flat else []
    diff = {}
    for k in keys:
        values = [f.get(k, "<unset>") for f in flat]
        if any(v != values[0] for v in values[1:]):
            diff[k] = values
    return diff


def validate_bundle(configs: Sequence[TrialConfig], *, strategy: Strategy = "auto") -> dict[str, list[Any]]:
    """Raise :class:`BundleError` unless ``configs`` may share one bundle; return the differing keys.

    Allowed to differ: :data:`BUNDLEABLE` and every ``eval.*`` key; ``model.c``-like keys
    (:data:`MODEL_BUNDLEABLE`) except with ``strategy="vmap"``. Data, model name and shapes, device and batch size
    must be equal. Seeds must differ or something else must (two identical members are a mistake).
    """
    if len(configs) == 0:
        raise BundleError("a bundle needs at least one trial configuration (got none)")
    for i, c in enumerate(configs):
        if not isinstance(c, TrialConfig):
            raise BundleError(f"bundle member {i}: expected a TrialConfig, got {type(c).__name__}")
    diff = bundle_differences(configs)
    allowed = BUNDLEABLE | (MODEL_BUNDLEABLE if strategy != "vmap" else frozenset())
    for key, values in diff.items():
        if key in allowed or key.startswith("eval."):
            continue
        why = ("the vmap strategy batches parameters only; use strategy='loop' or bundle by this key"
               if key in MODEL_BUNDLEABLE else
               f"only {', '.join(sorted(BUNDLEABLE | MODEL_BUNDLEABLE))} and eval.* may differ within a bundle")
        raise BundleError(f"bundle members differ in {key!r}: {values} ({why})")
    dumps = [json.dumps(c.model_dump(mode="json"), sort_keys=True) for c in configs]
    for i in range(len(dumps)):
        for j in range(i):
            if dumps[i] == dumps[j]:
                raise BundleError(f"bundle members {j} and {i} are the same trial configuration")
    return diff


def _architecture(model: nn.Module) -> list[tuple[str, tuple[int, ...], torch.dtype]]:
    return [(k, tuple(v.shape), v.dtype) for k, v in model.state_dict().items()]


# -- shared data -------------------------------------------------------------------------------------------------
class _Pool:
    """The training split resident on the device once; with batch size 1 each graph collated once, for everyone."""

    def __init__(self, graphs: Sequence[Data], *, device: torch.device, batch_size: int) -> None:
        self.graphs = [copy.copy(g).to(device) for g in graphs]  # Data.to is in place: leave the caller's graphs
        self.batch_size = batch_size
        self.device = device
        self.single = [Batch.from_data_list([g]) for g in self.graphs] if batch_size == 1 else None


class _PoolView:
    """A member's training subset (``train.fraction``) of the pool, with :class:`GraphSet`'s ``batches``."""

    def __init__(self, pool: _Pool, ids: Sequence[int]) -> None:
        self.pool = pool
        self.ids = [int(i) for i in ids]

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def graphs(self) -> list[Data]:
        return [self.pool.graphs[i] for i in self.ids]

    def chunks(self, order: Tensor) -> list[list[int]]:
        """Positions (into this view) of each batch, like :meth:`GraphSet.batches`."""
        idx = [int(i) for i in order]
        bs = self.pool.batch_size
        return [idx[s : s + bs] for s in range(0, len(idx), bs)]

    def batches(self, order: Tensor) -> list[tuple[Batch, Tensor]]:
        out = []
        for chunk in self.chunks(order):
            if self.pool.single is not None:
                b = self.pool.single[self.ids[chunk[0]]]
            else:
                b = Batch.from_data_list([self.pool.graphs[self.ids[i]] for i in chunk])
            out.append((b, torch.tensor(chunk, dtype=torch.long)))
        return out


# -- members -----------------------------------------------------------------------------------------------------
class _Member:
    """One trial inside a bundle: its own model, optimiser, scheduler, early stopping, RNG and checkpoint."""

    def __init__(self, index: int, config: TrialConfig, reporter: Reporter, workdir: Path) -> None:
        self.index = index
        self.config = config
        self.tc = config.train
        self.reporter = reporter
        self.workdir = Path(workdir)
        self.history: list[dict[str, float]] = []
        self.next_epoch = 1
        self.train_seconds = 0.0
        self.finished = False
        self.failed: BaseException | None = None
        self.result: MemberResult | None = None
        #: the vmap stack's write-back of this member's Adam state, owed until its next checkpoint
        self.owed: Callable[[], None] | None = None

    @property
    def training(self) -> bool:
        return self.failed is None and not self.finished and self.next_epoch <= self.tc.epochs

    def build(self, *, device: torch.device, pool: _Pool, resume: bool) -> None:
        """Everything :func:`run_trial` sets up before its first epoch, in the same order (same RNG draws)."""
        from tracker.models import build_model, count_parameters

        tc = self.tc
        self.view = _PoolView(pool, select_fraction(list(range(len(pool.graphs))), tc.fraction, seed=tc.seed))
        seed_everything(tc.seed)
        self.model = build_model(self.config.model.name, **self.config.model.hparams()).to(device)
        self.n_params = int(count_parameters(self.model))
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=tc.lr, betas=tuple(tc.betas),
                                          weight_decay=tc.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.StepLR(self.optimizer, step_size=tc.lr_step, gamma=tc.lr_gamma)
        self.stopper = EarlyStopping(tc.monitor, tc.patience)
        self.generator = torch.Generator().manual_seed(tc.seed)
        if tc.pos_weight == "auto":
            self.pos_weight = auto_pos_weight(self.view.graphs)
        else:
            self.pos_weight = None if tc.pos_weight is None else float(tc.pos_weight)
        self.base_theta = math.radians(tc.train_rotation_deg)
        self.val_theta = self.base_theta if self.base_theta != 0 else None
        self.chash = config_hash(self.config)

        state = load_checkpoint(self.workdir)
        if state is not None and not resume:
            shutil.rmtree(self.workdir / "checkpoint", ignore_errors=True)
            state = None
        if state is not None:
            if state["config_hash"] != self.chash:
                raise CheckpointMismatchError(
                    f"{self.workdir / 'checkpoint'} was written by a different trial configuration; "
                    "remove it or call run_bundle(..., resume=False)"
                )
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            self.stopper.load_state_dict(state["early_stopping"])
            set_rng_state(state["rng"], self.generator)
            self.history = [dict(h) for h in state["history"]]
            self.next_epoch = int(state["epoch"]) + 1
            self.train_seconds = float(state["train_seconds"])
            self.finished = bool(state["finished"])
        self.rng = rng_state(self.generator)  # the global RNG as this member alone would have it now

    def announce(self) -> None:
        resolved = self.config.model_dump(mode="json")
        self.reporter.start(config=resolved, n_params=self.n_params)
        cfg_path = self.workdir / "config.yaml"
        cfg_path.write_text(yaml_text(resolved))
        self.reporter.artifact(cfg_path)

    # the epoch, split in the parts the strategies share
    def plan(self) -> tuple[Tensor, Tensor, bool]:
        """This epoch's order and angles, drawn from the member's own generator (as run_trial draws them)."""
        order, theta = epoch_plan(len(self.view), self.generator, base_theta=self.base_theta,
                                  random_rotation=self.tc.random_rotation)
        rotate = self.tc.random_rotation or self.base_theta != 0
        return order, theta, rotate

    def end_epoch(self, *, loss_sum: float, n_edges: int, lr: float, seconds_train: float,
                  val_set: GraphSet, val: SplitPrediction | None = None) -> dict[str, Any]:
        """Scheduler step, validation (``val``: already computed for the whole stack), history, early stopping
        and, when due (``train.checkpoint_every``), the checkpoint; returns what to report."""
        epoch = self.next_epoch
        t0 = time.perf_counter()
        self.scheduler.step()
        if val is None:
            val = predict(self.model, val_set, self.val_theta, pos_weight=self.pos_weight)
        if not math.isfinite(val.loss):
            raise NonFiniteLossError(epoch, "validation loss", val.loss)
        seconds = seconds_train + time.perf_counter() - t0
        self.train_seconds += seconds
        metrics = {"train_loss": loss_sum / max(n_edges, 1), "val_loss": val.loss, "val_auc": val.epoch_auc(),
                   "lr": lr, "epoch_seconds": seconds}
        self.history.append({"epoch": float(epoch), **metrics})
        stop = self.stopper.update(epoch, metrics, self.model)
        self.finished = stop or epoch == self.tc.epochs
        ckpt = None  # epochs between checkpoints (train.checkpoint_every) report none, as run_trial
        if checkpoint_due(epoch, every=self.tc.checkpoint_every, finished=self.finished):
            if self.owed is not None:
                self.owed()
                self.owed = None
            ckpt = save_checkpoint(self.workdir, trainer_state(
                config_hash=self.chash, epoch=epoch, finished=self.finished, model=self.model,
                optimizer=self.optimizer, scheduler=self.scheduler, early_stopping=self.stopper.state_dict(),
                rng=self.rng, history=self.history, train_seconds=self.train_seconds,
            ))
        self.next_epoch = epoch + 1
        return {"epoch": epoch, "metrics": metrics, "checkpoint_dir": ckpt}

    def fail(self, exc: BaseException) -> None:
        self.failed = exc
        msg = f"{type(exc).__name__}: {exc}"
        (self.workdir / "error.txt").write_text(msg + "\n")
        self.result = MemberResult(metrics={}, artifacts_dir=self.workdir, history=list(self.history),
                                   status="FAILED", error=msg, exception=exc)
        hook = getattr(self.reporter, "fail", None)
        if callable(hook):
            hook(error=exc)

    def evaluate(self, *, val_set: GraphSet, test_set: GraphSet, predictions: FinalPredictions | None = None) -> None:
        """The best epoch on the test split and the artifacts, exactly as :func:`run_trial` ends (``predictions``:
        this member's share of the bundle's batched final forwards)."""
        res = finalise_trial(
            self.model, stopper=self.stopper, history=self.history, train_seconds=self.train_seconds,
            val_set=val_set, test_set=test_set, eval_cfg=self.config.eval, val_theta=self.val_theta,
            pos_weight=self.pos_weight, n_params=self.n_params, workdir=self.workdir, reporter=self.reporter,
            predictions=predictions,
        )
        self.result = MemberResult(metrics=res.metrics, artifacts_dir=res.artifacts_dir, history=res.history,
                                   final_eval="per_member" if predictions is None else "batched")


# -- the loop strategy -------------------------------------------------------------------------------------------
def _loop_epoch(m: _Member) -> tuple[float, int, float, float]:
    """One epoch of ``m`` on its own model, exactly :func:`run_trial`'s inner loop; returns loss sum, edges, lr, s."""
    set_rng_state(m.rng, m.generator)
    t0 = time.perf_counter()
    lr = m.optimizer.param_groups[0]["lr"]
    order, theta, rotate = m.plan()
    loss_sum, n_edges = 0.0, 0
    m.model.train()
    for i, (batch, idx) in enumerate(m.view.batches(order)):
        angles = theta[idx] if rotate else None
        loss = float(train_step(m.model, m.optimizer, batch, angles, pos_weight=m.pos_weight,
                                grad_clip=m.tc.grad_clip))
        if not math.isfinite(loss):
            raise NonFiniteLossError(m.next_epoch, f"training loss in batch {i + 1}", loss)
        e = int(batch.edge_index.shape[1])
        loss_sum += loss * e
        n_edges += e
    m.rng = rng_state(m.generator)
    return loss_sum, n_edges, lr, time.perf_counter() - t0


# -- the vmap strategy -------------------------------------------------------------------------------------------
class _PaddedPool:
    """The pool's graphs padded once to a common node/edge count and stacked: ``[G + 1, ...]`` per field.

    Graph ``G`` is all padding (it fills short last batches). Padding nodes copy node 0/1 of their graph (benign,
    finite inputs); padding edges run between the last two padding nodes, never touch a real node, and have
    ``mask = 0`` so they are left out of the loss.
    """

    def __init__(self, graphs: Sequence[Data], *, device: torch.device) -> None:
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
        node_fields = [f for f in fields if f not in ("edge_index", "edge_attr")]
        self.node: dict[str, Tensor] = {}
        for f in node_fields:
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


def _bce_with_logits(logits: Tensor, y: Tensor, pos_weight: Tensor | None) -> Tensor:
    """Element-wise BCE with logits, the formula of ``F.binary_cross_entropy_with_logits`` (vmap friendly)."""
    max_val = (-logits).clamp_min(0)
    soft = torch.log(torch.exp(-max_val) + torch.exp(-logits - max_val)) + max_val
    if pos_weight is None:
        return (1 - y) * logits + soft
    return (1 - y) * logits + ((pos_weight - 1) * y + 1) * soft


class _Stacked:
    """K parameter sets of one architecture trained as one: batched forward/backward, per-member Adam."""

    def __init__(self, template: nn.Module) -> None:
        self.template = template
        self.names = [n for n, _ in template.named_parameters()]
        self.buffer_names = [n for n, _ in template.named_buffers()]

    def _loss(self, params: dict[str, Tensor], buffers: dict[str, Tensor], inputs: dict[str, Tensor],
              pos_weight: Tensor | None) -> Tensor:
        data = Data(**{f: inputs[f] for f in MODEL_FIELDS if f in inputs})
        logits = torch.func.functional_call(self.template, (params, buffers), (data,))
        mask = inputs["mask"].to(logits.dtype)
        per_edge = _bce_with_logits(logits, inputs["y"].to(logits.dtype), pos_weight)
        return (per_edge * mask).sum() / mask.sum().clamp_min(1.0)

    def losses(self, params, buffers, inputs, pos_weight):
        """Per-member mean loss [K] of one step (graph inputs batched along dim 0)."""
        in_dims = (0, 0, {k: 0 for k in inputs}, None if pos_weight is None else 0)
        return torch.func.vmap(self._loss, in_dims=in_dims, randomness="different")(
            params, buffers, inputs, pos_weight)


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
    st = _Stacked(model)
    params = {n: p.detach().unsqueeze(0).expand(k, *p.shape).clone().requires_grad_()
              for n, p in model.named_parameters()}
    buffers = {n: b.unsqueeze(0).expand(k, *b.shape).clone() for n, b in model.named_buffers()}
    try:
        loss = st.losses(params, buffers, small, None).sum()
        loss.backward()
    except Exception as exc:  # noqa: BLE001 — any failure means "cannot vmap this model"
        return False, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return True, ""


class StackedAdam:
    """K models of one architecture as one stack: batched loss, per-member grad clipping and Adam.

    Built from the members' own modules and ``torch.optim.Adam`` instances (state read from them, fresh or
    resumed) and written back into them by :meth:`write_back` (parameters: :meth:`write_back_params`, Adam state:
    :meth:`write_back_state`), so checkpoints stay in run_trial's format; :meth:`select` keeps some members'
    rows, :meth:`refresh` reads the lr a scheduler set. The update is ``torch.optim.Adam``'s single-tensor
    algorithm (no amsgrad) with per-member lr, betas, eps and weight decay; clipping is ``clip_grad_norm_`` (L2
    over all parameters, coefficient clamped at 1) per member.
    """

    def __init__(self, models: Sequence[nn.Module], optimizers: Sequence[torch.optim.Optimizer], *,
                 grad_clips: Sequence[float | None], pos_weights: Sequence[float | None],
                 cuda_graphs: bool = False) -> None:
        self.stacked = _Stacked(models[0])
        K = len(models)
        ref = next(iter(models[0].parameters()))
        dtype, device = ref.dtype, ref.device
        self.dtype, self.device = dtype, device
        names = self.stacked.names
        with torch.no_grad():
            self.params = {n: torch.stack([m.get_parameter(n).detach() for m in models]).requires_grad_()
                           for n in names}
            self.buffers = {n: torch.stack([m.get_buffer(n) for m in models]) for n in self.stacked.buffer_names}
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
        self._graph: torch.cuda.CUDAGraph | None = None
        self._static: dict[str, Tensor] = {}
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

        def vec(values: Sequence[float]) -> Tensor:
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

    def _core(self, padded: _PaddedPool, ids: Tensor, theta: Tensor | None, active: Tensor, step_size: Tensor,
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

    def _capture(self, padded: _PaddedPool, ids: Tensor, theta: Tensor | None, step_size: Tensor,
                 bc2s: Tensor) -> None:
        """Capture :meth:`_core` in a CUDA graph on static copies of one step's inputs (every step of the padded
        pool has the same shapes, so one graph serves them all). The warm-up runs with no member active, which
        leaves parameters and Adam state as they are. Any failure (an op that syncs with the host, an op that
        cannot be captured) leaves the stack eager and says why in :attr:`graph_error`."""
        st = {"ids": ids.clone(), "active": torch.zeros(self.K, dtype=torch.bool, device=self.device),
              "step_size": step_size.clone(), "bc2s": bc2s.clone()}
        if theta is not None:
            st["theta"] = theta.clone()

        def core() -> Tensor:
            return self._core(padded, st["ids"], st.get("theta"), st["active"], st["step_size"], st["bc2s"])

        previous = torch.cuda.get_sync_debug_mode()
        try:
            side = torch.cuda.Stream(self.device)
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side), warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # "sync debug mode is a prototype feature"
                torch.cuda.set_sync_debug_mode("error")  # a host sync inside the step cannot be captured
                try:
                    for _ in range(2):
                        core()
                finally:
                    torch.cuda.set_sync_debug_mode(previous)
            torch.cuda.current_stream(self.device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, capture_error_mode="thread_local"):
                st["losses"] = core()
        except Exception as exc:  # noqa: BLE001 — the eager step computes the same
            self.graph_error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            self.alive.fill_(True)
            return
        self._graph, self._static = graph, st

    def _one(self, padded: _PaddedPool, ids: Tensor, theta: Tensor | None, active: Tensor, step_size: Tensor,
             bc2s: Tensor) -> Tensor:
        """One step on device inputs: replayed from the CUDA graph when there is one, else eager."""
        if self.cuda_graphs and self._graph is None and self.graph_error is None:
            self._capture(padded, ids, theta, step_size, bc2s)
        st = self._static
        # eager without a graph, or when the step's angles do not match the graph's inputs (same results)
        if self._graph is None or (theta is None) != ("theta" not in st):
            return self._core(padded, ids, theta, active, step_size, bc2s)
        st["ids"].copy_(ids)
        if theta is not None:
            st["theta"].copy_(theta)
        st["active"].copy_(active)
        st["step_size"].copy_(step_size)
        st["bc2s"].copy_(bc2s)
        self._graph.replay()
        return st["losses"]

    def run_steps(self, padded: _PaddedPool, ids: Tensor, theta: Tensor | None, active: Tensor) -> Tensor:
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
        self.write_back_params(models, optimizers)
        for k, (m, opt) in enumerate(zip(models, optimizers)):
            self.write_back_state(k, m, opt)

    def write_back_params(self, models: Sequence[nn.Module], optimizers: Sequence[torch.optim.Optimizer]) -> None:
        """Copy every member's parameters into ``models[k]`` (one fused copy) and mark the optimisers stepped."""
        dst, src = [], []
        with torch.no_grad():
            for n in self.stacked.names:
                dst += [m.get_parameter(n) for m in models]
                src += list(self.params[n].detach().unbind(0))
            torch._foreach_copy_(dst, src)
        for opt in optimizers:
            opt._opt_called = True  # stepped by us: StepLR need not warn about the call order

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


#: a vmap bundle's stack between epochs: the member indices of its rows and the stack
_Stack = tuple[list[int], StackedAdam]


def _vmap_epoch(members: list[_Member], padded: _PaddedPool, stack: _Stack | None = None, *,
                cuda_graphs: bool = False) -> tuple[dict[int, tuple], _Stack]:
    """One epoch of every member in ``members`` at once; returns index → (loss sum, edges, lr, seconds), and the
    stack to hand to the next epoch.

    Members that fail in this epoch get ``m.failed`` set (and no entry). ``stack``: the previous epoch's (rows of
    members that left are dropped); None builds it from the members' models and optimisers. At the end every
    member's parameters are written back to its own model (validation, early stopping) and its Adam state is owed
    to its next checkpoint (``m.owed``), so checkpoints are per member and equal run_trial's.
    """
    t0 = time.perf_counter()
    K = len(members)
    plans = []
    for m in members:
        set_rng_state(m.rng, m.generator)
        order, theta, rotate = m.plan()
        plans.append((m.view.chunks(order), theta, rotate))
        m.rng = rng_state(m.generator)
    n_steps = max(len(p[0]) for p in plans)
    B = members[0].view.pool.batch_size
    any_rotate = any(p[2] for p in plans)
    models = [m.model for m in members]
    optimizers = [m.optimizer for m in members]
    lrs = [float(o.param_groups[0]["lr"]) for o in optimizers]
    who = [m.index for m in members]
    if stack is None:
        opt = StackedAdam(models, optimizers, grad_clips=[m.tc.grad_clip for m in members],
                          pos_weights=[m.pos_weight for m in members], cuda_graphs=cuda_graphs)
    else:
        opt = stack[1] if stack[0] == who else stack[1].select([stack[0].index(i) for i in who])
        opt.refresh(models, optimizers)
    # the whole epoch's batches, angles and activity, built on the host and moved to the device once
    ids = torch.full((n_steps, K, B), padded.dummy, dtype=torch.long)
    theta = torch.zeros((n_steps, K, B), dtype=torch.float64) if any_rotate else None
    active = torch.zeros((n_steps, K), dtype=torch.bool)
    for k, (chunks, th, rot) in enumerate(plans):
        gids = members[k].view.ids
        for s, chunk in enumerate(chunks):
            active[s, k] = True
            ids[s, k, : len(chunk)] = torch.tensor([gids[i] for i in chunk])
            if rot:
                theta[s, k, : len(chunk)] = th[torch.tensor(chunk)]
    lv = opt.run_steps(padded, ids, theta, active)
    loss_sum = [0.0] * K
    n_edges = [0] * K
    for s in range(n_steps):
        for k in range(K):
            if not active[s, k] or members[k].failed is not None:
                continue
            if not math.isfinite(float(lv[s, k])):
                members[k].failed = NonFiniteLossError(members[k].next_epoch, f"training loss in batch {s + 1}",
                                                       float(lv[s, k]))
                continue
            e = sum(padded.n_edges[members[k].view.ids[i]] for i in plans[k][0][s])
            loss_sum[k] += float(lv[s, k]) * e
            n_edges[k] += e
    opt.write_back_params(models, optimizers)
    for k, m in enumerate(members):
        m.owed = partial(opt.write_back_state, k, m.model, m.optimizer)
    seconds = (time.perf_counter() - t0) / K  # the shared step time, split evenly
    outs = {m.index: (loss_sum[k], n_edges[k], lrs[k], seconds) for k, m in enumerate(members) if m.failed is None}
    return outs, (who, opt)


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
    names = [n for n, _ in template.named_parameters()]
    params = {n: torch.stack([m.get_parameter(n).detach() for m in models]) for n in names}
    buffers = {n: torch.stack([m.get_buffer(n) for m in models]) for n, _ in template.named_buffers()}
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
    labels = list(all_y.split(sizes))
    return [SplitPrediction(list(stacked[k].split(sizes)), labels,
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


# -- the driver --------------------------------------------------------------------------------------------------
def choose_strategy(strategy: Strategy, *, device: torch.device, diff: dict[str, list[Any]],
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


def run_bundle(
    configs: Sequence[TrialConfig],
    reporters: Sequence[Reporter],
    *,
    workdirs: Sequence[Path],
    strategy: Strategy = "auto",
    resume: bool = True,
    splits: tuple[Sequence[Data], Sequence[Data], Sequence[Data]] | None = None,
    log: Any = None,
    final_eval: FinalEval = "auto",
    on_round_end: Callable[[], None] | None = None,
    cuda_graphs: bool = True,
) -> list[MemberResult]:
    """Train and evaluate the K trials of ``configs`` together; one :class:`MemberResult` per member, in order.

    Each member ``i`` reports to ``reporters[i]`` and writes its checkpoint and artifacts in ``workdirs[i]``
    exactly as ``run_trial(configs[i], reporters[i], workdir=workdirs[i], resume=resume)`` would, with the same
    metrics (up to float round-off with ``vmap`` or a batched final evaluation). ``splits`` = (train, val, test)
    graphs already in memory skips the dataset load; ``log`` is an optional ``callable(str)`` told which strategy
    runs and why. ``final_eval``: ``batched`` evaluates every member that finished at the end of the bundle from
    stacked forwards (:func:`final_predictions_stacked`; falls back to ``per_member`` if they raise),
    ``per_member`` evaluates each member alone when its training ends, ``auto`` is ``batched`` with the vmap
    strategy and ``per_member`` with loop (faster on CPU). ``on_round_end``: called after every round (each
    member still training has run one epoch and made its reports) and once more after the final evaluation, so a
    reporter may buffer the members' reports of a round and send them together (sweeps sends one Ray report per
    round instead of one per member). ``cuda_graphs``: with ``vmap`` on CUDA, capture the stacked step (gather,
    forward, backward, clipping, Adam) once in a CUDA graph and replay it for every step, so that a step costs one
    launch instead of hundreds of Python-dispatched kernels; a step that cannot be captured runs eagerly (``log``
    says why). Results equal the eager step's.
    """
    configs = list(configs)
    if len(reporters) != len(configs) or len(workdirs) != len(configs):
        raise BundleError(f"run_bundle: {len(configs)} configs but {len(reporters)} reporters and "
                          f"{len(workdirs)} workdirs (one of each per member)")
    if len({Path(w).resolve() for w in workdirs}) != len(workdirs):
        raise BundleError("run_bundle: two members share a workdir (each needs its own checkpoint and artifacts)")
    diff = validate_bundle(configs, strategy=strategy)
    if final_eval not in ("auto", "batched", "per_member"):
        raise BundleError(f"final_eval must be 'auto', 'batched' or 'per_member', got {final_eval!r}")
    model_keys = [k for k in diff if k.startswith("model.")]
    if final_eval == "batched" and model_keys:
        raise BundleError(f"final_eval 'batched': bundle members differ in {model_keys[0]!r}: {diff[model_keys[0]]} "
                          "(stacked forwards batch parameters only; use final_eval='per_member')")
    previous_det = torch.are_deterministic_algorithms_enabled()
    previous_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    if configs[0].train.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        return _run_bundle(configs, reporters, [Path(w) for w in workdirs], strategy=strategy, resume=resume,
                           splits=splits, diff=diff, log=log, final_eval=final_eval,
                           on_round_end=on_round_end or (lambda: None), cuda_graphs=cuda_graphs)
    finally:
        torch.use_deterministic_algorithms(previous_det, warn_only=previous_warn)


def _run_bundle(configs, reporters, workdirs, *, strategy, resume, splits, diff, log,
                final_eval, on_round_end, cuda_graphs) -> list[MemberResult]:
    first = configs[0]
    if splits is None:
        train_graphs, val_graphs, test_graphs, _ = load_trial_splits(first)
    else:
        train_graphs, val_graphs, test_graphs = (list(s) for s in splits)
    if len(train_graphs) == 0:
        raise ValueError("the training split is empty")
    device = resolve_device(first.train.device)
    if device.type == "cuda" and first.train.deterministic:
        import os

        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

    pool = _Pool(train_graphs, device=device, batch_size=first.train.batch_size)
    val_set = GraphSet(val_graphs, device=device)
    test_set = GraphSet(test_graphs, device=device)

    members = []
    for i, (cfg, rep, wd) in enumerate(zip(configs, reporters, workdirs)):
        wd.mkdir(parents=True, exist_ok=True)
        m = _Member(i, cfg, rep, wd)
        m.build(device=device, pool=pool, resume=resume)
        members.append(m)
    arch = _architecture(members[0].model)
    for m in members[1:]:
        if _architecture(m.model) != arch:
            raise BundleError(f"bundle member {m.index} has a different model architecture (parameter names/shapes) "
                              f"from member 0: {diff}")
    chosen, why = choose_strategy(strategy, device=device, diff=diff, model=members[0].model, graph=pool.graphs[0])
    batched = final_eval == "batched" or (final_eval == "auto" and chosen == "vmap")
    if log is not None:
        log(f"bundle of {len(members)}: strategy {chosen} ({why}); final evaluation "
            f"{'batched' if batched else 'per member'}")
    for m in members:
        (m.workdir / "error.txt").unlink(missing_ok=True)
        m.announce()

    padded = _PaddedPool(pool.graphs, device=device) if chosen == "vmap" else None

    def after_epoch(m: _Member, out: tuple[float, int, float, float], val: SplitPrediction | None = None) -> None:
        try:
            report = m.end_epoch(loss_sum=out[0], n_edges=out[1], lr=out[2], seconds_train=out[3], val_set=val_set,
                                 val=val)
        except Exception as exc:  # noqa: BLE001 — the member fails, the bundle goes on
            m.fail(exc)
            return
        m.reporter.epoch(**report)  # reporter errors abort the bundle (resumable)

    def ended(m: _Member) -> None:  # per-member final evaluation as soon as a member's training ends
        if not batched and m.failed is None and not m.training:
            _evaluate(m, val_set, test_set)

    for m in members:  # members resumed after their last epoch only need their evaluation
        ended(m)
    stack = None  # the vmap stack, kept from epoch to epoch
    while True:
        on_round_end()
        live = [m for m in members if m.training]
        if not live:
            break
        if chosen == "loop":
            for m in live:
                try:
                    out = _loop_epoch(m)
                except Exception as exc:  # noqa: BLE001
                    m.fail(exc)
                    continue
                after_epoch(m, out)
                ended(m)
        else:
            previous = stack
            try:
                outs, stack = _vmap_epoch(live, padded, stack, cuda_graphs=cuda_graphs)
            except Exception as exc:  # noqa: BLE001 — a batched failure cannot be pinned on one member
                for m in live:
                    m.fail(exc)
                break
            opt = stack[1]
            if log is not None and opt.cuda_graphs and (previous is None or previous[1] is not opt):
                log(f"stacked step of {opt.K} members: "
                    + ("CUDA graph" if opt.graph_error is None else f"eager (CUDA graph failed: {opt.graph_error})"))
            ok = [m for m in live if m.failed is None]
            vals: dict[int, SplitPrediction] = {}
            if ok:
                t0 = time.perf_counter()
                try:
                    preds = predict_stacked([m.model for m in ok], val_set, [m.val_theta for m in ok],
                                            pos_weights=[m.pos_weight for m in ok])
                    vals = {m.index: p for m, p in zip(ok, preds)}
                except Exception:  # noqa: BLE001 — fall back to each member's own predict()
                    vals = {}
                share = (time.perf_counter() - t0) / len(ok) if vals else 0.0
                outs = {i: (o[0], o[1], o[2], o[3] + share) for i, o in outs.items()}
            for m in live:
                if m.failed is not None:
                    m.fail(m.failed)
                    continue
                after_epoch(m, outs[m.index], vals.get(m.index))
                ended(m)
    if batched:
        _evaluate_batched([m for m in members if m.failed is None and m.result is None], val_set, test_set, log=log)
        on_round_end()
    return [m.result for m in members]


def _evaluate(m: _Member, val_set: GraphSet, test_set: GraphSet, predictions: FinalPredictions | None = None) -> None:
    try:
        m.evaluate(val_set=val_set, test_set=test_set, predictions=predictions)
    except Exception as exc:
        if m.result is not None and m.result.status == "FINISHED":
            raise  # the reporter's finish failed: infrastructure, abort
        m.fail(exc)


def _evaluate_batched(members: list[_Member], val_set: GraphSet, test_set: GraphSet, *, log: Any) -> None:
    """Final evaluation of ``members`` (all finished) from stacked forwards of their best weights, then each
    member's metrics and artifacts by :func:`finalise_trial` as alone; member by member if the stack raises."""
    if not members:
        return
    for m in members:
        restore_best(m.model, m.stopper)  # the weights finalise_trial evaluates
    t0 = time.perf_counter()
    try:
        preds = final_predictions_stacked(
            [m.model for m in members], val=val_set, test=test_set, val_thetas=[m.val_theta for m in members],
            rotations_deg=[m.config.eval.rotations_deg for m in members], pos_weights=[m.pos_weight for m in members],
        )
    except Exception as exc:  # noqa: BLE001 — each member's own forwards decide who fails
        if log is not None:
            log(f"batched final evaluation failed ({type(exc).__name__}: {exc}); evaluating member by member")
        preds = [None] * len(members)
    else:
        if log is not None:
            log(f"batched final evaluation of {len(members)} members: stacked forwards "
                f"{time.perf_counter() - t0:.3f} s")
    for m, p in zip(members, preds):
        _evaluate(m, val_set, test_set, p)
    if log is not None:
        log(f"final evaluation of {len(members)} members: {time.perf_counter() - t0:.3f} s")


__all__ = [
    "BUNDLEABLE",
    "MODEL_BUNDLEABLE",
    "BundleError",
    "MemberResult",
    "StackedAdam",
    "bundle_differences",
    "choose_strategy",
    "final_predictions_stacked",
    "predict_stacked",
    "run_bundle",
    "validate_bundle",
    "vmap_supported",
]
