"""Terminal output of a sweep with rich: the dry-run table, live progress, and the final results table."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

RESULT_COLUMNS = ("auc", "edge_efficiency", "edge_purity", "n_params", "best_epoch", "train_seconds")


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
        self.counts = {"finished": 0, "pruned": 0, "failed": 0}
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
        total = st.cell.trial["train"]["epochs"]
        vals = "  ".join(f"{k}={result[k]:.4g}" for k in ("train_loss", "val_loss", "val_auc") if k in result)
        self.note(f"[dim]epoch[/]  {st.cell.run_name} {epoch}/{total}  {vals}")

    def cell_end(self, st: Any, status: str, *, error: str | None = None) -> None:
        colour = {"finished": "green", "pruned": "yellow", "failed": "red", "killed": "magenta"}.get(status, "white")
        auc = (st.final or {}).get("auc")
        extra = f"  auc={auc:.4f}" if auc is not None else ""
        if error:
            extra += "  " + error.strip().splitlines()[-1][:160]
        self.note(f"[{colour}]{status}[/] {st.cell.run_name}{extra}")
        if status in self.counts:
            self.counts[status] += 1
            self.progress.advance(self.task)
            self.progress.update(self.task, status=", ".join(f"{k} {v}" for k, v in self.counts.items() if v))


def results_table(states: Iterable[Any], *, title: str) -> Table:
    """Final table: one row per cell run in this sweep with its status and headline metrics."""
    table = Table(title=title)
    table.add_column("run name")
    table.add_column("config_id")
    table.add_column("status")
    for col in RESULT_COLUMNS:
        table.add_column(col, justify="right")
    for st in sorted(states, key=lambda s: s.cell.run_name):
        final = st.final or {}
        cells = []
        for col in RESULT_COLUMNS:
            v = final.get(col)
            cells.append("" if v is None else (f"{v:.0f}" if col in ("n_params", "best_epoch") else f"{v:.4g}"))
        table.add_row(st.cell.run_name, st.cell.config_id, st.status, *cells)
    return table
