"""``streamkit top``: the gateway's tenants, live, like htop (the model is ``top.py``).

A thread worker scrapes the gateway's ``metrics`` action every ``interval`` and turns the
text into a snapshot there, so the UI thread only draws. A gateway that cannot be reached
or refuses shows a banner over the last data, and the worker keeps trying.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from threading import Event

from rich.console import JustifyMethod
from rich.text import Text
from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import DataTable, Footer, Label, Sparkline, Static
from textual.worker import get_current_worker

from streamkit import errors
from streamkit.client import ClientError, GatewayClient
from streamkit.tui.flight_data import Connection, Failure, describe_error, resolve_gateway
from streamkit.tui.top import HISTORY, UNKNOWN_TENANT, TenantView, TopModel, TopSnapshot
from streamkit.tui.widgets._format import short_count

DEFAULT_INTERVAL = 0.5
BLOCKS = "▁▂▃▄▅▆▇█"
NONE = "-"  # a rate before the second scrape
SPARK_MIN, SPARK_MAX = 6, 40
NAME_MIN, NAME_MAX = 10, 24

# The sortable columns: (key, label, what it sorts by). Numbers sort biggest first.
SORTS: tuple[tuple[str, str, Callable[[TenantView], float]], ...] = (
    ("tenant", "Tenant", lambda t: 0.0),
    ("open", "Open", lambda t: t.open_streams),
    ("mb", "MB/s", lambda t: t.mb_per_s or 0.0),
    ("rows", "Rows/s", lambda t: t.rows_per_s or 0.0),
    ("errors", "Err/s", lambda t: t.errors_per_s or 0.0),
    ("refusals", "Ref/s", lambda t: t.refusals_per_s or 0.0),
)
SORT_KEYS = [key for key, _, _ in SORTS]
COLUMNS = (*SORT_KEYS, "live")
FIXED_COLUMNS = {"open": 4, "errors": 5, "refusals": 5, "live": 7}
NUMBER = 6  # the MB/s and rows/s figures before their sparklines
PADDING = 1  # cells on each side of each column


@dataclass
class MetricsPolled(Message):
    snapshot: TopSnapshot

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, MetricsPolled)  # only the newest scrape matters


@dataclass
class PollFailed(Message):
    failure: Failure
    wall_time: float


def blocks(values: Sequence[float], width: int) -> str:
    """The newest ``width`` values as a one-line sparkline, scaled to their maximum;
    blank where there is no history yet."""
    recent = list(values)[-width:]
    top = max(recent, default=0.0)
    bars = "".join(BLOCKS[round(v / top * 7) if top > 0 else 0] for v in recent)
    return bars.rjust(width)


def megabytes(value: float | None) -> str:
    if value is None:
        return NONE
    if value == 0:
        return "0"
    if value < 10:
        return f"{value:.2f}"
    return f"{value:.1f}" if value < 100 else f"{value:,.0f}"


def per_second(value: float | None) -> str:
    """A rate of rare events: ``0``, ``0.03``, ``1.5``, ``120``."""
    if value is None:
        return NONE
    if value == 0:
        return "0"
    if value < 0.1:
        return f"{value:.2f}"
    return f"{value:.1f}" if value < 10 else short_count(round(value))


def count_rate(value: float | None) -> str:
    return NONE if value is None else short_count(round(value))


def clock(wall_time: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(wall_time))


def failure_hint(failure: Failure, has_token: bool) -> str:
    """What to do about ``failure``, if the message does not say it already."""
    if failure.is_auth:
        if has_token:
            return "check that --token is the gateway's metrics_token"
        return "run top on a host in metrics_allow, or with --token METRICS_TOKEN"
    if failure.code == errors.INVALID and "unknown action" in failure.message:
        return "this gateway is older than streamkit top: it serves no metrics"
    return ""


class TenantTable(DataTable[Text]):
    """The tenants, a row each; says when its width changes, so the sparklines fit it."""

    class Resized(Message):
        pass

    def on_resize(self) -> None:
        self.post_message(self.Resized())


class TopApp(App[None]):
    CSS_PATH = "top.tcss"
    TITLE = "streamkit top"
    BINDINGS = [  # noqa: RUF012 (Textual's own convention)
        Binding("s", "sort", "Sort"),
        Binding("n", "sort('tenant')", "Name", show=False),
        Binding("o", "sort('open')", "Open", show=False),
        Binding("m", "sort('mb')", "MB/s", show=False),
        Binding("r", "sort('rows')", "Rows/s", show=False),
        Binding("e", "sort('errors')", "Errors", show=False),
        Binding("p", "pause", "Pause"),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(self, connection: Connection, interval: float = DEFAULT_INTERVAL) -> None:
        super().__init__()
        self.connection = connection
        self.interval = interval
        self.sort_key = "tenant"
        self.descending = False
        self.paused = False
        self.snapshot: TopSnapshot | None = None  # the newest scrape
        self.shown: TopSnapshot | None = None  # the scrape on screen (older while paused)
        self.failure: Failure | None = None
        self._failed_since = 0.0
        self._order: list[str] = []  # tenants in table order
        self._widths = (0, 0)  # (name, sparkline) columns of the table
        self._columns: tuple[object, ...] = ()  # what the columns were made for
        self._stop = Event()
        self._drawable = False  # mounted and not yet closing: there are widgets to draw on

    def compose(self) -> ComposeResult:
        yield Static(id="summary")
        yield Static(id="banner")
        yield TenantTable(id="tenants", cursor_type="row", cell_padding=PADDING, zebra_stripes=True)
        with Vertical(id="detail"):
            yield Static(id="detail-info")
            with Horizontal(classes="detail-chart"):
                yield Label(id="mb-caption")
                yield Sparkline([], id="mb-chart")
            with Horizontal(classes="detail-chart"):
                yield Label(id="rows-caption")
                yield Sparkline([], id="rows-chart")
        yield Footer()

    def on_mount(self) -> None:
        self._drawable = True
        self.query_one(TenantTable).focus()
        self._draw()
        self.poll()

    # Polling (a thread) -----------------------------------------------------------------

    @work(thread=True, exclusive=True, exit_on_error=False, group="poll")
    def poll(self) -> None:
        worker = get_current_worker()
        model = TopModel()
        client: GatewayClient | None = None
        # A scrape waits at most this long, so a gateway that stopped answering shows soon.
        timeout = max(2.0, 4 * self.interval)
        try:
            while not worker.is_cancelled and not self._stop.is_set():
                started = time.monotonic()
                try:
                    client = client or self.connection.client()
                    text = client.metrics(timeout=timeout)
                    snapshot = model.update(text, time.monotonic(), time.time())
                except Exception as exc:
                    if client is not None:  # a fresh channel next time: no gRPC backoff
                        client.close()
                        client = None
                    self.post_message(PollFailed(self._failure(exc), time.time()))
                else:
                    self.post_message(MetricsPolled(snapshot))
                self._stop.wait(max(0.0, self.interval - (time.monotonic() - started)))
        finally:
            if client is not None:
                client.close()

    def _failure(self, exc: BaseException) -> Failure:
        if isinstance(exc, ValueError):  # the text did not parse as Prometheus text
            return Failure(f"the gateway's metrics do not parse: {exc}")
        return describe_error(exc, self.connection.url)

    @on(MetricsPolled)
    def metrics_polled(self, message: MetricsPolled) -> None:
        self.snapshot = message.snapshot
        self.failure = None
        if not self.paused:
            self.shown = message.snapshot
        self._draw()

    @on(PollFailed)
    def poll_failed(self, message: PollFailed) -> None:
        if self.failure is None:
            self._failed_since = message.wall_time
        self.failure = message.failure
        self._draw_summary()

    # Keys -------------------------------------------------------------------------------

    def action_sort(self, key: str | None = None) -> None:
        """Sort by ``key`` (again: the other way round); no key: the next column."""
        if key is None:
            key = SORT_KEYS[(SORT_KEYS.index(self.sort_key) + 1) % len(SORT_KEYS)]
            self.descending = key != "tenant"
        elif key == self.sort_key:
            self.descending = not self.descending
        else:
            self.descending = key != "tenant"
        self.sort_key = key
        self._draw()

    def action_pause(self) -> None:
        self.paused = not self.paused
        if not self.paused:
            self.shown = self.snapshot
        self._draw()

    async def action_quit(self) -> None:
        self._stop.set()
        self._drawable = False
        self.exit()

    def on_unmount(self) -> None:
        self._stop.set()
        self._drawable = False

    @on(TenantTable.Resized)
    def table_resized(self) -> None:
        self._draw()

    @on(DataTable.RowHighlighted)
    def row_highlighted(self) -> None:
        self._draw_detail()

    # Drawing ----------------------------------------------------------------------------

    def _draw(self) -> None:
        if not self._drawable:
            return
        self._draw_summary()
        self._draw_table()
        self._draw_detail()

    def _draw_summary(self) -> None:
        url = self.connection.url
        shown = self.shown
        head = Text.assemble(("streamkit top ", "bold"), (url, "bold cyan"))
        if shown is not None:
            stale = " (stale)" if self.failure else ""
            head.append(f"  updated {clock(shown.wall_time)}{stale}", "dim")
        if self.paused:
            head.append("  PAUSED: p resumes ", "bold black on yellow")
        totals = Text()
        if shown is not None:
            parts = (
                (f"{len(shown.tenants)}", " tenants"),
                (f"{shown.open_streams}", " open"),
                (megabytes(shown.total("mb_per_s")), " MB/s"),
                (count_rate(shown.total("rows_per_s")), " rows/s"),
                (per_second(shown.total("errors_per_s")), " err/s"),
                (per_second(shown.total("refusals_per_s")), " refused/s"),
            )
            for index, (value, unit) in enumerate(parts):
                totals.append("  " if index else "")
                totals.append(value, "bold")
                totals.append(unit, "dim")
        else:
            totals.append("no data yet" if self.failure else "connecting…", "dim")
        self.query_one("#summary", Static).update(Text("\n").join([head, totals]))
        banner = self.query_one("#banner", Static)
        banner.display = self.failure is not None
        if self.failure is not None:
            since = clock(self._failed_since)
            text = Text.assemble(("✘ ", "bold"), (self.failure.message, "bold"))
            hint = failure_hint(self.failure, bool(self.connection.client_token()))
            text.append(f"\n{hint}; " if hint else "\n")
            text.append(f"retrying every {self.interval:g} s (since {since})")
            banner.update(text)

    def _column_widths(self, table: TenantTable) -> tuple[int, int]:
        """(tenant name, sparkline) widths that fit the table's width."""
        names = self.shown.tenants if self.shown else ()
        longest = max((len(t.name) + 2 for t in names), default=NAME_MIN)
        name = max(NAME_MIN, min(NAME_MAX, longest))
        columns = 3 + len(FIXED_COLUMNS)
        used = name + sum(FIXED_COLUMNS.values()) + 2 * (NUMBER + 1) + 2 * PADDING * columns
        room = (table.size.width or self.size.width) - 1 - used  # 1: the scrollbar
        spark = max(SPARK_MIN, min(SPARK_MAX, room // 2))
        name = max(NAME_MIN, min(NAME_MAX, name + room - 2 * spark))
        return name, spark

    def _draw_table(self) -> None:
        table = self.query_one(TenantTable)
        selected = self.selected_tenant()
        self._widths = self._column_widths(table)
        if self._columns != (self._widths, self.sort_key, self.descending):
            self._columns = (self._widths, self.sort_key, self.descending)
            self._add_columns(table, *self._widths)
        tenants = self._sorted()
        order = [t.name for t in tenants]
        if order != self._order:
            table.clear()
            for tenant in tenants:
                table.add_row(*self._cells(tenant), key=tenant.name)
            self._order = order
            if selected in order:
                table.move_cursor(row=order.index(selected), animate=False)
        else:
            for tenant in tenants:
                for column, cell in zip(COLUMNS, self._cells(tenant), strict=True):
                    table.update_cell(tenant.name, column, cell)

    def _add_columns(self, table: TenantTable, name: int, spark: int) -> None:
        labels = {key: label for key, label, _ in SORTS} | {"live": "Fol/Lag"}
        widths = {"tenant": name, "mb": NUMBER + 1 + spark, "rows": NUMBER + 1 + spark}
        table.clear(columns=True)
        self._order = []
        for key in COLUMNS:
            label = labels[key]
            if key == self.sort_key:
                label += " ▼" if self.descending else " ▲"
            justify: JustifyMethod = "left" if key in ("tenant", "mb", "rows") else "right"
            table.add_column(
                Text(label, justify=justify), width=widths.get(key) or FIXED_COLUMNS[key], key=key
            )

    def _cells(self, tenant: TenantView) -> list[Text]:
        spark = self._widths[1]
        if tenant.connector_up is None:
            state = Text("  ")
        else:
            state = Text("● ", "bold green") if tenant.connector_up else Text("○ ", "bold red")
        name = Text.assemble(state, (tenant.name, "dim" if tenant.name == UNKNOWN_TENANT else ""))
        name.truncate(self._widths[0], overflow="ellipsis")
        errors_style = "bold red" if tenant.errors_per_s else ""
        refusals_style = "bold yellow" if tenant.refusals_per_s else ""
        live = f"{tenant.followers}/{tenant.lag_batches}" if tenant.followers else NONE
        return [
            name,
            Text(str(tenant.open_streams), justify="right"),
            Text.assemble(
                (megabytes(tenant.mb_per_s).rjust(NUMBER), "bold"),
                " ",
                (blocks(tenant.mb_history, spark), "cyan"),
            ),
            Text.assemble(
                (count_rate(tenant.rows_per_s).rjust(NUMBER), "bold"),
                " ",
                (blocks(tenant.rows_history, spark), "magenta"),
            ),
            Text(per_second(tenant.errors_per_s), errors_style, justify="right"),
            Text(per_second(tenant.refusals_per_s), refusals_style, justify="right"),
            Text(live, justify="right"),
        ]

    def _sorted(self) -> list[TenantView]:
        if self.shown is None:
            return []
        by_name = sorted(self.shown.tenants, key=lambda t: (t.name == UNKNOWN_TENANT, t.name))
        if self.sort_key == "tenant":
            return by_name[::-1] if self.descending else by_name
        value = next(f for key, _, f in SORTS if key == self.sort_key)
        return sorted(by_name, key=value, reverse=self.descending)  # stable: ties by name

    def selected_tenant(self) -> str | None:
        row = self.query_one(TenantTable).cursor_row
        return self._order[row] if 0 <= row < len(self._order) else None

    def _draw_detail(self) -> None:
        name = self.selected_tenant()
        tenant = (
            next((t for t in self.shown.tenants if t.name == name), None) if self.shown else None
        )
        detail = self.query_one("#detail", Vertical)
        detail.border_title = name or "no tenants yet"
        info = self.query_one("#detail-info", Static)
        if tenant is None:
            info.update(Text("waiting for the gateway's metrics…", "dim"))
            self._chart("mb", "MB/s", NONE, ())
            self._chart("rows", "rows/s", NONE, ())
            return
        info.update(detail_text(tenant))
        self._chart("mb", "MB/s", megabytes(tenant.mb_per_s), tenant.mb_history)
        self._chart("rows", "rows/s", count_rate(tenant.rows_per_s), tenant.rows_history)

    def _chart(self, key: str, unit: str, value: str, history: Sequence[float]) -> None:
        self.query_one(f"#{key}-caption", Label).update(
            Text.assemble((f"{unit} ", "dim"), (value, "bold"))
        )
        # Zeros before the first scrape: the chart's right edge is now, its width HISTORY.
        padded = [0.0] * (HISTORY - len(history)) + list(history)
        self.query_one(f"#{key}-chart", Sparkline).data = padded


def detail_text(tenant: TenantView) -> Text:
    """Two lines on the selected tenant: its connector and streams, then its requests."""
    text = Text()
    if tenant.connector_up is None:
        text.append("no connector", "dim")
    else:
        text.append(
            "connector up" if tenant.connector_up else "connector DOWN",
            "bold green" if tenant.connector_up else "bold red",
        )
        text.append(f" · {tenant.reconnects} reconnects", "dim")
    surfaces = ", ".join(f"{surface} {n}" for surface, n in tenant.open_by_surface)
    text.append(f" · {tenant.open_streams} open" + (f" ({surfaces})" if surfaces else ""))
    if tenant.followers:
        text.append(f" · {tenant.followers} following, lag {tenant.lag_batches} batches")
    text.append("\n")
    text.append(f"{per_second(tenant.requests_per_s)} req/s")
    if tenant.first_batch_seconds is not None:
        text.append(f" · first batch {tenant.first_batch_seconds * 1000:.0f} ms")
    if tenant.outcomes:
        codes = ", ".join(f"{code} {n:,}" for code, n in tenant.outcomes)
        text.append(" · not ok since start: ", "dim")
        text.append(codes, "yellow")
    return text


def make_top(
    gateway: str | None = None,
    *,
    token: str | None = None,
    tls_ca: Path | None = None,
    interval: float = DEFAULT_INTERVAL,
) -> TopApp:
    """The app for ``gateway`` (``--gateway``, else ``$STREAMKIT_GATEWAY``, else the default);
    raises ``ClientError`` for a bad URL or an unreadable CA file, before any screen."""
    if tls_ca is not None and not Path(tls_ca).is_file():
        raise ClientError(f"cannot read --tls-ca {tls_ca}: no such file")
    return TopApp(Connection(resolve_gateway(gateway), token, tls_ca), interval)
