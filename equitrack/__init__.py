"""equitrack's task-free core: the contract between a science package (a *task*) and the sweeps.

``equitrack.task`` defines what a task supplies (its trial configuration, data preparation, run-name parts,
metric names, training entry point and, optionally, bundled training) and finds the installed tasks through the
``equitrack.tasks`` entry-point group. Science packages (``tracker`` for tracking, ``jets`` for jet tagging)
implement it without importing ``sweeps``; ``sweeps`` drives any task without importing a science package.
"""
