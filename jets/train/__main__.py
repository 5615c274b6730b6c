"""``python -m jets.train TRIAL.yaml --out DIR``: run one jets trial without MLflow.

Shows progress, prints the final metrics as a table and writes ``DIR/metrics.json`` with the artifacts
(config.yaml, history.csv, roc.csv, boost.csv, model.pt) and the checkpoint beside it. Exit status 2 for an
invalid trial file, 1 when the trial fails. The flags and exit status are :func:`equitrack.cli.trial_main`'s.
"""

from __future__ import annotations

import sys

from equitrack.cli import TrialCommand, trial_main
from jets.config import ConfigError, load_trial


def _command() -> TrialCommand:
    from jets.models import ModelConfigError, resolve_hparams
    from jets.train.trial import run_trial
    from tracker.train.console import ConsoleReporter

    return TrialCommand(
        load_trial=load_trial,
        check_model=lambda config: resolve_hparams(config.model.name, **config.model.hparams()),
        run_trial=run_trial,
        reporter=lambda quiet: ConsoleReporter(disable_progress=quiet),
        config_errors=(ConfigError, ModelConfigError),
    )


def main(argv: list[str] | None = None) -> int:
    return trial_main(argv, prog="python -m jets.train", what="jets trial", command=_command)


if __name__ == "__main__":
    sys.exit(main())
