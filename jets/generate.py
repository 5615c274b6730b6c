"""Generate a top-tagging jet sample with Pythia 8 and FastJet: ``python -m jets.generate --out DIR --jets N --seed S``.

Physics (issue 19, following the Top Quark Tagging Reference Dataset without its Delphes detector step):

- pp collisions at 14 TeV, Pythia 8's default tune, no multiparton interactions (the reference has none);
  top jets from tt̄ production (``Top:gg2ttbar``, ``Top:qqbar2ttbar``) with both W bosons decaying to quarks,
  QCD jets from ``HardQCD:all``; both with the hard process's pT in a window around the jet window
  (``PhaseSpace:pTHatMin/Max``);
- the final-state visible particles (neutrinos dropped) with |eta| < 2.5 are clustered with FastJet's anti-kT,
  R = 0.8 (E-scheme: the jet four-momentum is the sum of its constituents);
- kept: jets with 550 < pT < 650 GeV and |eta| < 2; a top event's jet also needs the top and its three decay
  quarks (the b and the W's two quarks) within dR < 0.8 (rapidity-azimuth) of the jet axis, otherwise it is
  dropped; every selected jet of a QCD event is a QCD jet;
- constituents sorted by pT, highest first; optionally capped at the leading ``--max-constituents``.

The work is split into chunks of ``--chunk-jets`` jets of one class, each with its own Pythia seed derived from
``--seed`` (``Random:seed``), so the sample depends on ``--seed`` alone, not on ``--workers``; finished chunks
are kept under ``OUT/.chunks`` until the sample is written, so an interrupted run resumes. The output is
``OUT/jets.npz`` (format: :mod:`jets.data.generated`, classes balanced, jets shuffled with ``--seed``) and
``OUT/SAMPLE.md`` (command, versions, seed, settings, selection, counts, efficiencies).

Pythia (PyPI ``pythia8mc``) and FastJet are an optional extra: ``pip install -e ".[jetgen]"``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import platform
import shutil
import sys
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np

from jets.data.generated import pack_constituents, write_generated

ECM_GEV = 14000.0
PARTICLE_ETA_MAX = 2.5
JET_R = 0.8
JET_PT_MIN, JET_PT_MAX = 550.0, 650.0
JET_ETA_MAX = 2.0
MATCH_DR = 0.8
PTHAT_MIN, PTHAT_MAX = 500.0, 700.0
#: events generated per Pythia batch (``Pythia.nextBatch``) and per FastJet call
BATCH_EVENTS = 200
#: a chunk gives up after this many events per requested jet (a broken selection must not run forever)
MAX_EVENTS_PER_JET = 100
PROCESSES = ("top", "qcd")
LABELS = {"top": 1, "qcd": 0}
_NEUTRINOS = (12, 14, 16)
_INSTALL = 'pip install -e ".[jetgen]" (with --prefer-binary, pip takes the newest pythia8mc wheel, not its source)'


class GeneratorUnavailable(ImportError):
    """pythia8mc or fastjet is not installed (they are the optional ``jetgen`` extra)."""


def _fastjet_awkward():
    """The ``fastjet`` and ``awkward`` modules (clustering needs no Pythia), or :class:`GeneratorUnavailable`."""
    try:
        import awkward
        import fastjet
    except ImportError as err:
        raise GeneratorUnavailable(f"jet clustering needs FastJet ({err}); install it with: {_INSTALL}") from None
    return fastjet, awkward


def require_generators():
    """The ``pythia8mc``, ``fastjet`` and ``awkward`` modules, or :class:`GeneratorUnavailable` saying how to install."""
    fastjet, awkward = _fastjet_awkward()
    try:
        import pythia8mc
    except ImportError as err:
        raise GeneratorUnavailable(
            f"the jet generator needs Pythia 8 (PyPI pythia8mc) ({err}); install it with: {_INSTALL}"
        ) from None
    return pythia8mc, fastjet, awkward


def pythia_settings(process: str, seed: int) -> list[str]:
    """Pythia ``readString`` lines for one process (``top`` or ``qcd``) and ``Random:seed``."""
    if process not in PROCESSES:
        raise ValueError(f"process {process!r}: expected one of {PROCESSES}")
    if not 1 <= seed <= 900_000_000:
        raise ValueError(f"Pythia seed {seed}: expected 1 ... 900000000")
    common = [
        f"Beams:eCM = {ECM_GEV:.1f}",
        f"PhaseSpace:pTHatMin = {PTHAT_MIN:.1f}",
        f"PhaseSpace:pTHatMax = {PTHAT_MAX:.1f}",
        "PartonLevel:MPI = off",
        "Random:setSeed = on",
        f"Random:seed = {seed}",
        "Next:numberCount = 0",
        "Print:quiet = on",
    ]
    if process == "top":
        return common + ["Top:gg2ttbar = on", "Top:qqbar2ttbar = on", "24:onMode = off", "24:onIfAny = 1 2 3 4 5"]
    return common + ["HardQCD:all = on"]


def chunk_seed(seed: int, process: str, chunk: int) -> int:
    """Pythia seed (1 ... 9e8) of one chunk: a function of the sample seed, the process and the chunk number."""
    state = np.random.SeedSequence([int(seed), PROCESSES.index(process), int(chunk)]).generate_state(1)[0]
    return int(state) % 900_000_000 + 1


def rapidity_phi(p4: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rapidity and azimuth of (E, px, py, pz) rows (float64)."""
    p4 = np.asarray(p4, dtype=np.float64).reshape(-1, 4)
    e, px, py, pz = p4.T
    y = 0.5 * np.log(np.maximum(e + pz, 1e-12) / np.maximum(e - pz, 1e-12))
    return y, np.arctan2(py, px)


def delta_r(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """dR (rapidity, azimuth) between every row of ``a`` [n, 4] and every row of ``b`` [m, 4]: [n, m]."""
    ya, pa = rapidity_phi(a)
    yb, pb = rapidity_phi(b)
    dphi = np.abs(pa[:, None] - pb[None, :])
    dphi = np.where(dphi > np.pi, 2 * np.pi - dphi, dphi)
    return np.sqrt((ya[:, None] - yb[None, :]) ** 2 + dphi**2)


def _children(d1: int, d2: int) -> list[int]:
    """Daughter indices of a Pythia particle from its daughter1/daughter2 fields."""
    if d1 <= 0:
        return []
    return list(range(d1, d2 + 1)) if d2 >= d1 else [d1]


def top_decays(ids: np.ndarray, d1: np.ndarray, d2: np.ndarray, p4: np.ndarray) -> list[np.ndarray]:
    """For each decaying top of one Pythia event: (top, b, q, q') four-momenta [4, 4] (E, px, py, pz).

    The top is its last copy (the one that decays to W b), the b and the W's quarks as produced in the decays.
    A top whose W did not give exactly two quarks is left out (it cannot be matched).
    """
    out = []
    for i in np.flatnonzero(np.abs(ids) == 6):
        kids = _children(int(d1[i]), int(d2[i]))
        ws = [k for k in kids if abs(ids[k]) == 24]
        bs = [k for k in kids if abs(ids[k]) == 5]
        if not ws or not bs:
            continue  # not the decaying copy
        w = ws[0]
        for _ in range(200):  # follow the W's recoil copies to the one that decays
            wk = _children(int(d1[w]), int(d2[w]))
            if len(wk) == 1 and abs(ids[wk[0]]) == 24:
                w = wk[0]
            else:
                break
        quarks = [k for k in _children(int(d1[w]), int(d2[w])) if 1 <= abs(ids[k]) <= 5]
        if len(quarks) == 2:
            out.append(p4[[i, bs[0], quarks[0], quarks[1]]])
    return out


def is_matched(jet: np.ndarray, decays: list[np.ndarray], *, r: float = MATCH_DR) -> bool:
    """True when one top and all its decay quarks (a [4, 4] of ``decays``) lie within dR < r of the jet axis."""
    return any(bool((delta_r(jet[None, :], tq)[0] < r).all()) for tq in decays)


def select_jets(jets: np.ndarray) -> np.ndarray:
    """Boolean mask of jets (E, px, py, pz) [n, 4] inside 550 < pT < 650 GeV and |eta| < 2."""
    jets = np.asarray(jets, dtype=np.float64).reshape(-1, 4)
    pt = np.hypot(jets[:, 1], jets[:, 2])
    p = np.sqrt(pt**2 + jets[:, 3] ** 2)
    eta = np.arctanh(np.divide(jets[:, 3], p, out=np.zeros_like(p), where=p > 0))
    return (pt > JET_PT_MIN) & (pt < JET_PT_MAX) & (np.abs(eta) < JET_ETA_MAX)


def sort_by_pt(constituents: np.ndarray) -> np.ndarray:
    """Constituents (E, px, py, pz) [n, 4] sorted by pT, highest first (stable for ties)."""
    pt = np.hypot(constituents[:, 1], constituents[:, 2])
    return constituents[np.argsort(-pt, kind="stable")]


@dataclass(frozen=True)
class ChunkResult:
    """Jets of one chunk (one class, one seed) and what it took to make them."""

    constituents: list[np.ndarray]  # per jet, [n_i, 4] float64, pT-sorted
    jets: np.ndarray  # [n, 4] float64
    events: int
    candidates: int  # jets inside the pT/eta window before truth matching
    seconds: float


def visible_final(ids: np.ndarray, status: np.ndarray, p4: np.ndarray) -> np.ndarray:
    """Mask of the final-state (status > 0), visible (no neutrino) particles with |eta| < 2.5."""
    p4 = np.asarray(p4, dtype=np.float64).reshape(-1, 4)
    pt = np.hypot(p4[:, 1], p4[:, 2])
    # |eta| < eta_max  <=>  |pz| < pT sinh(eta_max); avoids the log of a particle along the beam
    central = np.abs(p4[:, 3]) < pt * np.sinh(PARTICLE_ETA_MAX)
    return (np.asarray(status) > 0) & ~np.isin(np.abs(np.asarray(ids)), _NEUTRINOS) & central


def cluster_events(particles: np.ndarray, counts: np.ndarray, *, pt_min: float) -> list[tuple[np.ndarray, list]]:
    """Anti-kT R = 0.8 jets of many events at once (FastJet's awkward interface).

    ``particles`` [M, 4] (E, px, py, pz) holds the events one after another, ``counts`` [n_events] their sizes.
    Returns, per event, the jets above ``pt_min`` (E, px, py, pz) [k, 4] sorted by pT and, per jet, the indices
    of its constituents within the event.
    """
    fj, ak = _fastjet_awkward()
    particles = np.asarray(particles, dtype=np.float64).reshape(-1, 4)
    counts = np.asarray(counts, dtype=np.int64)
    events = ak.unflatten(
        ak.zip({"px": particles[:, 1], "py": particles[:, 2], "pz": particles[:, 3], "E": particles[:, 0]}), counts
    )
    seq = fj.ClusterSequence(events, fj.JetDefinition(fj.antikt_algorithm, JET_R, fj.E_scheme))
    jets = ak.to_list(seq.inclusive_jets(pt_min))
    index = ak.to_list(seq.constituent_index(pt_min))
    out = []
    for ev_jets, ev_index in zip(jets, index):
        j4 = np.array([[j["E"], j["px"], j["py"], j["pz"]] for j in ev_jets], dtype=np.float64).reshape(-1, 4)
        order = np.argsort(-np.hypot(j4[:, 1], j4[:, 2]), kind="stable")
        out.append((j4[order], [np.asarray(ev_index[k], dtype=np.int64) for k in order]))
    return out


def _batch_columns(ak, batch) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Per-event particle counts and flat numpy columns of a ``Pythia.nextBatch`` awkward array."""
    prt = batch["prt"]
    counts = np.asarray(ak.num(prt, axis=1), dtype=np.int64)
    flat = ak.flatten(prt, axis=1)
    cols = {k: np.asarray(ak.to_numpy(flat[k])) for k in ("id", "status", "daughter1", "daughter2")}
    p = flat["p"]
    cols["p4"] = np.stack([np.asarray(ak.to_numpy(p[k]), dtype=np.float64) for k in ("e", "px", "py", "pz")], axis=1)
    return counts, cols


def make_pythia(process: str, seed: int):
    """An initialised ``pythia8mc.Pythia`` for one process and seed."""
    pythia8mc, _, _ = require_generators()
    pythia = pythia8mc.Pythia()
    for line in pythia_settings(process, seed):
        if not pythia.readString(line):
            raise RuntimeError(f"Pythia rejected the setting {line!r}")
    if not pythia.init():
        raise RuntimeError(f"Pythia failed to initialise for {process} (seed {seed})")
    if not hasattr(pythia, "nextBatch"):
        raise GeneratorUnavailable(
            "this pythia8mc has no Pythia.nextBatch (awkward batches); the generator was written against 8.318"
        )
    return pythia


def generate_chunk(process: str, seed: int, n_jets: int, *, batch_events: int | None = None) -> ChunkResult:
    """Generate at least ``n_jets`` selected jets of one class with one Pythia instance seeded ``seed``.

    Events come in batches of ``batch_events``; all selected jets of a batch are kept, so a chunk may hold a few
    more than ``n_jets`` (the sample takes a prefix, which does not depend on ``n_jets``).
    """
    _, _, ak = require_generators()
    pythia = make_pythia(process, seed)
    t0 = time.perf_counter()
    consts: list[np.ndarray] = []
    jets: list[np.ndarray] = []
    events = candidates = 0
    while len(jets) < n_jets:
        if events >= MAX_EVENTS_PER_JET * n_jets:
            raise RuntimeError(
                f"{process} chunk (seed {seed}): {len(jets)} jets after {events} events, expected {n_jets}; "
                "the selection keeps almost nothing"
            )
        counts, cols = _batch_columns(ak, pythia.nextBatch(batch_events or BATCH_EVENTS))
        events += len(counts)
        keep = visible_final(cols["id"], cols["status"], cols["p4"])
        event_of = np.repeat(np.arange(len(counts)), counts)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        vis = cols["p4"][keep]
        vis_counts = np.bincount(event_of[keep], minlength=len(counts))
        vis_starts = np.concatenate([[0], np.cumsum(vis_counts)[:-1]])
        for ev, (jet4, index) in enumerate(cluster_events(vis, vis_counts, pt_min=0.9 * JET_PT_MIN)):
            sel = np.flatnonzero(select_jets(jet4))
            if not sel.size:
                continue
            candidates += sel.size
            decays = None
            if process == "top":
                lo, hi = starts[ev], starts[ev] + counts[ev]
                decays = top_decays(cols["id"][lo:hi], cols["daughter1"][lo:hi], cols["daughter2"][lo:hi], cols["p4"][lo:hi])
            for j in sel:
                if decays is not None and not is_matched(jet4[j], decays):
                    continue
                consts.append(sort_by_pt(vis[index[j] + vis_starts[ev]]))
                jets.append(jet4[j])
    return ChunkResult(consts, np.array(jets, dtype=np.float64).reshape(-1, 4), events, candidates, time.perf_counter() - t0)


def _chunk_file(work: Path, process: str, seed: int, chunk: int) -> Path:
    return work / f"{process}_{chunk:04d}_seed{seed}.npz"


def _run_chunk(task: tuple[str, int, int, int, str]) -> dict:
    """Worker: generate one chunk (or reuse its file) and return its summary; the jets go to the chunk file."""
    process, seed, chunk, n_jets, work = task
    path = _chunk_file(Path(work), process, seed, chunk)
    if path.exists():
        with np.load(path) as f:
            if int(f["offsets"].shape[0]) - 1 >= n_jets:
                return json.loads(str(f["summary"]))
    res = generate_chunk(process, chunk_seed(seed, process, chunk), n_jets)
    const, offsets = pack_constituents(res.constituents)
    summary = {
        "process": process,
        "chunk": chunk,
        "pythia_seed": chunk_seed(seed, process, chunk),
        "jets": len(res.jets),
        "events": res.events,
        "candidates": res.candidates,
        "seconds": round(res.seconds, 2),
    }
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, constituents=const, offsets=offsets, jet=res.jets, summary=json.dumps(summary))
    tmp.replace(path)
    print(
        f"[jets.generate] {process} chunk {chunk}: {len(res.jets)} jets from {res.events} events in "
        f"{res.seconds:.1f} s ({res.events / max(res.seconds, 1e-9):.1f} events/s)",
        file=sys.stderr,
        flush=True,
    )
    return summary


def _tasks(n_per_class: int, seed: int, chunk_jets: int, work: Path) -> list[tuple[str, int, int, int, str]]:
    """Chunks of both classes, interleaved so that both progress together."""
    n_chunks = -(-n_per_class // chunk_jets)
    tasks = []
    for c in range(n_chunks):
        size = min(chunk_jets, n_per_class - c * chunk_jets)
        tasks += [(p, seed, c, size, str(work)) for p in PROCESSES]
    return tasks


def versions() -> dict[str, str]:
    """Versions of the software that made the sample."""
    out = {"python": platform.python_version(), "numpy": np.__version__}
    for dist in ("pythia8mc", "fastjet", "awkward"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def _sample_md(
    command: str, seed: int, n_jets: int, max_constituents: int | None, summaries: list[dict], arrays, wall_s: float
) -> str:
    """The SAMPLE.md text: how the sample was made and what it holds."""
    const, offsets, label, _ = arrays
    counts = np.diff(offsets)
    size_lines = []
    rows = []
    for p in PROCESSES:
        s = [x for x in summaries if x["process"] == p]
        ev, cand, jets, sec = (sum(x[k] for x in s) for k in ("events", "candidates", "jets", "seconds"))
        rows.append(
            f"| {p} | {int((label == LABELS[p]).sum())} | {jets} | {ev} | {cand} | {jets / max(ev, 1):.3f} | "
            f"{sec:.0f} | {ev / max(sec, 1e-9):.1f} |"
        )
        c = counts[label == LABELS[p]]
        size_lines.append(f"- {p}: mean {c.mean():.1f}, median {np.median(c):.0f}, max {c.max()} constituents per jet")
    v = versions()
    cap = (
        f"each jet keeps its leading {max_constituents} constituents by pT (the jet four-momentum is still the "
        "full jet's)"
        if max_constituents
        else "no cap on constituents: every jet's four-momentum is the sum of its constituents"
    )
    settings = {p: [x for x in pythia_settings(p, 1) if not x.startswith("Random:")] for p in PROCESSES}
    return "\n".join(
        [
            "# Generated top-tagging sample (`jets.npz`)",
            "",
            "Made by `jets.generate` (Pythia 8 + FastJet, no detector simulation); read it with",
            "`jets.data.generated.load_generated`. The same command with the same versions gives the same arrays:",
            "",
            "```",
            command,
            "```",
            "",
            f"- seed: {seed} (each chunk of jets gets its own Pythia `Random:seed`, derived from it: "
            "`jets.generate.chunk_seed`)",
            f"- jets: {len(label)} ({int(label.sum())} top, {int((label == 0).sum())} QCD), requested {n_jets}; "
            f"{len(const)} constituents; {wall_s / 60:.1f} min wall clock for the chunks generated by this run",
            "- versions: " + ", ".join(f"{k} {val}" for k, val in v.items()),
            "",
            "## Physics",
            "",
            f"- pp at {ECM_GEV / 1000:.0f} TeV, Pythia 8 default tune, no multiparton interactions, no pile-up",
            "- Pythia settings (plus `Random:setSeed = on`, `Random:seed = <chunk seed>`):",
            *[f"  - {p}: " + "; ".join(f"`{s}`" for s in settings[p]) for p in PROCESSES],
            f"- particles: final-state, visible (no neutrinos), |eta| < {PARTICLE_ETA_MAX}",
            f"- jets: FastJet anti-kT, R = {JET_R}, E-scheme; kept when {JET_PT_MIN:.0f} < pT < {JET_PT_MAX:.0f} GeV "
            f"and |eta| < {JET_ETA_MAX}; every selected jet of an event is kept",
            f"- top jets: the top and its b and two W quarks within dR < {MATCH_DR} (rapidity-azimuth) of the jet "
            "axis; selected jets of tt̄ events that fail the match are dropped",
            f"- constituents: sorted by pT, highest first; {cap}",
            "",
            "## Counts",
            "",
            "| class | jets in file | jets generated | events | jets in window | jets per event | worker s | events/s |",
            "|---|---|---|---|---|---|---|---|",
            *rows,
            "",
            *size_lines,
            "",
        ]
    )


def generate(
    out: str | Path,
    *,
    n_jets: int,
    seed: int,
    workers: int = 1,
    chunk_jets: int = 500,
    max_constituents: int | None = None,
    command: str | None = None,
    keep_chunks: bool = False,
) -> Path:
    """Generate a balanced sample of ``n_jets`` jets into ``out/jets.npz`` (+ ``SAMPLE.md``); return the npz path."""
    if n_jets < 2 or n_jets % 2:
        raise ValueError(f"--jets {n_jets}: expected an even number >= 2 (half top, half QCD)")
    if chunk_jets < 1 or workers < 1 or (max_constituents is not None and max_constituents < 1):
        raise ValueError("--chunk-jets, --workers and --max-constituents must be positive")
    require_generators()
    out = Path(out)
    work = out / ".chunks"
    work.mkdir(parents=True, exist_ok=True)
    tasks = _tasks(n_jets // 2, seed, chunk_jets, work)
    t0 = time.perf_counter()
    if workers == 1:
        summaries = [_run_chunk(t) for t in tasks]
    else:
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            summaries = list(pool.imap(_run_chunk, tasks, chunksize=1))
    per_class: dict[str, tuple[list[np.ndarray], list[np.ndarray]]] = {p: ([], []) for p in PROCESSES}
    for process, _, chunk, size, _ in tasks:
        with np.load(_chunk_file(work, process, seed, chunk)) as f:
            const, offsets, jet = f["constituents"], f["offsets"], f["jet"]
        for i in range(size):
            c = const[offsets[i] : offsets[i + 1]]
            per_class[process][0].append(c[:max_constituents] if max_constituents else c)
            per_class[process][1].append(jet[i])
    consts = per_class["top"][0] + per_class["qcd"][0]
    jets = np.array(per_class["top"][1] + per_class["qcd"][1])
    label = np.array([1] * len(per_class["top"][0]) + [0] * len(per_class["qcd"][0]), dtype=np.int8)
    order = np.random.default_rng(seed).permutation(len(label))
    const, offsets = pack_constituents([consts[i] for i in order])
    arrays = (const, offsets, label[order], jets[order])
    path = write_generated(out / "jets.npz", *arrays)
    command = command or f"python -m jets.generate --out {out} --jets {n_jets} --seed {seed}"
    notes = _sample_md(command, seed, n_jets, max_constituents, summaries, arrays, time.perf_counter() - t0)
    size = path.stat().st_size
    notes += f"- file: `jets.npz`, {size} bytes ({size / 2**20:.2f} MiB), np.savez_compressed\n"
    (out / "SAMPLE.md").write_text(notes)
    if not keep_chunks:
        shutil.rmtree(work)
    return path


def main(argv: list[str] | None = None) -> int:
    """Command line: see the module docstring."""
    ap = argparse.ArgumentParser(prog="python -m jets.generate", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="output folder (gets jets.npz and SAMPLE.md)")
    ap.add_argument("--jets", type=int, required=True, help="number of jets, even: half top, half QCD")
    ap.add_argument("--seed", type=int, required=True, help="sample seed (Pythia seeds are derived from it)")
    ap.add_argument("--workers", type=int, default=1, help="worker processes (the sample does not depend on it)")
    ap.add_argument("--chunk-jets", type=int, default=500, help="jets per chunk (one Pythia seed each)")
    ap.add_argument("--max-constituents", type=int, default=None, help="keep only the leading N constituents")
    ap.add_argument("--keep-chunks", action="store_true", help="keep OUT/.chunks after writing the sample")
    args = ap.parse_args(argv)
    command = "python -m jets.generate " + " ".join(sys.argv[1:] if argv is None else argv)
    try:
        path = generate(
            args.out,
            n_jets=args.jets,
            seed=args.seed,
            workers=args.workers,
            chunk_jets=args.chunk_jets,
            max_constituents=args.max_constituents,
            command=command,
            keep_chunks=args.keep_chunks,
        )
    except (GeneratorUnavailable, ValueError) as err:
        print(f"jets.generate: {err}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
