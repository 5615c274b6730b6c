"""Helpers of the dashboard tests: the command-line arguments of every ``python -m dashboards.X`` main, a RunSet
built from plain rows, and the figures a dashboard module saves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from dashboards.data import RunSet, add_derived


def dashboard_args(backend: dict[str, Any], experiment: str, out: Path, *extra: str) -> list[str]:
    return ["--experiment", experiment, "--out", str(out), "--tracking-uri", backend["uri"],
            "--cache-dir", str(backend["root"] / "cache"), *extra]


def runset(rows: list[dict]) -> RunSet:
    """A RunSet of finished trial runs with the given params and metrics (no MLflow needed for the aggregation)."""
    runs = add_derived(pd.DataFrame([{"status": "FINISHED", "tags.status": "finished", **r} for r in rows]))
    return RunSet(experiment_name="x", experiment_id="1", tracking_uri="sqlite://", sweep_ids=["s"], runs=runs,
                  parents=pd.DataFrame())


def figures_of(monkeypatch, module) -> list:
    """The figures ``module`` saves, kept open for inspection."""
    drawn: list = []
    save = module.figures.save
    monkeypatch.setattr(module.figures, "save", lambda fig, out, name, **kw: drawn.append(fig) or save(fig, out, name))
    return drawn
