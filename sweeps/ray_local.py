"""Ray for a sweep: join a cluster, or start a local Ray capped to this machine on a background thread (so it
starts while the driver sets up MLflow and the data) and guarded by :mod:`sweeps.ray_watchdog`, and shut it down
without losing queued work (docs/sweeps.md, "Ray")."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from typing import Any

from rich.console import Console

from sweeps.schema import GridFile


def init_ray(grid: GridFile, address: str | None, env_vars: dict[str, str]) -> bool:
    """Join ``address`` or start a local Ray capped to this machine; return whether we started it."""
    import ray

    if ray.is_initialized():
        return False
    runtime_env = {"env_vars": env_vars} if env_vars else None
    if address:
        ray.init(address=address, runtime_env=runtime_env, log_to_driver=False)
        return True
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # loopback-only local Ray (docs/cluster.md for clusters)
    ray.init(num_cpus=grid.ray.num_cpus or os.cpu_count() or 1, num_gpus=grid.ray.num_gpus,
             object_store_memory=grid.ray.object_store_mb * 2**20, include_dashboard=False,
             runtime_env=runtime_env, log_to_driver=False, configure_logging=True, logging_level=logging.WARNING)
    return True


def shutdown_ray() -> None:
    """``ray.shutdown()`` after freeing the garbage that still holds Ray object references.

    Tune leaves reference cycles (exceptions with their tracebacks, trial state) that hold ``ObjectRef``s. If the
    cyclic garbage collector frees one after ``ray.shutdown()``, in whichever thread allocates next (the MLflow
    writer draining its queue, say), Ray ends the whole process with status 1 and no traceback ("The core worker
    has already been shutdown"), losing the writes not yet made. Collecting while Ray is up frees them safely.
    """
    import gc

    import ray

    gc.collect()
    ray.shutdown()


class RayBoot:
    """:func:`init_ray` on a background thread, so that Ray starts while the driver sets up MLflow and the data
    (Ray's start takes ~5 s; the driver's set-up between a valid grid and the first trial about as long).

    The thread lives on until :meth:`close`: Ray starts its GCS and raylet with a parent-death signal, which Linux
    sends when the *thread* that started them ends, so a thread that returned would take the local Ray with it.
    While the thread runs, SIGTERM ends the driver with ``sys.exit``, the handler ``ray.init`` installs when it runs
    on the main thread (on another thread it cannot, and says so; that warning is dropped).

    A local Ray it starts is guarded by a :class:`sweeps.ray_watchdog.RayWatchdog` (started just before
    ``ray.init``), which ends every process of that Ray once the driver is gone, however it ended (``kill -9`` too:
    the parent-death signal reaches the GCS and raylet only, not the raylet's agents), or once :meth:`close` shut it
    down.
    """

    def __init__(self, grid: GridFile, address: str | None) -> None:
        self._args = (grid, address, {})  # init_ray's arguments; no runtime-env variables
        self._ready = threading.Event()
        self._release = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = False
        self._error: BaseException | None = None
        self._sigterm: Any = None
        self._watchdog: Any = None  # RayWatchdog of a local Ray this driver starts

    def start(self) -> RayBoot:
        logging.getLogger("ray._private.worker").addFilter(_not_main_thread_warning)
        if threading.current_thread() is threading.main_thread():
            self._sigterm = signal.getsignal(signal.SIGTERM)
            if self._sigterm in (signal.SIG_DFL, None):
                signal.signal(signal.SIGTERM, _exit_on_sigterm)
        self._thread = threading.Thread(target=self._main, name="ray-init", daemon=True)
        self._thread.start()
        return self

    def _main(self) -> None:
        try:
            import ray

            if not self._args[1] and not ray.is_initialized():  # a local Ray of this driver's own
                from sweeps.ray_watchdog import RayWatchdog

                self._watchdog = RayWatchdog()
            self._started = init_ray(*self._args)
            if self._watchdog is not None:
                self._watchdog.session(ray._private.worker._global_node.get_session_dir_path())
        except BaseException as err:  # noqa: BLE001 — raised again by wait() on the driver's thread
            self._error = err
        finally:
            self._ready.set()
        self._release.wait()

    def wait(self) -> bool:
        """Block until Ray is up; return whether this driver started it (raise what ``ray.init`` raised)."""
        self._ready.wait()
        if self._error is not None:
            raise self._error
        return self._started

    def close(self) -> None:
        """Shut down the Ray this driver started (after it is up, even if nothing ran) and end the thread."""
        if self._thread is None:
            return
        self._ready.wait()
        try:
            if self._started:
                shutdown_ray()
                self._started = False
        finally:
            self._release.set()
            self._thread.join(timeout=10)
            self._thread = None
            if self._watchdog is not None:  # it reaps what the shutdown left, then exits
                self._watchdog.close()
                self._watchdog = None
            if self._sigterm in (signal.SIG_DFL, None) and signal.getsignal(signal.SIGTERM) is _exit_on_sigterm:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    sys.exit(signum)


def _not_main_thread_warning(record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith("SIGTERM handler is not set")


def gpus_per_trial(grid: GridFile, console: Console) -> float:
    """The GPUs each Ray trial asks for: ``resources.gpus_per_trial``, or 0 with a warning when Ray has none."""
    import ray

    want = grid.resources.gpus_per_trial
    have = float(ray.cluster_resources().get("GPU", 0))
    if want > 0 and have == 0:
        console.print(f"[yellow]warning:[/] resources.gpus_per_trial={want:g} but Ray has no GPU; trials run on CPU")
        return 0.0
    return want
