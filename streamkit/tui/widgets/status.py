"""Top of the main region: the stream's header stats, and a notice for errors."""

from __future__ import annotations

import time

from rich.text import Text
from textual.widgets import Static

from streamkit.tui.flight_data import DatasetEntry
from streamkit.tui.series import StreamSnapshot
from streamkit.tui.widgets._format import count, duration, size

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


class StreamStatus(Static):
    """Dataset, state, and rows · batches · MB · MB/s · elapsed of the current stream."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.state = IDLE
        self.entry: DatasetEntry | None = None
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

    def preview(self, entry: DatasetEntry | None) -> None:
        """Show a dataset's details until the first stream (then this shows what the charts do)."""
        if self.state != IDLE:
            return
        self.entry, self.snapshot, self.state = entry, None, IDLE
        self._show()

    def start(self, entry: DatasetEntry) -> None:
        self.entry, self.snapshot, self.state = entry, None, OPENING
        self._started = time.monotonic()
        self._show()

    def update_stats(self, snapshot: StreamSnapshot) -> None:
        self.snapshot = snapshot
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
            self.update(Text("Pick a dataset on the left and press enter to stream it.", "dim"))
            return
        entry = self.entry
        title = Text.assemble((entry.tenant + "/", "dim"), (entry.dataset, "bold"))
        if self.state == IDLE:
            columns = len(entry.schema)
            details = (
                f"{count(entry.rows)} rows · {size(entry.bytes)} · {columns} columns\n"
                "press enter to stream it"
            )
            self.update(Text.assemble(title, "\n", (details, "dim")))
            return
        label, style = STATE_STYLE[self.state]
        snapshot = self.snapshot
        rows = snapshot.rows if snapshot else 0
        nbytes = snapshot.bytes if snapshot else 0
        elapsed = self.elapsed
        rate = nbytes / 1e6 / elapsed if elapsed > 0 else 0.0
        of_total = f" of {count(entry.rows)}" if entry.rows >= 0 else ""
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
        self.display = True

    def clear(self) -> None:
        self.message = ""
        self.update("")
        self.set_class(False, "-error")
        self.display = False
