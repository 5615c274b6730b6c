"""``python -m tracker.train TRIAL.yaml --out DIR``: run one trial without MLflow.

Shows progress, prints the final metrics as a table and writes ``DIR/metrics.json`` with the artifacts
(config.yaml, history.csv, roc.csv, rotation.csv, model.pt) and the checkpoint beside it. Exit status 2 for
an invalid trial file, 1 when the trial fails. The flags and exit status are :func:`equitrack.cli.trial_main`'s.
"""

from __future__ import annotations

import sys

from equitrack.cli import TrialCommand, trial_main
from tracker.train.config import ConfigError, load_trial


def _command() -> TrialCommand:
    from tracker.models import ModelConfigError, resolve_hparams
    from tracker.train.console import ConsoleReporter
    from tracker.train.trial import run_trial

    return TrialCommand(
        load_trial=load_trial,
        check_model=lambda config: resolve_hparams(config.model.name, **config.model.hparams()),
        run_trial=run_trial,
        reporter=lambda quiet: ConsoleReporter(disable_progress=quiet),
        config_errors=(ConfigError, ModelConfigError),
    )


def main(argv: list[str] | None = None) -> int:
    return trial_main(argv, prog="python -m tracker.train", what="trial", command=_command)


if __name__ == "__main__":
    sys.exit(main())
