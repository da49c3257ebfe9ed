"""Progress on stderr for every command, only when stderr is a terminal (never in a pipe or a
log): a description, a bar when the total is known, and, for data, rows, MB and MB/s."""

from __future__ import annotations

import sys
import time
from typing import Any


class Progress:
    def __init__(self, label: str = "", total: int | None = None, *, data: bool = False):
        """``data``: count rows and bytes (``advance(rows, nbytes)``), and say what was
        moved once the block ends without an error."""
        self.label, self.total, self.data = label, total, data
        self.enabled = sys.stderr.isatty()
        self.rows = 0
        self.bytes = 0
        self.started = time.perf_counter()
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> Progress:
        if self.enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                SpinnerColumn,
                TextColumn,
                TimeElapsedColumn,
            )
            from rich.progress import Progress as Bar

            columns: list[Any] = [SpinnerColumn(), TextColumn("{task.description}"), BarColumn()]
            if self.data:
                columns += [
                    TextColumn("{task.completed:,.0f} rows  {task.fields[mb]:.1f} MB"),
                    TextColumn("{task.fields[rate]:.1f} MB/s"),
                    TimeElapsedColumn(),
                ]
            self._bar = Bar(*columns, console=Console(stderr=True), transient=True)
            self._bar.start()
            self._task = self._bar.add_task(self.label, total=self.total, mb=0.0, rate=0.0)
        return self

    def say(self, text: str, total: int | None = None) -> None:
        """A new step: its description, and its total if it has one."""
        if self._bar is not None:
            self._bar.update(self._task, description=text, total=total, completed=0)

    def advance(self, rows: int = 1, nbytes: int = 0) -> None:
        self.rows += rows
        self.bytes += nbytes
        if self._bar is not None:
            mb = self.bytes / 1e6
            rate = mb / max(time.perf_counter() - self.started, 1e-9)
            self._bar.update(self._task, completed=self.rows, mb=mb, rate=rate)

    def __exit__(self, kind: type | None, *exc: object) -> None:
        if self._bar is None:
            return
        self._bar.stop()
        if kind is None and self.data:
            elapsed = time.perf_counter() - self.started
            mb = self.bytes / 1e6
            print(
                f"{self.label}: {self.rows:,} rows, {mb:.1f} MB in {elapsed:.2f} s"
                f" ({mb / max(elapsed, 1e-9):.1f} MB/s)",
                file=sys.stderr,
            )
