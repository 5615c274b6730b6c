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

from equitrack.reporter import NullReporter
from sweeps.run import EXIT_OK, main
from tracker.data.hitgraphs import load_npz
from tracker.train import run_trial
from tracker.train.bundle import run_bundle
from tracker.train.config import TrialConfig, trial_from_dict

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
    if device == "cuda":  # the stacked step was captured and replayed (cuda_graphs defaults to True)
        assert "stacked step of 3 members: CUDA graph" in log, log
    for i, (config, member) in enumerate(zip(configs, results)):
        solo = run_trial(config, NullReporter(), workdir=tmp_path / f"solo{i}", splits=splits)
        _assert_same(solo, member)
        assert member.metrics["on_cuda"] == float(device == "cuda")


def _stacks(name: str, k: int, splits, lrs: list[float]):
    """Two identical stacks of ``k`` members of ``name`` on CUDA (seeds 0..k-1, lr ``lrs[j]``, member 1 clipped,
    member 2 with weight decay): one eager, one with ``cuda_graphs``; and the padded training pool."""
    import copy

    from tracker.models import build_model
    from tracker.train.strategies.stacked import StackedAdam
    from tracker.train.strategies.vmap import PaddedPool

    hp = {"hidden": 8} if name == "interaction_network" else {"hidden": 4, "mlp_depth": 2, "iterations": 2}
    models, opts = [], []
    for j in range(k):
        torch.manual_seed(j)
        m = build_model(name, **hp).to("cuda")
        models.append(m)
        opts.append(torch.optim.Adam(m.parameters(), lr=lrs[j], weight_decay=0.01 if j == 2 else 0.0))
    clips = [0.5 if j == 1 else None for j in range(k)]
    stacks = []
    for graphs in (False, True):
        ms = [copy.deepcopy(m) for m in models]
        os_ = [torch.optim.Adam(m.parameters(), **{key: o.defaults[key] for key in ("lr", "weight_decay")})
               for m, o in zip(ms, opts)]
        stacks.append(StackedAdam(ms, os_, grad_clips=clips, pos_weights=[None] * k, cuda_graphs=graphs))
    padded = PaddedPool([g.to("cuda") for g in splits[0]], device=torch.device("cuda"))
    return stacks, padded


@pytest.mark.gpu
@NEEDS_CUDA
@pytest.mark.parametrize("name", ["euclidnet", "interaction_network"])
def test_cuda_graph_step_equals_eager(name, splits):
    """The stacked step replayed from a CUDA graph gives the eager step's losses, parameters and Adam moments:
    4 members on their own graphs and angles, one idle in some steps, one clipped, one with weight decay, and
    one whose loss turns non-finite (a NaN weight): it is left out from then on while the others go on."""
    k, steps = 4, 6
    eager, graphed = _stacks(name, k, splits, [0.01, 0.02, 0.005, 0.01])[0]
    with torch.no_grad():
        for stack in (eager, graphed):
            next(iter(stack.params.values()))[3].fill_(float("nan"))
    padded = _stacks(name, 1, splits, [0.01])[1]
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, padded.dummy, (steps, k, 1), generator=gen)
    theta = torch.rand((steps, k, 1), generator=gen, dtype=torch.float64) * 2 * math.pi
    active = torch.ones((steps, k), dtype=torch.bool)
    active[2:4, 0] = False  # member 0 has no batch in steps 3 and 4
    ids[2:4, 0] = padded.dummy
    lv = []
    for stack in (eager, graphed):
        lv.append(torch.cat([stack.run_steps(padded, ids[:3], theta[:3], active[:3]),
                             stack.run_steps(padded, ids[3:], theta[3:], active[3:])]))
    assert graphed.graph_error is None and graphed._graph is not None
    assert eager._graph is None
    finite = torch.isfinite(lv[0])
    assert torch.equal(finite, torch.isfinite(lv[1]))
    assert not finite[:, 3].any() and finite[:, :3].all()  # member 3 is non-finite, the others are not
    torch.testing.assert_close(lv[1][finite], lv[0][finite], rtol=1e-5, atol=1e-6)
    assert torch.equal(eager.steps, graphed.steps)
    for n in eager.params:
        for a, b in ((eager.params[n], graphed.params[n]), (eager.exp_avg[n], graphed.exp_avg[n]),
                     (eager.exp_avg_sq[n], graphed.exp_avg_sq[n])):
            torch.testing.assert_close(b[:3], a[:3], rtol=1e-4, atol=1e-6)
    # the idle steps changed nothing: member 0 alone, eagerly, with its two idle steps left out, ends the same
    solo = _stacks(name, 1, splits, [0.01])[0][0]
    keep = active[:, 0]
    solo.run_steps(padded, ids[keep][:, :1], theta[keep][:, :1], active[keep][:, :1])
    for n in solo.params:
        torch.testing.assert_close(graphed.params[n][:1], solo.params[n], rtol=1e-4, atol=1e-6)


@pytest.mark.gpu
@NEEDS_CUDA
def test_cuda_graph_bundle_equals_eager_bundle(splits, tmp_path):
    """run_bundle with vmap on CUDA: the members' metrics and histories with CUDA graphs equal those without."""
    configs = [_member("cuda", m) for m in MEMBERS]
    runs = []
    for graphs in (False, True):
        log: list[str] = []
        runs.append(run_bundle(configs, [Recorder() for _ in configs], strategy="vmap", splits=splits,
                               workdirs=[tmp_path / f"g{int(graphs)}-{i}" for i in range(3)], log=log.append,
                               cuda_graphs=graphs))
        assert ("stacked step of 3 members: CUDA graph" in log) == graphs, log
    for eager, graphed in zip(*runs):
        _assert_same(eager, graphed, tol_auc=1e-5)


# -- sweeps on local Ray ---------------------------------------------------------------------------------------------
def _sweep(folder: Path, monkeypatch: pytest.MonkeyPatch, *, seeds: int, num_cpus: int,
           num_gpus: int) -> tuple[int, str, list[Any], list[dict[str, Any]]]:
    """A tiny grid (EuclidNet and IN, hidden 8, ``train.device: cuda``, 0.25 GPU per trial, one cell per Ray trial)
    run by ``sweeps.run`` on a local Ray it starts with ``num_cpus`` / ``num_gpus``, into SQLite MLflow in
    ``folder``. Returns the exit status, the console output, the child runs and the per-Ray-trial timings
    (``--timings``: driver times of each trial's start and end)."""
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
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    out = io.StringIO()
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    code = main([str(path), "--tracking-uri", uri, "--quiet", "--timings", str(timings)],
                console=Console(file=out, width=200))
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
