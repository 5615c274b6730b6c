"""Wall time of whole trainings through the public API: ``run_trial`` (one cell) and ``run_bundle`` of K cells
with the ``loop`` and the ``vmap`` strategy, on the real 1.5 GeV hit graphs (../shared/trackml/hitgraphs_plus_1GeV5:
``--train-graphs`` training graphs, one validation and one test graph), EuclidNet ``paper_16`` by default, on CPU.

Written to compare two checkouts of the trainer side by side (the one-trainer refactor against the commit before
it): ``--trees OLD NEW`` runs this script in a subprocess per tree (``PYTHONPATH=tree``), alternating the trees
``--repeats`` times so that the load of a shared machine drifts over both alike, and reports the fastest run of
each variant per tree and the ratio NEW / OLD, in wall time and in CPU time of the process (one torch thread:
the CPU time is the work done, which other jobs on a shared machine do not inflate):

    git worktree add --detach /tmp/old <commit>; git worktree add --detach /tmp/new HEAD
    .venv/bin/python benchmarks/trainer_speed.py --trees /tmp/old /tmp/new --repeats 3 \
        --out benchmarks/results/trainer_speed.csv

Without ``--trees`` it times the checkout it is run from once and prints one line per variant.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GRAPHS = Path(__file__).resolve().parents[1].parent / "shared" / "trackml" / "hitgraphs_plus_1GeV5"
VARIANTS = ("trial", "bundle_loop", "bundle_vmap")


def time_variants(args: argparse.Namespace) -> dict[str, float]:
    """Seconds of each variant in this process (the trainer of whatever ``tracker`` is importable)."""
    import torch

    from equitrack.reporter import NullReporter
    from tracker.data.hitgraphs import load_npz
    from tracker.train import run_trial
    from tracker.train.bundle import run_bundle
    from tracker.train.config import trial_from_dict

    torch.set_num_threads(args.threads)
    graphs = [load_npz(p) for p in sorted(GRAPHS.glob("*.npz"))]
    splits = (graphs[: args.train_graphs], graphs[8:9], graphs[9:10])
    model = {"name": args.model, **({"preset": args.preset} if args.preset else {})}

    def config(seed: int):
        return trial_from_dict({"model": model,
                                "train": {"epochs": args.epochs, "seed": seed, "device": "cpu",
                                          "train_rotation_deg": 30.0 * seed},
                                "eval": {"rotations_deg": [0, 90], "timing": False}})

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t0, c0 = time.perf_counter(), time.process_time()
        run_trial(config(0), NullReporter(), workdir=root / "trial", splits=splits)
        out["trial"], out["trial_cpu"] = time.perf_counter() - t0, time.process_time() - c0
        configs = [config(s) for s in range(args.k)]
        for strategy in ("loop", "vmap"):
            t0, c0 = time.perf_counter(), time.process_time()
            results = run_bundle(configs, [NullReporter() for _ in configs], strategy=strategy, splits=splits,
                                 workdirs=[root / f"{strategy}{i}" for i in range(args.k)])
            out[f"bundle_{strategy}"] = time.perf_counter() - t0
            out[f"bundle_{strategy}_cpu"] = time.process_time() - c0
            assert all(r.status == "FINISHED" for r in results), [r.error for r in results]
    return out


def compare(args: argparse.Namespace) -> int:
    import pandas as pd

    best: dict[str, dict[str, float]] = {str(t): {} for t in args.trees}
    child = ["--json", "--model", args.model, "--preset", args.preset, "--k", str(args.k), "--epochs",
             str(args.epochs), "--train-graphs", str(args.train_graphs), "--threads", str(args.threads)]
    for r in range(args.repeats):
        for tree in args.trees:  # this script, importing the trainer of ``tree``
            env = {**os.environ, "PYTHONPATH": str(tree)}
            proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), *child], env=env,
                                  capture_output=True, text=True, check=True, cwd=tree)
            times = json.loads(proc.stdout.strip().splitlines()[-1])
            print(f"round {r + 1} {tree}: " + ", ".join(f"{k} {v:.2f} s" for k, v in times.items()), flush=True)
            for k, v in times.items():
                best[str(tree)][k] = min(best[str(tree)].get(k, float("inf")), v)
    old, new = (str(t) for t in args.trees)
    rows = [{"variant": v, "old_s": best[old][v], "new_s": best[new][v], "new_over_old": best[new][v] / best[old][v],
             "old_cpu_s": best[old][f"{v}_cpu"], "new_cpu_s": best[new][f"{v}_cpu"],
             "new_over_old_cpu": best[new][f"{v}_cpu"] / best[old][f"{v}_cpu"], "model": f"{args.model} {args.preset or 'default'}", "K": args.k if v != "trial" else 1,
             "epochs": args.epochs, "train_graphs": args.train_graphs} for v in VARIANTS]
    df = pd.DataFrame(rows)
    print(df.to_string(index=False))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        df.to_csv(args.out, index=False)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trees", nargs=2, type=Path, default=None, metavar=("OLD", "NEW"))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--model", default="euclidnet")
    ap.add_argument("--preset", default="paper_16")
    ap.add_argument("--k", type=int, default=4, help="members of the bundles")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--train-graphs", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", action="store_true", help="print the times as one JSON line (used by --trees)")
    ap.add_argument("--out", type=Path, default=None, help="CSV of the comparison (--trees)")
    args = ap.parse_args(argv)
    if args.trees:
        return compare(args)
    times = time_variants(args)
    if args.json:
        print(json.dumps(times))
    else:
        for k, v in times.items():
            print(f"{k:12s} {v:8.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
