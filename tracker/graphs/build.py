"""Build the geometric hit graph of every event of a folder (or zip) of TrackML events.

    python -m tracker.graphs.build --input DIR --out DIR --pt-min 1.5 [--summary FILE.json] [options]

Each graph is written to ``OUT/eventNNNNNNNNN.pt`` (a dict of tensors: ``tracker.graphs.load_graph`` reads it with
``torch.load(weights_only=True)``). The summary (events, nodes/edges/purity/efficiency mean and std, seconds per
event, the resolved options) is printed as a table and written as JSON when ``--summary`` is given.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from tracker.data.trackml import load_dataset
from tracker.graphs.builder import GraphOptions, build_graph
from tracker.graphs.io import save_graph
from tracker.graphs.quality import graph_quality


def build_folder(input: str | Path, out: str | Path | None, *, options: GraphOptions, nevents: int | None = None,
                 skip: int = 0, progress: bool = False) -> dict:
    """Build (and write, when ``out`` is given) every event's graph; return the summary dict."""
    if out is not None:
        Path(out).mkdir(parents=True, exist_ok=True)
    opt = options.resolved()
    rows, seconds = [], []
    events = load_dataset(input, nevents=nevents, skip=skip, parts=("hits", "particles", "truth"))
    if progress:
        from tqdm import tqdm

        events = tqdm(events, desc="building graphs", unit="event", file=sys.stderr)
    for evt, hits, particles, truth in events:
        t0 = time.perf_counter()
        g = build_graph(hits, particles, truth, event_id=evt, **{k: getattr(opt, k) for k in opt.as_dict()})
        seconds.append(time.perf_counter() - t0)
        q = graph_quality(g)
        q["event_id"] = evt
        rows.append(q)
        if out is not None:
            save_graph(g, Path(out) / f"event{evt:09d}.pt")
    if not rows:
        raise SystemExit(f"{input}: no events to build")

    def stat(key: str) -> tuple[float, float]:
        v = np.array([r[key] for r in rows], dtype=float)
        return float(np.nanmean(v)), float(np.nanstd(v))

    summary: dict = {"events": len(rows)}
    for key, name in (("nodes", "nodes"), ("edges", "edges"), ("purity", "purity"), ("efficiency", "efficiency"),
                      ("true_edges", "true_edges")):
        summary[f"{name}_mean"], summary[f"{name}_std"] = stat(key)
    summary["seconds_per_event"] = float(np.mean(seconds))
    summary["options"] = opt.as_dict()
    summary["input"] = str(input)
    summary["per_event"] = rows
    return summary


def print_summary(summary: dict) -> None:
    """Render the summary as a rich table."""
    from rich.console import Console
    from rich.table import Table

    o = summary["options"]
    t = Table(title=f"hit graphs: {summary['events']} events, pT > {o['pt_min']} GeV "
                    f"(phi_slope_max {o['phi_slope_max']}, z0_max {o['z0_max']})")
    t.add_column("quantity")
    t.add_column("mean", justify="right")
    t.add_column("std", justify="right")
    for name, fmt in (("nodes", "{:,.0f}"), ("edges", "{:,.0f}"), ("purity", "{:.3f}"), ("efficiency", "{:.4f}")):
        t.add_row(name, fmt.format(summary[f"{name}_mean"]), fmt.format(summary[f"{name}_std"]))
    t.add_row("seconds per event", f"{summary['seconds_per_event']:.3f}", "")
    Console().print(t)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(prog="python -m tracker.graphs.build", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--input", required=True, help="folder or zip of eventNNNNNNNNN-*.csv(.gz) files")
    ap.add_argument("--out", help="folder for the graph files (omit to only summarise)")
    ap.add_argument("--pt-min", type=float, default=1.5, help="truth pT cut in GeV (default 1.5)")
    ap.add_argument("--phi-slope-max", type=float, default=None, help="default: recommended for --pt-min")
    ap.add_argument("--z0-max", type=float, default=None, help="mm; default: recommended for --pt-min")
    ap.add_argument("--no-endcaps", action="store_true", help="barrel layers only")
    ap.add_argument("--keep-duplicates", action="store_true",
                    help="keep every hit of a particle on a layer (default: the innermost only, as the reference)")
    ap.add_argument("--keep-intersecting", action="store_true", help="keep barrel->disk edges crossing a layer")
    ap.add_argument("--undirected", action="store_true", help="append reversed edges")
    ap.add_argument("--no-dedup-triangles", action="store_true", help="keep every true barrel->disk label")
    ap.add_argument("--events", type=int, default=None, help="at most this many events")
    ap.add_argument("--skip", type=int, default=0)
    ap.add_argument("--summary", help="write the summary JSON here")
    args = ap.parse_args(argv)
    opt = GraphOptions(pt_min=args.pt_min, phi_slope_max=args.phi_slope_max, z0_max=args.z0_max,
                       endcaps=not args.no_endcaps, remove_duplicates=not args.keep_duplicates,
                       remove_intersecting=not args.keep_intersecting,
                       undirected=args.undirected, dedup_triangles=not args.no_dedup_triangles)
    summary = build_folder(args.input, args.out, options=opt, nevents=args.events, skip=args.skip,
                           progress=sys.stderr.isatty())
    print_summary(summary)
    if args.summary:
        Path(args.summary).parent.mkdir(parents=True, exist_ok=True)
        Path(args.summary).write_text(json.dumps(summary, indent=2) + "\n")
    return summary


if __name__ == "__main__":
    main()
