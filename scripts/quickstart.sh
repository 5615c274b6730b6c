#!/usr/bin/env bash
# The README's main job on a fresh machine: set up a virtual environment, run the quick sweep
# (EuclidNet vs the Interaction Network on simulated TrackML events, local Ray, SQLite MLflow),
# then write its plots and tables to results/quick/.
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m venv .venv
# torch==2.13.0 in the same command keeps pip on the CPU build where a local wheel exists
# (a GPU machine may drop the pin to keep its CUDA torch: pyproject asks for torch>=2.3).
.venv/bin/pip install -q torch==2.13.0 -e ".[dev]"

export RAY_AUTH_MODE="${RAY_AUTH_MODE:-disabled}"  # a local, loopback-only Ray (see docs/cluster.md)
.venv/bin/python -m sweeps.run sweeps/grids/quick.yaml
.venv/bin/python -m dashboards.report --experiment equitrack-quick --sweep quick --out results/quick
echo "plots and tables: results/quick/report.md; browse the runs: .venv/bin/mlflow ui --backend-store-uri sqlite:///mlflow.db"
