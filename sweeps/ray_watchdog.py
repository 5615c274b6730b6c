"""A watchdog that takes a local Ray down with the driver that started it, whatever ends the driver (``kill -9``
included).

Ray's GCS and raylet get a parent-death signal, but the raylet's children do not: after a ``kill -9`` of the driver
the dashboard agent and the runtime-env agent try to report to the dead GCS and hang (Ray 2.60, still running
minutes later). So a driver that starts a local Ray also starts this watchdog, ``python sweeps/ray_watchdog.py
DRIVER_PID RAY_DIR START``, in a session of its own (a signal to the driver's process group does not reach it)
with a pipe on its standard input:

- every 0.2 s while Ray starts, every second once it is up, it remembers (pid, start time) of the Ray processes
  of the driver: its children started after ``START`` (when the driver launched the watchdog, before
  ``ray.init``) that run a program of the ``ray`` package (``RAY_DIR``: GCS, raylet, log monitor, dashboard), and
  all their descendants (agents, workers); Ray processes that were already running (another Ray of the same
  driver, a cluster a test started) are never taken;
- the driver writes one line, the session directory, once Ray is up;
- end of file on the pipe means the driver closed it (``RayWatchdog.close``, after ``ray.shutdown()``) or died (the
  kernel closes it): the watchdog then sends SIGTERM to every remembered process still running (same pid and start
  time) and its descendants, and to every other process with a file open under the session directory (one started
  between two polls), waits up to 2 s, sends SIGKILL to what is left, and exits.

If the watchdog itself is killed, nothing reaps for it at that time; the next driver that starts a local Ray first
ends such leftovers (:func:`reap_orphans`: ``ray::`` processes whose raylet is gone).
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

POLL_S = 0.2  # while Ray starts (its processes appear)
POLL_UP_S = 1.0  # once the driver said Ray is up (workers come and go; they exit by themselves with the raylet)
GRACE_S = 2.0

Key = tuple[int, float]  # (pid, create_time): a pid alone may be reused


def _key(p: psutil.Process) -> Key:
    return (p.pid, p.create_time())


def _alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def ray_processes(driver: psutil.Process, ray_dir: str, since: float) -> dict[Key, psutil.Process]:
    """The driver's children started at or after ``since`` that run a program of the ``ray`` package, and all
    their descendants."""
    found: dict[Key, psutil.Process] = {}
    try:
        children = driver.children()
    except psutil.Error:
        return found
    for child in children:
        try:
            if child.create_time() < since - 0.05 or not any(ray_dir in arg for arg in child.cmdline()):
                continue
            for p in [child, *child.children(recursive=True)]:
                found[_key(p)] = p
        except psutil.Error:
            continue
    return found


def session_processes(session_dir: str, *, exclude: set[int]) -> dict[Key, psutil.Process]:
    """Processes (other than ``exclude``) with a file open under ``session_dir``: every Ray process logs there."""
    found: dict[Key, psutil.Process] = {}
    if not session_dir:
        return found
    prefix = session_dir.rstrip("/") + "/"
    for p in psutil.process_iter():
        if p.pid in exclude:
            continue
        try:
            if any(f.path.startswith(prefix) for f in p.open_files()):
                found[_key(p)] = p
        except psutil.Error:
            continue
    return found


def reap(procs: dict[Key, psutil.Process], *, grace: float = GRACE_S) -> list[int]:
    """SIGTERM to each process still running (with its descendants), SIGKILL after ``grace`` s; the pids hit."""
    targets: dict[Key, psutil.Process] = {}
    for key, p in procs.items():
        try:
            if _alive(p) and _key(p) == key:
                targets[key] = p
                for c in p.children(recursive=True):
                    targets[_key(c)] = c
        except psutil.Error:
            continue
    live = [p for p in targets.values() if _alive(p)]
    for p in live:
        try:
            p.terminate()
        except psutil.Error:
            pass
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(_alive(p) for p in live):
        time.sleep(0.05)
    for p in live:
        if _alive(p):
            try:
                p.kill()
            except psutil.Error:
                pass
    return sorted(p.pid for p in live)


def reap_orphans() -> list[int]:
    """End the ``ray::`` processes (agents, workers) whose raylet is gone, left by a Ray whose driver and watchdog
    both died; returns their pids. The raylet is ``RAY_RAYLET_PID`` of the process's environment (Ray sets it in
    every process the raylet starts); it is gone when no process has that pid, it is a zombie, or the process with
    that pid started after the one that names it (a reused pid)."""
    orphans: dict[Key, psutil.Process] = {}
    for p in psutil.process_iter(["name"]):
        try:
            if not (p.info["name"] or "").startswith("ray::"):
                continue
            raylet_pid = p.environ().get("RAY_RAYLET_PID")
            if not raylet_pid or not raylet_pid.isdigit():
                continue
            try:
                raylet = psutil.Process(int(raylet_pid))
                gone = not _alive(raylet) or raylet.create_time() > p.create_time()
            except psutil.NoSuchProcess:
                gone = True
            if gone:
                orphans[_key(p)] = p
        except psutil.Error:
            continue
    return reap(orphans)


def watch(driver_pid: int, ray_dir: str, since: float) -> None:
    """The watchdog's loop: remember the Ray processes started since ``since`` (epoch s), wait for end of file on
    standard input, reap."""
    try:
        driver = psutil.Process(driver_pid)
    except psutil.Error:
        return
    known: dict[Key, psutil.Process] = {}
    session_dir = ""
    stdin = sys.stdin.fileno()
    buffer = b""
    while True:
        known.update(ray_processes(driver, ray_dir, since))
        ready, _, _ = select.select([stdin], [], [], POLL_UP_S if session_dir else POLL_S)
        if not ready:
            continue
        chunk = os.read(stdin, 4096)
        if not chunk:
            break
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            session_dir = line.decode(errors="replace").strip() or session_dir
    known.update(session_processes(session_dir, exclude={os.getpid(), driver_pid}))
    reap(known)


class RayWatchdog:
    """The driver's end: end the orphans of earlier Rays (:func:`reap_orphans`), start the watchdog process, tell it
    the session directory, close it after shutdown."""

    def __init__(self) -> None:
        import ray

        reap_orphans()  # what a Ray left whose driver and watchdog were both killed
        self._ray_dir = os.path.dirname(os.path.abspath(ray.__file__))  # as Ray names its programs
        self._proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), str(os.getpid()), self._ray_dir, repr(time.time())],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True, close_fds=True,
        )

    @property
    def pid(self) -> int:
        return self._proc.pid

    def session(self, session_dir: str) -> None:
        """Tell the watchdog the session directory of the Ray it guards (once Ray is up)."""
        if self._proc.stdin is not None and not self._proc.stdin.closed:
            self._proc.stdin.write(session_dir.encode() + b"\n")
            self._proc.stdin.flush()

    def close(self, timeout: float = 10.0) -> None:
        """End of file for the watchdog: it reaps what is left of the session and exits (waited for)."""
        if self._proc.stdin is not None and not self._proc.stdin.closed:
            self._proc.stdin.close()
        try:
            self._proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C is for the driver; the watchdog acts on its death
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    watch(int(argv[0]), argv[1], float(argv[2]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
