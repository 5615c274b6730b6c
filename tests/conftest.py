"""Shared fixtures: the real TrackML files beside the repository, their hit graphs loaded, the MLflow backend of the
tracking dashboard tests, and thread limits for a 2-core machine."""

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


@pytest.fixture(scope="module")
def graphs(real_npz_graphs: list[Path]):
    """Those 10 graphs loaded, once per test module."""
    from tracker.data.hitgraphs import load_npz

    assert len(real_npz_graphs) == 10
    return [load_npz(p) for p in real_npz_graphs]


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    """One SQLite backend, created from this process: experiment ``table`` (2 models × 2 sizes × 3 seeds + one
    failed run, sweep ``tbl``) and experiment ``rot`` (EuclidNet paper_8 trained at 0° and 90°, 3 seeds).
    test_dashboards_jets.py overrides it with a backend of its own."""
    from dashboard_helpers import CONFIGS, SEEDS, _trial, make_sweep
    from mlflow import MlflowClient

    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    work = root / "work"
    ids = {}
    exp = client.create_experiment("table", artifact_location=(root / "artifacts").as_uri())
    parent = make_sweep(client, exp, "tbl", "paper_table1", work)
    for model, hidden, preset in CONFIGS:
        for seed in SEEDS:
            _trial(
                client, exp, parent, "tbl", model=model, hidden=hidden, preset=preset, seed=seed, workdir=work
            )
    ids["failed"] = _trial(
        client,
        exp,
        parent,
        "tbl",
        model="euclidnet",
        hidden=8,
        preset="paper_8",
        seed=4,
        status="FAILED",
        workdir=work,
    )
    # stopped early by a scheduler (MLflow FINISHED, tag status=pruned): a very low AUC that must not be averaged in
    _trial(
        client,
        exp,
        parent,
        "tbl",
        model="interaction_network",
        hidden=32,
        preset=None,
        seed=5,
        tag_status="pruned",
        workdir=work,
    )
    client.set_terminated(parent)
    ids["table_parent"] = parent
    exp = client.create_experiment("rot", artifact_location=(root / "artifacts").as_uri())
    parent = make_sweep(client, exp, "rot1", "paper_rotation", work)
    for rot in (0.0, 90.0):
        for seed in SEEDS:
            _trial(
                client,
                exp,
                parent,
                "rot1",
                model="euclidnet",
                hidden=8,
                preset="paper_8",
                seed=seed,
                rot=rot,
                workdir=work,
            )
    client.set_terminated(parent)
    ids["rot_parent"] = parent
    return {"uri": uri, "client": client, "root": root, "ids": ids, "work": work}
