"""Cached, disjoint train/val/test jet sets built from a :class:`~jets.config.DataConfig`.

``prepare(cfg)`` builds the dataset once and returns its key; ``load_splits(cfg)`` reads it (building it first
when needed). Sources:

- ``generated`` (default): the shipped sample (:data:`jets.data.generated.SAMPLE_PATH`) or the generated npz at
  ``data.path``, read with :func:`jets.data.generated.load_generated`. The jets are ordered by ``data.seed``:
  the top and the QCD jets are each shuffled and then interleaved (top, QCD, top, …), and the order is cut as
  test, val, train. Every split is balanced (±1 jet) and the val and test jets do not change when only
  ``jets.train`` changes.
- ``toptag``: the Top Quark Tagging Reference Dataset in the folder ``data.path``; each split reads the first
  ``jets.<split>`` rows of its own file (train.h5, val.h5, test.h5), so the splits are disjoint by construction
  and ``data.seed`` does not enter.

Every split keeps each jet's leading ``max_constituents`` constituents by pT; the padded width is the largest
multiplicity left over all splits (the same for the three).

Cache: ``$EQUITRACK_CACHE`` (default ``./.equitrack/cache``) / ``jet_datasets`` / ``<source>-<16 hex>``, the hash
covering the format version, the config fields that change the data, a fingerprint of the input file(s) (the
generated npz's sha256; the toptag files' names and sizes) and of the code that reads them. The folder holds
``train.npz``, ``val.npz``, ``test.npz`` (arrays ``p4``, ``mask``, ``label``, read without pickle) and
``manifest.json`` (config, key, counts, class balance, sha256 of each file, and a digest of the manifest). A build
runs under a file lock into a temporary folder renamed into place when complete; a folder whose manifest is
missing, edited or inconsistent raises :class:`DatasetCacheError` naming it (``prepare(cfg, rebuild=True)``
replaces it), like :mod:`tracker.data.dataset`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from filelock import FileLock

from jets.config import DataConfig

FORMAT_VERSION = 1
SPLITS = ("train", "val", "test")
_ARRAYS = ("p4", "mask", "label")
_CODE = {"generated": ("data/generated.py", "data/dataset.py"), "toptag": ("data/toptag.py", "data/dataset.py")}


class DatasetCacheError(RuntimeError):
    """A dataset cache folder that cannot be used (foreign, edited, incomplete); the message names it."""


@dataclass
class JetSet:
    """Jets in memory: ``p4`` float32 [n, n_max, 4] (E, px, py, pz; GeV; pT-descending, zero padded),
    ``mask`` bool [n, n_max], ``label`` int8 [n] (1 = top)."""

    p4: np.ndarray
    mask: np.ndarray
    label: np.ndarray

    def __len__(self) -> int:
        return int(self.label.shape[0])

    def take(self, index: np.ndarray) -> JetSet:
        return JetSet(self.p4[index], self.mask[index], self.label[index])


@dataclass
class Splits:
    """The three disjoint jet sets of a dataset and its cache key."""

    train: JetSet
    val: JetSet
    test: JetSet
    key: str
    manifest: dict[str, Any] = field(default_factory=dict, repr=False)


def cache_root() -> Path:
    """``$EQUITRACK_CACHE`` or ``./.equitrack/cache`` (resolved to an absolute path now)."""
    return Path(os.environ.get("EQUITRACK_CACHE") or Path.cwd() / ".equitrack" / "cache").resolve()


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


_FILE_DIGESTS: dict[tuple[str, int, int], str] = {}


def _sha256_input(path: Path) -> str:
    """sha256 of an input file, remembered per (path, size, mtime) in this process (every trial asks for the key)."""
    st = path.stat()
    memo = (str(path), st.st_size, st.st_mtime_ns)
    if memo not in _FILE_DIGESTS:
        _FILE_DIGESTS[memo] = _sha256_file(path)
    return _FILE_DIGESTS[memo]


def _sha256_json(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def source_path(cfg: DataConfig) -> Path:
    """The generated npz (the shipped sample when ``data.path`` is unset) or the toptag folder."""
    if cfg.path:
        return Path(cfg.path).expanduser().resolve()
    if cfg.source == "generated":
        from jets.data.generated import SAMPLE_PATH

        return SAMPLE_PATH
    raise ValueError(f"data.path is required for source {cfg.source!r}")


def _input_files(cfg: DataConfig) -> list[list[Any]]:
    path = source_path(cfg)
    if cfg.source == "generated":
        if not path.is_file():
            raise FileNotFoundError(f"data.path={str(path)!r}: no such generated sample (an npz from jets.generate)")
        return [[path.name, path.stat().st_size, _sha256_input(path)]]
    if not path.is_dir():
        raise FileNotFoundError(f"data.path={str(path)!r}: not a folder with train.h5, val.h5 and test.h5")
    from jets.data.toptag import FILES

    out = []
    for name in FILES.values():
        f = path / name
        if not f.is_file():
            raise FileNotFoundError(f"{f}: no such file; the toptag folder needs train.h5, val.h5 and test.h5")
        out.append([name, f.stat().st_size])
    return out


def _code_fingerprint(source: str) -> str:
    pkg = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for rel in _CODE[source]:
        p = pkg / rel
        h.update(rel.encode())
        h.update(p.read_bytes() if p.exists() else b"<missing>")
    return h.hexdigest()[:16]


def key_config(cfg: DataConfig) -> dict[str, Any]:
    """The part of the config that determines the data (what the key hashes, besides inputs and code)."""
    out: dict[str, Any] = {"source": cfg.source, "jets": cfg.jets.model_dump(),
                           "max_constituents": cfg.max_constituents}
    if cfg.source == "generated":
        out["seed"] = cfg.seed
    return out


def dataset_key(cfg: DataConfig) -> str:
    """``<source>-<16 hex>``: hash of the format version, :func:`key_config`, input files and code."""
    blob = {"format": FORMAT_VERSION, "config": key_config(cfg), "inputs": _input_files(cfg),
            "code": _code_fingerprint(cfg.source)}
    return f"{cfg.source}-{_sha256_json(blob)[:16]}"


def balanced_order(label: np.ndarray, seed: int) -> np.ndarray:
    """Indices of all jets: each class shuffled with ``seed``, then interleaved top, QCD, top, … (leftovers last),
    so every prefix is balanced to ±1 jet while the classes last."""
    rng = np.random.default_rng(seed)
    sig = rng.permutation(np.flatnonzero(label == 1))
    bkg = rng.permutation(np.flatnonzero(label != 1))
    k = min(len(sig), len(bkg))
    pairs = np.stack([sig[:k], bkg[:k]], axis=1).reshape(-1)
    return np.concatenate([pairs, sig[k:], bkg[k:]]).astype(np.int64)


def _trim(sets: dict[str, JetSet]) -> dict[str, JetSet]:
    """Cut the padding columns that no jet of any split uses."""
    width = max((int(s.mask.sum(1).max()) if len(s) else 0) for s in sets.values())
    width = max(width, 1)
    return {k: JetSet(np.ascontiguousarray(s.p4[:, :width]), np.ascontiguousarray(s.mask[:, :width]), s.label)
            for k, s in sets.items()}


def _build(cfg: DataConfig) -> dict[str, JetSet]:
    counts = cfg.jets
    if cfg.source == "generated":
        from jets.data.generated import load_generated

        path = source_path(cfg)
        p4, mask, label = load_generated(path, max_constituents=cfg.max_constituents)
        need = counts.train + counts.val + counts.test
        if need > len(label):
            raise ValueError(f"{path}: {len(label)} jets, but data.jets asks for {need} (train {counts.train}, "
                             f"val {counts.val}, test {counts.test})")
        order = balanced_order(label, cfg.seed)
        cuts = {"test": order[: counts.test], "val": order[counts.test: counts.test + counts.val],
                "train": order[counts.test + counts.val: need]}
        full = JetSet(p4, mask, label)
        return _trim({s: full.take(np.sort(cuts[s])) for s in SPLITS})
    from jets.data.toptag import FILES, read_toptag

    folder = source_path(cfg)
    sets = {}
    for s in SPLITS:
        p4, mask, label = read_toptag(folder / FILES[s], n_jets=getattr(counts, s),
                                      max_constituents=cfg.max_constituents)
        sets[s] = JetSet(p4, mask, label)
    return _trim(sets)


def _manifest_digest(manifest: dict[str, Any]) -> str:
    return _sha256_json({k: v for k, v in manifest.items() if k != "digest"})


def _verify(folder: Path, cfg: DataConfig, key: str, *, check_files: bool) -> dict[str, Any]:
    """The manifest of ``folder`` when it is a complete dataset of ``cfg``; else :class:`DatasetCacheError`."""
    mpath = folder / "manifest.json"
    hint = "delete the folder or call prepare(cfg, rebuild=True)"
    try:
        manifest = json.loads(mpath.read_text())
    except FileNotFoundError:
        raise DatasetCacheError(f"{folder}: no manifest.json — not a dataset made by jets.data.dataset; {hint}") \
            from None
    except json.JSONDecodeError as err:
        raise DatasetCacheError(f"{mpath}: unreadable manifest ({err}); {hint}") from None
    if not isinstance(manifest, dict) or manifest.get("digest") != _manifest_digest(manifest):
        raise DatasetCacheError(f"{mpath}: manifest digest mismatch (the manifest was edited); {hint}")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise DatasetCacheError(f"{mpath}: format version {manifest.get('format_version')!r}, this code writes "
                                f"{FORMAT_VERSION}; {hint}")
    if manifest.get("key") != key or manifest.get("key_config") != json.loads(json.dumps(key_config(cfg))):
        raise DatasetCacheError(f"{mpath}: made for another configuration (key {manifest.get('key')!r}); "
                                f"expected key {key!r}; {hint}")
    for split in SPLITS:
        f = folder / f"{split}.npz"
        info = manifest.get("files", {}).get(f.name)
        if info is None or not f.exists() or f.stat().st_size != info["bytes"]:
            raise DatasetCacheError(f"{f}: missing or of the wrong size for its manifest; {hint}")
        if check_files and _sha256_file(f) != info["sha256"]:
            raise DatasetCacheError(f"{f}: content does not match the sha256 in its manifest; {hint}")
    return manifest


def _stats(s: JetSet) -> dict[str, float]:
    n = s.mask.sum(1)
    return {"jets": len(s), "top_fraction": float(s.label.mean()) if len(s) else float("nan"),
            "constituents_mean": float(n.mean()) if len(s) else float("nan"),
            "constituents_max": int(n.max()) if len(s) else 0}


def _build_into(folder: Path, cfg: DataConfig, key: str) -> dict[str, Any]:
    """Build the dataset in a temporary sibling folder and rename it to ``folder`` when complete."""
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{key}-", dir=folder.parent))
    try:
        t0 = time.perf_counter()
        sets = _build(cfg)
        files = {}
        for s in SPLITS:
            p = tmp / f"{s}.npz"
            np.savez(p, p4=sets[s].p4.astype(np.float32), mask=sets[s].mask.astype(bool),
                     label=sets[s].label.astype(np.int8))
            files[p.name] = {"bytes": p.stat().st_size, "sha256": _sha256_file(p), "jets": len(sets[s])}
        manifest = {
            "format_version": FORMAT_VERSION,
            "key": key,
            "key_config": json.loads(json.dumps(key_config(cfg))),
            "config": cfg.model_dump(mode="json"),
            "source_path": str(source_path(cfg)),
            "inputs": _input_files(cfg),
            "code": _code_fingerprint(cfg.source),
            "build_id": uuid.uuid4().hex,
            "created_unix": time.time(),
            "build_seconds": time.perf_counter() - t0,
            "stats": {s: _stats(sets[s]) for s in SPLITS},
            "files": files,
        }
        manifest["digest"] = _manifest_digest(manifest)
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        os.replace(tmp, folder)
        return manifest
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def prepare(cfg: DataConfig, *, rebuild: bool = False) -> str:
    """Build the dataset of ``cfg`` unless a valid cache exists; return its key.

    Concurrent callers with the same config wait on one lock: one builds, the others reuse its result. A cache
    folder that does not verify raises :class:`DatasetCacheError` naming it; with ``rebuild`` the folder is
    verified fully (file checksums too) and replaced when anything is wrong."""
    key = dataset_key(cfg)
    folder = cache_root() / "jet_datasets" / key
    folder.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder.parent / f"{key}.lock")):
        if folder.exists():
            try:
                _verify(folder, cfg, key, check_files=rebuild)
                return key
            except DatasetCacheError:
                if not rebuild:
                    raise
                shutil.rmtree(folder)
        for stale in folder.parent.glob(f".tmp-{key}-*"):  # left by a killed build (we hold the lock)
            shutil.rmtree(stale, ignore_errors=True)
        _build_into(folder, cfg, key)
    return key


def load_splits(cfg: DataConfig) -> Splits:
    """Read the train/val/test jets of ``cfg`` (calling :func:`prepare` first, so a missing cache is built)."""
    key = prepare(cfg)
    folder = cache_root() / "jet_datasets" / key
    manifest = _verify(folder, cfg, key, check_files=True)
    sets = {}
    for s in SPLITS:
        with np.load(folder / f"{s}.npz", allow_pickle=False) as f:
            sets[s] = JetSet(f["p4"], f["mask"], f["label"])
    return Splits(train=sets["train"], val=sets["val"], test=sets["test"], key=key, manifest=manifest)


__all__ = ["DatasetCacheError", "JetSet", "Splits", "balanced_order", "cache_root", "dataset_key", "key_config",
           "load_splits", "prepare", "source_path"]
