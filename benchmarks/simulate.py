"""Time the event simulation on one core, and optionally measure its realism against the real TrackML graphs.

    python benchmarks/simulate.py [--events 5] [--pileup 200] [--seed 0] [--realism] [--json FILE]

Timing (wall clock, and the process's CPU time, which is robust to other load on a shared machine): the one-off setup (reading the packaged geometry and particle table, building the module lookup grid,
writing detectors.csv.gz) and, per event, the simulation itself and the writing of the four gzip CSV files;
``simulate_events`` end to end for one event is timed as well. Threads are pinned to one (OMP/MKL/OpenBLAS).

``--realism`` builds the geometric graphs of the simulated events with ``tracker.graphs`` at pT_min 1.0 / 1.5 / 2.0
GeV (recommended cuts), after the reference's hit selection (one hit per particle per layer, the innermost), and
prints nodes, edges, purity and truth-segment efficiency (mean ± std over events) next to the real figures of
SCIENCE.md §3; the builder without that selection is reported too.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np
import pandas as pd

from tracker.data import simulate as sim

REAL = {  # SCIENCE.md §3: real TrackML, recommended cuts, mean ± std per event
    1.0: {"nodes": (5332, 685), "edges": (99304, 24576), "purity": (0.043, 0.005), "efficiency": (0.987, 0.002)},
    1.5: {"nodes": (2270, 328), "edges": (15445, 4248), "purity": (0.118, 0.017), "efficiency": (0.987, 0.003)},
    2.0: {"nodes": (1091, 163), "edges": (4429, 1269), "purity": (0.198, 0.034), "efficiency": (0.987, 0.005)},
}


def time_events(n_events: int, pileup: float, seed: int, workdir: Path) -> dict:
    """Setup, per-event simulation and writing times (seconds)."""
    t0 = time.perf_counter()
    detectors = pd.read_csv(sim.resource_path(sim.DETECTORS_FILE))
    detectors = detectors.drop(columns=[c for c in detectors.columns if str(c).startswith("Unnamed")])
    table = pd.read_csv(sim.resource_path(sim.PARTICLES_FILE))
    geo = sim.load_geometry(detectors, rng=np.random.default_rng([seed, 0]))
    sim._write_csv(detectors, workdir / "detectors.csv.gz")
    setup = time.perf_counter() - t0
    t_sim, t_write, cpu, n_hits, n_particles = [], [], [], [], []
    for event_id in range(1000, 1000 + n_events):
        c1 = time.process_time()
        t1 = time.perf_counter()
        frames = sim._simulate_one(geo, table, np.random.default_rng([seed, 1, event_id]), event_id, pileup=pileup,
                                   noise_fraction=0.15, field_phi_modulation=0.0)
        t2 = time.perf_counter()
        for part, df in frames.items():
            sim._write_csv(df, workdir / f"event{event_id:09d}-{part}.csv.gz", sim._DECIMALS)
        t3 = time.perf_counter()
        cpu.append(time.process_time() - c1)
        t_sim.append(t2 - t1)
        t_write.append(t3 - t2)
        n_hits.append(len(frames["hits"]))
        n_particles.append(len(frames["particles"]))
    t4 = time.perf_counter()
    sim.simulate_events(out_dir=workdir / "e2e", n_events=1, seed=seed, pileup=pileup)
    e2e = time.perf_counter() - t4
    per_event = np.array(t_sim) + np.array(t_write)
    return {
        "events": n_events, "pileup": pileup, "setup_s": round(setup, 3),
        "simulate_s_median": round(float(np.median(t_sim)), 3), "write_s_median": round(float(np.median(t_write)), 3),
        "per_event_s_median": round(float(np.median(per_event)), 3), "per_event_s_max": round(float(per_event.max()), 3),
        "per_event_cpu_s_median": round(float(np.median(cpu)), 3),
        "one_event_end_to_end_s": round(e2e, 3), "hits_per_event": int(np.mean(n_hits)),
        "particles_per_event": int(np.mean(n_particles)),
    }


def realism(event_dir: Path) -> dict:
    """Graph figures at 1.0 / 1.5 / 2.0 GeV for the events of ``event_dir`` (mean, std over events)."""
    import torch

    from tracker.data.geometry import layer_index
    from tracker.data.trackml import load_event
    from tracker.graphs import build_graph, graph_quality

    torch.set_num_threads(1)
    rows = {}
    for hits_file in sorted(event_dir.glob("event*-hits.csv.gz")):
        prefix = Path(str(hits_file).replace("-hits.csv.gz", ""))
        hits, particles, truth = load_event(prefix, parts=("hits", "particles", "truth"))
        m = hits.merge(truth[["hit_id", "particle_id"]], on="hit_id")
        m["layer"] = layer_index(m.volume_id.to_numpy(), m.layer_id.to_numpy())
        m["r"] = np.hypot(m.x, m.y)
        pix = (m.particle_id != 0) & (m.layer >= 0)
        first = m[pix].sort_values("r").drop_duplicates(["particle_id", "layer"])
        keep = (hits.hit_id.isin(first.hit_id) | ~hits.hit_id.isin(m.hit_id[pix])).to_numpy()
        for pt_min in REAL:
            for mode, (h, t) in (("reference_selection", (hits[keep], truth[keep])), ("all_hits", (hits, truth))):
                q = graph_quality(build_graph(h, particles, t, pt_min=pt_min))
                for k in ("nodes", "edges", "purity", "efficiency"):
                    rows.setdefault((mode, pt_min, k), []).append(q[k])
    return {f"{mode}/pt{pt}/{k}": [float(np.mean(v)), float(np.std(v))] for (mode, pt, k), v in rows.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=5)
    ap.add_argument("--pileup", type=float, default=200.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--realism", action="store_true", help="also build graphs and compare with SCIENCE.md §3")
    ap.add_argument("--json", type=Path, default=None, help="write the results here")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        res = {"timing": time_events(args.events, args.pileup, args.seed, Path(tmp))}
        t = res["timing"]
        print(f"setup {t['setup_s']:.2f} s (once per call); per pileup-{args.pileup:g} event: simulate "
              f"{t['simulate_s_median']:.2f} s + write {t['write_s_median']:.2f} s = {t['per_event_s_median']:.2f} s "
              f"(median of {args.events}, max {t['per_event_s_max']:.2f} s; CPU {t['per_event_cpu_s_median']:.2f} s); simulate_events for one event end to end "
              f"{t['one_event_end_to_end_s']:.2f} s; {t['hits_per_event']:,} hits, {t['particles_per_event']:,} "
              f"particles per event")
        if args.realism:
            res["realism"] = realism(Path(tmp))
            print(f"{'selection':<20}{'pT_min':>7}{'figure':>12}{'simulated':>22}{'real (SCIENCE.md §3)':>26}")
            for key, (mean, std) in res["realism"].items():
                mode, pt, k = key.split("/")
                rm, rs = REAL[float(pt[2:])][k]
                fmt = "{:.3f}" if k in ("purity", "efficiency") else "{:,.0f}"
                sim_s = f"{fmt.format(mean)} ± {fmt.format(std)}"
                real_s = f"{fmt.format(rm)} ± {fmt.format(rs)}"
                print(f"{mode:<20}{pt[2:]:>7}{k:>12}{sim_s:>22}{real_s:>26}")
    if args.json:
        args.json.write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
