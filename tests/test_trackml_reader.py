"""The TrackML reader on the real event subset and detector file, and its error for each kind of bad input."""

from __future__ import annotations

import gzip
import types
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tracker.data.trackml import (
    DTYPES,
    TrackMLFormatError,
    TrackMLMissingFile,
    list_events,
    load_dataset,
    load_detector,
    load_event,
)


@pytest.fixture(scope="module")
def real(shared_trackml: Path) -> tuple[pd.DataFrame, ...]:
    return load_event(shared_trackml / "event000000001")


@pytest.fixture()
def small_event(real, tmp_path: Path) -> Path:
    """A consistent 300-hit excerpt of the real event written as plain .csv files; returns the prefix."""
    hits, cells, particles, truth = real
    tmp_path = tmp_path / "events"
    tmp_path.mkdir()
    keep = hits.hit_id.iloc[:300]
    frames = {
        "hits": hits[hits.hit_id.isin(keep)],
        "cells": cells[cells.hit_id.isin(keep)],
        "particles": particles,
        "truth": truth[truth.hit_id.isin(keep)],
    }
    for part, df in frames.items():
        df.to_csv(tmp_path / f"event000000007-{part}.csv", index=False)
    return tmp_path / "event000000007"


def test_real_event_typed(real) -> None:
    hits, cells, particles, truth = real
    assert (len(hits), len(cells), len(particles), len(truth)) == (5527, 18564, 548, 5527)
    for df, part in zip(real, ("hits", "cells", "particles", "truth")):
        assert list(df.columns) == list(DTYPES[part])
        assert {c: str(t) for c, t in df.dtypes.items()} == DTYPES[part]
    assert set(hits.volume_id.unique()) >= {7, 8, 9}
    assert (truth.particle_id == 0).mean() == pytest.approx(0.15, abs=0.03)  # ~15 % noise
    assert np.isin(truth.particle_id[truth.particle_id != 0], particles.particle_id).all()
    assert hits.hit_id.iloc[0] == 6 and hits.x.iloc[0] == pytest.approx(-76.566)


def test_parts_order_and_single_part(shared_trackml: Path) -> None:
    truth, hits = load_event(shared_trackml / "event000000001", parts=("truth", "hits"))
    assert "weight" in truth.columns and "volume_id" in hits.columns
    (particles,) = load_event(shared_trackml / "event000000001", parts=("particles",))
    assert len(particles) == 548
    with pytest.raises(ValueError, match="did you mean 'hits'"):
        load_event(shared_trackml / "event000000001", parts=("hist",))


def test_round_trip_csv_and_zip(real, small_event: Path, tmp_path: Path) -> None:
    hits, _cells, _particles, truth = load_event(small_event)
    assert len(hits) == 300 and len(truth) == 300
    pd.testing.assert_frame_equal(hits, real[0].iloc[:300].reset_index(drop=True))
    # gz copy of another event and a zip with both events in a sub-folder
    for part in ("hits", "cells", "particles", "truth"):
        src = small_event.parent / f"event000000007-{part}.csv"
        with gzip.open(small_event.parent / f"event000000003-{part}.csv.gz", "wb") as f:
            f.write(src.read_bytes())
    it = load_dataset(small_event.parent)
    assert isinstance(it, types.GeneratorType)
    ids = [e[0] for e in it]
    assert ids == [3, 7] == list_events(small_event.parent)
    zdir = tmp_path / "zipped"  # outside the event folder, so the archive never includes itself
    zdir.mkdir()
    zpath = zdir / "events.zip"
    members = sorted(small_event.parent.glob("event0*.csv*"))
    assert len(members) == 8
    with zipfile.ZipFile(zpath, "w") as zf:
        for f in members:
            zf.write(f, f"train_sample/{f.name}")
    events = list(load_dataset(zpath, parts=("hits", "truth")))
    assert [e[0] for e in events] == [3, 7]
    pd.testing.assert_frame_equal(events[0][1], hits)
    assert [e[0] for e in load_dataset(zpath, skip=1)] == [7]
    assert [e[0] for e in load_dataset(zpath, nevents=1)] == [3]


def test_dataset_events_need_hits(shared_trackml: Path) -> None:
    """event000001000 has only a particle table: not an event when hits are asked for, listed otherwise."""
    assert [e[0] for e in load_dataset(shared_trackml, parts=("hits", "truth"))] == [1]
    assert [e[0] for e in load_dataset(shared_trackml, parts=("particles",))] == [1, 1000]


def test_detector(shared_trackml: Path) -> None:
    det = load_detector(shared_trackml / "detectors.csv.gz")
    assert len(det) == 18728
    assert not any(c.startswith("Unnamed") for c in det.columns) and det.columns[0] == "volume_id"
    assert det.volume_id.dtype == np.int32 and det.cx.dtype == np.float64
    pix = det[det.volume_id == 8]
    assert sorted(pix.layer_id.unique()) == [2, 4, 6, 8]


# ------------------------------------------------------------------------------------------ bad inputs


def test_missing_part(small_event: Path) -> None:
    (small_event.parent / "event000000007-cells.csv").unlink()
    with pytest.raises(TrackMLMissingFile, match=r"event000000007-cells\.csv.*missing part 'cells'"):
        load_event(small_event)
    with pytest.raises(TrackMLMissingFile, match="missing part 'cells' of event000000007"):
        list(load_dataset(small_event.parent))
    (hits,) = load_event(small_event, parts=("hits",))  # the other parts still read
    assert len(hits) == 300


def test_misspelled_column(small_event: Path) -> None:
    p = small_event.parent / "event000000007-truth.csv"
    p.write_text(p.read_text().replace("particle_id", "particle_idd", 1))
    with pytest.raises(TrackMLFormatError, match=r"truth\.csv: missing column\(s\) 'particle_id' \(found 'particle_idd'"):
        load_event(small_event)


def test_missing_column(small_event: Path) -> None:
    p = small_event.parent / "event000000007-hits.csv"
    pd.read_csv(p).drop(columns=["z"]).to_csv(p, index=False)
    with pytest.raises(TrackMLFormatError, match=r"hits\.csv: missing column\(s\) 'z'"):
        load_event(small_event, parts=("hits",))


def test_wrong_dtype(small_event: Path) -> None:
    p = small_event.parent / "event000000007-hits.csv"
    df = pd.read_csv(p)
    df["volume_id"] = df["volume_id"].astype(str)
    df.loc[5, "volume_id"] = "eight"
    df.to_csv(p, index=False)
    with pytest.raises(TrackMLFormatError, match=r"hits\.csv: column 'volume_id' must hold integers.*row 5.*eight"):
        load_event(small_event, parts=("hits",))
    df.loc[5, "volume_id"] = "8"
    df["x"] = df["x"].astype(str)
    df.loc[2, "x"] = "1.2.3"
    df.to_csv(p, index=False)
    with pytest.raises(TrackMLFormatError, match=r"column 'x' must hold numbers.*row 2"):
        load_event(small_event, parts=("hits",))


def test_truncated_gzip(small_event: Path) -> None:
    raw = gzip.compress((small_event.parent / "event000000007-cells.csv").read_bytes())
    (small_event.parent / "event000000007-cells.csv").unlink()
    (small_event.parent / "event000000007-cells.csv.gz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(TrackMLFormatError, match=r"cells\.csv\.gz: truncated or corrupt gzip"):
        load_event(small_event)


def test_empty_file(small_event: Path) -> None:
    (small_event.parent / "event000000007-particles.csv").write_text("")
    with pytest.raises(TrackMLFormatError, match=r"particles\.csv: empty file"):
        load_event(small_event)


def test_hit_ids_mismatch(small_event: Path) -> None:
    p = small_event.parent / "event000000007-truth.csv"
    df = pd.read_csv(p)
    df.loc[3, "hit_id"] = 999999
    df.to_csv(p, index=False)
    with pytest.raises(TrackMLFormatError, match=r"truth\.csv: hit ids do not match .*hits\.csv.*999999"):
        load_event(small_event)


def test_not_a_dataset(tmp_path: Path) -> None:
    with pytest.raises(TrackMLMissingFile, match="not a folder or a zip"):
        load_dataset(tmp_path / "nothing")
    with pytest.raises(TrackMLFormatError, match="contains no eventNNNNNNNNN"):
        list(load_dataset(tmp_path))
    with pytest.raises(TrackMLMissingFile, match="no such detector file"):
        load_detector(tmp_path / "detectors.csv")
