"""End to end: ``sweeps/grids/paper_rotation.yaml`` at a CPU-feasible scale, one cell per Ray trial vs bundled.

Every variant runs the real command (``python -m sweeps.run``, local Ray, SQLite MLflow) in a scratch folder, each
with its own dataset cache, Ray storage and MLflow database, on the same scaled grid: 2 models x 5 training angles x
5 seeds = 50 cells, evaluated at the grid's 10 angles. The variants (``--variants``):

- ``bundled``: ``bundle: auto`` (seed and angle bundled, several cells per Ray trial);
- ``unbundled``: ``bundle: none``, one cell per Ray trial; the platform still reuses each worker process for the
  next trial (``ray.reuse_actors: true``), so imports and data are paid once per process;
- ``naive``: one cell per Ray trial in a fresh worker process (``bundle: none``, ``ray.reuse_actors: false``, Ray
  Tune's own default): the way a general sweep tool runs one trial per process.

Reported:

- wall time of each command (fastest of ``--repeats`` alternating runs: the machine is shared) and the ratio
  (target >= 5x);
- per-run equality: every (config_id, seed) has the same final metrics in both (timing metrics excluded);
- Ray's per-trial overhead, submit -> first epoch: from the driver's trial-start event to the first epoch report
  of the trial (a bundle's first round), minus the training time of the epochs in it (``--timings``
  written by ``sweeps.bundling``);
- the share of the sweep spent outside training: 1 - sum(train_seconds) / (wall x concurrent trials);
- on CUDA: trial-epochs per hour (per GPU when one GPU is used) and the mean GPU utilisation from nvidia-smi;
- ``--profile``: a torch.profiler summary of one training epoch of a bundle (loop strategy), top operators.

    .venv/bin/python benchmarks/sweep_e2e.py --out benchmarks/results/sweep_e2e.json
    .venv/bin/python benchmarks/sweep_e2e.py --profile-only
    .venv/bin/python benchmarks/sweep_e2e.py --device cuda --gpus-bundled 0.1 --gpus-unbundled 1 --concurrent 10 \
        --epochs 20   # on a GPU machine (not run here): trial-epochs per GPU-hour and nvidia-smi utilisation
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
TIMING_METRICS = {"train_seconds", "seconds_per_epoch", "inference_ms_per_graph"}


def scaled_grid(args: argparse.Namespace, *, variant: str, root: Path) -> Path:
    """paper_rotation.yaml, scaled: few events/epochs, paths absolute, per-variant MLflow/Ray folders."""
    raw = yaml.safe_load((REPO / "sweeps" / "grids" / "paper_rotation.yaml").read_text())
    if raw["data"].get("path"):  # relative to the repository, as the grid file means it
        raw["data"]["path"] = str((REPO / Path(raw["data"]["path"])).resolve())
    raw["data"]["events"] = {"train": args.train_events, "val": 1, "test": 1}
    raw["name"] = f"paper_rotation_e2e_{variant}"
    raw["experiment"] = f"equitrack-e2e-{variant}"
    raw["train"].update({"epochs": args.epochs, "patience": None, "device": args.device})
    if args.deterministic == "off":
        raw["train"]["deterministic"] = False
    raw["eval"].update({"timing": False})
    one_cell = variant in ("unbundled", "naive")
    raw["seeds"] = args.seeds_unbundled if one_cell and args.seeds_unbundled else args.seeds
    if args.models:
        raw["grid"]["model.name"] = list(args.models)
    if args.fused:  # the models' fused kernels (model hyperparameter fused: true), the only path before it existed
        for defaults in raw["models"].values():
            defaults["fused"] = True
    gpus = args.gpus_unbundled if one_cell else args.gpus_bundled
    raw["resources"] = {"cpus_per_trial": 1, "gpus_per_trial": gpus, "max_concurrent": args.concurrent}
    raw["ray"] = {"num_cpus": args.concurrent, "storage_path": str(root / "ray"), "workdir": str(root / "trials")}
    if variant == "naive":
        raw["ray"]["reuse_actors"] = False
    raw["mlflow"] = {"tracking_uri": f"sqlite:///{root / 'mlflow.db'}", "artifact_location": str(root / "mlartifacts")}
    from sweeps.schema import GridFile

    if "bundle" in GridFile.model_fields:
        raw["bundle"] = "none" if one_cell else "auto"
        raw["max_bundle_size"] = args.max_bundle_size
    elif variant != "unbundled":
        raise SystemExit("this sweeps/schema.py has no 'bundle' key: only --variants unbundled can run")
    path = root / "grid.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def run_variant(args: argparse.Namespace, variant: str, base: Path) -> dict[str, Any]:
    root = base / variant
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    grid = scaled_grid(args, variant=variant, root=root)
    env = {**os.environ, "EQUITRACK_CACHE": str(root / "cache"),
           "RAY_AUTH_MODE": "disabled", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)}
    cmd = [sys.executable, "-m", "sweeps.run", str(grid), "--quiet", "--fresh", "--timings", str(root / "timings.jsonl")]
    print(f"[{variant}] {' '.join(cmd)}", flush=True)
    sampler = _gpu_sampler(root / "gpu_util.csv") if args.device == "cuda" else None
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    gpu_util = _stop_sampler(sampler, root / "gpu_util.csv")
    (root / "stdout.txt").write_text(proc.stdout + "\n--- stderr ---\n" + proc.stderr)
    if proc.returncode != 0:
        print(proc.stdout[-3000:], proc.stderr[-3000:], sep="\n")
        raise SystemExit(f"[{variant}] sweeps.run exited {proc.returncode} (log: {root / 'stdout.txt'})")
    runs = read_runs(f"sqlite:///{root / 'mlflow.db'}", f"equitrack-e2e-{variant}")
    timings = [json.loads(line) for line in (root / "timings.jsonl").read_text().splitlines()] \
        if (root / "timings.jsonl").is_file() else []
    print(f"[{variant}] {wall:.1f} s, {len(runs)} runs", flush=True)
    return {"wall_s": wall, "runs": runs, "timings": timings, "gpu_util_mean": gpu_util}


def _gpu_sampler(path: Path) -> subprocess.Popen | None:
    """``nvidia-smi`` sampling GPU utilisation once a second into ``path`` (None without nvidia-smi)."""
    if shutil.which("nvidia-smi") is None:
        return None
    fh = path.open("w")
    return subprocess.Popen(["nvidia-smi", "--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader,nounits",
                             "-l", "1"], stdout=fh, stderr=subprocess.DEVNULL)


def _stop_sampler(proc: subprocess.Popen | None, path: Path) -> float | None:
    if proc is None:
        return None
    proc.terminate()
    proc.wait(timeout=10)
    values = []
    for line in path.read_text().splitlines():
        try:
            values.append(float(line.split(",")[0]))
        except ValueError:
            pass
    return sum(values) / len(values) if values else None


def read_runs(uri: str, experiment: str) -> dict[str, dict[str, Any]]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    out = {}
    for r in client.search_runs([exp.experiment_id], filter_string="tags.`equitrack.kind` = 'trial'",
                                max_results=10000):
        key = f"{r.data.tags['config_id']}/{r.data.tags['seed']}"
        hist = client.get_metric_history(r.info.run_id, "epoch_seconds")
        out[key] = {"status": r.info.status, "metrics": dict(r.data.metrics),
                    "epoch_seconds": {int(m.step): m.value for m in hist}}
    return out


def compare(a: dict[str, dict[str, Any]], b: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Per-run equality on the cells both variants ran (``--seeds-unbundled`` may run fewer seeds unbundled)."""
    keys = sorted(set(a) & set(b))
    missing = []
    worst_auc, worst_rel, worst_key = 0.0, 0.0, None
    for k in keys:
        if k in missing:
            continue
        ma, mb = a[k]["metrics"], b[k]["metrics"]
        if "auc" in ma and "auc" in mb:
            worst_auc = max(worst_auc, abs(ma["auc"] - mb["auc"]))
        for name in set(ma) & set(mb):
            if name in TIMING_METRICS or name in ("epoch_seconds",):
                continue
            d = abs(ma[name] - mb[name]) / max(abs(ma[name]), 1e-12)
            if d > worst_rel:
                worst_rel, worst_key = d, f"{k}:{name}"
    statuses = {k: (a.get(k, {}).get("status"), b.get(k, {}).get("status")) for k in keys}
    return {"cells": len(keys), "cells_only_in_one_variant": len(set(a) ^ set(b)), "max_abs_auc_diff": worst_auc,
            "max_rel_metric_diff": worst_rel, "worst": worst_key,
            "all_finished": all(s == ("FINISHED", "FINISHED") for s in statuses.values())}


def overheads(result: dict[str, Any], concurrent: int) -> dict[str, Any]:
    runs, wall = result["runs"], result["wall_s"]
    train = sum(r["metrics"].get("train_seconds", 0.0) for r in runs.values())
    firsts = []
    for t in result["timings"]:
        if t.get("first_epoch") is None or t.get("start") is None:
            continue
        # the first report of a bundle holds its first round: subtract the training of every member in it
        keys = t.get("first_cell_keys") or [t.get("first_cell_key", "")]
        e1 = sum(runs[k]["epoch_seconds"].get(1, 0.0) for k in keys if k in runs)
        firsts.append(t["first_epoch"] - t["start"] - e1)
    epochs = sum(len(r["epoch_seconds"]) for r in runs.values())
    starts = [t["start"] for t in result["timings"] if t.get("start") is not None]
    ends = [t["end"] for t in result["timings"] if t.get("end") is not None]
    # the Ray phase (first trial start -> last trial end) is the sweep's steady state, without the fixed start-up
    ray_phase = max(ends) - min(starts) if starts and ends else None
    return {"wall_s": wall, "cells": len(runs), "ray_trials": len(result["timings"]),
            "worker_processes": len({t["pid"] for t in result["timings"] if t.get("pid") is not None}),
            "sum_train_s": train,
            "trial_epochs": epochs, "trial_epochs_per_hour": epochs / wall * 3600,
            "ray_phase_s": ray_phase,
            "trial_epochs_per_hour_ray_phase": epochs / ray_phase * 3600 if ray_phase else None,
            "gpu_util_mean_percent": result.get("gpu_util_mean"),
            "training_share": train / (wall * concurrent),
            "outside_training_share": 1 - train / (wall * concurrent),
            "submit_to_first_epoch_s_median": statistics.median(firsts) if firsts else None,
            "submit_to_first_epoch_s_max": max(firsts) if firsts else None}


def speedups(bundled: dict[str, Any], baseline: dict[str, Any], *, suffix: str) -> dict[str, float]:
    """Bundled vs a baseline: the wall-time ratio (equal cells only) and the rate ratios (any cells)."""
    out = {f"speedup_end_to_end{suffix}": baseline["wall_s"] / bundled["wall_s"],
           # rates, so that the variants may run different numbers of cells (--seeds-unbundled)
           f"speedup_trial_epochs_per_hour{suffix}": bundled["trial_epochs_per_hour"] / baseline["trial_epochs_per_hour"]}
    if bundled["trial_epochs_per_hour_ray_phase"] and baseline["trial_epochs_per_hour_ray_phase"]:
        out[f"speedup_trial_epochs_per_hour_ray_phase{suffix}"] = (
            bundled["trial_epochs_per_hour_ray_phase"] / baseline["trial_epochs_per_hour_ray_phase"])
    return out


def profile_epoch(args: argparse.Namespace, rows: int = 15) -> str:
    """torch.profiler table of one bundle epoch of ``--profile-members`` members of euclidnet paper_16 (seeds x
    angles 0/90), ``--profile-strategy`` loop or vmap, after one untimed epoch; sorted by self CPU time, or by self
    CUDA time on a GPU."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    from equitrack.reporter import NullReporter
    from tracker.data.hitgraphs import load_npz
    from tracker.train.config import trial_from_dict
    from tracker.train.data import GraphSet, TrainPool
    from tracker.train.member import MemberState
    from tracker.train.strategies import make_strategy

    torch.set_num_threads(1)
    if args.deterministic != "off":  # as run_bundle runs a trial with train.deterministic (the default)
        torch.use_deterministic_algorithms(True, warn_only=True)
    graphs = [load_npz(p) for p in sorted((REPO.parent / "shared" / "trackml" / "hitgraphs_plus_1GeV5").glob("*.npz"))]
    train, val = graphs[: args.train_events], graphs[8:9]
    configs = [trial_from_dict({"model": {"name": "euclidnet", "preset": "paper_16", "c": 0.005},
                                "train": {"epochs": 2, "lr": 1e-3, "seed": k // 2, "train_rotation_deg": 90 * (k % 2),
                                          "device": args.device}})
               for k in range(args.profile_members)]
    pool = TrainPool(train, device=torch.device(args.device), batch_size=1)
    val_set = GraphSet(val, device=torch.device(args.device))
    members = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, c in enumerate(configs):
            m = MemberState(i, c, NullReporter(), Path(tmp) / str(i))
            m.workdir.mkdir()
            m.build(device=torch.device(args.device), pool=pool, resume=False)
            members.append(m)
        cuda = args.device == "cuda"
        # the strategy object keeps the vmap stack (and its CUDA graph) from epoch to epoch, as run_bundle does
        strategy = make_strategy(args.profile_strategy, graphs=pool.graphs, device=torch.device(args.device),
                                 cuda_graphs=cuda, log=None)

        def epoch() -> None:
            trained = strategy.train_epoch(members)
            failed = [out for out in trained.values() if isinstance(out, Exception)]
            if failed:
                raise failed[0]
            if args.profile_strategy == "vmap":
                return
            for m in members:
                m.end_epoch(trained[m.index], val_set=val_set)

        epoch()  # warm-up (CUDA context, kernels, allocator)
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
        with profile(activities=activities) as prof:
            t0 = time.perf_counter()
            epoch()
            if cuda:
                torch.cuda.synchronize()
            wall = time.perf_counter() - t0
    head = (f"one epoch, {len(members)} members, strategy {args.profile_strategy}, {args.device}, deterministic "
            f"{args.deterministic}: "
            f"{wall * 1e3:.1f} ms wall\n")
    return head + prof.key_averages().table(sort_by="self_cuda_time_total" if cuda else "self_cpu_time_total",
                                            row_limit=rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--seeds-unbundled", type=int, default=None,
                    help="fewer seeds for the one-cell-per-trial variants (compare rates: trial-epochs per hour)")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--train-events", type=int, default=2)
    ap.add_argument("--concurrent", type=int, default=2)
    ap.add_argument("--max-bundle-size", type=int, default=None, help="default: the grid's automatic size")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--gpus-bundled", type=float, default=0.0, help="GPUs per bundled Ray trial (e.g. 0.1)")
    ap.add_argument("--gpus-unbundled", type=float, default=0.0, help="GPUs per one-cell Ray trial (e.g. 1)")
    ap.add_argument("--variants", nargs="*", default=["bundled", "unbundled", "naive"],
                    choices=["bundled", "unbundled", "naive"])
    ap.add_argument("--models", nargs="*", default=None, help="only these of the grid's models (model.name axis)")
    ap.add_argument("--fused", action="store_true", help="run the models on their fused kernels (fused: true)")
    ap.add_argument("--repeats", type=int, default=2, help="runs of each variant, alternating; the fastest counts")
    ap.add_argument("--scratch", type=Path, default=None, help="folder for the runs (default: a temporary one)")
    ap.add_argument("--out", type=Path, default=None, help="JSON summary")
    ap.add_argument("--profile", action="store_true", help="also print a torch.profiler summary of one epoch")
    ap.add_argument("--profile-only", action="store_true")
    ap.add_argument("--profile-strategy", default="loop", choices=["loop", "vmap"])
    ap.add_argument("--profile-members", type=int, default=4)
    ap.add_argument("--deterministic", default="grid", choices=["grid", "off"],
                    help="off: train.deterministic false in both variants (default: the grid's, true); the profile "
                         "runs with deterministic algorithms unless off")
    args = ap.parse_args(argv)
    if args.profile or args.profile_only:
        print(profile_epoch(args), flush=True)
        if args.profile_only:
            return 0
    base = args.scratch or Path(tempfile.mkdtemp(prefix="equitrack-e2e-"))
    # alternate the variants and keep each one's fastest repeat: the machine is shared, its load drifts
    results: dict[str, dict[str, Any]] = {}
    walls: dict[str, list[float]] = {v: [] for v in args.variants}
    for rep in range(args.repeats):
        for v in args.variants:
            r = run_variant(args, v, base / f"rep{rep}")
            walls[v].append(r["wall_s"])
            if v not in results or r["wall_s"] < results[v]["wall_s"]:
                results[v] = r
    summary: dict[str, Any] = {"scale": {k: getattr(args, k) for k in (
        "seeds", "seeds_unbundled", "epochs", "train_events", "concurrent", "max_bundle_size", "device",
        "gpus_bundled", "gpus_unbundled", "models", "deterministic")}}
    for v, r in results.items():
        summary[v] = {**overheads(r, args.concurrent), "wall_s_all_repeats": walls[v]}
    # bundled against each one-cell baseline; keys without a suffix compare with `unbundled`, `_vs_naive` with `naive`
    for baseline, suffix in (("unbundled", ""), ("naive", "_vs_naive")):
        if {"bundled", baseline} <= set(results):
            summary.update(speedups(summary["bundled"], summary[baseline], suffix=suffix))
            summary[f"equality{suffix}"] = compare(results[baseline]["runs"], results["bundled"]["runs"])
    print(json.dumps(summary, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
