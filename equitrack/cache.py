"""The hashed on-disk dataset cache every task uses: one folder per dataset key, built once, verified on reuse.

Layout: ``$EQUITRACK_CACHE`` (default ``./.equitrack/cache``) / ``<kind>`` / ``<key>``, holding the split files and
``manifest.json``. A task names the key (``<source>-<16 hex>``: :func:`dataset_key` of the format version, the
config fields that change the data, the input files and a :func:`code_fingerprint`) and writes the split files;
this module does the rest, the same way for every task:

- a build runs under a file lock (``<kind>/<key>.lock``: concurrent callers wait, one builds, the others reuse it)
  into a temporary sibling folder that is renamed into place when complete (a killed build leaves no dataset);
- the manifest records the format version, key, key config, the task's fields, a build id, the build time, the
  task's statistics and the size and sha256 of each split file, plus a ``digest`` of itself;
- a folder whose manifest is missing, edited or inconsistent (format, key, key config, file sizes; with
  ``check_files`` the sha256 of each file) raises :class:`DatasetCacheError` naming it and saying how to replace it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from filelock import FileLock

_HINT = "delete the folder or call prepare(cfg, rebuild=True)"


class DatasetCacheError(RuntimeError):
    """A dataset cache folder that cannot be used (foreign, edited, incomplete); the message names it."""


def cache_root() -> Path:
    """``$EQUITRACK_CACHE`` or ``./.equitrack/cache`` (resolved to an absolute path now)."""
    return Path(os.environ.get("EQUITRACK_CACHE") or Path.cwd() / ".equitrack" / "cache").resolve()


def sha256_file(path: Path) -> str:
    """The sha256 of a file's bytes (hex), read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


_FILE_DIGESTS: dict[tuple[str, int, int], str] = {}


def sha256_input(path: Path) -> str:
    """:func:`sha256_file` of an input file, remembered per (path, size, mtime) in this process (every trial asks
    for its dataset key)."""
    st = path.stat()
    memo = (str(path), st.st_size, st.st_mtime_ns)
    if memo not in _FILE_DIGESTS:
        _FILE_DIGESTS[memo] = sha256_file(path)
    return _FILE_DIGESTS[memo]


def sha256_json(obj: Any) -> str:
    """The sha256 (hex) of ``json.dumps(obj, sort_keys=True)``: what keys and manifest digests are made of."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def code_fingerprint(package: Path, files: tuple[str, ...]) -> str:
    """16 hex of the sha256 of ``files`` (paths relative to ``package``, each name and content; a missing file
    counts as ``<missing>``): a dataset's key moves when the code that makes it changes."""
    h = hashlib.sha256()
    for rel in files:
        p = package / rel
        h.update(rel.encode())
        h.update(p.read_bytes() if p.exists() else b"<missing>")
    return h.hexdigest()[:16]


def dataset_key(source: str, *, format_version: int, key_config: Mapping[str, Any], inputs: Any, code: str) -> str:
    """``<source>-<16 hex>``: the hash of the format version, the key config, the input files and the code."""
    blob = {"format": format_version, "config": key_config, "inputs": inputs, "code": code}
    return f"{source}-{sha256_json(blob)[:16]}"


def manifest_digest(manifest: Mapping[str, Any]) -> str:
    """The digest a manifest holds of all its other fields."""
    return sha256_json({k: v for k, v in manifest.items() if k != "digest"})


def _json_roundtrip(obj: Any) -> Any:
    return json.loads(json.dumps(obj))


@dataclass(frozen=True)
class Built:
    """What a task's build returns: ``fields`` go into the manifest after the build time (e.g. ``stats``);
    ``files`` maps each split file written to its own entries (e.g. ``{"graphs": 8}``), after its size and sha256."""

    fields: Mapping[str, Any]
    files: Mapping[str, Mapping[str, Any]]


class DataSection(Protocol):
    """What the cache needs of a task's ``data`` section: its ``source`` (the key's prefix) and a JSON dump."""

    source: str

    def model_dump(self, *, mode: str) -> dict[str, Any]: ...


C = TypeVar("C", bound=DataSection)


@dataclass(frozen=True)
class DatasetCache(Generic[C]):
    """One task's kind of cached dataset.

    ``kind``: its folder under the cache root; ``format_version``: what its code writes; ``files``: the split files
    every dataset holds; ``maker``: the module named when a folder is not one of its datasets. Per data section
    ``cfg``: ``key_config(cfg)`` the fields that change the data, ``inputs(cfg)`` a fingerprint of the input files,
    ``code(cfg)`` of the code that reads them (:func:`code_fingerprint`), ``describe(cfg)`` further manifest fields
    (after ``config``), and ``write(cfg, tmp)`` builds the data and writes :attr:`files` into the folder ``tmp``."""

    kind: str
    format_version: int
    files: tuple[str, ...]
    maker: str
    key_config: Callable[[C], Mapping[str, Any]]
    inputs: Callable[[C], Any]
    code: Callable[[C], str]
    write: Callable[[C, Path], Built]
    describe: Callable[[C], Mapping[str, Any]] = field(default=lambda cfg: {})

    def key(self, cfg: C) -> str:
        """``<source>-<16 hex>`` (:func:`dataset_key`)."""
        return dataset_key(cfg.source, format_version=self.format_version, key_config=self.key_config(cfg),
                           inputs=self.inputs(cfg), code=self.code(cfg))

    def folder(self, key: str) -> Path:
        """``cache_root() / kind / key``."""
        return cache_root() / self.kind / key

    def verify(self, folder: Path, *, key: str, key_config: Mapping[str, Any], check_files: bool) -> dict[str, Any]:
        """The manifest of ``folder`` when it is a complete dataset of ``key``; else :class:`DatasetCacheError`."""
        mpath = folder / "manifest.json"
        try:
            manifest = json.loads(mpath.read_text())
        except FileNotFoundError:
            raise DatasetCacheError(f"{folder}: no manifest.json — not a dataset made by {self.maker}; {_HINT}") \
                from None
        except json.JSONDecodeError as err:
            raise DatasetCacheError(f"{mpath}: unreadable manifest ({err}); {_HINT}") from None
        if not isinstance(manifest, dict) or manifest.get("digest") != manifest_digest(manifest):
            raise DatasetCacheError(f"{mpath}: manifest digest mismatch (the manifest was edited); {_HINT}")
        if manifest.get("format_version") != self.format_version:
            raise DatasetCacheError(f"{mpath}: format version {manifest.get('format_version')!r}, this code writes "
                                    f"{self.format_version}; {_HINT}")
        if manifest.get("key") != key or manifest.get("key_config") != _json_roundtrip(key_config):
            raise DatasetCacheError(f"{mpath}: made for another configuration (key {manifest.get('key')!r}, "
                                    f"config {manifest.get('key_config')}); expected key {key!r}; {_HINT}")
        for name in self.files:
            f = folder / name
            info = manifest.get("files", {}).get(name)
            if info is None or not f.exists() or f.stat().st_size != info["bytes"]:
                raise DatasetCacheError(f"{f}: missing or of the wrong size for its manifest; {_HINT}")
            if check_files and sha256_file(f) != info["sha256"]:
                raise DatasetCacheError(f"{f}: content does not match the sha256 in its manifest; {_HINT}")
        return manifest

    def prepare(self, cfg: C, *, rebuild: bool = False) -> str:
        """Build the dataset of ``cfg`` unless a valid cache exists; return its key.

        Concurrent callers with the same config wait on one lock: one builds, the others reuse its result. A cache
        folder that does not verify raises :class:`DatasetCacheError` naming it; with ``rebuild`` the folder is
        verified fully (file checksums too) and replaced when anything is wrong."""
        key = self.key(cfg)
        folder = self.folder(key)
        folder.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(folder.parent / f"{key}.lock")):
            if folder.exists():
                try:
                    self.verify(folder, key=key, key_config=self.key_config(cfg), check_files=rebuild)
                    return key
                except DatasetCacheError:
                    if not rebuild:
                        raise
                    shutil.rmtree(folder)
            for stale in folder.parent.glob(f".tmp-{key}-*"):  # left by a killed build (we hold the lock)
                shutil.rmtree(stale, ignore_errors=True)
            self._build_into(folder, cfg, key)
        return key

    def load(self, cfg: C) -> tuple[str, Path, dict[str, Any]]:
        """(key, folder, manifest) of the dataset of ``cfg``, prepared first (a missing cache is built) and
        verified with the files' checksums."""
        key = self.prepare(cfg)
        folder = self.folder(key)
        return key, folder, self.verify(folder, key=key, key_config=self.key_config(cfg), check_files=True)

    def _build_into(self, folder: Path, cfg: C, key: str) -> dict[str, Any]:
        """Build in a temporary sibling folder, write the manifest, rename the folder to ``folder``."""
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{key}-", dir=folder.parent))
        try:
            t0 = time.perf_counter()
            built = self.write(cfg, tmp)
            files = {}
            for name in self.files:
                p = tmp / name
                files[name] = {"bytes": p.stat().st_size, "sha256": sha256_file(p), **built.files.get(name, {})}
            manifest = {
                "format_version": self.format_version,
                "key": key,
                "key_config": _json_roundtrip(self.key_config(cfg)),
                "config": cfg.model_dump(mode="json"),
                **self.describe(cfg),
                "inputs": self.inputs(cfg),
                "code": self.code(cfg),
                "build_id": uuid.uuid4().hex,
                "created_unix": time.time(),
                "build_seconds": time.perf_counter() - t0,
                **built.fields,
                "files": files,
            }
            manifest["digest"] = manifest_digest(manifest)
            (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
            os.replace(tmp, folder)
            return manifest
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)


__all__ = ["Built", "DataSection", "DatasetCache", "DatasetCacheError", "cache_root", "code_fingerprint", "dataset_key",
           "manifest_digest", "sha256_file", "sha256_input", "sha256_json"]
