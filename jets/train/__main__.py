"""``python -m jets.train TRIAL.yaml --out DIR``: run one jets trial without MLflow.

Shows progress, prints the final metrics as a table and writes ``DIR/metrics.json`` with the artifacts
(config.yaml, history.csv, roc.csv, boost.csv, model.pt) and the checkpoint beside it. Exit status 2 for an
invalid trial file, 1 when the trial fails.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from jets.config import ConfigError, load_trial


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m jets.train",
        description="Run one jets trial without MLflow: progress, a table of the final metrics, DIR/metrics.json.",
    )
    parser.add_argument("trial", type=Path, help="trial YAML file (sections data, model, train, eval)")
    parser.add_argument("--out", type=Path, required=True, help="output folder for metrics.json and artifacts")
    parser.add_argument("--no-resume", action="store_true", help="ignore a checkpoint left in --out")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)

    from jets.models import ModelConfigError, resolve_hparams

    try:
        config = load_trial(args.trial)
        resolve_hparams(config.model.name, **config.model.hparams())  # fail fast, before any data is built
    except (ConfigError, ModelConfigError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

    from jets.train.trial import CheckpointMismatchError, NonFiniteLossError, run_trial
    from tracker.train.console import ConsoleReporter

    reporter = ConsoleReporter(disable_progress=args.quiet)
    try:
        result = run_trial(config, reporter, workdir=args.out, resume=not args.no_resume)
    except (ConfigError, ModelConfigError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except (NonFiniteLossError, CheckpointMismatchError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"metrics written to {result.artifacts_dir / 'metrics.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
