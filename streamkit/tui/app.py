"""The streamkit TUI: browse the gateway's datasets and watch one stream in, live.

Blocking Flight calls run in thread workers that post messages (``messages.py``); the
stream's batches are summarised in the worker by a ``StreamAccumulator`` and drawn here at
most ``FRAME_RATE`` times a second, however fast they arrive. ``f`` follows a dataset live:
the same stream, but it never ends by itself and its sparklines scroll over a rolling window.
``/`` filters the selected dataset with a SQL expression run at its connector (``where``):
the filtered stream replaces the view only once it has opened, so a bad filter is reported
while the view it would have replaced keeps running.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widget import Widget
from textual.widgets import Footer, Header, Tree

from streamkit import errors
from streamkit.client import ClientError
from streamkit.tui.flight_data import (
    Connection,
    DatasetEntry,
    DatasetStream,
    Failure,
    describe_error,
    list_datasets,
    resolve_gateway,
)
from streamkit.tui.messages import (
    BatchesReceived,
    DatasetsListed,
    ListingFailed,
    StreamEnded,
    StreamFailed,
    StreamStarted,
)
from streamkit.tui.series import ROLLING_WINDOW, StreamAccumulator, StreamSnapshot
from streamkit.tui.throttle import Throttle
from streamkit.tui.widgets.catalog import DatasetTree
from streamkit.tui.widgets.charts import ColumnCharts
from streamkit.tui.widgets.filter import FilterPrompt
from streamkit.tui.widgets.latest_rows import LatestRows
from streamkit.tui.widgets.status import (
    CANCELLED,
    DONE,
    FAILED,
    IDLE,
    RUNNING,
    Notice,
    StreamStatus,
)

W = TypeVar("W", bound=Widget)

FRAME_RATE = 30
"""At most this many redraws of a stream's stats and sparklines a second."""
ROWS_RATE = 4
"""At most this many redraws of the latest rows a second: a table costs more to draw than
sparklines, and nobody reads rows that change faster."""
TOKEN_HINT = "start streamkit tui with --token TOKEN (or $STREAMKIT_TOKEN)"


@dataclass(frozen=True)
class PendingFilter:
    """A filtered stream being opened; it replaces the view once it has opened."""

    stream_id: int
    stream: DatasetStream
    entry: DatasetEntry


class StreamkitApp(App[None]):
    CSS_PATH = "streamkit.tcss"
    TITLE = "streamkit"
    BINDINGS = [  # noqa: RUF012 (Textual's own convention)
        Binding("enter", "stream", "Stream"),
        Binding("f", "follow", "Follow live"),
        Binding("slash", "filter", "Filter", key_display="/"),
        Binding("c", "cancel", "Cancel"),
        Binding("r", "refresh", "Refresh"),
        Binding("q", "quit", "Quit"),
    ]
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (110, "-wide")]  # noqa: RUF012
    VERTICAL_BREAKPOINTS = [(0, "-short"), (34, "-tall")]  # noqa: RUF012

    def __init__(self, gateway: str | Connection) -> None:
        super().__init__()
        self.connection = gateway if isinstance(gateway, Connection) else Connection(gateway)
        self.gateway = self.connection.url
        self._stream: DatasetStream | None = None
        self._skipped_shown = 0
        self._stream_id = 0  # the stream on screen
        self._streams_started = 0
        self._pending: PendingFilter | None = None
        self._dataset_filters: dict[str, str] = {}  # dataset key -> its SQL filter
        self._filter_entry: DatasetEntry | None = None  # the dataset the prompt is for
        self._accumulator: StreamAccumulator | None = None
        self._snapshot: StreamSnapshot | None = None
        self._redraw = Throttle(FRAME_RATE, self._draw, self.set_timer)
        self._redraw_rows = Throttle(ROWS_RATE, self._draw_rows, self.set_timer)

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="body"):
            yield DatasetTree(id="catalog")
            with Vertical(id="main"):
                yield FilterPrompt(id="filter")
                yield Notice(id="notice")
                yield StreamStatus(id="status")
                yield ColumnCharts(id="charts")
                yield LatestRows(id="rows")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = self.gateway + ("  · token" if self._has_token() else "")
        self._widget(Notice).clear()
        self._widget(DatasetTree).focus()
        self.load_datasets()

    # Datasets ---------------------------------------------------------------------------

    @work(thread=True, exclusive=True, exit_on_error=False, group="catalog")
    def load_datasets(self) -> None:
        try:
            entries = list_datasets(self.connection)
        except Exception as exc:
            self.post_message(ListingFailed(describe_error(exc, self.gateway)))
        else:
            self.post_message(DatasetsListed(entries))

    def action_refresh(self) -> None:
        self._widget(DatasetTree).border_subtitle = "loading…"
        self.load_datasets()

    @on(DatasetsListed)
    def show_datasets(self, message: DatasetsListed) -> None:
        notice = self._widget(Notice)
        notice.clear()
        self._widget(DatasetTree).show_datasets(message.entries)
        if not message.entries:
            hint = "r refreshes" if self._has_token() else f"r refreshes; {TOKEN_HINT}"
            notice.show_error(f"the gateway at {self.gateway} has no datasets for you", hint)

    @on(ListingFailed)
    def show_listing_error(self, message: ListingFailed) -> None:
        self._widget(DatasetTree).show_unreachable()
        self._widget(Notice).show_error(message.error.message, self._hint(message.error, "r"))

    def _has_token(self) -> bool:
        return bool(self.connection.client_token())

    def _hint(self, failure: Failure, retry: str) -> str:
        again = {
            "r": "press r to retry",
            "enter": "enter retries",
            "f": "f follows again",
            "/": "/ edits the filter",
        }[retry]
        if failure.is_auth:
            return (
                f"{TOKEN_HINT}; {again}" if not self._has_token() else f"check the token; {again}"
            )
        if retry == "f" and failure.code == errors.INVALID:  # e.g. a file that never grows
            return "enter streams it as it is"
        return again

    @on(Tree.NodeHighlighted, "#catalog")
    def preview_dataset(self, event: Tree.NodeHighlighted[DatasetEntry | None]) -> None:
        if isinstance(event.node.data, DatasetEntry):
            entry = event.node.data
            self._widget(StreamStatus).preview(entry, self._dataset_filters.get(entry.key))

    @on(Tree.NodeSelected, "#catalog")
    def select_dataset(self, event: Tree.NodeSelected[DatasetEntry | None]) -> None:
        if isinstance(event.node.data, DatasetEntry):
            self.start_stream(event.node.data)

    # Streaming --------------------------------------------------------------------------

    def action_stream(self) -> None:
        entry = self._widget(DatasetTree).selected_dataset()
        if entry is None:
            self.notify("Pick a dataset first.", severity="warning")
            return
        self.start_stream(entry)

    def action_follow(self) -> None:
        entry = self._widget(DatasetTree).selected_dataset()
        if entry is None:
            self.notify("Pick a dataset first.", severity="warning")
            return
        self.start_stream(entry, follow=True)

    def start_stream(self, entry: DatasetEntry, *, follow: bool = False) -> None:
        """Stream ``entry`` (with its filter, if it has one) in place of the current stream."""
        self._stop_stream()
        self._stream_id = self._new_stream_id()
        self._stream = DatasetStream(
            self.connection,
            entry.tenant,
            entry.dataset,
            follow=follow,
            where=self._dataset_filters.get(entry.key),
        )
        self._show_start(entry, self._stream)
        self.run_stream(self._stream, self._stream_id)

    def _new_stream_id(self) -> int:
        self._streams_started += 1
        return self._streams_started

    def _show_start(self, entry: DatasetEntry, stream: DatasetStream) -> None:
        """Empty the view for ``stream`` of ``entry``, which is being opened."""
        self._accumulator = None
        self._snapshot = None
        self._skipped_shown = 0
        self._widget(Notice).clear()
        self._widget(StreamStatus).start(entry, live=stream.follow, where=stream.where)
        self._widget(ColumnCharts).remove_children()
        rows = self._widget(LatestRows)
        rows.clear(columns=True)
        rows.border_subtitle = f"where {stream.where}" if stream.where else ""

    # Filtering --------------------------------------------------------------------------

    def action_filter(self) -> None:
        entry = self._widget(DatasetTree).selected_dataset()
        if entry is None:
            self.notify("Pick a dataset first.", severity="warning")
            return
        self._filter_entry = entry
        self._widget(FilterPrompt).ask(entry.key, self._dataset_filters.get(entry.key))

    @on(FilterPrompt.Closed)
    def close_filter(self) -> None:
        self._widget(FilterPrompt).hide()
        self._widget(DatasetTree).focus()

    @on(FilterPrompt.Applied)
    def filter_entered(self, message: FilterPrompt.Applied) -> None:
        self.close_filter()
        if self._filter_entry is not None:
            self.apply_filter(self._filter_entry, message.where)

    def apply_filter(self, entry: DatasetEntry, where: str | None) -> None:
        """Reopen ``entry``'s stream filtered by ``where`` (None: unfiltered).

        A dataset on screen is reopened as it was streamed (followed or not), another one is
        streamed. The new stream replaces the view once it has opened; until then (and if it
        fails, e.g. ``invalid: no column 'x'``) the current one goes on.
        """
        status = self._widget(StreamStatus)
        shown = status.entry is not None and status.entry.key == entry.key
        follow = shown and status.live and status.state not in (IDLE, FAILED)
        self._cancel_pending()
        stream = DatasetStream(
            self.connection, entry.tenant, entry.dataset, follow=follow, where=where
        )
        self._pending = PendingFilter(self._new_stream_id(), stream, entry)
        self.run_stream(stream, self._pending.stream_id)

    def _cancel_pending(self) -> None:
        if self._pending is not None:
            self._pending.stream.cancel()
            self._pending = None

    def _take_pending(self, stream_id: int) -> PendingFilter | None:
        """The pending filtered stream if it is ``stream_id``; it is no longer pending."""
        pending = self._pending
        if pending is None or pending.stream_id != stream_id:
            return None
        self._pending = None
        return pending

    @work(thread=True, exit_on_error=False, group="stream")
    def run_stream(self, stream: DatasetStream, stream_id: int) -> None:
        try:
            rolling = ROLLING_WINDOW if stream.follow else None
            accumulator = StreamAccumulator(stream.open(), rolling=rolling)
            self.post_message(StreamStarted(stream_id, accumulator))
            for batch, skipped in stream.chunks():
                if accumulator.add(batch, skipped):
                    self.post_message(BatchesReceived(stream_id))
            self.post_message(StreamEnded(stream_id, cancelled=not stream.completed))
        except Exception as exc:
            if stream.cancelled:
                self.post_message(StreamEnded(stream_id, cancelled=True))
            else:
                self.post_message(StreamFailed(stream_id, describe_error(exc, self.gateway)))
        finally:
            stream.close()

    @on(StreamStarted)
    def stream_started(self, message: StreamStarted) -> None:
        if not self._on_screen():
            return
        pending = self._take_pending(message.stream_id)
        if pending is not None:  # the filter is good: its stream replaces the view
            self._stop_stream()
            key, where = pending.entry.key, pending.stream.where
            if where:
                self._dataset_filters[key] = where
            else:
                self._dataset_filters.pop(key, None)
            self._stream, self._stream_id = pending.stream, pending.stream_id
            self._show_start(pending.entry, pending.stream)
        if message.stream_id != self._stream_id:
            return
        self._accumulator = message.accumulator
        schema = message.accumulator.schema
        self._widget(ColumnCharts).set_columns(message.accumulator.chart_columns)
        self._widget(LatestRows).set_columns(schema.names)

    @on(BatchesReceived)
    def batches_received(self, message: BatchesReceived) -> None:
        if message.stream_id == self._stream_id:
            self._redraw.request()

    def _draw(self) -> None:
        """Show the stream as it is now: stats and sparklines (and, less often, rows)."""
        if self._accumulator is None or not self._on_screen():
            return
        self._snapshot = self._accumulator.snapshot()
        self._widget(StreamStatus).update_stats(self._snapshot)
        self._widget(ColumnCharts).show(self._snapshot.charts)
        self._redraw_rows.request()
        skipped = self._snapshot.skipped
        notice = self._widget(Notice)
        if skipped > self._skipped_shown and not notice.is_error:
            self._skipped_shown = skipped
            notice.show_warning(
                f"fell behind the live stream: the gateway skipped {skipped:,} rows"
                " to keep up with the newest"
            )

    def _widget(self, kind: type[W]) -> W:
        """A widget of the main screen, also while another screen (the palette) is on top."""
        return self.screen_stack[0].query_one(kind)

    def _on_screen(self) -> bool:
        """False while the app closes: a redraw timer may still fire after the widgets go."""
        return bool(self.screen_stack) and bool(self.screen_stack[0].query(StreamStatus))

    def _draw_rows(self) -> None:
        if self._snapshot is not None and self._on_screen():
            self._widget(LatestRows).show(self._snapshot.latest_rows)

    @on(StreamEnded)
    def stream_ended(self, message: StreamEnded) -> None:
        self._take_pending(message.stream_id)  # cancelled while it opened
        if message.stream_id != self._stream_id or not self._on_screen():
            return
        self._finish(CANCELLED if message.cancelled else DONE)

    @on(StreamFailed)
    def stream_failed(self, message: StreamFailed) -> None:
        if not self._on_screen():
            return
        if self._take_pending(message.stream_id) is not None:  # a bad filter: keep the view
            hint = self._hint(message.error, "/")
            self._widget(Notice).show_error(message.error.message, hint)
            return
        if message.stream_id != self._stream_id:
            return
        status = self._widget(StreamStatus)
        follow = status.live
        filtered = bool(status.where) and message.error.code == errors.INVALID
        self._finish(FAILED)
        if not self._widget(StreamStatus).rows:  # nothing arrived: no empty charts either
            self._widget(ColumnCharts).remove_children()
            self._widget(LatestRows).clear(columns=True)
        hint = self._hint(message.error, "/" if filtered else "f" if follow else "enter")
        self._widget(Notice).show_error(message.error.message, hint)

    def _finish(self, state: str) -> None:
        self._redraw.flush()
        self._redraw_rows.flush()
        self._stream = None
        self._widget(StreamStatus).finish(state)

    def action_cancel(self) -> None:
        filtering = self._pending is not None
        self._cancel_pending()
        if self._stream is None or self._widget(StreamStatus).state not in RUNNING:
            if not filtering:
                self.notify("Nothing is streaming.", severity="information")
            return
        self._widget(StreamStatus).cancelling()
        self._stream.cancel()

    def _stop_stream(self) -> None:
        self._cancel_pending()
        if self._stream is not None:
            self._stream.cancel()
            self._stream = None
        self._redraw.cancel()
        self._redraw_rows.cancel()

    async def action_quit(self) -> None:
        self._stop_stream()
        self.exit()

    def on_unmount(self) -> None:
        self._stop_stream()


def make_tui(
    gateway: str | None = None, *, token: str | None = None, tls_ca: Path | None = None
) -> StreamkitApp:
    """The app for ``gateway`` (``--gateway``, else ``$STREAMKIT_GATEWAY``, else the default).

    ``token`` (else ``$STREAMKIT_TOKEN``) goes with every call as ``authorization: Bearer``;
    ``tls_ca`` verifies a ``grpc+tls://`` gateway. Raises ``ClientError`` for a bad URL or an
    unreadable CA file, before any screen is drawn.
    """
    if tls_ca is not None and not Path(tls_ca).is_file():
        raise ClientError(f"cannot read --tls-ca {tls_ca}: no such file")
    return StreamkitApp(Connection(resolve_gateway(gateway), token, tls_ca))
