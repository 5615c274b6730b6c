"""Reader for TrackML events (hits, cells, particles, truth) and the detector geometry file.

Same semantics as the public trackml-library's ``trackml.dataset`` (without depending on any PyPI package named
``trackml``): ``load_event(prefix, parts)`` returns a tuple of DataFrames in the order of ``parts``;
``load_dataset(path, nevents, skip, parts)`` lazily yields ``(event_id, *frames)`` for the events of a folder or
a zip archive, sorted by event id. Files may be ``.csv`` or ``.csv.gz``. Columns are typed as in SCIENCE.md §2
(ids int32/int64 as in the library, coordinates and momenta float32). Extra columns are dropped.

Every malformed input raises :class:`TrackMLFormatError` (a ``ValueError``; missing files also derive from
``FileNotFoundError``) whose message names the file and the problem.
"""

from __future__ import annotations

import difflib
import gzip
import io
import re
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

PARTS: tuple[str, ...] = ("hits", "cells", "particles", "truth")

#: column -> numpy dtype per part, in file order (the trackml-library's choices)
DTYPES: dict[str, dict[str, str]] = {
    "hits": {"hit_id": "int64", "x": "float32", "y": "float32", "z": "float32",
             "volume_id": "int32", "layer_id": "int32", "module_id": "int32"},
    "cells": {"hit_id": "int64", "ch0": "int32", "ch1": "int32", "value": "float32"},
    "particles": {"particle_id": "int64", "particle_type": "int32", "vx": "float32", "vy": "float32",
                  "vz": "float32", "px": "float32", "py": "float32", "pz": "float32", "q": "int32",
                  "nhits": "int32"},
    "truth": {"hit_id": "int64", "particle_id": "int64", "tx": "float32", "ty": "float32", "tz": "float32",
              "tpx": "float32", "tpy": "float32", "tpz": "float32", "weight": "float32"},
}
#: columns a file may lack (older TrackML releases have no particle_type)
OPTIONAL_COLUMNS: dict[str, set[str]] = {"particles": {"particle_type"}}

DETECTOR_DTYPES: dict[str, str] = {
    "volume_id": "int32", "layer_id": "int32", "module_id": "int32",
    **{k: "float64" for k in ("cx", "cy", "cz", "rot_xu", "rot_xv", "rot_xw", "rot_yu", "rot_yv", "rot_yw",
                              "rot_zu", "rot_zv", "rot_zw", "module_t", "module_minhu", "module_maxhu",
                              "module_hv", "pitch_u", "pitch_v")},
}

_FILE_RE = re.compile(r"(?:^|/)(event(\d+))-(hits|cells|particles|truth)\.csv(\.gz)?$")


class TrackMLFormatError(ValueError):
    """A TrackML file that cannot be read as expected; the message names the file and the problem."""


class TrackMLMissingFile(TrackMLFormatError, FileNotFoundError):
    """A part of an event (or the detector file) that does not exist."""


# --------------------------------------------------------------------------------------------- parsing


def _read_csv(source: object, name: str) -> pd.DataFrame:
    """Read a CSV (``source`` a path or a binary file object) mapping low-level failures to named errors."""
    compression = "gzip" if name.endswith(".gz") else None
    try:
        return pd.read_csv(source, compression=compression, index_col=False, low_memory=False)
    except pd.errors.EmptyDataError:
        raise TrackMLFormatError(f"{name}: empty file (no header, no rows)") from None
    except (EOFError, zlib.error, gzip.BadGzipFile) as err:
        raise TrackMLFormatError(f"{name}: truncated or corrupt gzip data ({type(err).__name__}: {err})") from None
    except UnicodeDecodeError as err:
        raise TrackMLFormatError(f"{name}: not a text CSV file ({err})") from None
    except pd.errors.ParserError as err:
        raise TrackMLFormatError(f"{name}: malformed CSV ({err})") from None
    except OSError as err:
        if "gzip" in str(err).lower() or "compressed" in str(err).lower():
            raise TrackMLFormatError(f"{name}: truncated or corrupt gzip data ({err})") from None
        raise


def _typed(df: pd.DataFrame, dtypes: dict[str, str], name: str, *, optional: set[str] = frozenset()) -> pd.DataFrame:
    """Check the columns of ``df`` against ``dtypes`` and cast; errors name the file, column and bad value."""
    cols = [str(c) for c in df.columns]
    missing = [c for c in dtypes if c not in cols and c not in optional]
    if missing:
        extra = [c for c in cols if c not in dtypes]
        hints = []
        for c in missing:
            close = difflib.get_close_matches(c, extra, n=1, cutoff=0.6)
            hints.append(f"{c!r}" + (f" (found {close[0]!r}: misspelled?)" if close else ""))
        raise TrackMLFormatError(
            f"{name}: missing column(s) {', '.join(hints)}; expected columns {list(dtypes)}, found {cols}"
        )
    out = {}
    for col, dtype in dtypes.items():
        if col not in cols:
            continue
        s = df[col]
        kind = np.dtype(dtype).kind
        if kind in "iu":
            if not pd.api.types.is_integer_dtype(s.dtype):
                num = pd.to_numeric(s, errors="coerce")
                bad = num.isna() | (num != np.round(num))
                if bad.any():
                    i = int(np.flatnonzero(bad.to_numpy())[0])
                    raise TrackMLFormatError(
                        f"{name}: column {col!r} must hold integers ({dtype}); row {i} has {s.iloc[i]!r}"
                    )
                s = num
        else:
            if not pd.api.types.is_numeric_dtype(s.dtype) or pd.api.types.is_bool_dtype(s.dtype):
                num = pd.to_numeric(s, errors="coerce")
                bad = num.isna() & s.notna()
                if bad.any() or pd.api.types.is_bool_dtype(s.dtype):
                    i = int(np.flatnonzero(bad.to_numpy())[0]) if bad.any() else 0
                    raise TrackMLFormatError(
                        f"{name}: column {col!r} must hold numbers ({dtype}); row {i} has {s.iloc[i]!r}"
                    )
                s = num
        if s.isna().any():
            i = int(np.flatnonzero(s.isna().to_numpy())[0])
            raise TrackMLFormatError(f"{name}: column {col!r} has an empty value in row {i}")
        out[col] = s.to_numpy().astype(dtype)
    return pd.DataFrame(out)


# --------------------------------------------------------------------------------------------- one event


def _part_path(prefix: Path, part: str) -> Path:
    for suffix in (".csv", ".csv.gz"):
        p = prefix.parent / f"{prefix.name}-{part}{suffix}"
        if p.exists():
            return p
    raise TrackMLMissingFile(
        f"{prefix}-{part}.csv(.gz): missing part {part!r} of event {prefix.name} (looked for .csv and .csv.gz)"
    )


def _check_parts(parts: Sequence[str] | str) -> tuple[str, ...]:
    if isinstance(parts, str):
        parts = (parts,)
    parts = tuple(parts)
    for p in parts:
        if p not in DTYPES:
            close = difflib.get_close_matches(p, PARTS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"unknown event part {p!r}{hint}; expected some of {list(PARTS)}")
    return parts


def _check_consistency(frames: dict[str, pd.DataFrame], names: dict[str, str]) -> None:
    """Cross-file checks: unique hit ids, hits and truth describe the same hits, cells only of known hits."""
    for part in ("hits", "truth"):
        if part in frames and frames[part]["hit_id"].duplicated().any():
            dup = frames[part]["hit_id"][frames[part]["hit_id"].duplicated()].iloc[0]
            raise TrackMLFormatError(f"{names[part]}: duplicate hit_id {dup}")
    if "hits" in frames and "truth" in frames:
        h = np.sort(frames["hits"]["hit_id"].to_numpy())
        t = np.sort(frames["truth"]["hit_id"].to_numpy())
        if h.shape != t.shape or not np.array_equal(h, t):
            only_h = np.setdiff1d(h, t)[:5].tolist()
            only_t = np.setdiff1d(t, h)[:5].tolist()
            raise TrackMLFormatError(
                f"{names['truth']}: hit ids do not match {names['hits']} ({len(h)} hits vs {len(t)} truth rows; "
                f"only in hits: {only_h}, only in truth: {only_t})"
            )
    if "hits" in frames and "cells" in frames:
        unknown = np.setdiff1d(frames["cells"]["hit_id"].to_numpy(), frames["hits"]["hit_id"].to_numpy())
        if unknown.size:
            raise TrackMLFormatError(
                f"{names['cells']}: cells refer to hit ids absent from {names['hits']} (e.g. {unknown[:5].tolist()})"
            )


def _read_part(source: object, name: str, part: str) -> pd.DataFrame:
    return _typed(_read_csv(source, name), DTYPES[part], name, optional=OPTIONAL_COLUMNS.get(part, set()))


def load_event(prefix: str | Path, parts: Sequence[str] = PARTS) -> tuple[pd.DataFrame, ...]:
    """Read the ``parts`` of one event ``prefix`` (e.g. ``data/event000000001``) as typed DataFrames."""
    prefix = Path(str(prefix))
    parts = _check_parts(parts)
    frames, names = {}, {}
    for part in parts:
        path = _part_path(prefix, part)
        names[part] = str(path)
        frames[part] = _read_part(path, str(path), part)
    _check_consistency(frames, names)
    return tuple(frames[p] for p in parts)


# --------------------------------------------------------------------------------------------- datasets


def _index_names(names: Sequence[str], where: str) -> dict[int, dict[str, str]]:
    """Map event id -> part -> member name, for file names of the TrackML pattern."""
    events: dict[int, dict[str, str]] = {}
    for n in names:
        m = _FILE_RE.search(n.replace("\\", "/"))
        if m:
            evt = events.setdefault(int(m.group(2)), {})
            if m.group(3) in evt:
                raise TrackMLFormatError(f"{where}: event {m.group(1)} part {m.group(3)} appears twice "
                                         f"({evt[m.group(3)]} and {n})")
            evt[m.group(3)] = n
    return events


def _is_event(have: dict[str, str], parts: Sequence[str]) -> bool:
    """An event of a dataset: it has a hits file when hits are asked for, else any of the asked parts.

    (A folder may hold extra per-event files, e.g. a lone particle table; those are not events for a reader that
    wants hits. A present event lacking another asked part is an error, never skipped.)"""
    if "hits" in parts:
        return "hits" in have
    return any(p in have for p in parts)


def list_events(path: str | Path, parts: Sequence[str] = PARTS) -> list[int]:
    """Sorted event ids of a folder or zip, with the event rule of :func:`load_dataset`."""
    path = Path(path)
    parts = _check_parts(parts)
    if path.is_file() and zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            index = _index_names(zf.namelist(), str(path))
    elif path.is_dir():
        index = _index_names([p.name for p in path.iterdir()], str(path))
    else:
        raise TrackMLMissingFile(f"{path}: not a folder or a zip archive of TrackML events")
    return sorted(e for e, have in index.items() if _is_event(have, parts))


def load_dataset(
    path: str | Path, nevents: int | None = None, skip: int = 0, parts: Sequence[str] = PARTS
) -> Iterator[tuple]:
    """Lazily yield ``(event_id, *frames)`` for the events of a folder or zip, sorted by event id.

    ``skip`` events are skipped first, then at most ``nevents`` are yielded (all when None).
    """
    path = Path(path)
    parts = _check_parts(parts)
    if skip < 0 or (nevents is not None and nevents < 0):
        raise ValueError(f"skip and nevents must be >= 0 (got skip={skip}, nevents={nevents})")
    is_zip = zipfile.is_zipfile(path) if path.is_file() else False
    if not is_zip and not path.is_dir():
        raise TrackMLMissingFile(f"{path}: not a folder or a zip archive of TrackML events")

    def gen() -> Iterator[tuple]:
        zf = zipfile.ZipFile(path) if is_zip else None
        try:
            names = zf.namelist() if zf else [p.name for p in path.iterdir()]
            index = _index_names(names, str(path))
            if not any(_is_event(have, parts) for have in index.values()):
                raise TrackMLFormatError(f"{path}: contains no eventNNNNNNNNN-<part>.csv(.gz) files with {list(parts)}")
            ids = sorted(e for e, have in index.items() if _is_event(have, parts))[skip:]
            if nevents is not None:
                ids = ids[:nevents]
            for evt in ids:
                frames, fnames = {}, {}
                for part in parts:
                    member = index[evt].get(part)
                    if member is None:
                        raise TrackMLMissingFile(
                            f"{path}: missing part {part!r} of event{evt:09d} (have {sorted(index[evt])})"
                        )
                    label = f"{path}/{member}" if zf else str(path / member)
                    fnames[part] = label
                    if zf:
                        try:
                            raw = zf.read(member)
                        except (zipfile.BadZipFile, zlib.error, EOFError) as err:
                            raise TrackMLFormatError(f"{label}: corrupt zip member ({err})") from None
                        frames[part] = _read_part(io.BytesIO(raw), label, part)
                    else:
                        frames[part] = _read_part(path / member, label, part)
                _check_consistency(frames, fnames)
                yield (evt, *(frames[p] for p in parts))
        finally:
            if zf:
                zf.close()

    return gen()


# --------------------------------------------------------------------------------------------- detector


def load_detector(path: str | Path) -> pd.DataFrame:
    """Read ``detectors.csv(.gz)``: one row per module with its centre, rotation, half sizes and pitches.

    A leading unnamed index column (as in the public file) is dropped.
    """
    path = Path(path)
    if not path.exists():
        raise TrackMLMissingFile(f"{path}: no such detector file")
    df = _read_csv(path, str(path))
    df = df.loc[:, [c for c in df.columns if not (str(c).startswith("Unnamed") or str(c).strip() == "")]]
    return _typed(df, DETECTOR_DTYPES, str(path))


def event_id_of(prefix: str | Path) -> int:
    """Event number of a prefix like ``.../event000000001`` (-1 if none)."""
    m = re.search(r"event(\d+)", Path(str(prefix)).name)
    return int(m.group(1)) if m else -1
