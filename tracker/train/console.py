"""A :class:`~equitrack.reporter.Reporter` for the terminal: a tqdm bar over epochs and a rich table of the
final metrics (used by ``python -m tracker.train``)."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from tqdm.auto import tqdm


def metrics_table(metrics: Mapping[str, float], *, title: str = "final metrics") -> Table:
    """Two columns, metric and value (integers shown without decimals, the rest with 6 significant digits)."""
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in metrics.items():
        text = f"{int(v)}" if float(v).is_integer() and abs(v) < 1e15 else f"{v:.6g}"
        table.add_row(k, text)
    return table


class ConsoleReporter:
    """Progress on stderr (epoch bar with the latest losses), final metrics as a table on stdout."""

    def __init__(self, *, console: Console | None = None, disable_progress: bool = False) -> None:
        self.console = console or Console()
        self.disable_progress = disable_progress
        self._bar: tqdm | None = None
        self.artifacts: list[Path] = []

    def start(self, *, config: Mapping[str, Any], n_params: int) -> None:
        model = config.get("model", {})
        epochs = int(config.get("train", {}).get("epochs", 0)) or None
        self.console.print(f"[bold]{model.get('name', '?')}[/bold]: {n_params} parameters")
        self._bar = tqdm(
            total=epochs, desc="epochs", unit="epoch", file=sys.stderr, disable=self.disable_progress
        )

    def epoch(self, *, epoch: int, metrics: Mapping[str, float], checkpoint_dir: Path | None) -> None:
        if self._bar is None:
            return
        self._bar.n = epoch
        self._bar.set_postfix(
            {k: f"{metrics[k]:.4g}" for k in ("train_loss", "val_loss", "val_auc") if k in metrics},
            refresh=True,
        )
        if self._bar.total is not None and epoch >= self._bar.total:
            self._close()

    def _close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
            self.console.print("evaluating on the test split ...")

    def artifact(self, path: Path) -> None:
        self.artifacts.append(Path(path))

    def finish(self, *, metrics: Mapping[str, float]) -> None:
        self._close()
        self.console.print(metrics_table(metrics))

    def fail(self, *, error: BaseException) -> None:
        """A bundle member failed: close the bar and print the error (a trial run alone raises it instead)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        self.console.print(f"[red]failed[/red]: {type(error).__name__}: {error}")
