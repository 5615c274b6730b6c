"""EuclidNet's training cost against the Interaction Network's, for two versions of ``tracker/models`` in one run.

    python benchmarks/euclidnet_cost.py --old 91c26e1 --repeat 6 --reps 5 --json benchmarks/results/euclidnet_cost.json

The model files of ``--old`` (a git revision: ``common.py``, ``euclidnet.py``, ``interaction_network.py``) are
written to a temporary package with their ``tracker.models`` imports pointed at it, so the old and the current code
are imported side by side. Each of the four models (EuclidNet preset paper_8 and the IN at h = 16, the paper's
"size 8", old and new) trains epochs of ``tracker.train.step.train_step`` (Adam, batch of one graph) over the real
graphs (``--graphs``, each epoch the folder's graphs ``--repeat`` times), on one thread, in turns (old EuclidNet, new
EuclidNet, old IN, new IN, repeated ``--reps`` times) so that the machine's load hits them alike; an epoch's time is
the calling thread's CPU time (``time.thread_time``, which other processes do not inflate) and its wall time, and
the table gives the fastest epoch of each. Before timing, the old and the new model of each kind (same weights)
must give bit-identical logits and gradients on every graph.
"""

from __future__ import annotations

import argparse
import importlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tracker.data.hitgraphs import load_npz_dir  # noqa: E402
from tracker.models import euclidnet as new_euclidnet  # noqa: E402
from tracker.models import interaction_network as new_in  # noqa: E402
from tracker.train.step import train_step  # noqa: E402

FILES = ("common", "euclidnet", "interaction_network")
#: the fused path's files (revisions after issue 21 item 4; absent in older ones)
FUSED_FILES = ("fused/__init__", "fused/kernels", "fused/euclidnet", "fused/interaction_network")


def old_models(rev: str, root: Path) -> tuple[ModuleType, ModuleType]:
    """The ``euclidnet`` and ``interaction_network`` modules of ``rev``, importable beside the current ones."""
    pkg = f"_models_{rev.replace('-', '_').replace('~', '_').replace('^', '_')}"
    folder = root / pkg
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "__init__.py").write_text("")
    (folder / "fused").mkdir(exist_ok=True)
    for name in FILES + FUSED_FILES:
        shown = subprocess.run(["git", "show", f"{rev}:tracker/models/{name}.py"], cwd=REPO,
                               capture_output=True, text=True)
        if shown.returncode != 0 and name in FUSED_FILES:
            continue
        shown.check_returncode()
        (folder / f"{name}.py").write_text(shown.stdout.replace("tracker.models.", f"{pkg}."))
    sys.path.insert(0, str(root))
    return importlib.import_module(f"{pkg}.euclidnet"), importlib.import_module(f"{pkg}.interaction_network")


def build(module: ModuleType, kind: str) -> torch.nn.Module:
    """The model of ``kind`` from ``module``: its fused path where the revision has both (the timed code)."""
    torch.manual_seed(0)
    extra = {"fused": True} if "fused" in getattr(module, "HPARAMS", {}) else {}
    if kind == "euclidnet":
        return module.EuclidNet(**module.PRESETS["paper_8"], **extra)
    return module.InteractionNetwork(hidden=16, **extra)


def same_outputs(a: torch.nn.Module, b: torch.nn.Module, graphs: list[Any]) -> None:
    """Old and new code with the same weights: bit-identical logits and parameter gradients on every graph."""
    b.load_state_dict(a.state_dict())
    for g in graphs:
        outs = []
        for m in (a, b):
            m.zero_grad(set_to_none=True)
            logits = m(g)
            torch.nn.functional.binary_cross_entropy_with_logits(logits, g.y.to(logits.dtype)).backward()
            outs.append((logits.detach(), [p.grad.clone() for p in m.parameters()]))
        (la, ga), (lb, gb) = outs
        if not torch.equal(la, lb) or not all(torch.equal(x, y) for x, y in zip(ga, gb)):
            raise SystemExit(f"{type(a).__name__}: old and new code differ on a graph with {g.num_nodes} nodes")


def epoch(model: torch.nn.Module, opt: torch.optim.Optimizer, graphs: list[Any]) -> tuple[float, float]:
    """(thread CPU s, wall s) of one epoch of train_step over ``graphs``."""
    c0, w0 = time.thread_time(), time.perf_counter()
    for g in graphs:
        train_step(model, opt, g)
    return time.thread_time() - c0, time.perf_counter() - w0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--old", default="HEAD", help="git revision of the 'before' tracker/models (default HEAD)")
    p.add_argument("--graphs", type=Path, default=REPO.parent / "shared" / "trackml" / "hitgraphs_plus_1GeV5")
    p.add_argument("--repeat", type=int, default=6, help="each epoch runs the folder's graphs this many times")
    p.add_argument("--reps", type=int, default=5, help="timed epochs per model")
    p.add_argument("--json", type=Path, default=None, help="write the record here")
    args = p.parse_args(argv)

    torch.set_num_threads(1)
    graphs = load_npz_dir(args.graphs)
    epoch_graphs = graphs * args.repeat
    with tempfile.TemporaryDirectory() as tmp:
        old_eu, old_in = old_models(args.old, Path(tmp))
        models = {("euclidnet", "old"): build(old_eu, "euclidnet"), ("euclidnet", "new"): build(new_euclidnet, "euclidnet"),
                  ("interaction_network", "old"): build(old_in, "in"),
                  ("interaction_network", "new"): build(new_in, "in")}
        for kind in ("euclidnet", "interaction_network"):
            same_outputs(models[(kind, "old")], models[(kind, "new")], graphs)
        opts = {k: torch.optim.Adam(m.parameters(), lr=1e-3) for k, m in models.items()}
        for k, m in models.items():  # warm-up: one pass over the folder
            epoch(m, opts[k], graphs)
        cpu: dict[tuple[str, str], list[float]] = {k: [] for k in models}
        wall: dict[tuple[str, str], list[float]] = {k: [] for k in models}
        for _ in range(args.reps):
            for k, m in models.items():
                c, w = epoch(m, opts[k], epoch_graphs)
                cpu[k].append(c)
                wall[k].append(w)
    best = {k: min(v) for k, v in cpu.items()}
    n_params = {k: sum(p.numel() for p in m.parameters()) for k, m in models.items()}
    record = {
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
        "old": args.old,
        "graphs_per_epoch": len(epoch_graphs),
        "edges_per_epoch": sum(int(g.edge_index.shape[1]) for g in epoch_graphs),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu_s": {f"{a}/{b}": v for (a, b), v in cpu.items()},
        "wall_s": {f"{a}/{b}": v for (a, b), v in wall.items()},
        "n_params": {f"{a}/{b}": v for (a, b), v in n_params.items()},
        "ratio_old": best[("euclidnet", "old")] / best[("interaction_network", "old")],
        "ratio_new": best[("euclidnet", "new")] / best[("interaction_network", "new")],
        "euclidnet_speedup": best[("euclidnet", "old")] / best[("euclidnet", "new")],
    }
    print(f"{len(epoch_graphs)}-graph epochs, 1 thread, fastest of {args.reps} (thread CPU s; median wall s):")
    for (kind, ver), v in cpu.items():
        print(f"  {kind:20s} {ver}: {min(v):.3f} s CPU  {statistics.median(wall[(kind, ver)]):.3f} s wall  "
              f"({n_params[(kind, ver)]} parameters)")
    print(f"EuclidNet / IN: old {record['ratio_old']:.2f}, new {record['ratio_new']:.2f}; "
          f"EuclidNet new vs old: x{record['euclidnet_speedup']:.2f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
