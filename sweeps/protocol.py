"""The typed vocabulary between a trial (on a Ray worker), the driver's callback and the sweep's plan.

A trial tells the driver what happened through Ray Tune result dicts whose ``"event"`` is an :class:`Event`; the
driver keeps each cell's :class:`Status` (mirrored in the MLflow tag ``status``); the plan decides an
:class:`Action` per cell from the runs an earlier invocation left. All three are ``str`` enums, so the values
travel through Ray and MLflow as the plain strings documented in docs/mlflow.md.
"""

from __future__ import annotations

from enum import Enum


class _Value(str, Enum):
    """A ``str`` enum that is its value everywhere: equal to, hashed, printed and formatted as the plain string
    (so results, tags and dict keys that hold plain strings match the members)."""

    __hash__ = str.__hash__
    __str__ = str.__str__
    __format__ = str.__format__


class Event(_Value):
    """The ``"event"`` of a trial's report."""

    EPOCH = "epoch"  # one cell's epoch: its per-epoch metrics (and, alone, a Ray checkpoint)
    EPOCHS = "epochs"  # a bundle's round: every member's epoch report under "members"
    FINISH = "finish"  # a cell's final metrics; its checkpoint holds the artifacts
    FAIL = "fail"  # a bundle member failed while the others go on
    KNOWN = "known"  # an Optuna suggestion that repeats a finished cell: its known final metrics
    SUMMARY = "summary"  # the mean final metrics of a Ray trial's cells (what Optuna optimises)


class Status(_Value):
    """A cell's life on the driver (and its run's ``status`` tag)."""

    SCHEDULED = "scheduled"
    RUNNING = "running"
    FINISHED = "finished"
    PRUNED = "pruned"  # stopped early by the scheduler (ASHA); its run is FINISHED without final metrics
    FAILED = "failed"
    KILLED = "killed"

    @property
    def ended(self) -> bool:
        return self not in (Status.SCHEDULED, Status.RUNNING)


class Action(_Value):
    """What an invocation does with a cell, given the run an earlier one left (``--dry-run`` prints it)."""

    NEW = "new"
    RETRY = "retry"  # its run FAILED: run it again in the same MLflow run
    RESUME = "resume"  # its run was KILLED or left RUNNING: continue from its checkpoints
    SKIP_FINISHED = "skip (finished)"
    SKIP_FAILED = "skip (failed)"  # --skip-failed
    SKIP_NOT_FAILED = "skip (not failed)"  # --rerun-failed and the cell has no failed run

    @property
    def runs(self) -> bool:
        return self in (Action.NEW, Action.RETRY, Action.RESUME)

    @classmethod
    def choose(cls, mlflow_status: str | None, *, rerun_failed: bool, skip_failed: bool) -> Action:
        """The action for a cell whose existing run has ``mlflow_status`` (None: no run)."""
        if mlflow_status is None:
            return cls.SKIP_NOT_FAILED if rerun_failed else cls.NEW
        if mlflow_status == "FINISHED":
            return cls.SKIP_FINISHED
        if mlflow_status == "FAILED":
            return cls.SKIP_FAILED if skip_failed else cls.RETRY
        return cls.RESUME
