"""Training throughput of the model zoo, alone and bundled: edges per second, forward + backward + Adam.

For every model and size preset (a model without presets runs its defaults) it times optimiser steps on the real
1.5 GeV hit graphs (../shared/trackml/hitgraphs_plus_1GeV5, ≈ 2,200 nodes and ≈ 13,000 edges each):

- ``solo``: one model, ``tracker.train.step.train_step`` (what ``run_trial`` runs), batch = one graph;
- ``loop K``: K models in one process, each stepping on its own graph in turn (``run_bundle(strategy="loop")``);
- ``vmap K``: the K parameter sets stacked (``tracker.train.strategies.stacked.StackedAdam``, what ``strategy="vmap"`` runs),
  each member on a different graph of the pre-padded pool, 6 steps per ``run_steps`` call (one host sync);
- ``vmap_graph K``: the same with the stacked step captured once in a CUDA graph and replayed (``cuda_graphs``,
  the default of ``run_bundle`` on CUDA; on CPU it is ``vmap``).

Reported: aggregate edges/s (all members), edges/s per model (aggregate / K), ms per member-step and the ratio to
``solo``. Models that ``torch.func.vmap`` cannot batch are marked. Brief by design (shared machine): one thread, 1 warm-up step and a
few timed steps per cell.

``--final-eval`` times the final evaluation of K members instead (what ``run_bundle`` does after training):
``per_member`` = ``final_metrics`` of each model alone (its own forwards: validation, test unrotated and at every
``eval.rotations_deg``), ``batched`` = ``final_predictions_stacked`` (stacked forwards of all K) then
``final_metrics(..., predictions=...)`` per member. Default evaluation config (10 test angles, track and
equivariance metrics) without the timing metric (per model in both); member j validates at 20·j degrees (members of
a bundle often differ in training angle). Columns: seconds of the forwards alone and of the whole evaluation,
the fastest of ``--steps`` rounds that run the four variants in turn.

    .venv/bin/python benchmarks/bundle_throughput.py --ks 1 5 25 --steps 3 --out benchmarks/results/bundle_throughput.csv
    .venv/bin/python benchmarks/bundle_throughput.py --device cuda   # on a GPU machine
    .venv/bin/python benchmarks/bundle_throughput.py --final-eval --ks 5 --test-graphs 2 \
        --models euclidnet interaction_network --presets paper_16
    .venv/bin/python benchmarks/bundle_throughput.py --bookkeeping --ks 25 100 --epochs 4 --checkpoint-every 1
    .venv/bin/python benchmarks/bundle_throughput.py --final-metrics --ks 8 --models interaction_network \
        --presets paper_16 --test-graphs 1 --steps 3

``--final-metrics`` times ``final_metrics`` alone per member, its forwards made beforehand (the CPU part of a
batched final evaluation), and ``finalise_trial``, which a bundle member runs after the stacked forwards: those
metrics plus ``history.csv`` (20 epochs), ``roc.csv``, ``rotation.csv``, ``model.pt`` and ``metrics.json``.

``--bookkeeping`` times the per-epoch work of a vmap bundle around its stacked steps, per member and epoch: it runs
``run_bundle(strategy="vmap")`` on the packaged graphs (tracker/data/resources/hitgraphs_plus_1GeV5; the training
graphs cut to ``--train-edges`` edges, because the step is not what is measured and K = 100 stacked steps on full
graphs do not fit a small machine; validation and test one full graph) with timers wrapped around the functions
of an epoch (:data:`BOOKKEEPING_PARTS`); the final evaluation is left out of the table.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
import warnings
from pathlib import Path

import pandas as pd
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from torch_geometric.data import Batch

from equitrack.reporter import NullReporter
from equitrack.trial import EarlyStopping
from tracker.data.hitgraphs import load_npz
from tracker.models import REGISTRY, build_model, count_parameters
from tracker.train.config import EvalConfig
from tracker.train.data import GraphSet
from tracker.train.evaluate import final_metrics, final_predictions
from tracker.train.final import finalise_trial
from tracker.train.member import EPOCH_METRICS
from tracker.train.step import train_step
from tracker.train.strategies.stacked import StackedAdam
from tracker.train.strategies.vmap import PaddedPool, final_predictions_stacked, vmap_supported

GRAPHS = REPO.parent / "shared" / "trackml" / "hitgraphs_plus_1GeV5"
PACKAGED = REPO / "tracker" / "data" / "resources" / "hitgraphs_plus_1GeV5"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _models(name: str, preset: str | None, k: int, device: torch.device):
    out = []
    for seed in range(k):
        torch.manual_seed(seed)
        hp = {} if preset is None else {"preset": preset}
        m = build_model(name, **hp).to(device)
        out.append((m, torch.optim.Adam(m.parameters(), lr=1e-3)))
    return out


def _best(round_fn, rounds: int, device: torch.device) -> float:
    """Fastest of ``rounds`` timed rounds after one warm-up (robust to other jobs on a shared machine)."""
    round_fn()
    _sync(device)
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        round_fn()
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return best


def time_loop(name, preset, k, batches, rounds, device) -> float:
    """Seconds per round (member j steps once on graph j mod G) for ``k`` separate models stepped in turn."""
    members = _models(name, preset, k, device)

    def round_fn():
        for j, (m, opt) in enumerate(members):
            train_step(m, opt, batches[j % len(batches)])

    return _best(round_fn, rounds, device)


def time_vmap(name, preset, k, padded: PaddedPool, rounds, device, *, graphs: bool = False,
              steps_per_round: int = 6) -> float:
    """Seconds per step for the ``k`` members stacked: member j on graph j mod G (padded), ``steps_per_round``
    steps per ``run_steps`` call (an epoch of 6 training graphs: one host sync at its end, as in run_bundle);
    ``graphs``: the step replayed from a CUDA graph (``vmap_graph``), else eager (``vmap``)."""
    members = _models(name, preset, k, device)
    opt = StackedAdam([m for m, _ in members], [o for _, o in members], grad_clips=[None] * k, pos_weights=[None] * k,
                      cuda_graphs=graphs)
    ids = torch.tensor([[j % padded.dummy] for j in range(k)], dtype=torch.long)
    ids = ids.unsqueeze(0).expand(steps_per_round, k, 1).contiguous()
    active = torch.ones((steps_per_round, k), dtype=torch.bool)
    per_round = _best(lambda: opt.run_steps(padded, ids, None, active), rounds, device)
    if graphs and opt.graph_error is not None:
        print(f"  {name} {preset} K={k}: no CUDA graph ({opt.graph_error})", flush=True)
    return per_round / steps_per_round


def time_final_eval(name, preset, k, val: GraphSet, test: GraphSet, rounds, device) -> dict[str, float]:
    """Seconds of the final evaluation of ``k`` members: forwards only and in all, per member vs batched."""
    models = [m for m, _ in _models(name, preset, k, device)]
    n_params = int(count_parameters(models[0]))
    cfg = EvalConfig(timing=False)
    thetas = [math.radians(20.0 * j) or None for j in range(k)]

    def stacked():
        return final_predictions_stacked(models, val=val, test=test, val_thetas=thetas,
                                         rotations_deg=[cfg.rotations_deg] * k, pos_weights=[None] * k)

    def own(j: int):
        return final_predictions(models[j], val=val, test=test, cfg=cfg, val_theta=thetas[j], pos_weight=None)

    def metrics(j: int, predictions=None):
        return final_metrics(models[j], val=val, test=test, cfg=cfg, val_theta=thetas[j], pos_weight=None,
                             n_params=n_params, predictions=predictions)

    def batched_all():
        for j, p in enumerate(stacked()):
            metrics(j, p)

    fns = {
        "per_member_forwards_s": lambda: [own(j) for j in range(k)],
        "batched_forwards_s": stacked,
        "per_member_total_s": lambda: [metrics(j) for j in range(k)],
        "batched_total_s": batched_all,
    }
    best = dict.fromkeys(fns, float("inf"))
    for r in range(rounds + 1):  # interleaved, so that the box's load drifts over all four alike; round 0 warms up
        for key, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            _sync(device)
            if r:
                best[key] = min(best[key], time.perf_counter() - t0)
    return best


def _presets(name: str, args: argparse.Namespace) -> list[str | None]:
    """The presets of ``name`` to measure (``--presets`` filters them); ``[None]`` (defaults) for a model without."""
    known = list(REGISTRY[name].presets)
    return ([p for p in args.presets if p in known] if args.presets and known else known) or [None]


def main_final_eval(args, graphs, device) -> list[dict]:
    """The ``--final-eval`` table: test split = the first ``--test-graphs`` graphs, validation = the next one."""
    test = GraphSet(graphs[: args.test_graphs], device=device)
    val = GraphSet(graphs[args.test_graphs : args.test_graphs + 1], device=device)
    print(f"final evaluation: {len(test)} test graphs ({test.n_edges} edges), 1 validation graph, "
          f"{len(EvalConfig().rotations_deg)} test angles", flush=True)
    rows = []
    for name in args.models:
        for preset in _presets(name, args):
            for k in args.ks:
                row = {"model": name, "preset": preset or "default", "K": k,
                       **time_final_eval(name, preset, k, val, test, args.steps, device)}
                row["forwards_speedup"] = row["per_member_forwards_s"] / row["batched_forwards_s"]
                row["total_speedup"] = row["per_member_total_s"] / row["batched_total_s"]
                rows.append(row)
                print(f"{name:20s} {row['preset']:9s} K={k:3d} forwards {row['per_member_forwards_s']:7.3f} s per "
                      f"member / {row['batched_forwards_s']:7.3f} s batched (x{row['forwards_speedup']:.2f}); "
                      f"whole evaluation {row['per_member_total_s']:7.3f} / {row['batched_total_s']:7.3f} s "
                      f"(x{row['total_speedup']:.2f})", flush=True)
    return rows


def main_final_metrics(args, graphs, device) -> list[dict]:
    """The ``--final-metrics`` table: ms per member of ``final_metrics`` alone (the CPU part of a batched final
    evaluation: thresholds, AUCs at every angle, track and equivariance metrics), its forwards made beforehand;
    the fastest of ``--steps`` rounds over the K members after one warm-up call."""
    test = GraphSet(graphs[: args.test_graphs], device=device)
    val = GraphSet(graphs[args.test_graphs : args.test_graphs + 1], device=device)
    cfg = EvalConfig(timing=False)
    rows = []
    for name in args.models:
        for preset in _presets(name, args):
            for k in args.ks:
                models = [m for m, _ in _models(name, preset, k, device)]
                preds = final_predictions_stacked(models, val=val, test=test, val_thetas=[None] * k,
                                                  rotations_deg=[cfg.rotations_deg] * k, pos_weights=[None] * k)

                def round_fn():
                    for m, p in zip(models, preds):
                        final_metrics(m, val=val, test=test, cfg=cfg, val_theta=None, pos_weight=None,
                                      n_params=1, predictions=p)

                with tempfile.TemporaryDirectory(prefix="finalise-") as tmp:
                    history = [{"epoch": float(e), **dict.fromkeys(EPOCH_METRICS, 0.5)} for e in range(1, 21)]
                    for j in range(k):
                        (Path(tmp) / f"m{j}").mkdir()

                    def finalise_fn():  # what a bundle member does after the stacked forwards
                        for j, (m, p) in enumerate(zip(models, preds)):
                            finalise_trial(m, stopper=EarlyStopping("val_loss", None), history=history,
                                           train_seconds=1.0, val_set=val, test_set=test, eval_cfg=cfg, val_theta=None,
                                           pos_weight=None, n_params=1, workdir=Path(tmp) / f"m{j}",
                                           reporter=NullReporter(), predictions=p)

                    s = _best(round_fn, args.steps, device)
                    f = _best(finalise_fn, args.steps, device)
                rows.append({"model": name, "preset": preset or "default", "K": k, "ms_per_member": 1000 * s / k,
                             "finalise_ms_per_member": 1000 * f / k})
                print(f"{name:20s} {preset or 'default':9s} K={k:3d} final_metrics {1000 * s / k:7.1f} ms per member, "
                      f"finalise_trial (metrics + tables + weights) {1000 * f / k:7.1f} ms per member "
                      f"({len(test)} test graphs, {len(cfg.rotations_deg)} angles)", flush=True)
    return rows


#: (owner, attribute, label) of the functions timed by ``--bookkeeping``; attributes that do not exist are skipped.
#: ``val_auc`` in the table = ``val_auc_member`` (in ``end_epoch``) + ``val_auc_batched`` (in ``predict_stacked``,
#: so also inside ``val_forward``)
BOOKKEEPING_PARTS = (
    ("VmapStrategy", "_epoch", "vmap_epoch"),
    ("StackedAdam", "step", "step"),  # before run_steps: one call per step
    ("StackedAdam", "run_steps", "step"),  # an epoch's steps in one call (one host sync)
    ("StackedAdam", "__init__", "stack_build"),
    ("StackedAdam", "write_back", "write_back"),  # before the lazy write-back: parameters and Adam state, per epoch
    ("StackedAdam", "write_back_params", "write_back_params"),
    ("StackedAdam", "write_back_state", "write_back_state"),  # called from end_epoch, when a checkpoint is due
    ("member", "rng_state", "rng"),
    ("member", "set_rng_state", "rng"),
    ("vmap", "predict_stacked", "val_forward"),
    ("MemberState", "end_epoch", "end_epoch"),
    ("StepLR", "step", "scheduler"),
    ("SplitPrediction", "auc", "val_auc_member"),  # before the batched epoch AUC: scikit-learn per member
    ("SplitPrediction", "epoch_auc", "val_auc_member"),  # in end_epoch: the value predict_stacked cached
    ("vmap", "roc_auc_rows", "val_auc_batched"),  # in predict_stacked: all members' epoch AUCs at once
    ("EarlyStopping", "update", "early_stopping"),
    ("member", "save_checkpoint", "checkpoint"),
)


def time_bookkeeping(k: int, *, epochs: int, checkpoint_every: int, train_edges: int, train_graphs: int,
                     workdir: Path) -> dict[str, float]:
    """Seconds per member and epoch of each part of a vmap bundle's epoch (:data:`BOOKKEEPING_PARTS`), measured
    inside ``run_bundle`` by timers wrapped around those functions while the epochs run."""
    import tracker.train.bundle as bundle
    import tracker.train.loop as loop
    import tracker.train.member as member
    import tracker.train.strategies.vmap as vmap
    from equitrack.reporter import NullReporter
    from tracker.train.config import trial_from_dict
    from tracker.train.evaluate import SplitPrediction

    graphs = [load_npz(p) for p in sorted(PACKAGED.glob("*.npz"))]
    train = [g.edge_subgraph(torch.arange(train_edges)) for g in graphs[:train_graphs]]
    splits = (train, graphs[8:9], graphs[9:10])
    configs = [trial_from_dict({
        "model": {"name": "euclidnet", "preset": "paper_16"},
        "train": {"epochs": epochs, "seed": seed, "device": "cpu", "patience": None,
                  **({"checkpoint_every": checkpoint_every} if checkpoint_every != 1 else {})},
        "eval": {"rotations_deg": [0], "timing": False, "equivariance": False, "track_metrics": False},
    }) for seed in range(k)]
    owners = {"vmap": vmap, "member": member, "VmapStrategy": vmap.VmapStrategy, "StackedAdam": StackedAdam,
              "MemberState": member.MemberState, "StepLR": torch.optim.lr_scheduler.StepLR,
              "SplitPrediction": SplitPrediction, "EarlyStopping": EarlyStopping}
    spent: dict[str, float] = {}
    state = {"on": False}

    def timed(fn, label):
        def wrapper(*args, **kwargs):
            if not state["on"]:
                return fn(*args, **kwargs)
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[label] = spent.get(label, 0.0) + time.perf_counter() - t0
        return wrapper

    def switch(fn, on):
        def wrapper(*args, **kwargs):
            state["on"] = on
            return fn(*args, **kwargs)
        return wrapper

    patches = [(owners[o], a, timed(getattr(owners[o], a), label)) for o, a, label in BOOKKEEPING_PARTS
               if hasattr(owners[o], a)]
    patches.append((vmap.VmapStrategy, "_epoch", switch(patches[0][2], True)))  # timers on from the first epoch ...
    patches.append((loop, "finish_batched", switch(loop.finish_batched, False)))  # ... to the final evaluation
    saved = [(obj, a, obj.__dict__.get(a)) for obj, a, _ in patches]
    try:
        for obj, a, fn in patches:
            setattr(obj, a, fn)
        results = bundle.run_bundle(configs, [NullReporter() for _ in configs],
                                    workdirs=[workdir / f"k{k}-m{i}" for i in range(k)], strategy="vmap",
                                    resume=False, splits=splits)
    finally:
        for obj, a, old in reversed(saved):
            if old is None:
                delattr(obj, a)
            else:
                setattr(obj, a, old)
    assert all(r.status == "FINISHED" for r in results), [r.error for r in results if r.status != "FINISHED"]
    per = {label: s / (k * epochs) for label, s in spent.items()}
    inner = ("step", "stack_build", "write_back", "write_back_params", "rng")
    per["vmap_epoch_other"] = per["vmap_epoch"] - sum(per.get(p, 0.0) for p in inner)
    parts = ("scheduler", "val_auc_member", "early_stopping", "write_back_state", "checkpoint")
    per["end_epoch_other"] = per["end_epoch"] - sum(per.get(p, 0.0) for p in parts)
    batched = per.get("val_auc_batched", 0.0)  # outside end_epoch: counted in, as the member's AUC was before
    per["val_auc"] = per.get("val_auc_member", 0.0) + batched
    per["bookkeeping"] = per["vmap_epoch"] - per["step"] + per["end_epoch"] + batched
    return per


def main_bookkeeping(args) -> list[dict]:
    """The ``--bookkeeping`` table: ms per member and epoch of each part, for every K."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="bookkeeping-") as tmp:
        for k in args.ks:
            per = time_bookkeeping(k, epochs=args.epochs, checkpoint_every=args.checkpoint_every,
                                   train_edges=args.train_edges, train_graphs=args.train_graphs, workdir=Path(tmp))
            row = {"K": k, "epochs": args.epochs, "checkpoint_every": args.checkpoint_every,
                   **{f"{label}_ms": 1000 * v for label, v in per.items()}}
            rows.append(row)
            print(f"K={k:3d} every={args.checkpoint_every}: ms per member-epoch: "
                  + ", ".join(f"{label} {1000 * v:.2f}" for label, v in sorted(per.items())), flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="*", default=list(REGISTRY))
    ap.add_argument("--presets", nargs="*", default=None, help="default: each model's presets (or its defaults)")
    ap.add_argument("--ks", nargs="*", type=int, default=[1, 5, 25])
    ap.add_argument("--strategies", nargs="*", default=["loop", "vmap"],
                    help="loop, vmap and/or vmap_graph (CUDA graphs)")
    ap.add_argument("--steps", type=int, default=3, help="timed rounds per cell after one warm-up; the fastest counts")
    ap.add_argument("--graphs", type=int, default=10)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--deterministic", default="off", choices=["off", "on", "on-nofill"],
                    help="torch.use_deterministic_algorithms(True, warn_only=True) as a trial with "
                         "train.deterministic runs (on-nofill: without filling uninitialised memory)")
    ap.add_argument("--out", type=Path, default=None, help="CSV of the results")
    ap.add_argument("--final-eval", action="store_true",
                    help="time the members' final evaluation (per member vs batched) instead of training steps")
    ap.add_argument("--final-metrics", action="store_true",
                    help="time final_metrics alone per member (the CPU part of a batched final evaluation)")
    ap.add_argument("--test-graphs", type=int, default=2, help="--final-eval: graphs of the test split")
    ap.add_argument("--bookkeeping", action="store_true",
                    help="time the per-epoch work of a vmap bundle around its steps, per member (euclidnet paper_16)")
    ap.add_argument("--epochs", type=int, default=4, help="--bookkeeping: epochs of the bundle")
    ap.add_argument("--checkpoint-every", type=int, default=1, help="--bookkeeping: train.checkpoint_every")
    ap.add_argument("--train-edges", type=int, default=256, help="--bookkeeping: edges kept per training graph")
    ap.add_argument("--train-graphs", type=int, default=2, help="--bookkeeping: training graphs")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.deterministic != "off":
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.utils.deterministic.fill_uninitialized_memory = args.deterministic == "on"
    if args.bookkeeping:
        return _write(pd.DataFrame(main_bookkeeping(args)), args.out)
    warnings.simplefilter("default")  # a vmap fallback ("performance drop") is shown once per place: it matters here
    device = torch.device(args.device)
    graphs = [load_npz(p).to(device) for p in sorted(GRAPHS.glob("*.npz"))[: args.graphs]]
    if args.final_eval:
        return _write(pd.DataFrame(main_final_eval(args, graphs, device)), args.out)
    if args.final_metrics:
        return _write(pd.DataFrame(main_final_metrics(args, graphs, device)), args.out)
    batches = [Batch.from_data_list([g]) for g in graphs]
    edges = [int(g.edge_index.shape[1]) for g in graphs]
    mean_e = sum(edges) / len(edges)
    padded = PaddedPool(graphs, device=device)
    print(f"{len(graphs)} graphs, mean {mean_e:.0f} edges, padded to {padded.e_pad} edges / {padded.n_pad} nodes; "
          f"device {device}, {torch.get_num_threads()} thread(s), torch {torch.__version__}, "
          f"deterministic {args.deterministic}", flush=True)
    rows = []
    for name in args.models:
        for preset in _presets(name, args):
            probe = build_model(name, **({} if preset is None else {"preset": preset})).to(device)
            n_params = int(count_parameters(probe))
            ok, why = vmap_supported(probe, graphs[0])
            base = {"model": name, "preset": preset or "default", "n_params": n_params}
            cells = [("solo", 1)] + [(st, k) for st in args.strategies for k in args.ks]
            solo_ms = None
            for strategy, k in cells:
                row = {**base, "strategy": strategy, "K": k}
                if strategy.startswith("vmap") and not ok:
                    row.update(s_per_round=float("nan"), note=f"vmap unsupported: {why[:70]}")
                elif strategy.startswith("vmap"):
                    row["s_per_round"] = time_vmap(name, preset, k, padded, args.steps, device,
                                                   graphs=strategy == "vmap_graph")
                else:
                    row["s_per_round"] = time_loop(name, preset, k, batches, args.steps, device)
                e_round = sum(edges[j % len(edges)] for j in range(k))
                row["edges_per_s"] = e_round / row["s_per_round"]
                row["edges_per_s_per_model"] = row["edges_per_s"] / k
                row["ms_per_member_step"] = 1000 * row["s_per_round"] / k
                if solo_ms is None:
                    solo_ms = 1000 * row["s_per_round"] / edges[0]  # ms per edge alone
                row["vs_solo"] = row["edges_per_s"] * solo_ms / 1000
                rows.append(row)
                print(f"{name:20s} {base['preset']:9s} {strategy:10s} K={k:3d} {row['edges_per_s']:10.0f} edges/s "
                      f"{row['edges_per_s_per_model']:10.0f} /model {row['ms_per_member_step']:8.1f} ms/member-step "
                      f"x{row['vs_solo']:.2f} {row.get('note', '')}", flush=True)
    return _write(pd.DataFrame(rows), args.out)


def _write(df: pd.DataFrame, out: Path | None) -> int:
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        df.to_csv(out, index=False, float_format="%.6g")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
