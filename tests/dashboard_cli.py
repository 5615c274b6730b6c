"""The command-line arguments the dashboard tests pass to every ``python -m dashboards.X`` main: an experiment of a
test's MLflow backend, an output folder and the backend's cache folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def dashboard_args(backend: dict[str, Any], experiment: str, out: Path, *extra: str) -> list[str]:
    return ["--experiment", experiment, "--out", str(out), "--tracking-uri", backend["uri"],
            "--cache-dir", str(backend["root"] / "cache"), *extra]
