"""The quick grid end to end on one shared local Ray with a SQLite MLflow: layout, resume, faults, interruption."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient

from sweeps.ray_local import shutdown_ray
from sweeps.run import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, DriverHooks, main
from sweeps.schema import load_grid, resolve

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
QUICK = REPO / "sweeps" / "grids" / "quick.yaml"
TINY = ["--set", "data.events={train: 2, val: 1, test: 1}", "--set", "data.pileup=10", "--set", "train.epochs=2",
        "--set", "eval.rotations_deg=[0, 90]", "--set", "eval.timing=false", "--quiet"]
ARTIFACTS = {"config.yaml", "history.csv", "roc.csv", "rotation.csv", "model.pt", "metrics.json"}


@pytest.fixture(scope="module")
def ray_session() -> Any:
    """One local Ray for every sweep in this module (sweeps.run reuses an initialised Ray)."""
    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(num_cpus=2, object_store_memory=150 * 2**20, include_dashboard=False, log_to_driver=False)
    yield ray
    shutdown_ray()  # collects Tune's garbage first: an ObjectRef freed after shutdown would end pytest (status 1)


def _sweep(folder: Path, *extra: str, hooks: DriverHooks | None = None) -> int:
    cwd = Path.cwd()
    os.chdir(folder)
    try:
        return main([str(QUICK), "--tracking-uri", f"sqlite:///{folder / 'mlflow.db'}", *TINY, *extra], hooks=hooks)
    finally:
        os.chdir(cwd)


def _runs(folder: Path) -> tuple[MlflowClient, list[Any], list[Any]]:
    client = MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    exp = client.get_experiment_by_name("equitrack-quick")
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get("equitrack.kind") == "sweep"]
    children = [r for r in runs if r.data.tags.get("equitrack.kind") == "trial"]
    return client, parents, children


SHUTDOWN_SCRIPT = """
import gc, sys
import ray
from ray._private import worker as ray_worker
from sweeps.ray_local import shutdown_ray

ray.init(num_cpus=1, object_store_memory=80 * 2**20, include_dashboard=False, log_to_driver=False)
gc.disable()  # garbage waits for a collection, as Tune's reference cycles do
cycle = {"ref": ray.put(1)}
cycle["self"] = cycle
del cycle


class CollectInTheWindow:
    # the driver's core worker, collecting garbage right after its C++ side has shut down (as an allocation in
    # another thread, e.g. the MLflow writer, may while ray.shutdown() runs): the window where Ray exits the process
    def __init__(self, real):
        self.real = real

    def __getattr__(self, name):
        return getattr(self.real, name)

    def shutdown_driver(self):
        self.real.shutdown_driver()
        gc.collect()


ray_worker.global_worker.core_worker = CollectInTheWindow(ray_worker.global_worker.core_worker)
(shutdown_ray if sys.argv[1] == "shutdown_ray" else ray.shutdown)()
print("still running after the shutdown", flush=True)
"""


def test_shutdown_ray_frees_object_refs_before_ray_stops(tmp_path: Path) -> None:
    """``sweeps.ray_local.shutdown_ray`` collects garbage before ``ray.shutdown()``: a reference cycle holding an
    ``ObjectRef`` (Tune leaves such cycles) freed while Ray shuts down makes Ray end the whole process with status 1
    and no traceback. That was the silent abort of this test suite, and in a sweep it would lose the MLflow writes
    still queued. Plain ``ray.shutdown()`` in the same situation first shows that this Ray has the hazard."""
    import subprocess
    import sys

    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "PYTHONPATH": str(REPO)}
    env.pop("RAY_ADDRESS", None)

    def run(how: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", SHUTDOWN_SCRIPT, how], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=300, check=False)

    plain = run("ray.shutdown")
    if plain.returncode == 0:
        pytest.skip("this Ray version survives an ObjectRef freed during its shutdown; nothing to guard against")
    assert plain.returncode == 1 and "still running" not in plain.stdout, (plain.returncode, plain.stderr[-3000:])
    fixed = run("shutdown_ray")
    assert fixed.returncode == 0 and "still running after the shutdown" in fixed.stdout, fixed.stderr[-3000:]


RAY_BOOT_SCRIPT = """
import logging, sys, time
import ray
from sweeps.ray_local import RayBoot
from sweeps.schema import load_grid

logging.basicConfig(level=logging.WARNING)
grid = load_grid(sys.argv[1], overrides=["ray.num_cpus=1", "ray.object_store_mb=80"])
boot = RayBoot(grid, None).start()
print("started here:", boot.wait(), flush=True)
time.sleep(1.0)  # the thread that started Ray has nothing left to do: Ray's processes must outlive that work
node = ray._private.worker._global_node
dead = [name for name, procs in node.all_processes.items() for p in procs if p.process.poll() is not None]
print("dead:", dead, flush=True)
if dead:  # a task would wait for the dead GCS for a minute
    sys.exit(3)
print("task:", ray.get(ray.remote(lambda: 41 + 1).remote(), timeout=60), flush=True)
boot.close()
print("after close:", ray.is_initialized(), flush=True)
"""


def test_ray_boot_starts_ray_on_a_thread_that_outlives_the_start(tmp_path: Path) -> None:
    """``RayBoot`` starts the local Ray while the driver sets up MLflow. Ray's GCS and raylet die with the *thread*
    that started them (a parent-death signal), so the thread must live until ``close``: a second later every Ray
    process is alive and runs a task, ``close`` shuts Ray down, and Ray's warning that it could not set its SIGTERM
    handler off the main thread is not shown."""
    import subprocess
    import sys

    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "PYTHONPATH": str(REPO)}
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.run([sys.executable, "-c", RAY_BOOT_SCRIPT, str(QUICK)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "started here: True" in out and "dead: []" in out and "task: 42" in out, out[-3000:]
    assert "after close: False" in out and "SIGTERM handler is not set" not in out, out[-3000:]


def test_command_line_sweep_starts_its_own_ray(tmp_path: Path) -> None:
    """``python -m sweeps.run`` as a user runs it: no Ray beforehand, so the command starts its own (on the
    background thread) and shuts it down; both cells finish."""
    import subprocess
    import sys

    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "PYTHONPATH": str(REPO)}
    for name in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI", "EQUITRACK_CACHE"):
        env.pop(name, None)
    proc = subprocess.run([sys.executable, "-m", "sweeps.run", str(QUICK), "--tracking-uri",
                           f"sqlite:///{tmp_path / 'mlflow.db'}", *TINY, "--set", "seeds=1",
                           "--set", "grid={model.name: [interaction_network]}", "--set", "ray.num_cpus=1"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=480, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == EXIT_OK, out[-4000:]
    assert "SIGTERM handler is not set" not in out
    _, parents, children = _runs(tmp_path)
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert len(children) == 1 and children[0].info.status == "FINISHED" and "auc" in children[0].data.metrics


@pytest.fixture(scope="module")
def quick_sweep(ray_session: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    folder = tmp_path_factory.mktemp("quick")
    return folder, _sweep(folder)


def test_quick_sweep_layout(quick_sweep: tuple[Path, int]) -> None:
    folder, code = quick_sweep
    assert code == EXIT_OK
    client, parents, children = _runs(folder)
    assert len(parents) == 1 and len(children) == 4
    parent = parents[0]
    ptags = parent.data.tags
    assert parent.info.status == "FINISHED" and ptags["sweep_name"] == "quick" and ptags["sweep_id"]
    assert ptags["dataset_key"] and ptags["git_commit"] and ptags["version.mlflow"]
    description = load_grid(QUICK).description  # what the MLflow UI shows for the experiment and the sweep
    assert description and ptags["mlflow.note.content"] == description
    assert client.get_experiment_by_name("equitrack-quick").tags["mlflow.note.content"] == description
    assert {a.path for a in client.list_artifacts(parent.info.run_id)} >= {"quick.yaml", "grid_resolved.yaml",
                                                                          "cells.yaml"}
    expected = {(c.run_name, c.config_id, c.seed) for c in resolve(load_grid(QUICK))}
    got = set()
    for run in children:
        tags, params, metrics = run.data.tags, run.data.params, run.data.metrics
        assert run.info.status == "FINISHED" and tags["status"] == "finished"
        assert tags["mlflow.parentRunId"] == parent.info.run_id and tags["sweep_id"] == ptags["sweep_id"]
        assert tags["model"] in ("euclidnet", "interaction_network")
        assert params["model.name"] == tags["model"] and params["train.seed"] == tags["seed"]
        assert params["train.epochs"] == "2" and params["data.source"] == "simulated"
        for name in ("auc", "edge_efficiency", "edge_purity", "n_params", "auc_rot_000", "auc_rot_090"):
            assert name in metrics, name
        history = client.get_metric_history(run.info.run_id, "val_auc")
        assert sorted(m.step for m in history) == [1, 2]
        assert {a.path for a in client.list_artifacts(run.info.run_id)} >= ARTIFACTS
        got.add((run.info.run_name, tags["config_id"], int(tags["seed"])))
    # the tiny overrides change the config, so ids differ from the plain grid's; names and seeds do not
    assert {(n, s) for n, _, s in got} == {(n, s) for n, _, s in expected}
    assert len({cid for _, cid, _ in got}) == 2


def test_rerun_creates_nothing_new(quick_sweep: tuple[Path, int], capsys: pytest.CaptureFixture[str]) -> None:
    folder, _ = quick_sweep
    _, parents, before = _runs(folder)
    capsys.readouterr()
    assert _sweep(folder, "--dry-run") == EXIT_OK  # the dry run shows what the re-run will do, and writes nothing
    shown = capsys.readouterr().out
    assert shown.count("skip (finished)") == len(before) and "new" not in shown.split("totals")[0]
    assert [p.info.run_id for p in _runs(folder)[1]] == [p.info.run_id for p in parents]
    assert _sweep(folder) == EXIT_OK
    _, parents_after, after = _runs(folder)
    assert [p.info.run_id for p in parents_after] == [p.info.run_id for p in parents]
    assert {r.info.run_id: r.info.end_time for r in after} == {r.info.run_id: r.info.end_time for r in before}


def test_changed_setting_adds_runs_with_their_own_names(quick_sweep: tuple[Path, int]) -> None:
    """``--set train.epochs=1`` on the finished quick sweep: four new runs in the same sweep, each named apart
    from the run of the old configuration it would otherwise share a name with (config id suffix)."""
    folder, _ = quick_sweep
    _, _, before = _runs(folder)
    assert _sweep(folder, "--set", "train.epochs=1") == EXIT_OK
    _, parents, after = _runs(folder)
    assert len(parents) == 1 and len(after) == len(before) + 4
    old_names = {r.info.run_name for r in before}
    new_runs = [r for r in after if r.info.run_id not in {b.info.run_id for b in before}]
    assert all(r.data.params["train.epochs"] == "1" for r in new_runs)
    assert len({r.info.run_name for r in after}) == len(after)
    for run in new_runs:
        assert run.info.run_name not in old_names
        assert run.info.run_name.endswith("-" + run.data.tags["config_id"][:6])
        assert run.info.run_name.rsplit("-", 1)[0] in old_names


def test_failing_trial_is_failed_and_others_finish(ray_session: Any, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """IN raises at every attempt (FAILED with its error); EuclidNet crashes once and resumes from its checkpoint."""
    fault = DriverHooks(fault=[{"match": "euclidnet", "epoch": 2, "times": 1},
                               {"match": "interaction_network", "epoch": 1, "times": 99}])
    assert _sweep(tmp_path, "--set", "seeds=1", "--set", "max_retries=1", hooks=fault) == EXIT_FAILED
    client, parents, children = _runs(tmp_path)
    by_model = {r.data.tags["model"]: r for r in children}
    assert len(children) == 2
    failed = by_model["interaction_network"]
    assert failed.info.status == "FAILED" and failed.data.tags["status"] == "failed"
    assert "injected fault" in failed.data.tags["error"]
    assert "error.txt" in {a.path for a in client.list_artifacts(failed.info.run_id)}
    ok = by_model["euclidnet"]
    assert ok.info.status == "FINISHED" and ok.data.tags["attempts"] == "2"
    assert sorted(m.step for m in client.get_metric_history(ok.info.run_id, "train_loss")) == [1, 2]
    assert parents[0].info.status == "FINISHED" and parents[0].data.tags["n_failed"] == "1"
    # --skip-failed leaves it alone; a plain re-run retries the same run (no duplicate)
    assert _sweep(tmp_path, "--set", "seeds=1", "--skip-failed") == EXIT_OK
    assert _runs(tmp_path)[2][0].info.run_id in {r.info.run_id for r in children}
    assert _sweep(tmp_path, "--set", "seeds=1") == EXIT_OK
    _, _, again = _runs(tmp_path)
    assert {r.info.run_id for r in again} == {r.info.run_id for r in children}
    assert all(r.info.status == "FINISHED" for r in again)


def test_interrupted_sweep_resumes_only_missing(ray_session: Any, tmp_path: Path) -> None:
    """SIGTERM after the first finished run: it stays FINISHED, the others become KILLED; a re-run completes them."""
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    sent = threading.Event()

    def _interrupt() -> None:
        deadline = time.time() + 240
        while time.time() < deadline:
            try:
                exp = client.get_experiment_by_name("equitrack-quick")
                if exp is not None and client.search_runs([exp.experiment_id],
                                                          "tags.`equitrack.kind` = 'trial' and tags.status = 'finished'"):
                    os.kill(os.getpid(), signal.SIGTERM)
                    sent.set()
                    return
            except Exception:
                pass
            time.sleep(0.2)

    watcher = threading.Thread(target=_interrupt, daemon=True)
    watcher.start()
    code = _sweep(tmp_path, "--max-concurrent", "1")
    watcher.join(5)
    assert sent.is_set() and code == EXIT_INTERRUPTED
    _, parents, children = _runs(tmp_path)
    status = {r.info.run_id: r.info.status for r in children}
    finished = {k: r.info.end_time for r in children if (k := r.info.run_id) and r.info.status == "FINISHED"}
    assert parents[0].info.status == "KILLED"
    assert 1 <= len(finished) < 4 and set(status.values()) <= {"FINISHED", "KILLED"}
    assert _sweep(tmp_path, "--max-concurrent", "1") == EXIT_OK
    _, parents2, after = _runs(tmp_path)
    assert len(parents2) == 1 and len(after) == 4 and {r.info.run_id for r in after} == set(status)
    assert all(r.info.status == "FINISHED" for r in after)
    assert {r.info.run_id: r.info.end_time for r in after if r.info.run_id in finished} == finished
    for run in after:
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_loss")]
        assert sorted(steps) == [1, 2], (run.info.run_name, steps)


@pytest.mark.parametrize("reuse", [True, False])
def test_trials_share_a_worker_process_unless_told_not_to(ray_session: Any, tmp_path: Path, reuse: bool,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """``ray.reuse_actors``: two one-cell trials in turn run in one worker process (imports and data paid once), or
    each in a fresh one (Ray Tune's own default); both finish."""
    code = _sweep(tmp_path, "--set", "seeds=1", "--set", "bundle=none", "--max-concurrent", "1",
                  "--set", f"ray.reuse_actors={str(reuse).lower()}", "--timings", str(tmp_path / "timings.jsonl"))
    assert code == EXIT_OK
    _, _, children = _runs(tmp_path)
    assert len(children) == 2 and all(r.info.status == "FINISHED" for r in children)
    timings = [json.loads(line) for line in (tmp_path / "timings.jsonl").read_text().splitlines()]
    assert len(timings) == 2 and all(isinstance(t["pid"], int) for t in timings)  # one Ray trial per cell
    assert len({t["pid"] for t in timings}) == (1 if reuse else 2)


def test_unreachable_tracking_server_stops_before_anything(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    assert main([str(QUICK), "--tracking-uri", "http://127.0.0.1:9", *TINY]) == 3
    assert "unreachable" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # no dataset, no Ray results, no database


def test_optuna_pareto_sweep_logs_importances(ray_session: Any, tmp_path: Path) -> None:
    """NSGA-II over the shipped Pareto grid (3 tiny trials): one child per suggestion, importances on the parent."""
    cwd = Path.cwd()
    os.chdir(tmp_path)
    try:
        code = main([str(REPO / "sweeps/grids/optuna_pareto.yaml"), "--tracking-uri",
                     f"sqlite:///{tmp_path / 'mlflow.db'}", *TINY, "--set", "train.epochs=1", "--set",
                     "search.n_trials=3", "--set", "scheduler=none", "--set", "resources.gpus_per_trial=0"])
    finally:
        os.chdir(cwd)
    assert code == EXIT_OK
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.get_experiment_by_name("equitrack-optuna-pareto")
    runs = client.search_runs([exp.experiment_id])
    parent = next(r for r in runs if r.data.tags.get("equitrack.kind") == "sweep")
    children = [r for r in runs if r.data.tags.get("equitrack.kind") == "trial"]
    assert len(children) == 3 and all(r.info.status == "FINISHED" for r in children)
    for run in children:
        assert {"grid.model.hidden", "grid.model.c", "grid.train.lr"} <= set(run.data.tags)
        assert float(run.data.params["train.lr"]) == pytest.approx(float(run.data.tags["grid.train.lr"]))
        assert "auc" in run.data.metrics and "n_params" in run.data.metrics
    assert len({r.data.tags["config_id"] for r in children}) == 3
    assert "importances.json" in {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert any(k.startswith("importance.auc.") for k in parent.data.metrics)


def test_optuna_multi_objective_searcher_survives_rays_pickles(tmp_path: Path) -> None:
    """The NSGA-II searcher of the shipped Pareto grid through what Ray does to it: cloudpickle (tuner.pkl),
    deepcopy, and save/restore at experiment checkpoints; the restored searcher goes on with the same study."""
    import copy
    import pickle

    import ray.cloudpickle

    from sweeps.optuna_searcher import searcher

    grid = load_grid(REPO / "sweeps/grids/optuna_pareto.yaml")
    search = searcher(grid)
    assert type(search._ot_study.sampler).__name__ == "NSGAIISampler"
    first = search.suggest("t1")
    for clone in (ray.cloudpickle.loads(ray.cloudpickle.dumps(search)), copy.deepcopy(search),
                  pickle.loads(pickle.dumps(search))):
        assert type(clone._ot_study.sampler).__name__ == "NSGAIISampler"
        clone.on_trial_complete("t1", {"auc": 0.7, "n_params": 100.0})
        assert [t.values for t in clone._ot_study.trials] == [[0.7, 100.0]]
        assert clone._ot_study.trials[0].params == first
    search.save(str(tmp_path / "searcher.pkl"))
    restored = searcher(grid)
    restored.restore(str(tmp_path / "searcher.pkl"))
    restored.on_trial_complete("t1", {"auc": 0.7, "n_params": 100.0})
    second = restored.suggest("t2")
    assert second != first and set(second) == set(first)
    assert len(restored._ot_study.trials) == 2


@pytest.mark.parametrize("width", [120, 80])
def test_results_table_keeps_whole_run_names(width: int) -> None:
    """At 120 (and 80) columns every run name of a four-axis grid is printed whole, seed included, with a seed
    column; columns that do not fit are left out and named in the caption."""
    from rich.console import Console

    from equitrack.task import get_task
    from sweeps.callback import CellState
    from sweeps.display import results_table

    grid = load_grid(REPO / "sweeps/grids/paper_rotation.yaml",
                     overrides=["grid.train.lr=[0.001, 0.0003]", "grid.train.fraction=[0.5, 1.0]"])
    states = []
    for cell in resolve(grid, check_model=False)[:6]:
        st = CellState(cell, "run-id", status="finished")
        st.final = {"auc": 0.991234, "edge_efficiency": 0.95, "edge_purity": 0.9, "n_params": 1234.0,
                    "best_epoch": 180.0, "train_seconds": 1234.5}
        states.append(st)
    assert max(len(st.cell.run_name) for st in states) > 40
    console = Console(width=width, record=True)
    console.print(results_table(states, title="results", headline=get_task("tracking").headline_metrics))
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= width
    lines = text.splitlines()
    for st in states:
        row = next(line for line in lines if st.cell.run_name in line)  # whole, on one line
        assert f" {st.cell.seed} " in row.split(st.cell.run_name, 1)[1]
    assert "0.9912" in text
    if width == 80:
        assert "left out for the terminal's width" in text


def test_write_behind_keeps_order_and_reraises(tmp_path: Path) -> None:
    """The driver's MLflow writer: child runs created behind, writes in submission order, failures re-raised."""
    from sweeps.tracking import SweepTracker, WriteBehind, resolve_run_id

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = SweepTracker(tracking_uri=uri, experiment="write-behind", artifact_location=str(tmp_path / "art"))
    tracker.open_parent(sweep_name="wb", sweep_id=None, fresh=True, tags={})
    cell = resolve(load_grid(QUICK))[0]
    writer = WriteBehind()
    run = writer.submit(tracker.create_child, cell)
    for epoch in (1, 2, 3):  # queued behind the creation; the run id is resolved when each write runs
        writer.submit(lambda e=epoch: tracker.log_epoch(resolve_run_id(run), {"val_auc": e / 10}, step=e,
                                                        tags={"last_epoch": str(e)}))
    writer.drain()
    client = MlflowClient(uri)
    rid = resolve_run_id(run)
    history = sorted(client.get_metric_history(rid, "val_auc"), key=lambda m: m.step)
    assert [(m.step, m.value) for m in history] == [(1, 0.1), (2, 0.2), (3, 0.3)]
    assert client.get_run(rid).data.tags["last_epoch"] == "3"  # the last write won: order kept

    order: list[int] = []
    writer.submit(order.append, 1)

    def broken() -> None:
        raise RuntimeError("store went away")

    writer.submit(broken)
    writer.submit(order.append, 2)
    with pytest.raises(RuntimeError, match="store went away"):
        writer.drain()
    writer.close()
    assert order == [1, 2]
