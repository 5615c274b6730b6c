"""One clustering trial: train the pipeline's stages in order, scan DBSCAN on validation, evaluate on the test
events (also rotated about z) and report through the :class:`~equitrack.reporter.Reporter` protocol.

Each stage is trained with Adam (``train.lr``), one event per step, for ``train.epochs`` (or
``train.stage_epochs[stage]``) epochs; the weights of its epoch with the lowest validation loss are kept before
the next stage is trained on the outputs of the stages before it (:func:`tracker.clustering.pipeline.infer`).
Epochs are numbered across stages (the reporter sees one epoch sequence; ``stage`` says which stage, 0-based in
pipeline order). A checkpoint (``workdir/checkpoint/state.pt``: every stage's weights, the current stage's
optimizer, best weights and position, the history and every random state) is written every
``train.checkpoint_every`` epochs and at the end of each stage, so a retried trial resumes where it stopped and
ends with the metrics of an uninterrupted one.
"""

from __future__ import annotations

import copy
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import roc_auc_score
from torch import nn
from torch_geometric.data import Data

from equitrack import trial as _core
from equitrack.checkpoint import (
    checkpoint_due,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from equitrack.config import yaml_text
from equitrack.reporter import Reporter
from equitrack.trial import (
    CheckpointMismatchError,
    TrialResult,
    deterministic,
    finish_trial,
    order_metrics,
    seed_everything,
    write_table,
)
from tracker.clustering.config import RESULT_NEUTRAL_KEYS, ClusteringTrialConfig
from tracker.clustering.graphs import edge_truth, gc_counts, gc_metrics
from tracker.clustering.models import PREFIX, build_stage, count_parameters
from tracker.clustering.pipeline import Event, Inference, infer, stage_loss
from tracker.clustering.tracks import TRACK_METRICS, dbscan_labels, particle_table, scan_dbscan, track_metrics
from tracker.data.transforms import rotate
from tracker.metrics.tracks import connected_tracks, match_event

EPOCH_METRICS = ("train_loss", "val_loss", "stage", "lr", "epoch_seconds")


class NonFiniteLossError(_core.NonFiniteLossError):
    """A stage's loss became NaN or infinite; the message names the stage and epoch."""

    inputs = "the events' hits (x, pid, pt)"


def _device(name: str) -> torch.device:
    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def _load_events(config: ClusteringTrialConfig) -> tuple[list[Data], list[Data], list[Data]]:
    from tracker.data.dataset import load_splits

    s = load_splits(config.data)
    return s.train, s.val, s.test


def config_hash(config: ClusteringTrialConfig) -> str:
    """SHA-256 of the resolved config without its result-neutral keys: a checkpoint belongs to exactly one config."""
    return _core.config_hash(config.model_dump(mode="json"), neutral=RESULT_NEUTRAL_KEYS)


@dataclass
class _Progress:
    """What a checkpoint holds besides the weights: where training is, and what it has produced so far."""

    chash: str
    history: list[dict[str, float]] = field(default_factory=list)
    best_epochs: dict[str, int] = field(default_factory=dict)
    train_seconds: float = 0.0


def run_trial(
    config: ClusteringTrialConfig,
    reporter: Reporter,
    *,
    workdir: Path,
    resume: bool = True,
    splits: tuple[list[Data], list[Data], list[Data]] | None = None,
) -> TrialResult:
    """Train and evaluate one clustering trial in ``workdir``; ``splits`` = (train, val, test) events in memory
    instead of ``config.data`` through the dataset cache. ``resume=True`` continues from ``workdir/checkpoint``
    (written every ``train.checkpoint_every`` epochs and at the end of every stage; same config required) and ends
    with the metrics of an uninterrupted run; ``resume=False`` discards it. ``train.deterministic`` turns on
    torch's deterministic algorithms (warn only) for the trial."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    with deterministic(config.train.deterministic):
        return _run(config, reporter, workdir=workdir, resume=resume, splits=splits)


def _run(
    config: ClusteringTrialConfig,
    reporter: Reporter,
    *,
    workdir: Path,
    resume: bool,
    splits: tuple[list[Data], list[Data], list[Data]] | None,
) -> TrialResult:
    tc = config.train
    device = _device(tc.device)
    if device.type == "cuda" and tc.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    train, val, test = splits if splits is not None else _load_events(config)
    train, val, test = ([g.to(device) for g in split] for split in (train, val, test))
    seed_everything(tc.seed)
    stages = list(config.pipeline.stages)
    models = {s: build_stage(s, **config.model.stage_hparams(s)).to(device) for s in stages}
    n_params = {s: count_parameters(m) for s, m in models.items()}
    generator = torch.Generator().manual_seed(tc.seed)
    progress = _Progress(chash=config_hash(config))
    state = load_checkpoint(workdir)
    if state is not None and not resume:
        shutil.rmtree(workdir / "checkpoint", ignore_errors=True)
        state = None
    if state is not None:
        if state.get("config_hash") != progress.chash:
            raise CheckpointMismatchError.of(workdir)
        for s, weights in state["models"].items():
            models[s].load_state_dict(weights)
        progress.history = [dict(h) for h in state["history"]]
        progress.best_epochs = dict(state["best_epochs"])
        progress.train_seconds = float(state["train_seconds"])
    resolved = config.model_dump(mode="json")
    reporter.start(config=resolved, n_params=sum(n_params.values()))
    cfg_path = workdir / "config.yaml"
    cfg_path.write_text(yaml_text(resolved))
    reporter.artifact(cfg_path)

    trained: dict[str, nn.Module] = {}
    last_best = 0
    for index, stage in enumerate(stages):
        resumed = state if state is not None and state["stage"] == index else None
        if state is not None and index < state["stage"]:  # finished before the interruption
            last_best = len([h for h in progress.history if h["stage"] < index]) + progress.best_epochs[stage]
            trained[stage] = models[stage].eval()
            continue
        if resumed is not None:
            set_rng_state(resumed["rng"], generator)
        train_ev = [infer(trained, g, config).event for g in train]
        val_ev = [infer(trained, g, config).event for g in val]
        offset = len([h for h in progress.history if h["stage"] < index])
        progress.best_epochs[stage] = _train_stage(
            stage,
            index,
            models,
            train_ev,
            val_ev,
            config,
            reporter=reporter,
            progress=progress,
            generator=generator,
            workdir=workdir,
            resumed=resumed,
        )
        last_best = (
            offset + progress.best_epochs[stage]
        )  # the last stage's best epoch in the trial's numbering
        trained[stage] = models[stage]

    metrics = _evaluate(trained, val, test, config, workdir=workdir, reporter=reporter)
    metrics["n_params"] = float(sum(n_params.values()))
    for s, n in n_params.items():
        metrics[f"n_params_{PREFIX[s]}"] = float(n)
        metrics[f"best_epoch_{PREFIX[s]}"] = float(progress.best_epochs[s])
    metrics["best_epoch"] = float(last_best)
    metrics["train_seconds"] = progress.train_seconds
    metrics["on_cuda"] = float(device.type == "cuda")
    return _finish(metrics, progress.history, trained, workdir=workdir, reporter=reporter)


def _train_stage(
    stage: str,
    index: int,
    models: dict[str, nn.Module],
    train_ev: list[Event],
    val_ev: list[Event],
    config: ClusteringTrialConfig,
    *,
    reporter: Reporter,
    progress: _Progress,
    generator: torch.Generator,
    workdir: Path,
    resumed: dict[str, Any] | None,
) -> int:
    """Train one stage (from ``resumed``, a checkpoint inside this stage, when given); keep its
    best-validation-loss weights; return that epoch (stage-local, 1-based)."""
    tc = config.train
    model = models[stage]
    optimizer = torch.optim.Adam(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    noise_weight = _noise_weight(train_ev, tc.nc_noise_weight) if stage == "noise_classifier" else 1.0
    best, best_epoch, best_state = math.inf, 0, copy.deepcopy(model.state_dict())
    first = 1
    if resumed is not None:
        optimizer.load_state_dict(resumed["optimizer"])
        best, best_epoch, best_state = (
            float(resumed["best"]),
            int(resumed["best_epoch"]),
            resumed["best_state"],
        )
        first = int(resumed["epoch"]) + 1
    prefix = PREFIX[stage]
    n_epochs = tc.epochs_of(stage)
    for epoch in range(first, n_epochs + 1):
        t0 = time.perf_counter()
        model.train()
        order = torch.randperm(len(train_ev), generator=generator).tolist()
        total = 0.0
        for i in order:
            ev = train_ev[i]
            data = ev.data
            if tc.random_rotation:
                data = rotate(data, float(torch.rand((), generator=generator)) * 2 * math.pi)
            optimizer.zero_grad(set_to_none=True)
            loss, _ = stage_loss(stage, model, ev, data, config, noise_weight=noise_weight)
            value = float(loss.detach())
            if not math.isfinite(value):
                raise NonFiniteLossError(epoch, f"training loss of stage {stage}", value)
            if loss.requires_grad:
                loss.backward()
                if tc.grad_clip is not None:
                    nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
                optimizer.step()
            total += value
        val_loss = _val_loss(stage, model, val_ev, config, noise_weight)
        if val_loss < best:
            best, best_epoch, best_state = val_loss, epoch, copy.deepcopy(model.state_dict())
        seconds = time.perf_counter() - t0
        progress.train_seconds += seconds
        row = {
            "train_loss": total / max(len(train_ev), 1),
            "val_loss": val_loss,
            "stage": float(index),
            "lr": tc.lr,
            "epoch_seconds": seconds,
        }
        row[f"{prefix}_train_loss"], row[f"{prefix}_val_loss"] = row["train_loss"], val_loss
        progress.history.append({"epoch": len(progress.history) + 1, **row})
        ckpt = None
        if checkpoint_due(epoch, every=tc.checkpoint_every, finished=epoch == n_epochs):
            done = {s: m.state_dict() for s, m in models.items() if s != stage}
            ckpt = save_checkpoint(
                workdir,
                {
                    "format": 1,
                    "config_hash": progress.chash,
                    "stage": index,
                    "epoch": epoch,
                    "models": {**done, stage: model.state_dict()},
                    "optimizer": optimizer.state_dict(),
                    "best": best,
                    "best_epoch": best_epoch,
                    "best_state": best_state,
                    "best_epochs": progress.best_epochs,
                    "history": progress.history,
                    "rng": rng_state(generator),
                    "train_seconds": progress.train_seconds,
                },
            )
        reporter.epoch(
            epoch=len(progress.history),
            metrics={k: v for k, v in row.items() if math.isfinite(v)},
            checkpoint_dir=ckpt,
        )
    model.load_state_dict(best_state)
    model.eval()
    return best_epoch


@torch.no_grad()
def _val_loss(
    stage: str, model: nn.Module, events: list[Event], config: ClusteringTrialConfig, noise_weight: float
) -> float:
    model.eval()
    values = [
        float(stage_loss(stage, model, ev, ev.data, config, noise_weight=noise_weight)[0]) for ev in events
    ]
    return float(np.mean(values)) if values else math.nan


def _noise_weight(events: list[Event], setting: float | str) -> float:
    if setting != "auto":
        return float(setting)
    real = sum(int((ev.data.pid > 0).sum()) for ev in events)
    noise = sum(int((ev.data.pid == 0).sum()) for ev in events)
    return real / noise if noise else 1.0


# ------------------------------------------------------------------------------------------------ evaluation


def _track_input(inf: Inference) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """(coords on every hit, keep, pid, pt) for DBSCAN: condensation coordinates, else the embedding."""
    coords = inf.coords if inf.coords is not None else inf.embedding
    if coords is None:
        return None
    full = inf.event.full
    out = np.zeros((full.num_nodes, coords.shape[1]))
    keep = np.zeros(full.num_nodes, bool)
    kept = inf.event.kept.cpu().numpy()
    out[kept] = coords.double().cpu().numpy()
    keep[kept] = True
    return out, keep, full.pid.cpu().numpy(), full.pt.cpu().numpy()


def _component_labels(inf: Inference) -> np.ndarray:
    """Track labels from the pruned graph's connected components (a pipeline without a coordinate space)."""
    full = inf.event.full
    graph = inf.event.cache["oc_graph"]
    kept = inf.event.kept.cpu().numpy()
    labels = np.arange(full.num_nodes) + full.num_nodes
    if kept.size:
        ones = np.ones(graph.shape[1])
        labels[kept] = connected_tracks(graph.cpu().numpy(), ones, 0.5, kept.size)
    return labels


def _tracks_of(
    infs: list[Inference],
    config: ClusteringTrialConfig,
    choice: tuple[float, int] | None,
    particles: list[pd.DataFrame] | None = None,
) -> dict[str, float]:
    """Track metrics of the events ``infs``; with ``particles`` also one :func:`particle_table` per event."""
    ec = config.eval
    counts = []
    for k, inf in enumerate(infs):
        full = inf.event.full
        ti = _track_input(inf)
        if ti is not None and choice is not None:
            labels = dbscan_labels(ti[0], eps=choice[0], min_samples=choice[1], keep=ti[1])
        else:
            labels = _component_labels(inf)
        pid, pt = full.pid.cpu().numpy(), full.pt.cpu().numpy()
        counts.append(match_event(labels, pid, pt=pt, min_hits=ec.min_hits, pt_cut=ec.pt_min))
        if particles is not None:
            x = full.x.double().cpu().numpy()
            eta = np.arcsinh(x[:, 2] / np.maximum(x[:, 0], 1e-9))
            table = particle_table(labels, pid, pt, eta, min_hits=ec.min_hits)
            table.insert(0, "event", int(getattr(full, "event_id", k)))
            particles.append(table)
    return track_metrics(counts)


def _stage_metrics(infs: list[Inference], config: ClusteringTrialConfig) -> dict[str, float]:
    """Test metrics of each stage: ``nc_*``, ``gc_*``, ``ec_*``, ``oc_*`` (docs/clustering.md)."""
    stages, out = config.pipeline.stages, {}
    if "noise_classifier" in stages:
        score = np.concatenate([i.noise_scores.cpu().numpy() for i in infs])
        real = np.concatenate([(i.event.full.pid > 0).cpu().numpy() for i in infs])
        kept = score >= config.pipeline.noise_threshold
        out["nc_real_kept"] = float(kept[real].mean()) if real.any() else math.nan
        out["nc_noise_removed"] = float((~kept[~real]).mean()) if (~real).any() else math.nan
        out["nc_auc"] = float(roc_auc_score(real, score)) if 0 < real.sum() < real.size else math.nan
    counts = []
    for inf in infs:
        kept = inf.event.kept
        full = inf.event.full
        counts.append(gc_counts(kept[inf.event.cache["graph"]], full.pid, full.pt))
    out.update(gc_metrics(counts))
    if "edge_classifier" in stages:
        y = np.concatenate([edge_truth(i.event.cache["graph"], i.event.data.pid).cpu().numpy() for i in infs])
        s = np.concatenate([i.ec_scores.cpu().numpy() for i in infs])
        kept = s >= config.pipeline.ec_threshold
        out["ec_auc"] = float(roc_auc_score(y, s)) if 0 < y.sum() < y.size else math.nan
        out["ec_efficiency"] = float(kept[y > 0].mean()) if (y > 0).any() else math.nan
        out["ec_purity"] = float(y[kept].mean()) if kept.any() else math.nan
    if "object_condensation" in stages:
        tc = config.train
        parts = {k: [] for k in ("attractive", "repulsive", "coward", "background")}
        from tracker.clustering.models.object_condensation import condensation_losses

        for inf in infs:
            for k, v in condensation_losses(
                inf.coords, inf.beta, inf.event.data.pid, q_min=tc.oc_q_min
            ).items():
                parts[k].append(float(v))
        mean = {k: float(np.mean(v)) for k, v in parts.items()}
        out.update({f"oc_{k}": v for k, v in mean.items()})
        out["oc_loss"] = (
            tc.oc_attr_weight * mean["attractive"]
            + tc.oc_rep_weight * mean["repulsive"]
            + tc.oc_coward_weight * mean["coward"]
            + tc.oc_bkg_weight * mean["background"]
        )
    return out


def _evaluate(
    models: dict[str, nn.Module],
    val: list[Data],
    test: list[Data],
    config: ClusteringTrialConfig,
    *,
    workdir: Path,
    reporter: Reporter,
) -> dict[str, float]:
    ec = config.eval
    val_inf = [infer(models, g, config) for g in val]
    test_inf = [infer(models, g, config) for g in test]
    metrics = _stage_metrics(test_inf, config)
    choice = None
    val_track = [t for t in (_track_input(i) for i in val_inf) if t is not None]
    if val_track:
        choice, best, rows = scan_dbscan(
            val_track,
            eps=ec.eps,
            min_samples=ec.min_samples,
            metric=ec.scan_metric,
            pt_min=ec.pt_min,
            min_hits=ec.min_hits,
        )
        metrics["dbscan_eps"], metrics["dbscan_min_samples"] = choice
        metrics[f"val_{ec.scan_metric}"] = best[ec.scan_metric]
        write_table(workdir / "dbscan_scan.csv", pd.DataFrame(rows), reporter)
    if "noise_classifier" in config.pipeline.stages and len(config.pipeline.stages) == 1:
        return metrics  # a noise classifier alone builds no tracks
    tables: list[pd.DataFrame] = []
    metrics.update(_tracks_of(test_inf, config, choice, tables))
    write_table(workdir / "particles.csv", pd.concat(tables, ignore_index=True), reporter)
    if ec.rotations_deg:
        rows = []
        for deg in ec.rotations_deg:
            rot = [infer(models, rotate(g, math.radians(deg)), config) for g in test]
            m = _tracks_of(rot, config, choice)
            rows.append({"rotation_deg": float(deg), **m})
            tag = f"{int(round(deg)):03d}"
            for k in ("track_dm_eff", "track_perfect_eff", "trackml_score"):
                metrics[f"{k}_rot_{tag}"] = m[k]
        dm = [r["track_dm_eff"] for r in rows if math.isfinite(r["track_dm_eff"])]
        if dm:
            metrics["track_dm_eff_rot_spread"] = max(dm) - min(dm)
        write_table(workdir / "rotation.csv", pd.DataFrame(rows), reporter)
    return metrics


_ORDER = (*TRACK_METRICS, "gc_efficiency", "gc_purity", "ec_auc", "oc_loss", "n_params", "train_seconds")


def _finish(
    metrics: dict[str, Any],
    history: list[dict[str, float]],
    models: dict[str, nn.Module],
    *,
    workdir: Path,
    reporter: Reporter,
) -> TrialResult:
    """The artifacts of a finished trial (:func:`equitrack.trial.finish_trial`; ``model.pt`` holds every stage's
    state dict); non-finite metrics are left out."""
    finite = {k: float(v) for k, v in metrics.items() if math.isfinite(float(v))}
    per_stage = [f"{PREFIX[s]}_{k}" for s in models for k in ("train_loss", "val_loss")]
    return finish_trial(
        workdir,
        model=models,
        metrics=order_metrics(finite, _ORDER),
        history=history,
        epoch_metrics=[*EPOCH_METRICS, *per_stage],
        tables={},
        reporter=reporter,
    )


__all__ = [
    "EPOCH_METRICS",
    "CheckpointMismatchError",
    "NonFiniteLossError",
    "TrialResult",
    "config_hash",
    "run_trial",
]
