"""Inference and training-step speed of the model zoo, and against the public reference's layer structure.

Two measurements (results and commands in docs/benchmarks.md; raw records in benchmarks/results/):

1. ``batch``: milliseconds per forward pass over a PyG batch of ``--batch`` graphs (default 100, seed 002's
   Table 5 protocol) for every model and preset, ``torch.no_grad()``, median (and IQR) of ``--runs`` (≥ 30)
   timed runs after ``--warmup`` untimed ones; on CUDA every run is synchronised.
2. ``reference``: per graph, forward (no_grad) and forward + backward (BCE-with-logits loss) of our EuclidNet
   (hidden 8, MLP depth 3) and Interaction Network (hidden 16) against the re-implementations of the reference's
   layers in ``benchmarks/reference_models.py`` (1,874 and 1,432 parameters), on the real pT > 1.5 GeV graphs;
   ours and the reference are timed alternately in the same loop so that the ratio is measured in one run
   under the same machine load. The reference gets its undirected edge list pre-built (as its dataset does);
   ours symmetrises inside the timed forward.

    .venv/bin/python benchmarks/inference.py --device cpu --threads 1 --batch 100 --runs 30

Graphs come from ``--graphs`` (default ../shared/trackml/hitgraphs_plus_1GeV5), repeated to fill a batch.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch_geometric.data import Batch, Data

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.reference_models import RefEuclidNet, RefInteractionNetwork
from tracker.data.hitgraphs import load_npz_dir
from tracker.models import REGISTRY, build_model, count_parameters

DEFAULT_GRAPHS = REPO.parent / "shared" / "trackml" / "hitgraphs_plus_1GeV5"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_runs(
    fn: Callable[[], object], *, runs: int, warmup: int, device: torch.device
) -> tuple[list[float], list[float]]:
    """Wall-clock and thread-CPU milliseconds of ``runs`` calls after ``warmup`` untimed ones (CUDA: synchronised;
    the CPU time of the calling thread is robust to other processes competing for the cores)."""
    for _ in range(warmup):
        fn()
    _sync(device)
    wall, cpu = [], []
    for _ in range(runs):
        c0, t0 = time.thread_time(), time.perf_counter()
        fn()
        _sync(device)
        wall.append((time.perf_counter() - t0) * 1e3)
        cpu.append((time.thread_time() - c0) * 1e3)
    return wall, cpu


def summary(ms: list[float], cpu: list[float]) -> dict[str, float]:
    q = statistics.quantiles(ms, n=4) if len(ms) >= 2 else [ms[0]] * 3
    return {"median_ms": statistics.median(ms), "q1_ms": q[0], "q3_ms": q[2], "runs": len(ms),
            "median_cpu_ms": statistics.median(cpu)}


def zoo_configs(names: list[str]) -> list[tuple[str, dict]]:
    """Every model at its defaults plus each of its presets (hybrid also without its free channel)."""
    out: list[tuple[str, dict]] = []
    for name in names:
        out.append((name, {}))
        out.extend((name, {"preset": p}) for p in REGISTRY[name].presets)
        if name == "hybrid":
            out.append((name, {"hidden_free": 0}))
    return out


def bench_batches(graphs: list[Data], args: argparse.Namespace, device: torch.device) -> list[dict]:
    data = [graphs[i % len(graphs)] for i in range(args.batch)]
    batch = Batch.from_data_list(data).to(device)
    rows = []
    for name, hp in zoo_configs(args.models):
        model = build_model(name, **hp, fused=args.fused).to(device).eval()
        with torch.no_grad():
            ms, cpu = time_runs(lambda m=model: m(batch), runs=args.runs, warmup=args.warmup, device=device)
        row = {"model": name, **hp, "n_params": count_parameters(model), "batch": args.batch, **summary(ms, cpu)}
        rows.append(row)
        print(f"  {name:20s} {json.dumps(hp):28s} {row['n_params']:6d} params  "
              f"{row['median_ms']:9.2f} ms/batch (IQR {row['q1_ms']:.2f}–{row['q3_ms']:.2f}; "
              f"thread CPU {row['median_cpu_ms']:.2f})", flush=True)
    return rows


def bench_reference(graphs: list[Data], args: argparse.Namespace, device: torch.device) -> list[dict]:
    pairs = {
        "euclidnet h=8 L=3": (build_model("euclidnet", hidden=8, mlp_depth=3, fused=args.fused),
                              RefEuclidNet(8, 3, 5, 0.005)),
        "interaction_network h=16": (build_model("interaction_network", hidden=16, fused=args.fused),
                                     RefInteractionNetwork(16, 3)),
    }
    gs = [copy.copy(g).to(device) for g in graphs[: args.ref_graphs]]  # Data.to is in place: keep `graphs` as is
    und = [torch.cat([g.edge_index, g.edge_index.flip(0)], dim=1) for g in gs]

    def ref_call(ref: torch.nn.Module, i: int) -> torch.Tensor:
        g = gs[i]
        if isinstance(ref, RefEuclidNet):
            return ref(g.pos, und[i]).squeeze(-1)[: g.edge_index.shape[1]]
        return ref(g.pos, g.edge_index, g.edge_attr).squeeze(-1)

    rows = []
    for label, (ours, ref) in pairs.items():
        ours, ref = ours.to(device), ref.to(device)
        # ours: logits + BCE-with-logits; reference: sigmoid outputs + BCE (as it trains)
        fns = {
            "ref_fwd": lambda i, r=ref: ref_call(r, i),
            "ours_fwd": lambda i, o=ours: o(gs[i]),
            "ref_fwdbwd": lambda i, r=ref: F.binary_cross_entropy(ref_call(r, i), gs[i].y).backward(),
            "ours_fwdbwd": lambda i, o=ours: F.binary_cross_entropy_with_logits(o(gs[i]), gs[i].y).backward(),
        }
        times: dict[str, list[float]] = {k: [] for k in fns}
        cpus: dict[str, list[float]] = {k: [] for k in fns}
        for k, fn in fns.items():  # warm-up
            with torch.set_grad_enabled(k.endswith("fwdbwd")):
                fn(0)
        for _ in range(args.ref_runs):
            for i in range(len(gs)):
                for k, fn in fns.items():  # alternate: same load for ours and the reference
                    with torch.set_grad_enabled(k.endswith("fwdbwd")):
                        _sync(device)
                        c0, t0 = time.thread_time(), time.perf_counter()
                        fn(i)
                        _sync(device)
                        times[k].append((time.perf_counter() - t0) * 1e3)
                        cpus[k].append((time.thread_time() - c0) * 1e3)
        med = {k: statistics.median(v) for k, v in times.items()}
        cmed = {k: statistics.median(v) for k, v in cpus.items()}
        row = {
            "pair": label, "ours_params": count_parameters(ours), "ref_params": count_parameters(ref),
            **{f"{k}_ms": v for k, v in med.items()}, **{f"{k}_cpu_ms": v for k, v in cmed.items()},
            "ratio_fwd": med["ref_fwd"] / med["ours_fwd"], "ratio_fwdbwd": med["ref_fwdbwd"] / med["ours_fwdbwd"],
            "ratio_fwd_cpu": cmed["ref_fwd"] / cmed["ours_fwd"],
            "ratio_fwdbwd_cpu": cmed["ref_fwdbwd"] / cmed["ours_fwdbwd"],
            "samples": len(times["ours_fwd"]),
        }
        rows.append(row)
        print(f"  {label:26s} params ours {row['ours_params']} / ref {row['ref_params']}: "
              f"fwd {med['ours_fwd']:.2f} vs {med['ref_fwd']:.2f} ms (×{row['ratio_fwd']:.2f}; "
              f"CPU ×{row['ratio_fwd_cpu']:.2f}), fwd+bwd {med['ours_fwdbwd']:.2f} vs {med['ref_fwdbwd']:.2f} ms "
              f"(×{row['ratio_fwdbwd']:.2f}; CPU ×{row['ratio_fwdbwd_cpu']:.2f})", flush=True)
    return rows


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (CPU)")
    p.add_argument("--graphs", type=Path, default=DEFAULT_GRAPHS)
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--runs", type=int, default=30)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--models", nargs="+", default=list(REGISTRY), choices=list(REGISTRY))
    p.add_argument("--ref-graphs", type=int, default=3, help="real graphs in the reference comparison")
    p.add_argument("--ref-runs", type=int, default=10, help="passes over those graphs (samples = graphs × runs)")
    p.add_argument("--skip", nargs="*", default=[], choices=["batch", "reference"])
    p.add_argument("--fused", action="store_true", help="time the models' fused path (default: the plain one)")
    p.add_argument("--out", type=Path, help="write the results as JSON")
    args = p.parse_args(argv)

    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: CUDA is not available here")
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    graphs = load_npz_dir(args.graphs)
    meta = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "threads": torch.get_num_threads(), "torch": torch.__version__, "graphs": len(graphs),
        "mean_nodes": sum(g.num_nodes for g in graphs) / len(graphs),
        "mean_edges": sum(g.edge_index.shape[1] for g in graphs) / len(graphs),
    }
    print(f"# {meta}", flush=True)
    # paths relative to the repository: the record must not name this machine's folders
    result: dict = {"meta": meta, "args": {k: os.path.relpath(v, REPO) if isinstance(v, Path) else str(v)
                                           for k, v in vars(args).items()}}
    torch.manual_seed(0)
    if "reference" not in args.skip:
        print("## ours vs reference layer structure, per graph", flush=True)
        result["reference"] = bench_reference(graphs, args, device)
    if "batch" not in args.skip:
        print(f"## forward per batch of {args.batch} graphs", flush=True)
        result["batch"] = bench_batches(graphs, args, device)
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
