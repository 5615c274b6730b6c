"""Time the vectorised geometric builder against the reference's all-pairs merge on the same events.

    python benchmarks/graph_build.py --input DIR [--events 3] [--pt-min 1.5] [--naive-pt-min 1.5] [--memory-pt-min 0.5]

DIR is a folder or zip of TrackML events (e.g. written by ``python -m tracker.data.simulate``). Both builders
run on every event; their edge sets are checked to be equal; the ratio of total times is printed. The peak
memory of the vectorised builder at ``--memory-pt-min`` (tracemalloc peak of the build, and the process's max RSS)
is measured in a fresh subprocess per event so earlier allocations do not count. Times are the best of
``--repeat`` runs, as wall time and as process CPU time (steadier on a shared machine); both builders share hit
selection (tracker.graphs.builder.select_hits), so the ratio is that of the pair search and cuts plus that
common part.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from graph_build_naive import build_edges_naive

from tracker.data.trackml import load_dataset
from tracker.graphs.builder import build_graph

_MEM_SNIPPET = """
import json, resource, sys, time, tracemalloc
from tracker.data.trackml import load_dataset
from tracker.graphs.builder import build_graph
path, skip, pt = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
evt, h, p, t = next(load_dataset(path, nevents=1, skip=skip, parts=("hits", "particles", "truth")))
tracemalloc.start()
t0 = time.perf_counter()
g = build_graph(h, p, t, pt_min=pt, event_id=evt)
dt = time.perf_counter() - t0
peak = tracemalloc.get_traced_memory()[1]
print(json.dumps({"event": evt, "nodes": g.num_nodes, "edges": g.num_edges, "seconds": dt,
                  "tracemalloc_peak_mb": peak / 2**20,
                  "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--input", required=True)
    ap.add_argument("--events", type=int, default=3)
    ap.add_argument("--pt-min", type=float, default=1.5)
    ap.add_argument("--memory-pt-min", type=float, default=0.5)
    ap.add_argument("--repeat", type=int, default=10, help="timing repeats of the fast builder (best taken)")
    ap.add_argument("--naive-repeat", type=int, default=2, help="timing repeats of the naive builder (best taken)")
    args = ap.parse_args(argv)

    fast_t, naive_t, fast_cpu, naive_cpu, rows = 0.0, 0.0, 0.0, 0.0, []
    for evt, h, p, t in load_dataset(args.input, nevents=args.events, parts=("hits", "particles", "truth")):
        best, best_cpu = float("inf"), float("inf")
        for _ in range(args.repeat):
            t0, c0 = time.perf_counter(), time.process_time()
            g = build_graph(h, p, t, pt_min=args.pt_min, dedup_triangles=False, event_id=evt)
            best, best_cpu = min(best, time.perf_counter() - t0), min(best_cpu, time.process_time() - c0)
        tn, tn_cpu = float("inf"), float("inf")
        for _ in range(args.naive_repeat):
            t0, c0 = time.perf_counter(), time.process_time()
            ei, y = build_edges_naive(h, p, t, pt_min=args.pt_min)
            tn, tn_cpu = min(tn, time.perf_counter() - t0), min(tn_cpu, time.process_time() - c0)
        fe = g.edge_index.numpy()
        o = np.lexsort((fe[1], fe[0]))
        same = np.array_equal(fe[:, o], ei) and np.array_equal(g.y.numpy()[o], y)
        if not same:
            raise SystemExit(f"event {evt}: fast and naive builders disagree ({fe.shape[1]} vs {ei.shape[1]} edges)")
        fast_t += best
        naive_t += tn
        fast_cpu += best_cpu
        naive_cpu += tn_cpu
        rows.append({"event": evt, "nodes": g.num_nodes, "edges": g.num_edges, "fast_s": best, "naive_s": tn,
                     "fast_cpu_s": best_cpu, "naive_cpu_s": tn_cpu})
        print(f"event {evt}: {g.num_nodes} nodes, {g.num_edges} edges; wall fast {best:.3f} s, naive {tn:.3f} s "
              f"({tn / best:.1f}x); CPU fast {best_cpu:.3f} s, naive {tn_cpu:.3f} s ({tn_cpu / best_cpu:.1f}x); "
              f"edge sets identical")
    mem = []
    for skip in range(min(args.events, len(rows))):
        out = subprocess.run([sys.executable, "-c", _MEM_SNIPPET, args.input, str(skip), str(args.memory_pt_min)],
                             capture_output=True, text=True, check=True)
        mem.append(json.loads(out.stdout.strip().splitlines()[-1]))
        m = mem[-1]
        print(f"event {m['event']} at pT_min {args.memory_pt_min}: {m['nodes']} nodes, {m['edges']} edges, "
              f"{m['seconds']:.2f} s, tracemalloc peak {m['tracemalloc_peak_mb']:.0f} MB, "
              f"max RSS {m['max_rss_mb']:.0f} MB")
    summary = {"pt_min": args.pt_min, "events": len(rows), "fast_seconds": fast_t, "naive_seconds": naive_t,
               "ratio": naive_t / fast_t if fast_t else float("nan"), "fast_cpu_seconds": fast_cpu,
               "naive_cpu_seconds": naive_cpu, "cpu_ratio": naive_cpu / fast_cpu if fast_cpu else float("nan"),
               "per_event": rows, "memory": mem}
    print(f"total: wall fast {fast_t:.3f} s, naive {naive_t:.3f} s -> {summary['ratio']:.1f}x; "
          f"CPU fast {fast_cpu:.3f} s, naive {naive_cpu:.3f} s -> {summary['cpu_ratio']:.1f}x faster")
    return summary


if __name__ == "__main__":
    main()
