"""Plots and tables of the study straight from MLflow (docs/dashboards.md); each module is a `python -m` command."""
