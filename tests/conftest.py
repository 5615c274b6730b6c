"""Shared fixtures: the real TrackML files beside the repository, and thread limits for a 2-core machine."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

REPO = Path(__file__).resolve().parents[1]
SHARED_TRACKML = REPO.parent / "shared" / "trackml"


@pytest.fixture(scope="session")
def shared_trackml() -> Path:
    """``../shared/trackml``: the real event subset, detector geometry, particle table and npz graphs."""
    if not SHARED_TRACKML.is_dir():
        pytest.fail(f"real TrackML fixtures not found at {SHARED_TRACKML} (expected ../shared/trackml)")
    return SHARED_TRACKML


@pytest.fixture(scope="session")
def real_npz_graphs(shared_trackml: Path) -> list[Path]:
    """The 10 real reference hit graphs (pT > 1.5 GeV)."""
    return sorted((shared_trackml / "hitgraphs_plus_1GeV5").glob("*.npz"))
