"""The two paths of the model zoo side by side: plain (default) against ``fused=True``, per graph, one thread.

    .venv/bin/python benchmarks/model_paths.py --old 04e4b3d --reps 5 --json benchmarks/results/model_paths.json

For EuclidNet paper_8 and the Interaction Network at h = 16 (the paper's "size 8"): milliseconds per real graph
(``--graphs``, the 1.5 GeV folder by default) of a forward (``no_grad``) and of a forward + backward (BCE with
logits), on one thread. The variants — plain, fused and, with ``--old REV``, the models of a git revision (imported
beside the current ones, as benchmarks/euclidnet_cost.py does) — run in turns on every graph so that the machine's
load hits them alike; each time is the calling thread's CPU time (``time.thread_time``, which other processes do not
inflate), summed over the graphs, and the table keeps the fastest of ``--reps`` passes. Before timing, the variants
(same weights) must agree: plain and fused to 1e-5 relative in float32 (they are equal to 1e-10 in float64,
tests/test_model_paths.py), fused and ``--old`` bit for bit.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.euclidnet_cost import old_models  # noqa: E402
from tracker.data.hitgraphs import load_npz_dir  # noqa: E402
from tracker.models import build_model  # noqa: E402

MODELS = {"EuclidNet paper_8": ("euclidnet", {"preset": "paper_8"}),
          "IN h 16": ("interaction_network", {"hidden": 16})}


def variants(name: str, hp: dict[str, Any], old: tuple[Any, Any] | None) -> dict[str, torch.nn.Module]:
    """plain, fused (and old) models with the same weights."""
    torch.manual_seed(0)
    plain = build_model(name, **hp)
    out = {"plain": plain, "fused": build_model(name, **hp, fused=True)}
    if old is not None:
        mod = old[0] if name == "euclidnet" else old[1]
        cls = mod.EuclidNet if name == "euclidnet" else mod.InteractionNetwork
        kw = mod.PRESETS[hp["preset"]] if "preset" in hp else hp
        out["old"] = cls(**kw)
    for m in out.values():
        m.load_state_dict(plain.state_dict())
    return out


def _step(model: torch.nn.Module, g: Any) -> torch.Tensor:
    model.zero_grad(set_to_none=True)
    logits = model(g)
    torch.nn.functional.binary_cross_entropy_with_logits(logits, g.y.to(logits.dtype)).backward()
    return logits.detach()


def check(models: dict[str, torch.nn.Module], graphs: list[Any]) -> None:
    for g in graphs:
        outs = {k: (_step(m, g), [p.grad.clone() for p in m.parameters()]) for k, m in models.items()}
        lp, lf = outs["plain"][0], outs["fused"][0]
        if not torch.allclose(lp, lf, rtol=1e-5, atol=1e-5 * float(lp.abs().max())):
            raise SystemExit("plain and fused logits differ")
        if "old" in outs and not (torch.equal(outs["old"][0], lf)
                                  and all(torch.equal(a, b) for a, b in zip(outs["old"][1], outs["fused"][1]))):
            raise SystemExit("fused and --old differ")


def timed(fn: Callable[[], object]) -> float:
    c0 = time.thread_time()
    fn()
    return time.thread_time() - c0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--graphs", type=Path, default=REPO.parent / "shared" / "trackml" / "hitgraphs_plus_1GeV5")
    p.add_argument("--reps", type=int, default=5, help="timed passes over the graphs (the fastest is kept)")
    p.add_argument("--old", default=None, help="also time the models of this git revision (today's fused code)")
    p.add_argument("--json", type=Path, default=None, help="write the record here")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    graphs = load_npz_dir(args.graphs)
    old = old_models(args.old, Path(tempfile.mkdtemp())) if args.old else None
    record: dict[str, Any] = {"graphs": len(graphs), "edges": sum(int(g.edge_index.shape[1]) for g in graphs),
                              "threads": 1, "reps": args.reps, "old": args.old, "torch": torch.__version__,
                              "ms_per_graph": {}}
    for label, (name, hp) in MODELS.items():
        models = variants(name, hp, old)
        check(models, graphs)
        best = {(k, mode): float("inf") for k in models for mode in ("forward", "forward+backward")}
        for _ in range(args.reps):
            tot = dict.fromkeys(best, 0.0)
            for g in graphs:
                for k, m in models.items():
                    with torch.no_grad():
                        tot[(k, "forward")] += timed(lambda m=m: m(g))
                    tot[(k, "forward+backward")] += timed(lambda m=m: _step(m, g))
            best = {key: min(best[key], tot[key]) for key in best}
        ms = {f"{k} {mode}": 1000 * v / len(graphs) for (k, mode), v in best.items()}
        record["ms_per_graph"][label] = ms
        for mode in ("forward", "forward+backward"):
            row = [f"{k} {ms[f'{k} {mode}']:.2f} ms" for k in models]
            ratio = ms[f"plain {mode}"] / ms[f"fused {mode}"]
            print(f"{label:18s} {mode:17s} " + "  ".join(row) + f"  plain/fused {ratio:.2f}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
