"""Cached, disjoint train/val/test graph datasets built from a :class:`~tracker.data.config.DataConfig`.

``prepare(cfg)`` builds the dataset once and returns its key; ``load_splits(cfg)`` reads it (building it first when
needed). Sources:

- ``hitgraphs``: a folder of reference npz graphs (graph options do not apply: the graphs are pre-built);
- ``trackml``: a folder or zip of TrackML events, read and built with :mod:`tracker.graphs.builder`;
- ``simulated``: events written by :func:`tracker.data.simulate.simulate_events`, then built like ``trackml``.

Splits. For file sources the sorted file list is shuffled with ``cfg.seed`` and cut as test, val, train in this
order, so the val and test graphs do not change when only the train size changes. Simulated splits use the same
``cfg.seed`` (one simulated detector: misalignment and dead modules are drawn from the seed) and disjoint event-id
ranges (test from 1,000,000, val from 2,000,000, train from 3,000,000); each event depends only on
(seed, event id), so a larger train split keeps the smaller one as its prefix.

Cache. ``$EQUITRACK_CACHE`` (default ``./.equitrack/cache``) / ``datasets`` / ``<source>-<hash>``: the hash covers the
format version, the config fields that change the data, a fingerprint of the input files (names, sizes) and of the
code that makes the data. The folder holds ``train.pt``, ``val.pt``, ``test.pt`` (lists of plain tensor dicts, read
with ``torch.load(weights_only=True)``) and ``manifest.json`` (full config, key, counts, statistics, sha256 of
each file, and a digest of the manifest itself). A build runs under a file lock (one build for concurrent callers)
into a temporary folder that is renamed into place when complete. A folder whose manifest is missing, edited or
inconsistent is never reused: :class:`DatasetCacheError` names it (``prepare(cfg, rebuild=True)`` replaces it).
The lock, the manifest and the checks are :mod:`equitrack.cache`'s, shared with :mod:`jets.data.dataset`.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch_geometric.data import Data

from equitrack.cache import Built, DatasetCache, DatasetCacheError, cache_root, code_fingerprint  # noqa: F401
from equitrack.cache import manifest_digest as _manifest_digest  # noqa: F401  (tests forge digests with it)
from tracker.data.config import DataConfig
from tracker.graphs.io import from_dict, load_graphs, save_graphs, to_dict

FORMAT_VERSION = 1
SPLITS = ("train", "val", "test")
#: first event id of each simulated split (disjoint ranges; each holds up to 1e6 events)
SIM_FIRST_EVENT = {"test": 1_000_000, "val": 2_000_000, "train": 3_000_000}
SIM_CHUNK_EVENTS = 8  # simulated events per chunk (a chunk's raw files are deleted once its graphs are built)
_GRAPH_FIELDS = (
    "pt_min", "phi_slope_max", "z0_max", "endcaps", "remove_intersecting", "remove_duplicates", "dedup_triangles",
)
_SIM_FIELDS = ("pileup", "noise_fraction", "field_phi_modulation", "misalignment_mm", "dead_module_fraction")
_CODE = {
    "hitgraphs": ("data/hitgraphs.py", "data/geometry.py", "graphs/io.py"),
    "trackml": ("data/trackml.py", "data/geometry.py", "graphs/builder.py", "graphs/io.py"),
    "simulated": ("data/simulate.py", "data/sim_detector.py", "data/sim_propagation.py", "data/trackml.py",
                  "data/geometry.py", "graphs/builder.py", "graphs/io.py"),
}


@dataclass
class Splits:
    """The three disjoint graph lists of a dataset and its cache key."""

    train: list[Data]
    val: list[Data]
    test: list[Data]
    key: str
    manifest: dict[str, Any] = field(default_factory=dict, repr=False)


# ------------------------------------------------------------------------------------------------ keys


#: the 10 real reference hit graphs (pT > 1.5 GeV) shipped with the package: ``source: hitgraphs`` without a path
PACKAGED_HITGRAPHS = Path(__file__).resolve().parent / "resources" / "hitgraphs_plus_1GeV5"


def source_path(cfg: DataConfig) -> Path:
    """The input folder (or zip) of a file source; ``hitgraphs`` without a path means the packaged real graphs."""
    if cfg.path:
        return Path(cfg.path).expanduser().resolve()
    if cfg.source == "hitgraphs":
        return PACKAGED_HITGRAPHS
    raise ValueError(f"data.path is required for source {cfg.source!r} (a folder or zip of TrackML events)")


def _input_files(cfg: DataConfig) -> list[tuple[str, int]]:
    """(name, size) of the input files the dataset is made from (empty for simulated data)."""
    if cfg.source == "simulated":
        return []
    path = source_path(cfg)
    if cfg.source == "hitgraphs":
        if not path.is_dir():
            raise FileNotFoundError(f"data.path={cfg.path!r}: not a folder of npz hit graphs")
        return [(p.name, p.stat().st_size) for p in sorted(path.glob("*.npz"))]
    import zipfile

    if path.is_file() and zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            return sorted((i.filename, i.file_size) for i in zf.infolist() if i.filename.endswith((".csv", ".csv.gz")))
    if not path.is_dir():
        raise FileNotFoundError(f"data.path={cfg.path!r}: not a folder or zip of TrackML events")
    return sorted((p.name, p.stat().st_size) for p in path.iterdir() if p.name.endswith((".csv", ".csv.gz")))


def key_config(cfg: DataConfig) -> dict[str, Any]:
    """The part of the config that determines the data (what the key hashes, besides inputs and code)."""
    out: dict[str, Any] = {"source": cfg.source, "events": cfg.events.model_dump(), "seed": cfg.seed}
    if cfg.source in ("trackml", "simulated"):
        out.update({k: getattr(cfg, k) for k in _GRAPH_FIELDS})
        if cfg.noise_hits:  # only when set: the keys of datasets without noise hits do not move
            out["noise_hits"] = True
    if cfg.source == "simulated":
        out.update({k: getattr(cfg, k) for k in _SIM_FIELDS})
    return out


def _code_fingerprint(source: str) -> str:
    return code_fingerprint(Path(__file__).resolve().parents[1], _CODE[source])


def dataset_key(cfg: DataConfig) -> str:
    """``<source>-<16 hex>``: hash of the format version, :func:`key_config`, input files and code."""
    return CACHE.key(cfg)


def dataset_dir(cfg: DataConfig) -> Path:
    return CACHE.folder(dataset_key(cfg))


# ------------------------------------------------------------------------------------------------ building


def _pick(n_files: int, cfg: DataConfig, what: str) -> dict[str, np.ndarray]:
    ev = cfg.events
    need = ev.train + ev.val + ev.test
    if n_files < need:
        raise ValueError(f"data.path={cfg.path!r}: {n_files} {what}, but events asks for {need} "
                         f"(train {ev.train}, val {ev.val}, test {ev.test})")
    perm = np.random.default_rng(cfg.seed).permutation(n_files)
    return {"test": perm[: ev.test], "val": perm[ev.test: ev.test + ev.val],
            "train": perm[ev.test + ev.val: ev.test + ev.val + ev.train]}


def _graph_options(cfg: DataConfig) -> dict[str, Any]:
    return {**{k: getattr(cfg, k) for k in _GRAPH_FIELDS}, "noise_hits": cfg.noise_hits}


def _build_events(path: Path, event_ids: list[int], cfg: DataConfig) -> list[Data]:
    from tracker.data.trackml import load_dataset
    from tracker.graphs.builder import build_graph

    wanted = {int(e) for e in event_ids}
    graphs = {}
    for evt, hits, particles, truth in load_dataset(path, parts=("hits", "particles", "truth")):
        if evt in wanted:
            graphs[evt] = build_graph(hits, particles, truth, event_id=evt, **_graph_options(cfg))
    return [graphs[e] for e in event_ids]


def _build(cfg: DataConfig, work: Path) -> dict[str, list[Data]]:
    """The graphs of each split (``work`` is a scratch folder inside the temporary dataset folder)."""
    if cfg.source == "hitgraphs":
        from tracker.data.hitgraphs import load_npz

        files = sorted(source_path(cfg).glob("*.npz"))
        idx = _pick(len(files), cfg, "npz graphs")
        return {s: [load_npz(files[i]) for i in idx[s]] for s in SPLITS}
    if cfg.source == "trackml":
        from tracker.data.trackml import list_events

        path = source_path(cfg)
        ids = list_events(path, parts=("hits", "particles", "truth"))
        idx = _pick(len(ids), cfg, "events")
        return {s: _build_events(path, [ids[i] for i in idx[s]], cfg) for s in SPLITS}
    # simulated: chunks of consecutive event ids, each simulated, built and deleted (optionally in parallel)
    jobs = []
    for s in SPLITS:
        n = getattr(cfg.events, s)
        for first in range(SIM_FIRST_EVENT[s], SIM_FIRST_EVENT[s] + n, SIM_CHUNK_EVENTS):
            jobs.append((s, first, min(SIM_CHUNK_EVENTS, SIM_FIRST_EVENT[s] + n - first)))
    workers = max(1, min(data_workers(), len(jobs)))
    args = [(cfg, work / f"raw-{s}-{first}", first, n) for s, first, n in jobs]
    if workers == 1:
        results = [_simulate_chunk(*a) for a in args]
    else:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
        with ProcessPoolExecutor(workers, mp_context=mp.get_context(method)) as pool:
            results = list(pool.map(_simulate_chunk, *zip(*args)))
    out: dict[str, list[Data]] = {s: [] for s in SPLITS}
    for (s, _first, _n), (graphs, sim_record) in zip(jobs, results):
        out[s].extend(from_dict(d) for d in graphs)
        if sim_record is not None and not (work.parent / "simulation.json").exists():
            (work.parent / "simulation.json").write_text(sim_record)
    return out


def data_workers() -> int:
    """Processes used to simulate events: ``$EQUITRACK_DATA_WORKERS`` (default 1)."""
    raw = os.environ.get("EQUITRACK_DATA_WORKERS", "1")
    try:
        return max(1, int(raw))
    except ValueError:
        raise ValueError(f"EQUITRACK_DATA_WORKERS={raw!r}: expected a positive integer") from None


def _simulate_chunk(cfg: DataConfig, raw: Path, first: int, n: int) -> tuple[list[dict], str | None]:
    """Simulate events ``first .. first+n-1`` into ``raw``, build their graphs, delete the events.

    Every event depends only on (seed, event id) and the detector knobs on the seed, so chunks (and workers)
    do not change the result."""
    from tracker.data.simulate import simulate_events

    simulate_events(out_dir=raw, n_events=n, seed=cfg.seed, pileup=cfg.pileup, noise_fraction=cfg.noise_fraction,
                    first_event_id=first, field_phi_modulation=cfg.field_phi_modulation,
                    misalignment_mm=cfg.misalignment_mm, dead_module_fraction=cfg.dead_module_fraction)
    graphs = [to_dict(g) for g in _build_events(raw, list(range(first, first + n)), cfg)]
    sim = raw / "simulation.json"
    record = sim.read_text() if sim.exists() else None
    shutil.rmtree(raw)  # the graphs are what is cached; the events are reproducible from the seed
    return graphs, record


def _stats(graphs: list[Data]) -> dict[str, float]:
    if not graphs:
        return {}
    from tracker.graphs.quality import graph_quality

    n = np.array([g.num_nodes for g in graphs], float)
    e = np.array([g.num_edges for g in graphs], float)
    p = np.array([float(g.y.float().mean()) if g.num_edges else np.nan for g in graphs])
    out = {"nodes_mean": float(n.mean()), "nodes_std": float(n.std()), "edges_mean": float(e.mean()),
           "edges_std": float(e.std()), "purity_mean": float(np.nanmean(p))}
    if all(bool((g.layer >= 0).all()) for g in graphs):
        out["efficiency_mean"] = float(np.nanmean([graph_quality(g)["efficiency"] for g in graphs]))
    return out


def _write(cfg: DataConfig, tmp: Path) -> Built:
    """Build the graphs of ``cfg`` in the temporary dataset folder ``tmp`` and save one file per split."""
    work = tmp / "work"
    work.mkdir()
    graphs = _build(cfg, work)
    shutil.rmtree(work, ignore_errors=True)
    for s in SPLITS:
        save_graphs(graphs[s], tmp / f"{s}.pt")
    return Built(fields={"event_ids": {s: [int(g.event_id) for g in graphs[s]] for s in SPLITS},
                         "stats": {s: _stats(graphs[s]) for s in SPLITS}},
                 files={f"{s}.pt": {"graphs": len(graphs[s])} for s in SPLITS})


#: the cache of hit-graph datasets (:mod:`equitrack.cache`): ``<cache root>/datasets/<key>``
CACHE: DatasetCache[DataConfig] = DatasetCache(
    kind="datasets", format_version=FORMAT_VERSION, files=tuple(f"{s}.pt" for s in SPLITS),
    maker="tracker.data.dataset", key_config=key_config, inputs=_input_files,
    code=lambda cfg: _code_fingerprint(cfg.source), write=_write)


def prepare(cfg: DataConfig, *, rebuild: bool = False) -> str:
    """Build the graphs of ``cfg`` unless the cache holds them; their key (:meth:`DatasetCache.prepare`)."""
    return CACHE.prepare(cfg, rebuild=rebuild)


def load_splits(cfg: DataConfig) -> Splits:
    """Read the train/val/test graphs of ``cfg`` (calling :func:`prepare` first, so a missing cache is built)."""
    key, folder, manifest = CACHE.load(cfg)
    graphs = {s: load_graphs(folder / f"{s}.pt") for s in SPLITS}
    return Splits(train=graphs["train"], val=graphs["val"], test=graphs["test"], key=key, manifest=manifest)
