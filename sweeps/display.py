"""Terminal output of a sweep with rich: the dry-run table, live progress, and the final results table."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Mapping
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from sweeps.protocol import Status

#: columns every task's results table ends with (final metrics every trial reports), with their short headers
COMMON_COLUMNS = {"n_params": "n_params", "best_epoch": "best ep", "train_seconds": "train s"}
INTEGER_COLUMNS = ("n_params", "best_epoch")


def plan_table(rows: list[dict[str, Any]], *, title: str) -> Table:
    """One row per cell: config id, seed, resources, run name and what MLflow already holds."""
    table = Table(title=title, show_lines=False)
    for col in ("#", "config_id", "seed", "run name", "cpus", "gpus", "action"):
        table.add_column(col, justify="right" if col in ("#", "seed", "cpus", "gpus") else "left")
    for i, r in enumerate(rows, 1):
        table.add_row(str(i), r["config_id"], str(r["seed"]), r["run_name"], f"{r['cpus']:g}", f"{r['gpus']:g}",
                      r["action"])
    return table


def make_console() -> Console:
    """A console for the sweep's output; logs and pipes get 160 columns (rich's 80 would truncate the table)."""
    return Console(highlight=False, width=None if sys.stdout.isatty() else 160)


class Display:
    """Progress bar over cells plus one line per start/epoch/finish; quiet mode prints only the summary."""

    def __init__(self, *, total: int, console: Console | None = None, epoch_every: int = 1) -> None:
        self.console = console or make_console()
        self.total = total
        self.epoch_every = max(1, epoch_every)
        self.progress = Progress(TextColumn("[bold]sweep"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                                 TextColumn("{task.fields[status]}"), console=self.console, transient=False)
        self.task = self.progress.add_task("cells", total=total, status="")
        self.counts = {Status.FINISHED: 0, Status.PRUNED: 0, Status.FAILED: 0}
        self.t0 = time.time()

    def __enter__(self) -> Display:
        self.progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.stop()

    def note(self, text: str) -> None:
        self.progress.console.print(text)

    def cell_start(self, st: Any, attempt: int) -> None:
        extra = f" (attempt {attempt})" if attempt > 1 else ""
        self.note(f"[cyan]start[/]  {st.cell.run_name}{extra}")

    def cell_epoch(self, st: Any, epoch: int, result: dict[str, Any]) -> None:
        if epoch % self.epoch_every:
            return
        total = st.cell.trial.get("train", {}).get("epochs")
        # a task whose epochs run on past train.epochs (clustering: one count per stage) shows the epoch alone
        count = f"{epoch}/{total}" if isinstance(total, int) and epoch <= total else str(epoch)
        vals = "  ".join(f"{k}={result[k]:.4g}" for k in ("train_loss", "val_loss", "val_auc") if k in result)
        self.note(f"[dim]epoch[/]  {st.cell.run_name} {count}  {vals}")

    def cell_end(self, st: Any, status: Status, *, error: str | None = None) -> None:
        colour = {Status.FINISHED: "green", Status.PRUNED: "yellow", Status.FAILED: "red",
                  Status.KILLED: "magenta"}.get(status, "white")
        auc = (st.final or {}).get("auc")
        extra = f"  auc={auc:.4f}" if auc is not None else ""
        if error:
            extra += "  " + error.strip().splitlines()[-1][:160]
        self.note(f"[{colour}]{status}[/] {st.cell.run_name}{extra}")
        if status in self.counts:
            self.counts[status] += 1
            self.progress.advance(self.task)
            self.progress.update(self.task, status=", ".join(f"{k} {v}" for k, v in self.counts.items() if v))




class ResultsTable:
    """The final results table, laid out for the width it is printed at.

    The metric columns are the task's headline metrics (``equitrack.task.Task.headline_metrics``: name -> short
    header) and :data:`COMMON_COLUMNS`. Run names are never shortened (they end in the seed and, for a changed
    configuration, in its config id) and each row also shows the seed: on a terminal too narrow for every column,
    columns are left out (the caption says which): the common ones, then the headline metrics from the last,
    then config_id and status; a name wider than the whole terminal wraps, whole."""

    def __init__(self, states: Iterable[Any], *, title: str, headline: Mapping[str, str]) -> None:
        self.headers = {**dict(headline), **COMMON_COLUMNS}
        metrics = list(self.headers)
        self.rows: list[dict[str, str]] = []
        for st in sorted(states, key=lambda s: (s.cell.run_name, s.cell.seed)):
            final = st.final or {}
            row = {"run name": st.cell.run_name, "seed": str(st.cell.seed), "config_id": st.cell.config_id,
                   "status": str(st.status)}
            for col in metrics:
                v = final.get(col)
                row[col] = "" if v is None else (f"{v:.0f}" if col in INTEGER_COLUMNS else f"{v:.4g}")
            self.rows.append(row)
        self.title = title
        self.columns = ["run name", "seed", "config_id", "status", *metrics]
        head = list(headline)
        self.drop_order = [*reversed(COMMON_COLUMNS), *reversed(head[1:]), "config_id", "status", *head[:1]]

    def _width(self, col: str) -> int:
        """Characters the column takes: its widest cell or header, padding and one border."""
        return max([len(self.headers.get(col, col)), *(len(r[col]) for r in self.rows)]) + 3

    def shown(self, max_width: int) -> list[str]:
        """The columns that fit ``max_width`` characters."""
        shown = list(self.columns)
        for col in self.drop_order:
            if 1 + sum(self._width(c) for c in shown) <= max_width:
                break
            shown.remove(col)
        return shown

    def table(self, max_width: int) -> Table:
        """A rich Table of the columns that fit ``max_width``."""
        shown = self.shown(max_width)
        left_out = [c for c in self.columns if c not in shown]
        caption = f"left out for the terminal's width: {', '.join(left_out)}" if left_out else None
        table = Table(title=self.title, caption=caption)
        for col in shown:
            table.add_column(self.headers.get(col, col), overflow="fold", no_wrap=col != "run name",
                             justify="left" if col in ("run name", "config_id", "status") else "right",
                             min_width=min(self._width(col) - 3, max(1, max_width - 4)))
        for row in self.rows:
            table.add_row(*(row[c] for c in shown))
        return table

    def __rich_console__(self, console: Console, options: Any) -> Any:
        yield self.table(options.max_width)


def results_table(states: Iterable[Any], *, title: str, headline: Mapping[str, str]) -> ResultsTable:
    """Final table: one row per cell run in this sweep with its seed, status and the task's headline metrics
    (whole run names at any terminal width, see :class:`ResultsTable`)."""
    return ResultsTable(states, title=title, headline=headline)
