"""The one-trial command every task offers (``python -m tracker.train``, ``python -m jets.train``): the same flags,
messages and exit status for every task.

``TRIAL.yaml --out DIR [--no-resume] [--quiet]``: the trial file is validated and its model built once on paper
(a bad file or model fails before any data is built), then the trial runs with a console reporter and writes
``DIR/metrics.json`` and its artifacts. Exit status 0 when it finished, 2 for an invalid trial file or model, 1
when the trial fails (a non-finite loss, a checkpoint of another configuration).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from equitrack.trial import CheckpointMismatchError, NonFiniteLossError


@dataclass(frozen=True)
class TrialCommand:
    """What a task plugs into :func:`trial_main` (made after the flags are parsed, so ``--help`` stays light).

    ``load_trial(path)``: the validated trial config; ``check_model(config)``: raise when its model cannot be
    built; ``run_trial(config, reporter, *, workdir, resume)``: the task's trial, returning an object with
    ``artifacts_dir``; ``reporter(quiet)``: the console reporter; ``config_errors``: the exceptions that mean an
    invalid trial file or model (exit status 2)."""

    load_trial: Callable[[Path], Any]
    check_model: Callable[[Any], None]
    run_trial: Callable[..., Any]
    reporter: Callable[[bool], Any]
    config_errors: tuple[type[Exception], ...]


def trial_main(argv: list[str] | None, *, prog: str, what: str, command: Callable[[], TrialCommand]) -> int:
    """Parse ``argv``, run one trial of the task ``command()`` describes and return the exit status.

    ``prog``: the command line shown in ``--help``; ``what``: what the task calls a trial (``"trial"``, ``"jets
    trial"``)."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description=f"Run one {what} without MLflow: progress, a table of the final metrics, DIR/metrics.json.",
    )
    parser.add_argument("trial", type=Path, help="trial YAML file (sections data, model, train, eval)")
    parser.add_argument("--out", type=Path, required=True, help="output folder for metrics.json and artifacts")
    parser.add_argument("--no-resume", action="store_true", help="ignore a checkpoint left in --out")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)

    cmd = command()
    try:
        config = cmd.load_trial(args.trial)
        cmd.check_model(config)  # fail fast, before any data is built
        result = cmd.run_trial(config, cmd.reporter(args.quiet), workdir=args.out, resume=not args.no_resume)
    except cmd.config_errors as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except (NonFiniteLossError, CheckpointMismatchError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"metrics written to {result.artifacts_dir / 'metrics.json'}")
    return 0


__all__ = ["TrialCommand", "trial_main"]
