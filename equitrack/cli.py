"""The one-trial command every task offers (``python -m tracker.train``, ``python -m jets.train``): the same flags,
messages and exit status for every task.

``TRIAL.yaml --out DIR [--no-resume] [--quiet]``: the trial file is validated and its model built once on paper
(a bad file or model fails before any data is built), then the trial runs with a console reporter and writes
``DIR/metrics.json`` and its artifacts. Exit status 0 when it finished, 2 for an invalid trial file or model, 1
when the trial fails (a non-finite loss, a checkpoint of another configuration).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from equitrack.config import ConfigError
from equitrack.trial import CheckpointMismatchError, NonFiniteLossError


@dataclass(frozen=True)
class TrialCommand:
    """A task's one-trial command. The task's parts are named, not imported (they are imported once the flags are
    parsed, so ``--help`` stays light, and this module imports no task):

    ``prog``: the command line ``--help`` shows; ``what``: what the task calls a trial (``"jets trial"``);
    ``config``: the module with ``load_trial(path)``; ``models``: the module with ``resolve_hparams(name, **hp)``
    and ``ModelConfigError``; ``trial``: the module with ``run_trial(config, reporter, *, workdir, resume)``;
    ``reporter``: ``"module:Class"`` of the console reporter (``Class(disable_progress=...)``)."""

    prog: str
    what: str
    config: str
    models: str
    trial: str
    reporter: str


def _reporter(spec: str, *, quiet: bool) -> Any:
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)(disable_progress=quiet)


def trial_main(argv: list[str] | None, command: TrialCommand) -> int:
    """Parse ``argv``, run one trial of the task ``command`` names and return the exit status."""
    parser = argparse.ArgumentParser(
        prog=command.prog,
        description=f"Run one {command.what} without MLflow: progress, a table of the final metrics, "
                    "DIR/metrics.json.",
    )
    parser.add_argument("trial", type=Path, help="trial YAML file (sections data, model, train, eval)")
    parser.add_argument("--out", type=Path, required=True, help="output folder for metrics.json and artifacts")
    parser.add_argument("--no-resume", action="store_true", help="ignore a checkpoint left in --out")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)

    models = importlib.import_module(command.models)
    try:
        config = importlib.import_module(command.config).load_trial(args.trial)
        models.resolve_hparams(config.model.name, **config.model.hparams())  # fail fast, before any data is built
        run_trial = importlib.import_module(command.trial).run_trial
        result = run_trial(config, _reporter(command.reporter, quiet=args.quiet), workdir=args.out,
                           resume=not args.no_resume)
    except (ConfigError, models.ModelConfigError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except (NonFiniteLossError, CheckpointMismatchError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"metrics written to {result.artifacts_dir / 'metrics.json'}")
    return 0


__all__ = ["TrialCommand", "trial_main"]
