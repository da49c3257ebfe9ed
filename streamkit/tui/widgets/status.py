"""Top of the main region: the stream's header stats, and a notice for errors."""

from __future__ import annotations

import time
from collections import deque

from rich.text import Text
from textual.widgets import Static

from streamkit.tui.flight_data import DatasetEntry
from streamkit.tui.series import StreamSnapshot
from streamkit.tui.widgets._format import cell, count, duration, size

IDLE, OPENING, STREAMING, DONE, CANCELLING, CANCELLED, FAILED = (
    "idle",
    "opening",
    "streaming",
    "done",
    "cancelling",
    "cancelled",
    "failed",
)
RUNNING = (OPENING, STREAMING, CANCELLING)

STATE_STYLE = {
    OPENING: ("◌ opening", "yellow"),
    STREAMING: ("● streaming", "bold green"),
    DONE: ("✔ done", "bold cyan"),
    CANCELLING: ("◌ cancelling", "yellow"),
    CANCELLED: ("■ cancelled", "bold yellow"),
    FAILED: ("✘ failed", "bold red"),
}
LIVE_STYLE = {
    OPENING: ("◌ following", "yellow"),
    STREAMING: (" ● LIVE ", "bold white on dark_red"),
    CANCELLED: ("■ stopped", "bold yellow"),
}
RATE_SECONDS = 3.0
"""A live stream's rows/s is measured over this many recent seconds."""


class StreamStatus(Static):
    """Dataset, state, and rows · batches · MB · MB/s · elapsed of the current stream.

    A followed stream shows ``● LIVE`` and its recent rows/s; it has no total to reach.
    A filtered stream shows its ``where`` after the dataset; only its matching rows count.
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.state = IDLE
        self.live = False
        self._samples: deque[tuple[float, int]] = deque()  # (time, rows) of recent draws
        self.entry: DatasetEntry | None = None
        self.where: str | None = None
        self.snapshot: StreamSnapshot | None = None
        self._started = 0.0
        self._elapsed = 0.0

    def on_mount(self) -> None:
        self.set_interval(0.25, self._tick)
        self._show()

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self._started if self.state in RUNNING else self._elapsed

    @property
    def rows(self) -> int:
        return self.snapshot.rows if self.snapshot else 0

    @property
    def rows_per_second(self) -> float:
        """Rows a second over the last few seconds (a live stream's pace, not its history's)."""
        if len(self._samples) < 2 or self.state not in RUNNING:
            return 0.0
        (start, first), (_, last) = self._samples[0], self._samples[-1]
        seconds = time.monotonic() - start
        return (last - first) / seconds if seconds > 0 else 0.0

    def preview(self, entry: DatasetEntry | None, where: str | None = None) -> None:
        """Show a dataset's details until the first stream (then this shows what the charts do)."""
        if self.state != IDLE:
            return
        self.entry, self.where, self.snapshot, self.state = entry, where, None, IDLE
        self._show()

    def start(self, entry: DatasetEntry, *, live: bool = False, where: str | None = None) -> None:
        self.entry, self.snapshot, self.state, self.live = entry, None, OPENING, live
        self.where = where
        self._started = time.monotonic()
        self._samples.clear()
        self._show()

    def update_stats(self, snapshot: StreamSnapshot) -> None:
        self.snapshot = snapshot
        now = time.monotonic()
        self._samples.append((now, snapshot.rows))
        while len(self._samples) > 2 and self._samples[1][0] < now - RATE_SECONDS:
            self._samples.popleft()
        if self.state == OPENING:
            self.state = STREAMING
        self._show()

    def finish(self, state: str) -> None:
        if self.state in RUNNING:
            self._elapsed = time.monotonic() - self._started
        self.state = state
        self._show()

    def cancelling(self) -> None:
        if self.state in RUNNING:
            self.state = CANCELLING
            self._show()

    def _tick(self) -> None:
        if self.state in RUNNING:
            self._show()

    def _show(self) -> None:
        if self.entry is None:
            self.update(
                Text(
                    "Pick a dataset on the left: enter streams it, f follows it live,"
                    " / filters it.",
                    "dim",
                )
            )
            return
        entry = self.entry
        title = Text.assemble((entry.tenant + "/", "dim"), (entry.dataset, "bold"))
        if self.where:
            where = cell(self.where, 60)
            title.append_text(Text.assemble(("  where ", "dim"), (where, "bold magenta")))
        if self.state == IDLE:
            columns = len(entry.schema)
            details = (
                f"{count(entry.rows)} rows · {size(entry.bytes)} · {columns} columns\n"
                "enter streams it, f follows it live, / filters it"
            )
            self.update(Text.assemble(title, "\n", (details, "dim")))
            return
        label, style = (self.live and LIVE_STYLE.get(self.state)) or STATE_STYLE[self.state]
        snapshot = self.snapshot
        rows = snapshot.rows if snapshot else 0
        nbytes = snapshot.bytes if snapshot else 0
        elapsed = self.elapsed
        rate = nbytes / 1e6 / elapsed if elapsed > 0 else 0.0
        if self.live:
            pairs = [
                ("rows", f"{rows:,}"),
                *([("rows/s", f"{self.rows_per_second:,.0f}")] if self.state in RUNNING else []),
                ("batches", f"{snapshot.batches if snapshot else 0:,}"),
                ("MB", f"{nbytes / 1e6:,.2f}"),
                ("elapsed", duration(elapsed)),
            ]
            if snapshot and snapshot.skipped:
                pairs.append(("skipped", f"{snapshot.skipped:,}"))
        else:
            of_total = f" of {count(entry.rows)}" if entry.rows >= 0 and not self.where else ""
            pairs = [
                ("rows", f"{rows:,}{of_total}"),
                ("batches", f"{snapshot.batches if snapshot else 0:,}"),
                ("MB", f"{nbytes / 1e6:,.2f}"),
                ("MB/s", f"{rate:,.1f}"),
                ("elapsed", duration(elapsed)),
            ]
        self.update(Text.assemble(title, "  ", (label, style), "\n", *self._pack(pairs)))

    def _pack(self, pairs: list[tuple[str, str]]) -> list[Text]:
        """``name value`` pairs on as few lines as the width allows, never split in two."""
        width = self.content_size.width or 1000
        lines: list[Text] = [Text()]
        for name, value in pairs:
            pair = Text.assemble((name + " ", "dim"), (value, "bold"))
            line = lines[-1]
            if line and line.cell_len + 2 + pair.cell_len > width:
                line.append("\n")
                lines.append(Text())
                line = lines[-1]
            elif line:
                line.append("  ")
            line.append_text(pair)
        return lines

    def on_resize(self) -> None:
        self._show()


class Notice(Static):
    """A one-line message about what went wrong and how to retry; hidden when all is well."""

    message = ""

    def show_error(self, message: str, hint: str = "") -> None:
        self.message = message
        text = Text.assemble(("✘ ", "bold"), message)
        if hint:
            text.append(f"  ({hint})", "italic")
        self.update(text)
        self.set_class(True, "-error")
        self.set_class(False, "-warning")
        self.display = True

    def show_warning(self, message: str) -> None:
        """Something to know that is not a failure (rows skipped by a lagging follower)."""
        self.message = message
        self.update(Text.assemble(("! ", "bold"), message))
        self.set_class(False, "-error")
        self.set_class(True, "-warning")
        self.display = True

    @property
    def is_error(self) -> bool:
        return self.has_class("-error")

    def clear(self) -> None:
        self.message = ""
        self.update("")
        self.set_class(False, "-error", "-warning")
        self.display = False
