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
replaces it); the lock, the manifest and the checks are :mod:`equitrack.cache`'s, shared with
:mod:`tracker.data.dataset`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from equitrack.cache import (  # noqa: F401  (DatasetCacheError, cache_root: re-exported)
    Built,
    DatasetCache,
    DatasetCacheError,
    cache_root,
    code_fingerprint,
    sha256_input,
)
from jets.config import DataConfig

FORMAT_VERSION = 1
SPLITS = ("train", "val", "test")
_ARRAYS = ("p4", "mask", "label")
_CODE = {"generated": ("data/generated.py", "data/dataset.py"), "toptag": ("data/toptag.py", "data/dataset.py")}


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
        return [[path.name, path.stat().st_size, sha256_input(path)]]
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
    return code_fingerprint(Path(__file__).resolve().parents[1], _CODE[source])


def key_config(cfg: DataConfig) -> dict[str, Any]:
    """The part of the config that determines the data (what the key hashes, besides inputs and code)."""
    out: dict[str, Any] = {"source": cfg.source, "jets": cfg.jets.model_dump(),
                           "max_constituents": cfg.max_constituents}
    if cfg.source == "generated":
        out["seed"] = cfg.seed
    return out


def dataset_key(cfg: DataConfig) -> str:
    """``<source>-<16 hex>``: hash of the format version, :func:`key_config`, input files and code."""
    return CACHE.key(cfg)


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


def _stats(s: JetSet) -> dict[str, float]:
    n = s.mask.sum(1)
    return {"jets": len(s), "top_fraction": float(s.label.mean()) if len(s) else float("nan"),
            "constituents_mean": float(n.mean()) if len(s) else float("nan"),
            "constituents_max": int(n.max()) if len(s) else 0}


def _write(cfg: DataConfig, tmp: Path) -> Built:
    """Build the jets of ``cfg`` and save one npz per split into the temporary dataset folder ``tmp``."""
    sets = _build(cfg)
    for s in SPLITS:
        np.savez(tmp / f"{s}.npz", p4=sets[s].p4.astype(np.float32), mask=sets[s].mask.astype(bool),
                 label=sets[s].label.astype(np.int8))
    return Built(fields={"stats": {s: _stats(sets[s]) for s in SPLITS}},
                 files={f"{s}.npz": {"jets": len(sets[s])} for s in SPLITS})


#: the cache of jet datasets (:mod:`equitrack.cache`): ``<cache root>/jet_datasets/<key>``
CACHE: DatasetCache[DataConfig] = DatasetCache(
    kind="jet_datasets", format_version=FORMAT_VERSION, files=tuple(f"{s}.npz" for s in SPLITS),
    maker="jets.data.dataset", key_config=key_config, inputs=_input_files,
    code=lambda cfg: _code_fingerprint(cfg.source), write=_write,
    describe=lambda cfg: {"source_path": str(source_path(cfg))})


def prepare(cfg: DataConfig, *, rebuild: bool = False) -> str:
    """Build the jet sets of ``cfg`` unless the cache holds them; their key (:meth:`DatasetCache.prepare`)."""
    return CACHE.prepare(cfg, rebuild=rebuild)


def load_splits(cfg: DataConfig) -> Splits:
    """Read the train/val/test jets of ``cfg`` (calling :func:`prepare` first, so a missing cache is built)."""
    key, folder, manifest = CACHE.load(cfg)
    sets = {}
    for s in SPLITS:
        with np.load(folder / f"{s}.npz", allow_pickle=False) as f:
            sets[s] = JetSet(f["p4"], f["mask"], f["label"])
    return Splits(train=sets["train"], val=sets["val"], test=sets["test"], key=key, manifest=manifest)


__all__ = ["DatasetCacheError", "JetSet", "Splits", "balanced_order", "cache_root", "dataset_key", "key_config",
           "load_splits", "prepare", "source_path"]
