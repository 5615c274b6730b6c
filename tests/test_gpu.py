"""The CUDA paths of the platform, and their fallbacks without CUDA.

Tests marked ``gpu`` need CUDA and are skipped without it; ``pytest -m gpu`` runs them on a GPU machine. Where it
makes sense a test is parametrised by device (:data:`DEVICES`), so its CPU variant runs everywhere through the same
code (:mod:`devices`): one trial on CUDA against the same trial on CPU, an ``auto`` bundle (vmap on CUDA, loop on CPU) against its
members trained alone, and a sweep on local Ray that packs four trials onto one GPU with fractional GPUs (without a
GPU: falls back to CPU with a warning). The equivariance checks on CUDA are the ``cuda`` variants of
tests/test_equivariance.py. Real graphs: the packaged npz hit graphs (2 train / 1 val / 1 test).
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from devices import DEVICES, NEEDS_CUDA
from mlflow.tracking import MlflowClient
from rich.console import Console
from test_bundle import MEMBERS, Recorder, _assert_same
from test_bundle import _config as bundle_config
from test_train import _config as trial_config

from sweeps.run import EXIT_OK, main
from tracker.data.hitgraphs import load_npz
from tracker.train import run_trial
from tracker.train.bundle import run_bundle
from tracker.train.config import TrialConfig, trial_from_dict
from tracker.train.reporter import NullReporter

HITGRAPHS = Path(__file__).resolve().parents[1] / "tracker" / "data" / "resources" / "hitgraphs_plus_1GeV5"


@pytest.fixture(scope="module")
def splits() -> tuple[list, list, list]:
    paths = sorted(HITGRAPHS.glob("*.npz"))
    assert len(paths) == 10
    graphs = [load_npz(p) for p in paths[:2] + paths[8:10]]
    return graphs[:2], graphs[2:3], graphs[3:4]


# -- one trial ------------------------------------------------------------------------------------------------------
def _trial(device: str) -> TrialConfig:
    """A 4-epoch EuclidNet trial that learns (AUC ~0.95 on CPU), with the inference timing on."""
    return trial_config(model={"hidden": 8, "edge_attr": True},
                        train={"epochs": 4, "lr": 0.01, "pos_weight": "auto", "device": device},
                        eval={"timing": True, "timing_runs": 2})


@pytest.fixture(scope="module")
def cpu_trial(splits, tmp_path_factory):
    return run_trial(_trial("cpu"), NullReporter(), workdir=tmp_path_factory.mktemp("cpu"), splits=splits)


@pytest.mark.parametrize("device", DEVICES)
def test_trial_on_device_matches_cpu(device, splits, cpu_trial, tmp_path):
    """The trial runs on ``device`` (metric ``on_cuda``), its metrics are finite, its AUC is within 0.02 and its
    per-epoch training loss within 1 % of the same seed on CPU, and the inference timing (CUDA-synchronised on
    CUDA) is positive.

    Not equal: CUDA kernels sum in other orders (scatter-adds with atomics, in no fixed order) than the CPU ones,
    so the weights drift apart by float32 round-off over the steps. The initialisation (drawn on CPU) and the data
    order are the same, so a broken device path (other weights, data, rotation or loss) shows as a loss history
    that differs by far more than 1 % (the loss falls from 1.0 to 0.7 over the 4 epochs).
    """
    result = run_trial(_trial(device), NullReporter(), workdir=tmp_path, splits=splits)
    m, ref = result.metrics, cpu_trial.metrics
    assert m["on_cuda"] == float(device == "cuda") and ref["on_cuda"] == 0.0
    assert all(math.isfinite(v) for v in m.values()), m
    assert set(m) == set(ref)
    assert abs(m["auc"] - ref["auc"]) <= 0.02, (m["auc"], ref["auc"])
    assert m["auc"] > 0.8  # it learnt (an untrained model scores ~0.55)
    assert m["inference_ms_per_graph"] > 0
    assert len(result.history) == len(cpu_trial.history) == 4
    for got, want in zip(result.history, cpu_trial.history):
        assert got["train_loss"] == pytest.approx(want["train_loss"], rel=1e-2), got["epoch"]


# -- bundles --------------------------------------------------------------------------------------------------------
def _member(device: str, member: dict[str, Any]) -> TrialConfig:
    """tests/test_bundle.py's EuclidNet member at hidden 8 on ``device``."""
    raw = bundle_config("euclidnet", device=device, **member).model_dump(mode="json")
    raw["model"]["hidden"] = 8
    return trial_from_dict(raw)


@pytest.mark.parametrize("device", DEVICES)
def test_auto_bundle_members_equal_solo(device, splits, tmp_path):
    """strategy ``auto`` picks vmap on CUDA (loop on CPU) for 3 EuclidNet members (seeds 0-2 with their own lr,
    rotation, fraction, clipping, ...); every member equals the same cell trained alone with run_trial on the same
    device (tests/test_bundle.py's comparison: AUC within 1e-4, other metrics and the loss history to round-off)."""
    configs = [_member(device, m) for m in MEMBERS]
    log: list[str] = []
    results = run_bundle(configs, [Recorder() for _ in configs], workdirs=[tmp_path / f"m{i}" for i in range(3)],
                         strategy="auto", splits=splits, log=log.append)
    assert f"strategy {'vmap' if device == 'cuda' else 'loop'}" in log[0], log
    for i, (config, member) in enumerate(zip(configs, results)):
        solo = run_trial(config, NullReporter(), workdir=tmp_path / f"solo{i}", splits=splits)
        _assert_same(solo, member)
        assert member.metrics["on_cuda"] == float(device == "cuda")


# -- sweeps on local Ray ---------------------------------------------------------------------------------------------
def _sweep(folder: Path, monkeypatch: pytest.MonkeyPatch, *, seeds: int, num_cpus: int,
           num_gpus: int) -> tuple[int, str, list[Any], list[dict[str, Any]]]:
    """A tiny grid (EuclidNet and IN, hidden 8, ``train.device: cuda``, 0.25 GPU per trial, one cell per Ray trial)
    run by ``sweeps.run`` on a local Ray it starts with ``num_cpus`` / ``num_gpus``, into SQLite MLflow in
    ``folder``. Returns the exit status, the console output, the child runs and the per-Ray-trial timings
    (``$EQUITRACK_TIMINGS``: driver times of each trial's start and end)."""
    import ray

    assert not ray.is_initialized()  # sweeps.run must start its own Ray with these resources
    grid = {
        "name": "gpu",
        "experiment": "equitrack-gpu",
        "data": {"source": "hitgraphs", "events": {"train": 2, "val": 1, "test": 1}},
        "train": {"epochs": 2, "lr": 0.005, "device": "cuda"},
        "eval": {"rotations_deg": [0, 90], "timing": False, "track_metrics": False},
        "models": {"euclidnet": {"hidden": 8}, "interaction_network": {"hidden": 8}},
        "grid": {"model.name": ["euclidnet", "interaction_network"]},
        "seeds": seeds,
        "bundle": "none",
        "resources": {"cpus_per_trial": 1, "gpus_per_trial": 0.25, "max_concurrent": 4},
        "ray": {"num_cpus": num_cpus, "num_gpus": num_gpus, "object_store_mb": 150},
    }
    path = folder / "gpu.yaml"
    path.write_text(yaml.safe_dump(grid))
    timings = folder / "timings.jsonl"
    monkeypatch.chdir(folder)
    monkeypatch.setenv("EQUITRACK_TIMINGS", str(timings))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    out = io.StringIO()
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    code = main([str(path), "--tracking-uri", uri, "--quiet"], console=Console(file=out, width=200))
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("equitrack-gpu").experiment_id],
                              "tags.`equitrack.kind` = 'trial'")
    spans = [json.loads(line) for line in timings.read_text().splitlines()] if timings.exists() else []
    return code, out.getvalue(), runs, spans


def _max_overlap(spans: list[dict[str, Any]]) -> int:
    """The most Ray trials running at one instant (between their start and end)."""
    events = sorted([(s["start"], 1) for s in spans] + [(s["end"], -1) for s in spans])  # an end before a start
    running = most = 0
    for _, step in events:
        running += step
        most = max(most, running)
    return most


@pytest.mark.gpu
@NEEDS_CUDA
def test_sweep_packs_fractional_gpu_trials(tmp_path, monkeypatch):
    """4 cells at 0.25 GPU each on a Ray with 1 GPU and 4 CPUs: every run FINISHED and trained on CUDA, and Ray ran
    several trials at once on the one GPU (with 1 GPU per trial they would run one after another)."""
    code, out, runs, spans = _sweep(tmp_path, monkeypatch, seeds=2, num_cpus=4, num_gpus=1)
    assert code == EXIT_OK, out[-3000:]
    assert "Ray has no GPU" not in out
    assert len(runs) == 4 and all(r.info.status == "FINISHED" for r in runs), [r.info.status for r in runs]
    for run in runs:
        assert run.data.metrics["on_cuda"] == 1.0, run.info.run_name
        assert run.data.params["train.device"] == "cuda" and "auc" in run.data.metrics
    assert len(spans) == 4 and all(s["cells"] == 1 for s in spans)
    print(f"most trials at once on the GPU: {_max_overlap(spans)}")
    assert _max_overlap(spans) >= 2


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the fallback on a machine without CUDA")
def test_fractional_gpus_without_gpu_fall_back_to_cpu(tmp_path, monkeypatch):
    """The same grid on a Ray without GPUs: sweeps.run warns that resources.gpus_per_trial falls back to 0, the
    trials (train.device: cuda) run on CPU, two at once on 2 CPUs, and finish."""
    code, out, runs, spans = _sweep(tmp_path, monkeypatch, seeds=1, num_cpus=2, num_gpus=0)
    assert code == EXIT_OK, out[-3000:]
    assert "resources.gpus_per_trial=0.25 but Ray has no GPU; trials run on CPU" in " ".join(out.split())
    assert len(runs) == 2 and all(r.info.status == "FINISHED" for r in runs), [r.info.status for r in runs]
    assert all(r.data.metrics["on_cuda"] == 0.0 for r in runs)
    assert len(spans) == 2 and _max_overlap(spans) == 2
