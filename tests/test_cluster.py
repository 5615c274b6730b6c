"""The docker-compose topology without containers: PostgreSQL on 127.0.0.1, an MLflow server on it serving
artifacts, a Ray head and a second Ray node; the quick grid (tiny) runs against them and its runs land in MLflow.
Everything started here is stopped by PID (process group) at the end."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.cluster]

REPO = Path(__file__).resolve().parents[1]
QUICK = REPO / "sweeps" / "grids" / "quick.yaml"
BIN = Path(sys.executable).parent
TINY = ["--set", "data.events={train: 2, val: 1, test: 1}", "--set", "data.pileup=10", "--set", "train.epochs=2",
        "--set", "eval.rotations_deg=[0, 90]", "--set", "eval.timing=false", "--set", "seeds=1", "--quiet"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pg_bindir() -> Path:
    try:
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("PostgreSQL is not installed (pg_config missing)")
    if os.geteuid() != 0 or shutil.which("runuser") is None:
        pytest.skip("needs root and runuser to start PostgreSQL as the postgres user")
    return Path(out)


def _wait(check, what: str, timeout: float, procs: list[subprocess.Popen]) -> None:  # type: ignore[no-untyped-def]
    deadline = time.time() + timeout
    while time.time() < deadline:
        for p in procs:
            if p.poll() is not None:
                raise RuntimeError(f"{what}: process {p.args!r} exited with {p.returncode}")
        try:
            if check():
                return
        except Exception:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{what} not ready after {timeout:.0f} s")


class Stack:
    """Processes started by this test; ``stop`` ends each by its process group, newest first."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.procs: list[subprocess.Popen] = []
        self.pg_data: Path | None = None
        self.pg_ctl: Path | None = None

    def popen(self, args: list[str], *, log: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        out = open(self.root / log, "wb")
        p = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=self.root,
                             start_new_session=True)
        self.procs.append(p)
        return p

    def stop(self) -> None:
        for p in reversed(self.procs):
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                    p.wait(30)
                except (ProcessLookupError, subprocess.TimeoutExpired):
                    try:
                        os.killpg(p.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
        if self.pg_data is not None and self.pg_ctl is not None:
            subprocess.run(["runuser", "-u", "postgres", "--", str(self.pg_ctl), "-D", str(self.pg_data), "-m", "fast",
                            "stop"], capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def stack() -> Iterator[dict[str, str]]:
    bindir = _pg_bindir()
    root = Path(tempfile.mkdtemp(prefix="equitrack-cluster-", dir="/tmp"))
    root.chmod(0o755)
    st = Stack(root)
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
           "OMP_NUM_THREADS": "1", "EQUITRACK_CACHE": str(root / "cache")}
    env.pop("RAY_ADDRESS", None)
    env.pop("MLFLOW_TRACKING_URI", None)
    try:
        # PostgreSQL, owned by the postgres user, listening on 127.0.0.1 only
        pg_data, sock = root / "pgdata", root / "pgsock"
        pg_data.mkdir()
        sock.mkdir()
        shutil.chown(pg_data, "postgres")
        shutil.chown(sock, "postgres")
        pg_port = _free_port()
        subprocess.run(["runuser", "-u", "postgres", "--", str(bindir / "initdb"), "-D", str(pg_data), "-A", "trust",
                        "-U", "postgres"], check=True, capture_output=True, timeout=120)
        st.pg_data, st.pg_ctl = pg_data, bindir / "pg_ctl"
        subprocess.run(["runuser", "-u", "postgres", "--", str(bindir / "pg_ctl"), "-D", str(pg_data), "-w", "-l",
                        str(pg_data / "server.log"), "-o",
                        f"-p {pg_port} -k {sock} -c listen_addresses=127.0.0.1", "start"],
                       check=True, capture_output=True, timeout=120)
        subprocess.run(["runuser", "-u", "postgres", "--", str(bindir / "createdb"), "-h", "127.0.0.1", "-p",
                        str(pg_port), "mlflow"], check=True, capture_output=True, timeout=60)

        # MLflow server on PostgreSQL, proxying artifacts to a folder
        mlflow_port = _free_port()
        server = st.popen([str(BIN / "mlflow"), "server", "--backend-store-uri",
                           f"postgresql://postgres@127.0.0.1:{pg_port}/mlflow", "--artifacts-destination",
                           str(root / "artifacts"), "--serve-artifacts", "--host", "127.0.0.1", "--port",
                           str(mlflow_port), "--workers", "1"], log="mlflow.log", env=env)
        uri = f"http://127.0.0.1:{mlflow_port}"

        # Ray head and a second node, each with one CPU
        import requests

        ray_port = _free_port()
        temp = root / "ray"
        head = st.popen([str(BIN / "ray"), "start", "--head", "--block", f"--port={ray_port}",
                         "--node-ip-address=127.0.0.1", "--num-cpus=1", "--include-dashboard=false",
                         f"--object-store-memory={100 * 2**20}", f"--temp-dir={temp}", "--disable-usage-stats"],
                        log="ray-head.log", env=env)
        _wait(lambda: requests.get(f"{uri}/health", timeout=2).ok, "MLflow server", 180, [server, head])
        address = f"127.0.0.1:{ray_port}"
        _wait(lambda: subprocess.run([str(BIN / "ray"), "status", f"--address={address}"], env=env,
                                     capture_output=True, timeout=30).returncode == 0, "Ray head", 180, [head])
        node = st.popen([str(BIN / "ray"), "start", "--block", f"--address={address}", "--node-ip-address=127.0.0.1",
                         "--num-cpus=1", f"--object-store-memory={100 * 2**20}", "--disable-usage-stats"],
                        log="ray-node.log", env=env)

        def _two_nodes() -> bool:
            out = subprocess.run([str(BIN / "ray"), "status", f"--address={address}"], env=env, capture_output=True,
                                 text=True, timeout=30).stdout
            return out.count("node_") >= 2

        _wait(_two_nodes, "second Ray node", 180, [head, node])
        yield {"uri": uri, "address": address, "root": str(root), "env_cache": env["EQUITRACK_CACHE"]}
    finally:
        st.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_quick_grid_on_postgres_mlflow_server_and_two_ray_nodes(stack: dict[str, str], tmp_path: Path) -> None:
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "OMP_NUM_THREADS": "1", "EQUITRACK_CACHE": stack["env_cache"]}
    env.pop("MLFLOW_TRACKING_URI", None)
    proc = subprocess.run([sys.executable, "-m", "sweeps.run", str(QUICK), "--tracking-uri", stack["uri"],
                           "--address", stack["address"], *TINY], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=480)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]

    from mlflow.tracking import MlflowClient

    client = MlflowClient(stack["uri"])
    exp = client.get_experiment_by_name("equitrack-quick")
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if r.data.tags.get("equitrack.kind") == "sweep"]
    children = [r for r in runs if r.data.tags.get("equitrack.kind") == "trial"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert len(children) == 2 and all(r.info.status == "FINISHED" for r in children)
    for run in children:
        assert run.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
        assert "auc" in run.data.metrics and run.data.tags["ray_node_id"]
        assert {"model.pt", "metrics.json", "history.csv"} <= {a.path for a in client.list_artifacts(run.info.run_id)}
    # the artifacts went through the server's proxy into its destination folder
    assert list((Path(stack["root"]) / "artifacts").rglob("model.pt"))
    # both Ray nodes took a trial (each has one CPU and the grid allows two at once)
    assert len({r.data.tags["ray_node_id"] for r in children}) == 2
