"""Cached datasets: reuse, one build under concurrency, tamper detection, disjoint reproducible splits."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
from pathlib import Path

import pytest
import torch

from tracker.data import dataset as ds
from tracker.data.dataset import DatasetCacheError, dataset_dir, load_splits, prepare
from tracker.train.config import DataConfig


@pytest.fixture()
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("EQUITRACK_CACHE", str(root))
    return root


def _hitgraphs(shared: Path, **kw) -> DataConfig:
    return DataConfig(source="hitgraphs", path=str(shared / "hitgraphs_plus_1GeV5"),
                      events={"train": 6, "val": 2, "test": 2}, **kw)


def _ids(splits) -> dict[str, list[int]]:
    return {s: [g.event_id for g in getattr(splits, s)] for s in ("train", "val", "test")}


def test_reuse_and_disjoint(cache: Path, shared_trackml: Path) -> None:
    cfg = _hitgraphs(shared_trackml)
    key = prepare(cfg)
    folder = cache / "datasets" / key
    manifest = json.loads((folder / "manifest.json").read_text())
    mtime = (folder / "train.pt").stat().st_mtime_ns
    splits = load_splits(cfg)
    assert splits.key == key == prepare(cfg)
    assert (folder / "train.pt").stat().st_mtime_ns == mtime  # not rebuilt
    assert splits.manifest["build_id"] == manifest["build_id"]
    assert manifest["config"]["path"] == cfg.path and manifest["format_version"] == ds.FORMAT_VERSION
    ids = _ids(splits)
    assert [len(v) for v in ids.values()] == [6, 2, 2]
    assert len({e for v in ids.values() for e in v}) == 10  # disjoint
    g = splits.train[0]
    assert g.x.dtype == torch.float32 and g.edge_index.dtype == torch.int64 and isinstance(g.event_id, int)
    # another seed: another key and another split; a larger train split keeps val and test
    other = load_splits(_hitgraphs(shared_trackml, seed=1))
    assert other.key != key and _ids(other) != ids
    bigger = load_splits(DataConfig(source="hitgraphs", path=cfg.path, events={"train": 4, "val": 2, "test": 2}))
    assert _ids(bigger)["test"] == ids["test"] and _ids(bigger)["val"] == ids["val"]


def test_reproducible_in_fresh_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shared_trackml: Path) -> None:
    cfg = _hitgraphs(shared_trackml, seed=3)
    monkeypatch.setenv("EQUITRACK_CACHE", str(tmp_path / "a"))
    a = load_splits(cfg)
    monkeypatch.setenv("EQUITRACK_CACHE", str(tmp_path / "b"))
    b = load_splits(cfg)
    assert a.key == b.key and _ids(a) == _ids(b)
    assert a.manifest["build_id"] != b.manifest["build_id"]
    for ga, gb in zip(a.test, b.test):
        assert torch.equal(ga.edge_attr, gb.edge_attr) and torch.equal(ga.x, gb.x)


def test_tampered_manifest_detected(cache: Path, shared_trackml: Path) -> None:
    cfg = _hitgraphs(shared_trackml)
    folder = cache / "datasets" / prepare(cfg)
    mpath = folder / "manifest.json"
    good = mpath.read_text()
    m = json.loads(good)
    m["key_config"]["seed"] = 99
    mpath.write_text(json.dumps(m))
    with pytest.raises(DatasetCacheError, match=rf"{folder.name}.*manifest digest mismatch"):
        load_splits(cfg)
    m["digest"] = ds._manifest_digest(m)  # a forged digest still fails the config check
    mpath.write_text(json.dumps(m))
    with pytest.raises(DatasetCacheError, match="made for another configuration"):
        prepare(cfg)
    mpath.write_text(good)
    raw = bytearray((folder / "val.pt").read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # same size, one byte changed
    (folder / "val.pt").write_bytes(bytes(raw))
    with pytest.raises(DatasetCacheError, match=r"val\.pt: content does not match"):
        load_splits(cfg)
    key = prepare(cfg, rebuild=True)
    assert load_splits(cfg).key == key and json.loads(mpath.read_text())["build_id"] != m["build_id"]


def test_foreign_folder_never_reused(cache: Path, shared_trackml: Path) -> None:
    cfg = _hitgraphs(shared_trackml)
    folder = dataset_dir(cfg)
    folder.mkdir(parents=True)
    (folder / "train.pt").write_bytes(b"something else")
    with pytest.raises(DatasetCacheError, match=rf"{folder}.*no manifest\.json"):
        prepare(cfg)


def test_changed_input_changes_key(cache: Path, shared_trackml: Path, tmp_path: Path) -> None:
    src = tmp_path / "npz"
    src.mkdir()
    for p in sorted((shared_trackml / "hitgraphs_plus_1GeV5").glob("*.npz"))[:4]:
        (src / p.name).symlink_to(p)
    cfg = DataConfig(source="hitgraphs", path=str(src), events={"train": 1, "val": 1, "test": 1})
    k1 = prepare(cfg)
    min(src.iterdir()).unlink()
    k2 = prepare(cfg)
    assert k1 != k2
    with pytest.raises(ValueError, match="3 npz graphs, but events asks for 4"):
        prepare(DataConfig(source="hitgraphs", path=str(src), events={"train": 2, "val": 1, "test": 1}))


def _child(cache: str, path: str, barrier, queue) -> None:
    os.environ["EQUITRACK_CACHE"] = cache
    from tracker.data.dataset import load_splits
    from tracker.train.config import DataConfig

    cfg = DataConfig(source="hitgraphs", path=path, events={"train": 6, "val": 2, "test": 2})
    barrier.wait()
    s = load_splits(cfg)
    queue.put((s.key, s.manifest["build_id"], [g.event_id for g in s.train], float(s.train[0].edge_attr.sum())))


def test_concurrent_builders_get_one_build(tmp_path: Path, shared_trackml: Path) -> None:
    ctx = mp.get_context("fork")  # fork: the children skip re-importing torch (spawn costs ~20 s here)
    barrier, queue = ctx.Barrier(2), ctx.Queue()
    args = (str(tmp_path / "cache"), str(shared_trackml / "hitgraphs_plus_1GeV5"), barrier, queue)
    procs = [ctx.Process(target=_child, args=args) for _ in range(2)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert results[0] == results[1]  # same key, same build, identical data
    folders = list((tmp_path / "cache" / "datasets").iterdir())
    assert [f.name for f in folders if f.is_dir()] == [results[0][0]]  # no leftover temporary folders


def test_trackml_source(cache: Path, shared_trackml: Path, tmp_path: Path) -> None:
    """Events of a folder are read and built; three copies of the real subset stand for three events."""
    src = tmp_path / "events"
    src.mkdir()
    for evt in (11, 12, 13):
        for part in ("hits", "cells", "particles", "truth"):
            (src / f"event{evt:09d}-{part}.csv.gz").symlink_to(shared_trackml / f"event000000001-{part}.csv.gz")
    cfg = DataConfig(source="trackml", path=str(src), events={"train": 1, "val": 1, "test": 1}, pt_min=1.5)
    s = load_splits(cfg)
    assert sorted(e for v in _ids(s).values() for e in v) == [11, 12, 13]
    assert s.train[0].num_nodes == 112 and s.manifest["stats"]["train"]["efficiency_mean"] >= 0.95
    looser = DataConfig(source="trackml", path=str(src), events={"train": 1, "val": 1, "test": 1}, pt_min=1.0)
    assert prepare(looser) != s.key
    with pytest.raises(ValueError, match="1 events, but events asks for 3"):
        prepare(DataConfig(source="trackml", path=str(shared_trackml), events={"train": 1, "val": 1, "test": 1}))


def test_simulated_source(cache: Path) -> None:
    cfg = DataConfig(source="simulated", events={"train": 2, "val": 1, "test": 1}, pileup=5, seed=4)
    s = load_splits(cfg)
    ids = _ids(s)
    assert ids == {"train": [3_000_000, 3_000_001], "val": [2_000_000], "test": [1_000_000]}
    for g in s.train + s.val + s.test:
        assert g.num_nodes > 0 and (g.pt > 1.5).all() and g.layer.min() >= 0
    assert s.manifest["config"]["pileup"] == 5
    assert (cache / "datasets" / s.key / "simulation.json").exists()
    assert not any((cache / "datasets" / s.key).glob("raw-*"))


def test_parallel_simulation_is_identical(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks simulated by 2 worker processes give the same graphs as one process (events depend on seed + id)."""
    cfg = DataConfig(source="simulated", events={"train": 2, "val": 1, "test": 1}, pileup=3, seed=5)
    monkeypatch.setattr(ds, "SIM_CHUNK_EVENTS", 1)
    monkeypatch.setenv("EQUITRACK_CACHE", str(tmp_path / "one"))
    one = load_splits(cfg)
    monkeypatch.setenv("EQUITRACK_CACHE", str(tmp_path / "two"))
    monkeypatch.setenv("EQUITRACK_DATA_WORKERS", "2")
    two = load_splits(cfg)
    assert _ids(one) == _ids(two)
    for a, b in zip(one.train + one.val + one.test, two.train + two.val + two.test):
        assert torch.equal(a.edge_index, b.edge_index) and torch.equal(a.x, b.x) and torch.equal(a.y, b.y)


def test_hitgraphs_without_path_uses_the_packaged_real_graphs(cache: Path, shared_trackml: Path) -> None:
    """``source: hitgraphs`` with no path reads the copies shipped in the package: the same graphs as ../shared."""
    packaged = load_splits(DataConfig(source="hitgraphs", events={"train": 6, "val": 2, "test": 2}))
    shared = load_splits(_hitgraphs(shared_trackml))
    assert packaged.key == shared.key  # same input files (names and sizes), same config
    for a, b in zip(packaged.train + packaged.val + packaged.test, shared.train + shared.val + shared.test):
        assert a.event_id == b.event_id
        assert torch.equal(a.edge_index, b.edge_index) and torch.equal(a.y, b.y)
