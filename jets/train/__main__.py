"""``python -m jets.train TRIAL.yaml --out DIR``: run one jets trial without MLflow.

Shows progress, prints the final metrics as a table and writes ``DIR/metrics.json`` with the artifacts
(config.yaml, history.csv, roc.csv, boost.csv, model.pt) and the checkpoint beside it. Exit status 2 for an
invalid trial file, 1 when the trial fails. The flags and exit status are :func:`equitrack.cli.trial_main`'s.
"""

from __future__ import annotations

import sys

from equitrack.cli import TrialCommand, trial_main

COMMAND = TrialCommand(prog="python -m jets.train", what="jets trial", config="jets.config", models="jets.models",
                       trial="jets.train.trial", reporter="tracker.train.console:ConsoleReporter")


def main(argv: list[str] | None = None) -> int:
    return trial_main(argv, COMMAND)


if __name__ == "__main__":
    sys.exit(main())
