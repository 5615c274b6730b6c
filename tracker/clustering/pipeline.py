"""The chained stages at work on one event: sub-events after the noise classifier, each stage's loss, and the
inference chain (noise filter → embedding → radius graph → edge pruning → condensation coordinates) that both
training of later stages and evaluation use.

An :class:`Event` holds the full event (``full``: every hit, for the metrics) and the hits the pipeline works on
(``data``: the hits the noise classifier kept, with the dataset's geometric edges among them; ``kept``: their
indices in ``full``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.nn.functional import binary_cross_entropy_with_logits
from torch_geometric.data import Data

from tracker.clustering.config import ClusteringTrialConfig
from tracker.clustering.graphs import edge_truth, radius_graph, same_particle_pairs
from tracker.clustering.models.metric_learning import hinge_losses, interesting_hits
from tracker.clustering.models.object_condensation import condensation_losses


@dataclass
class Event:
    """One event: all hits (``full``) and the hits the stages see (``data``, indices ``kept`` into ``full``)."""

    full: Data
    data: Data
    kept: Tensor
    cache: dict[str, Tensor] = field(default_factory=dict)


def sub_event(full: Data, keep: Tensor) -> Event:
    """The hits where ``keep`` is true, with the geometric edges among them (indices renumbered)."""
    kept = torch.nonzero(keep).squeeze(1)
    if bool(keep.all()):
        return Event(full=full, data=full, kept=kept)
    new_index = torch.full((full.num_nodes,), -1, dtype=torch.long, device=keep.device)
    new_index[kept] = torch.arange(kept.numel(), device=keep.device)
    data = Data(
        x=full.x[kept], pos=full.pos[kept], pid=full.pid[kept], pt=full.pt[kept], num_nodes=kept.numel()
    )
    if getattr(full, "edge_index", None) is not None:
        ei = full.edge_index
        ok = keep[ei[0]] & keep[ei[1]]
        data.edge_index = new_index[ei[:, ok]]
    return Event(full=full, data=data, kept=kept)


def stage_loss(
    stage: str,
    model: nn.Module,
    event: Event,
    data: Data,
    cfg: ClusteringTrialConfig,
    *,
    noise_weight: float = 1.0,
) -> tuple[Tensor, dict[str, float]]:
    """The training loss of ``stage`` on ``event`` (``data``: the event's hits, possibly rotated) and its parts."""
    tc = cfg.train
    if stage == "noise_classifier":
        target = (data.pid > 0).to(data.x.dtype)
        weight = torch.where(target > 0, torch.ones_like(target), torch.full_like(target, noise_weight))
        loss = binary_cross_entropy_with_logits(model(data), target, weight=weight)
        return loss, {}
    if stage == "metric_learning":
        pairs = event.cache.get("ml_pairs")
        if pairs is None:
            pairs = same_particle_pairs(data.pid, interesting_hits(data.pid, data.pt, pt_min=tc.ml_pt_min))
            event.cache["ml_pairs"] = pairs
        parts = hinge_losses(
            model(data),
            data.pid,
            data.pt,
            r_emb=tc.ml_r_emb,
            pt_min=tc.ml_pt_min,
            max_neighbours=cfg.pipeline.max_neighbours,
            attractive_pairs=pairs,
        )
        loss = parts["attractive"] + tc.ml_rep_weight * parts["repulsive"]
        return loss, {k: float(v.detach()) for k, v in parts.items()}
    if stage == "edge_classifier":
        graph = event.cache["graph"]
        if graph.shape[1] == 0:
            return model(data, graph).sum() * 0.0, {}
        target = edge_truth(graph, data.pid).to(data.x.dtype)
        pos_weight = None if tc.ec_pos_weight is None else torch.tensor(tc.ec_pos_weight, dtype=data.x.dtype)
        loss = binary_cross_entropy_with_logits(model(data, graph), target, pos_weight=pos_weight)
        return loss, {}
    if stage == "object_condensation":
        coords, beta = model(data, event.cache["oc_graph"])
        parts = condensation_losses(coords, beta, data.pid, q_min=tc.oc_q_min)
        loss = (
            tc.oc_attr_weight * parts["attractive"]
            + tc.oc_rep_weight * parts["repulsive"]
            + tc.oc_coward_weight * parts["coward"]
            + tc.oc_bkg_weight * parts["background"]
        )
        return loss, {k: float(v.detach()) for k, v in parts.items()}
    raise ValueError(f"unknown stage {stage!r}")


@dataclass
class Inference:
    """What the trained stages give for one event (indices into ``event.data`` unless said otherwise)."""

    event: Event
    noise_scores: Tensor | None = None  # [N_full] sigmoid of the noise classifier, on every hit
    embedding: Tensor | None = None
    graph: Tensor | None = None  # the constructed graph (radius graph, or the geometric one)
    ec_scores: Tensor | None = None
    oc_graph: Tensor | None = None  # the graph object condensation runs on (pruned when there is an EC)
    coords: Tensor | None = None
    beta: Tensor | None = None


@torch.no_grad()
def infer(
    models: dict[str, nn.Module], full: Data, cfg: ClusteringTrialConfig, *, upto: str | None = None
) -> Inference:
    """Run the trained stages on ``full`` in pipeline order, stopping before ``upto`` (``None``: all of them); the
    graphs the next stage needs are left in ``inference.event.cache`` (``graph``, ``oc_graph``)."""
    pc = cfg.pipeline
    stages = [s for s in cfg.pipeline.stages if s in models]
    for m in models.values():
        m.eval()
    out = Inference(
        event=Event(full=full, data=full, kept=torch.arange(full.num_nodes, device=full.x.device))
    )
    for stage in stages:
        if stage == upto:
            break
        if stage == "noise_classifier":
            out.noise_scores = torch.sigmoid(models[stage](full))
            out.event = sub_event(full, out.noise_scores >= pc.noise_threshold)
        elif stage == "metric_learning":
            out.embedding = models[stage](out.event.data)
            out.graph = radius_graph(
                out.embedding,
                max_radius=pc.max_radius,
                max_neighbours=pc.max_neighbours,
                r=out.event.data.x[:, 0],
            )
        elif stage == "edge_classifier":
            graph = _graph(out)
            data = out.event.data
            out.ec_scores = (
                torch.sigmoid(models[stage](data, graph)) if graph.shape[1] else data.x.new_zeros(0)
            )
            out.oc_graph = graph[:, out.ec_scores >= pc.ec_threshold]
        elif stage == "object_condensation":
            graph = out.oc_graph if out.oc_graph is not None else _graph(out)
            out.oc_graph = graph
            out.coords, out.beta = models[stage](out.event.data, graph)
    graph = _graph(out)
    out.event.cache["graph"] = graph
    out.event.cache["oc_graph"] = out.oc_graph if out.oc_graph is not None else graph
    return out


def _graph(out: Inference) -> Tensor:
    """The constructed graph: the radius graph when metric learning ran, else the event's geometric edges."""
    if out.graph is None:
        data = out.event.data
        ei = getattr(data, "edge_index", None)
        out.graph = ei if ei is not None else torch.zeros(2, 0, dtype=torch.long, device=data.x.device)
    return out.graph
