"""The learned-clustering tracking pipeline of seed 003 (``task: clustering``): metric learning → edge classifier
→ object condensation → DBSCAN tracks, with an optional noise classifier first (docs/clustering.md)."""
