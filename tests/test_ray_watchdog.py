"""A local Ray started by ``python -m sweeps.run`` does not outlive the driver, whatever ends it (issue 18, item 1).

The driver is killed with SIGKILL while its trials run; every process of its Ray session (GCS, raylet, the dashboard
and runtime-env agents, workers: the driver's descendants just before the kill, and any process with a file open
under the session directory) must be gone within a bounded wait.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from sweeps.ray_watchdog import reap, session_processes

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
QUICK = REPO / "sweeps" / "grids" / "quick.yaml"
WAIT_S = 60.0  # the bound: SIGTERM, 2 s of grace, SIGKILL; generous for a loaded 2-core machine


def _alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _session_dir(procs: list[psutil.Process]) -> str | None:
    """The session directory of the driver's Ray: the ``.../session_*`` folder its processes name (log dirs)."""
    for p in procs:
        try:
            for arg in p.cmdline():
                match = re.search(r"(/[^\s=]*/session_[^/\s]+)", arg)
                if match:
                    return match.group(1)
        except psutil.Error:
            continue
    return None


def test_kill_9_of_the_driver_leaves_no_ray_process(tmp_path: Path) -> None:
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "PYTHONPATH": str(REPO)}
    for name in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI", "EQUITRACK_CACHE"):
        env.pop(name, None)
    cmd = [sys.executable, "-m", "sweeps.run", str(QUICK), "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}",
           "--set", "data.events={train: 2, val: 1, test: 1}", "--set", "data.pileup=10", "--set", "train.epochs=500",
           "--set", "seeds=1", "--set", "grid={model.name: [interaction_network]}", "--set", "ray.num_cpus=1",
           "--set", "eval.timing=false", "--quiet"]
    log_path = tmp_path / "driver.log"
    procs: list[psutil.Process] = []  # every descendant of the driver while its trial runs
    with log_path.open("w") as log:
        proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
    driver = psutil.Process(proc.pid)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            procs = driver.children(recursive=True)
            if any(p.name().startswith("ray::ImplicitFunc") for p in procs if _alive(p)):
                break
            time.sleep(0.5)
        time.sleep(1.0)  # the trial trains
        procs = driver.children(recursive=True)
        names = {p.name() for p in procs if _alive(p)}
        assert {"gcs_server", "raylet", "ray::DashboardAgent", "ray::RuntimeEnvAgent"} <= names and any(
            n.startswith("ray::ImplicitFunc") for n in names), f"{names}\n{log_path.read_text()[-3000:]}"
        session = _session_dir(procs)
        assert session and Path(session).is_dir(), session
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)

        deadline = time.monotonic() + WAIT_S
        left = procs
        while time.monotonic() < deadline:
            left = [p for p in procs if _alive(p)]
            left += [p for p in session_processes(session, exclude={os.getpid()}).values() if _alive(p)]
            if not left:
                break
            time.sleep(0.5)
        assert not left, f"still running {WAIT_S:.0f} s after kill -9 of the driver: " + ", ".join(
            sorted({f"{p.pid} {p.name()}" for p in left}))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reap({(p.pid, p.create_time()): p for p in procs if _alive(p)}, grace=0.5)  # never leave them behind


ORPHAN = """
import ctypes, os, sys, time
if os.fork():
    os._exit(0)  # the grandchild is orphaned, as a Ray agent is when its raylet dies
ctypes.CDLL(None).prctl(15, sys.argv[1].encode(), 0, 0, 0)  # PR_SET_NAME: ray::... like Ray's processes
print(os.getpid(), flush=True)
time.sleep(300)
"""


def _orphan(name: str, raylet_pid: int) -> psutil.Process:
    env = {**os.environ, "RAY_RAYLET_PID": str(raylet_pid)}
    proc = subprocess.Popen([sys.executable, "-c", ORPHAN, name], env=env, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    pid = int(proc.stdout.readline())
    proc.stdout.close()
    proc.wait(timeout=30)
    return psutil.Process(pid)


def test_orphans_of_a_dead_raylet_are_ended_before_a_new_ray() -> None:
    """What a Ray leaves when its driver and its watchdog were both killed: ``ray::`` processes whose raylet is gone
    are ended by ``reap_orphans`` (run before every local Ray start); one whose raylet runs is left alone."""
    from sweeps.ray_watchdog import reap_orphans

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a pid that no longer runs: the dead raylet
    orphan = _orphan("ray::TestOrphan", dead.pid)
    kept = _orphan("ray::TestKept", os.getpid())  # its "raylet" (this test) runs and is older
    try:
        assert _alive(orphan) and _alive(kept) and orphan.name().startswith("ray::")
        ended = reap_orphans()
        assert orphan.pid in ended and kept.pid not in ended
        deadline = time.monotonic() + 10
        while _alive(orphan) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(orphan) and _alive(kept)
    finally:
        for p in (orphan, kept):
            if _alive(p):
                p.kill()
