"""The TUI: Textual pilot tests against in-process gateways, and its headless parts."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import json
import logging
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.flight as flight
import pyarrow.parquet as pq
import pytest
from conftest import DEMO_DATA, running_gateway, until, wait_for
from synthetic_connector import BATCH, SyntheticConnector
from textual import events
from textual.keys import _character_to_key
from typer.testing import CliRunner

from streamkit.certs import write_dev_certs
from streamkit.cli import app as cli
from streamkit.client import ClientError
from streamkit.config import GatewayConfig, TenantConfig
from streamkit.gateway import Gateway, make_gateway
from streamkit.secrets import Secret
from streamkit.simulator import BATCHES_PER_SECOND, ROWS_PER_BATCH
from streamkit.tui.app import FRAME_RATE, StreamkitApp, make_tui
from streamkit.tui.flight_data import DEFAULT_GATEWAY, DatasetEntry, resolve_gateway
from streamkit.tui.series import (
    LATEST_ROWS,
    RollingSeries,
    Series,
    StreamAccumulator,
    numeric_columns,
)
from streamkit.tui.throttle import Throttle
from streamkit.tui.widgets import _format
from streamkit.tui.widgets.catalog import DatasetTree
from streamkit.tui.widgets.charts import ChartCaption, ColumnChart
from streamkit.tui.widgets.filter import FilterPrompt
from streamkit.tui.widgets.latest_rows import LatestRows
from streamkit.tui.widgets.status import Notice, StreamStatus

SIZE = (120, 36)
SENSORS = pq.read_table(DEMO_DATA / "sensors.parquet")




def status(app: StreamkitApp) -> StreamStatus:
    return app.query_one(StreamStatus)


async def cursor_on(pilot, tree: DatasetTree, key: str) -> None:
    """Put the tree's cursor on dataset ``key``, once it is in the tree; again if the tree
    is filled anew meanwhile (a later listing replaces its nodes)."""

    def there() -> bool:
        node = tree.node_of(key)
        if node is None:
            return False
        if tree.cursor_node is not node:
            tree.move_cursor(node)
            return False
        return True

    await until(pilot, there, f"the cursor on {key}")


async def stream(pilot, app: StreamkitApp, key: str) -> None:
    """Wait for the tree, put the cursor on dataset ``key`` and press enter."""
    await cursor_on(pilot, app.query_one(DatasetTree), key)
    press_now(app, "enter")


def press_now(app: StreamkitApp, key: str) -> None:
    """Press ``key`` without ``pilot.press``'s wait for an idle process: while a stream
    runs (the gateway is in this process too) that wait lasts up to two seconds."""
    app.post_message(events.Key(key, key if len(key) == 1 else None))


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# The screen ------------------------------------------------------------------------------


def test_tree_lists_tenants_and_datasets_and_r_refreshes(tmp_path):
    pq.write_table(SENSORS.slice(0, 10), tmp_path / "first.parquet")

    async def scenario(url: str) -> None:
        app = make_tui(url)
        async with app.run_test(size=SIZE) as pilot:
            tree = app.query_one(DatasetTree)
            await until(pilot, lambda: len(tree.datasets()) >= 10, "the datasets")
            tenants = [str(node.label).split()[0] for node in tree.root.children]
            assert tenants == ["demo", "other"]
            keys = [entry.key for entry in tree.datasets()]
            for key in ("demo/sensors", "demo/sales", "demo/archive/2025/q1_sales", "other/first"):
                assert key in keys
            sensors = tree.node_of("demo/sensors")
            assert sensors is not None
            assert str(sensors.label) == "sensors  10.1k rows · 173 kB"
            assert sensors.data.rows == 10080
            namespace = tree.node_of("demo/formats/sales.arrow").parent
            assert str(namespace.label) == "formats/"
            # The cursor starts on the first dataset, so enter streams at once.
            first = await until(pilot, lambda: tree.selected_dataset(), "the cursor")
            assert first.key == "demo/archive/2025/q1_sales"

            pq.write_table(SENSORS.slice(0, 10), tmp_path / "second.parquet")
            await pilot.press("r")
            await until(pilot, lambda: tree.node_of("other/second"), "the new dataset")

    with running_gateway({"demo": DEMO_DATA, "other": tmp_path}) as gateway:
        asyncio.run(scenario(gateway.flight_url))


def test_streaming_sensors_fills_the_sparklines_with_its_values(demo_gateway):
    async def scenario() -> None:
        app = make_tui(demo_gateway.flight_url)
        async with app.run_test(size=SIZE) as pilot:
            await stream(pilot, app, "demo/sensors")
            await until(pilot, lambda: status(app).state == "done", "the stream to end")
            assert status(app).rows == 10080
            assert status(app).snapshot.batches >= 1
            assert "rows 10,080 of 10,080" in str(status(app).render())

            charts = {chart.column: chart for chart in app.query(ColumnChart)}
            assert list(charts) == ["temperature", "humidity", "pressure", "vibration"]
            captions = list(app.query(ChartCaption))
            await until(pilot, lambda: all(c.content_size.width for c in captions), "layout")
            for name, chart in charts.items():
                column = SENSORS.column(name)
                low_high = pc.min_max(column).as_py()
                summary = chart.summary
                assert summary.minimum == low_high["min"]
                assert summary.maximum == low_high["max"]
                assert summary.latest == column[-1].as_py()
                points = chart.query_one("Sparkline").data
                assert 16 <= len(points) <= 256
                assert all(low_high["min"] <= value <= low_high["max"] for value in points)
                mean = pc.mean(column).as_py()
                assert sum(points) / len(points) == pytest.approx(mean, rel=0.01)
                caption = str(chart.query_one(ChartCaption).render())
                assert caption.startswith(name)
                assert f"max {_format.number(low_high['max'])}" in caption

            table = app.query_one(LatestRows)
            assert table.row_count == LATEST_ROWS
            newest = table.get_row_at(0)
            assert newest[1] == SENSORS.column("sensor")[-1].as_py()
            assert newest[2] == _format.cell(SENSORS.column("temperature")[-1].as_py())
            assert app.query_one(Notice).display is False

    asyncio.run(scenario())


def test_dataset_without_numeric_columns_says_so(tmp_path):
    pq.write_table(pa.table({"word": ["a", "b", "c"]}), tmp_path / "words.parquet")

    async def scenario(url: str) -> None:
        app = make_tui(url)
        async with app.run_test(size=SIZE) as pilot:
            await stream(pilot, app, "t/words")
            await until(pilot, lambda: status(app).state == "done", "the stream to end")
            assert status(app).rows == 3
            assert not app.query(ColumnChart)
            assert app.query(".charts-empty")
            assert app.query_one(LatestRows).row_count == 3

    with running_gateway({"t": tmp_path}) as gateway:
        asyncio.run(scenario(gateway.flight_url))


def big_dataset(folder: Path, rows: int = 1_000_000) -> Path:
    """~24 MB of Parquet in 4096-row groups: 245 batches."""
    x = pc.cast(pa.array(range(rows)), pa.float64())
    table = pa.table(
        {"x": x, "sine": pc.sin(pc.divide(x, 5000.0)), "ramp": pc.divide(x, float(rows))}
    )
    path = folder / "big.parquet"
    pq.write_table(table, path, row_group_size=4096)
    return path


class SlowAccumulator(StreamAccumulator):
    """A consumer that takes 5 ms a batch (a slow machine): the big stream lasts over a second,
    so it is still running when the test cancels it, however fast the gateway is."""

    def add(self, batch: pa.RecordBatch, skipped: int = 0) -> bool:
        time.sleep(0.005)
        return super().add(batch, skipped)


@pytest.fixture
def slow_consumer(monkeypatch):
    monkeypatch.setattr("streamkit.tui.app.StreamAccumulator", SlowAccumulator)


def test_c_cancels_a_running_stream_upstream_too(tmp_path, caplog, slow_consumer):
    big_dataset(tmp_path)
    caplog.set_level(logging.INFO, logger="streamkit.requests")

    async def scenario(url: str) -> None:
        app = make_tui(url)
        draws: list[float] = []
        draw = app._redraw.callback

        def counting_draw() -> None:
            draws.append(time.monotonic())
            draw()

        app._redraw.callback = counting_draw
        async with app.run_test(size=SIZE) as pilot:
            await stream(pilot, app, "big/big")
            # A fifth of the stream (a quarter of a second at least) then cancel.
            await until(pilot, lambda: status(app).rows >= 200_000, "200,000 rows")
            press_now(app, "c")
            await until(pilot, lambda: status(app).state == "cancelled", "the cancel")
            assert 0 < status(app).rows < 1_000_000
            assert "cancelled" in str(status(app).render())
            rows_when_cancelled = status(app).rows
            await pilot.pause(0.2)
            assert status(app).rows == rows_when_cancelled  # nothing drawn after the end

        # Redraws are coalesced: no more than FRAME_RATE a second (plus the final one).
        assert len(draws) >= 3, "the stream was drawn live, not only at its end"
        gaps = [later - earlier for earlier, later in itertools.pairwise(draws[:-1])]
        assert all(gap >= 1 / FRAME_RATE - 0.005 for gap in gaps), min(gaps)

    with running_gateway({"big": tmp_path}) as gateway:
        asyncio.run(scenario(gateway.flight_url))
        wait_for(
            lambda: "dataset=big" in caplog.text and "outcome=cancelled" in caplog.text,
            10,
            "the gateway to log the cancelled stream",
        )


def test_streaming_another_dataset_cancels_the_running_one(tmp_path, caplog, slow_consumer):
    big_dataset(tmp_path)
    caplog.set_level(logging.INFO, logger="streamkit.requests")

    async def scenario(url: str) -> None:
        app = make_tui(url)
        async with app.run_test(size=SIZE) as pilot:
            await stream(pilot, app, "big/big")
            await until(pilot, lambda: status(app).rows > 0, "the first rows")
            await stream(pilot, app, "demo/sensors")
            await until(pilot, lambda: status(app).state == "done", "the second stream")
            assert status(app).entry.key == "demo/sensors"
            assert status(app).rows == 10080
            columns = [chart.column for chart in app.query(ColumnChart)]
            assert columns == ["temperature", "humidity", "pressure", "vibration"]

    with running_gateway({"big": tmp_path, "demo": DEMO_DATA}) as gateway:
        asyncio.run(scenario(gateway.flight_url))
        wait_for(
            lambda: "dataset=big" in caplog.text and "outcome=cancelled" in caplog.text,
            10,
            "the gateway to log the first stream as cancelled",
        )


def test_a_stalled_stream_shows_what_arrived_and_cancels_upstream():
    upstream = SyntheticConnector(batches=1000, stall_after=3)
    try:
        with running_gateway({"syn": f"grpc://127.0.0.1:{upstream.port}"}) as gateway:

            async def scenario() -> None:
                app = make_tui(gateway.flight_url)
                async with app.run_test(size=SIZE) as pilot:
                    await stream(pilot, app, "syn/synthetic")
                    # The third batch is drawn although no batch follows it for now.
                    rows = 3 * BATCH.num_rows
                    await until(pilot, lambda: status(app).rows == rows, "3 batches on screen")
                    assert status(app).state == "streaming"
                    press_now(app, "c")
                    await until(pilot, lambda: status(app).state == "cancelled", "the cancel")

            asyncio.run(scenario())
            # The gateway notices a client's cancel when it next hands a batch on, so let
            # the upstream go on: the cancelled call must stop it long before its end.
            upstream.release.set()
            wait_for(upstream.finished.is_set, 15, "the upstream stream to end")
            assert upstream.produced < 1000
    finally:
        upstream.shutdown()


def test_unreachable_gateway_shows_its_error_and_r_retries():
    port = closed_port()
    url = f"grpc://127.0.0.1:{port}"

    async def scenario() -> None:
        app = make_tui(url)
        async with app.run_test(size=SIZE) as pilot:
            notice = app.query_one(Notice)
            await until(pilot, lambda: notice.message, "the error")
            assert notice.display is True
            assert notice.message.startswith(f"cannot reach the gateway at {url}: ")
            assert "press r to retry" in str(notice.render())
            assert app.query_one(DatasetTree).datasets() == []

            await pilot.press("enter")  # nothing selected: a hint, no crash
            await pilot.press("c")  # nothing streaming: a hint, no crash

            config = GatewayConfig(
                flight_port=port,
                http_port=0,
                default_tenant="demo",
                tenants={"demo": TenantConfig("demo", path=DEMO_DATA)},
            )
            gateway = make_gateway(config)
            try:
                await pilot.press("r")
                tree = app.query_one(DatasetTree)
                await until(pilot, lambda: tree.node_of("demo/sensors"), "the datasets")
                assert notice.display is False
            finally:
                gateway.stop()

    asyncio.run(scenario())


def test_a_failing_stream_shows_the_gateways_message(tmp_path):
    path = tmp_path / "gone.parquet"
    pq.write_table(SENSORS.slice(0, 10), path)

    async def scenario(url: str) -> None:
        app = make_tui(url)
        async with app.run_test(size=SIZE) as pilot:
            tree = app.query_one(DatasetTree)
            await until(pilot, lambda: tree.node_of("t/gone"), "the dataset")
            path.unlink()
            await stream(pilot, app, "t/gone")
            await until(pilot, lambda: status(app).state == "failed", "the failure")
            notice = app.query_one(Notice)
            assert notice.display is True
            assert notice.message.startswith("not found:")
            assert "gone" in notice.message

    with running_gateway({"t": tmp_path}) as gateway:
        asyncio.run(scenario(gateway.flight_url))


def test_small_terminal_keeps_everything_on_screen(demo_gateway):
    async def scenario() -> None:
        app = make_tui(demo_gateway.flight_url)
        async with app.run_test(size=(80, 24)) as pilot:
            await stream(pilot, app, "demo/sensors")
            await until(pilot, lambda: status(app).state == "done", "the stream to end")
            captions = list(app.query(ChartCaption))
            assert len(captions) == 4
            await until(pilot, lambda: all(c.content_size.width for c in captions), "layout")
            screen = app.screen
            assert screen.has_class("-narrow") and screen.has_class("-short")
            for widget in (app.query_one(DatasetTree), status(app), app.query_one(LatestRows)):
                region = widget.region
                assert region.width > 0 and region.height > 0
                assert region.right <= 80 and region.bottom <= 24
            assert app.query_one(LatestRows).region.height >= 4
            for caption in captions:  # all four charts fit, each caption on its one line
                text = str(caption.render())
                assert text.startswith(caption.column)
                assert _format.number(caption.summary.maximum) in text
                assert len(text) <= caption.content_size.width
                assert caption.region.bottom <= 24

    asyncio.run(scenario())


def test_q_quits_while_streaming(tmp_path, slow_consumer):
    big_dataset(tmp_path)

    async def scenario(url: str) -> None:
        app = make_tui(url)
        async with app.run_test(size=SIZE) as pilot:
            await stream(pilot, app, "big/big")
            await until(pilot, lambda: status(app).rows > 0, "the first rows")
            press_now(app, "q")
            await until(pilot, lambda: not app.is_running, "the app to exit")

    with running_gateway({"big": tmp_path}) as gateway:
        asyncio.run(scenario(gateway.flight_url))


# Live: following ------------------------------------------------------------------------


@contextmanager
def simulated_gateway(root: Path, **settings) -> Iterator[Gateway]:
    """A gateway whose demo tenant (``root``) has the simulator feeding ``live/sensors``."""
    tenant = TenantConfig("demo", path=root, simulate="live/sensors")
    with running_gateway({"demo": tenant}, **settings) as gateway:
        live = gateway.upstreams.tenant("demo").embedded.live
        wait_for(lambda: live.get("live/sensors").rows, 10, "the first simulated batch")
        yield gateway


def followers(gateway: Gateway) -> set:
    return gateway.upstreams.tenant("demo").embedded.live.get("live/sensors").followers


async def follow(pilot, app: StreamkitApp, key: str) -> None:
    """Wait for the tree, put the cursor on dataset ``key`` and press f."""
    await cursor_on(pilot, app.query_one(DatasetTree), key)
    press_now(app, "f")


def chart_points(app: StreamkitApp) -> dict[str, tuple[float, ...]]:
    return {
        chart.column: tuple(chart.query_one("Sparkline").data) for chart in app.query(ColumnChart)
    }


def test_f_follows_a_live_dataset_with_rolling_sparklines_and_c_stops_it(tmp_path, monkeypatch):
    window = 40  # four simulated batches: the window is full within a second
    monkeypatch.setattr("streamkit.tui.app.ROLLING_WINDOW", window)

    async def scenario(gateway: Gateway) -> None:
        app = make_tui(gateway.flight_url)
        async with app.run_test(size=SIZE) as pilot:
            await follow(pilot, app, "demo/live/sensors")
            await until(pilot, lambda: status(app).state == "streaming", "the first batches")
            assert status(app).live
            assert "LIVE" in str(status(app).render())
            assert [chart.column for chart in app.query(ColumnChart)] == [
                "temperature",
                "humidity",
                "power_kw",
            ]
            await until(pilot, lambda: followers(gateway), "the follower at the connector")

            # The stream goes on: more rows, and the sparklines scroll over the newest values.
            await until(
                pilot, lambda: len(chart_points(app)["temperature"]) == window, "a full window"
            )
            rows, points = status(app).rows, chart_points(app)
            await until(pilot, lambda: status(app).rows >= rows + 3 * ROWS_PER_BATCH, "new rows")
            await until(pilot, lambda: chart_points(app) != points, "the charts to move")
            newer = chart_points(app)
            for name, values in newer.items():
                assert len(values) == window  # a rolling window, not the whole stream merged
                chart = next(c for c in app.query(ColumnChart) if c.column == name)
                assert values[-1] == chart.summary.latest
                assert chart.summary.minimum == min(values)
            assert app.query_one(LatestRows).row_count == LATEST_ROWS
            assert "rows/s" in str(status(app).render())
            assert app.query_one(Notice).display is False

            press_now(app, "c")
            await until(pilot, lambda: status(app).state == "cancelled", "the stop")
            assert "stopped" in str(status(app).render())
            stopped_at = status(app).rows
            await until(pilot, lambda: not followers(gateway), "the upstream follower to go")
            await pilot.pause(2 / BATCHES_PER_SECOND)
            assert status(app).rows == stopped_at

    with simulated_gateway(tmp_path) as gateway:
        asyncio.run(scenario(gateway))


def test_following_again_or_streaming_replaces_the_follower(tmp_path):
    async def scenario(gateway: Gateway) -> None:
        app = make_tui(gateway.flight_url)
        async with app.run_test(size=SIZE) as pilot:
            await follow(pilot, app, "demo/live/sensors")
            await until(pilot, lambda: status(app).state == "streaming", "the first batches")
            await until(pilot, lambda: len(followers(gateway)) == 1, "one follower")
            press_now(app, "f")  # again: the old follower goes, a new one comes
            await until(pilot, lambda: status(app).state == "streaming", "the new follow")
            await pilot.pause(0.6)
            await until(pilot, lambda: len(followers(gateway)) == 1, "still one follower")
            press_now(app, "enter")  # a plain stream of the history so far: it ends
            await until(pilot, lambda: status(app).state == "done", "the history")
            assert not status(app).live and status(app).rows > 0
            await until(pilot, lambda: not followers(gateway), "no follower")

    with simulated_gateway(tmp_path) as gateway:
        asyncio.run(scenario(gateway))


def test_following_a_file_that_cannot_grow_says_so(demo_gateway):
    async def scenario() -> None:
        app = make_tui(demo_gateway.flight_url)
        async with app.run_test(size=SIZE) as pilot:
            await follow(pilot, app, "demo/sensors")  # Parquet: never appended to
            await until(pilot, lambda: status(app).state == "failed", "the refusal")
            notice = app.query_one(Notice)
            assert notice.message.startswith("invalid:")
            assert "cannot be followed" in notice.message
            assert "enter streams it as it is" in str(notice.render())
            # No empty charts for a stream that never ran.
            await until(pilot, lambda: not app.query(ColumnChart), "the charts to go")

    asyncio.run(scenario())


class LaggingGateway(flight.FlightServerBase):
    """Stands in for a gateway: one live dataset whose follow stream skips rows, then
    fails as a lagging follower does."""

    SCHEMA = pa.schema([("x", pa.float64())])

    def __init__(self) -> None:
        super().__init__("grpc://127.0.0.1:0")
        self.tickets: list[dict] = []

    def list_flights(self, context, criteria):
        descriptor = flight.FlightDescriptor.for_path("t", "live")
        yield flight.FlightInfo(self.SCHEMA, descriptor, [], -1, -1)

    def get_flight_info(self, context, descriptor):
        endpoint = flight.FlightEndpoint(descriptor.command, [])
        return flight.FlightInfo(self.SCHEMA, descriptor, [endpoint], -1, -1)

    def do_get(self, context, ticket):
        self.tickets.append(json.loads(ticket.ticket))
        batch = pa.record_batch([pa.array([1.0, 2.0])], schema=self.SCHEMA)

        def chunks():
            yield batch
            yield batch, pa.py_buffer(b'{"skipped": 1234}')
            time.sleep(0.3)
            raise flight.FlightUnavailableError("lagging: the follower fell 256 batches behind")

        return flight.GeneratorStream(self.SCHEMA, chunks())


def test_skipped_rows_show_as_a_notice_and_lagging_as_an_error_with_retry():
    server = LaggingGateway()
    try:

        async def scenario() -> None:
            app = make_tui(f"grpc://127.0.0.1:{server.port}")
            async with app.run_test(size=SIZE) as pilot:
                await follow(pilot, app, "t/live")
                notice = app.query_one(Notice)
                await until(pilot, lambda: "1,234" in notice.message, "the skipped rows")
                assert notice.has_class("-warning") and notice.display
                assert "skipped 1,234 rows" in str(notice.render())
                assert "skipped 1,234" in str(status(app).render())
                await until(pilot, lambda: status(app).state == "failed", "the lagging error")
                assert notice.is_error
                assert notice.message.startswith("lagging:")
                assert "f follows again" in str(notice.render())
                assert status(app).rows == 4

                press_now(app, "f")  # the retry
                await until(pilot, lambda: len(server.tickets) == 2, "the second follow")

        asyncio.run(scenario())
        assert server.tickets[0] == {
            "dataset": "live",
            "tenant": "t",
            "follow": True,
            "on_lag": "skip",
        }
    finally:
        server.shutdown()


# Filters: / --------------------------------------------------------------------------


def type_now(app: StreamkitApp, text: str) -> None:
    """Type ``text`` key by key into the focused widget (``press_now``, one key a character)."""
    for char in text:
        app.post_message(events.Key(char if char.isalnum() else _character_to_key(char), char))


async def enter_filter(pilot, app: StreamkitApp, where: str) -> None:
    """Press /, replace the prompt's text with ``where`` and press enter."""
    prompt = app.query_one(FilterPrompt)
    press_now(app, "slash")
    await until(pilot, lambda: prompt.display and prompt.has_focus, "the filter prompt")
    if prompt.value:  # the dataset's current filter: clear it before typing (keys race it)
        press_now(app, "ctrl+u")
        await until(pilot, lambda: prompt.value == "", "the prompt to clear")
    type_now(app, where)
    await until(pilot, lambda: prompt.value == where, "the typed filter")
    press_now(app, "enter")
    await until(pilot, lambda: not prompt.display, "the prompt to close")


def latest_rows(table: LatestRows) -> list[list[str]]:
    return [table.get_row_at(i) for i in range(table.row_count)]


def newest_rows(table: pa.Table) -> list[list[str]]:
    """The cells the latest-rows view shows of ``table``, newest first."""
    newest = table.slice(max(0, table.num_rows - LATEST_ROWS)).to_pylist()
    return [[_format.cell(value) for value in row.values()] for row in reversed(newest)]


def test_slash_filters_the_dataset_at_its_connector_and_an_empty_filter_clears_it(demo_gateway):
    where = "temperature > 24"
    expected = SENSORS.filter(pc.greater(SENSORS.column("temperature"), 24))
    assert 0 < expected.num_rows < SENSORS.num_rows

    async def scenario() -> None:
        app = make_tui(demo_gateway.flight_url)
        async with app.run_test(size=SIZE) as pilot:
            await stream(pilot, app, "demo/sensors")
            await until(pilot, lambda: status(app).state == "done", "the stream to end")
            assert status(app).rows == SENSORS.num_rows
            tree, prompt = app.query_one(DatasetTree), app.query_one(FilterPrompt)
            assert not prompt.display

            await enter_filter(pilot, app, where)
            await until(
                pilot,
                lambda: status(app).where == where and status(app).state == "done",
                "the filtered stream to end",
            )
            assert status(app).rows == expected.num_rows
            shown = str(status(app).render())
            assert f"where {where}" in shown
            assert "of 10,080" not in shown  # the dataset's total is not the filter's
            rows = app.query_one(LatestRows)
            assert rows.border_subtitle == f"where {where}"
            assert tree.has_focus
            charts = {chart.column: chart for chart in app.query(ColumnChart)}
            assert list(charts) == ["temperature", "humidity", "pressure", "vibration"]
            for name, chart in charts.items():
                column = expected.column(name)
                low_high = pc.min_max(column).as_py()
                assert chart.summary.minimum == low_high["min"]
                assert chart.summary.maximum == low_high["max"]
                assert chart.summary.latest == column[-1].as_py()
            assert charts["temperature"].summary.minimum > 24
            assert latest_rows(rows) == newest_rows(expected)

            # The filter stays with the dataset: enter streams it filtered again.
            before = status(app).snapshot
            press_now(app, "enter")
            await until(
                pilot,
                lambda: status(app).state == "done" and status(app).snapshot is not before,
                "the second filtered stream",
            )
            assert status(app).rows == expected.num_rows and status(app).where == where

            # Escape closes the prompt (which held the filter) and changes nothing.
            before = status(app).snapshot
            press_now(app, "slash")
            await until(pilot, lambda: prompt.has_focus, "the filter prompt")
            assert prompt.value == where
            assert "demo/sensors" in str(prompt.border_title)
            press_now(app, "escape")
            await until(pilot, lambda: not prompt.display and tree.has_focus, "the prompt to go")
            assert status(app).snapshot is before and status(app).where == where

            # An empty filter clears it: the whole dataset again.
            await enter_filter(pilot, app, "")
            await until(
                pilot,
                lambda: status(app).where is None and status(app).state == "done",
                "the unfiltered stream",
            )
            assert status(app).rows == SENSORS.num_rows
            assert "where" not in str(status(app).render())
            assert "rows 10,080 of 10,080" in str(status(app).render())
            assert rows.border_subtitle == ""
            assert (
                charts_minimum(app, "temperature") == pc.min(SENSORS.column("temperature")).as_py()
            )

    asyncio.run(scenario())


def charts_minimum(app: StreamkitApp, column: str) -> float | None:
    chart = next(chart for chart in app.query(ColumnChart) if chart.column == column)
    return chart.summary.minimum if chart.summary else None


def test_a_bad_filter_is_shown_and_the_view_keeps_its_filter(demo_gateway):
    where = "humidity < 40 OR (temperature > 24 AND sensor = 'line-1')"
    expected = SENSORS.filter(
        pc.or_(
            pc.less(SENSORS.column("humidity"), 40), pc.greater(SENSORS.column("temperature"), 24)
        )
    )
    assert 0 < expected.num_rows < SENSORS.num_rows

    async def scenario() -> None:
        app = make_tui(demo_gateway.flight_url)
        async with app.run_test(size=SIZE) as pilot:
            notice = app.query_one(Notice)
            # Nothing streamed yet: a bad filter leaves the dataset's preview as it was.
            await cursor_on(pilot, app.query_one(DatasetTree), "demo/sensors")
            await enter_filter(pilot, app, "nope > 1")
            await until(pilot, lambda: notice.message, "the error")
            assert notice.message == "invalid: no column 'nope'"
            assert notice.is_error and "/ edits the filter" in str(notice.render())
            assert status(app).state == "idle" and status(app).where is None

            await enter_filter(pilot, app, where)
            await until(pilot, lambda: status(app).state == "done", "the filtered stream")
            assert status(app).rows == expected.num_rows
            assert not notice.display  # the good filter's stream cleared the error
            table = app.query_one(LatestRows)
            assert latest_rows(table) == newest_rows(expected)
            view = (status(app).snapshot, table.row_count)

            for bad, error in (
                ("nope > 1", "invalid: no column 'nope'"),
                # Typed keys stay in the prompt: no f(ollow), c(ancel), r(efresh) or q(uit).
                ("frequency > 1", "invalid: no column 'frequency'"),
                ("temperature >", "invalid: "),  # a syntax error
                ("sensor = ", "invalid: "),
            ):
                await enter_filter(pilot, app, bad)
                await until(pilot, lambda e=error: notice.message.startswith(e), f"{bad!r} refused")
                assert notice.is_error
                assert app.is_running
                # The view it would have replaced is still there, filter and all.
                assert (status(app).snapshot, table.row_count) == view
                assert status(app).where == where and status(app).state == "done"
                assert f"where {where}" in str(status(app).render())
                notice.clear()

            # The dataset keeps its last good filter.
            press_now(app, "enter")
            await until(
                pilot,
                lambda: status(app).state == "done" and status(app).snapshot is not view[0],
                "the stream again",
            )
            assert status(app).rows == expected.num_rows

    asyncio.run(scenario())


def test_a_followed_dataset_keeps_following_with_its_filter(tmp_path):
    # About half the rows of every simulated batch: a filter a live stream keeps meeting.
    where = "CAST(power_kw * 1000000 AS BIGINT) % 2 = 0"

    def matches(value: float) -> bool:
        return int(value * 1_000_000) % 2 == 0

    async def scenario(gateway: Gateway) -> None:
        live = gateway.upstreams.tenant("demo").embedded.live.get("live/sensors")
        app = make_tui(gateway.flight_url)
        async with app.run_test(size=SIZE) as pilot:
            notice = app.query_one(Notice)
            await follow(pilot, app, "demo/live/sensors")
            await until(pilot, lambda: status(app).state == "streaming", "the first batches")

            await enter_filter(pilot, app, where)
            await until(
                pilot,
                lambda: status(app).where == where and status(app).state == "streaming",
                "the filtered follow",
            )
            assert status(app).live and "LIVE" in str(status(app).render())
            assert f"where {where}" in str(status(app).render())
            rows = status(app).rows
            await until(
                pilot, lambda: status(app).rows >= rows + ROWS_PER_BATCH, "new matching rows"
            )
            points = chart_points(app)["power_kw"]
            assert points and all(matches(value) for value in points)
            assert status(app).rows < live.rows  # only the matching ones came
            await until(pilot, lambda: len(followers(gateway)) == 1, "one follower")

            # A bad filter: shown, and the filtered follow goes on.
            await enter_filter(pilot, app, "nope > 1")
            await until(pilot, lambda: notice.message, "the error")
            assert notice.message == "invalid: no column 'nope'"
            rows = status(app).rows
            await until(pilot, lambda: status(app).rows > rows, "the follow to go on")
            assert status(app).state == "streaming" and status(app).where == where
            assert all(matches(value) for value in chart_points(app)["power_kw"])
            assert notice.is_error  # skipped-rows warnings do not hide it

            # Cleared: every row again, still live.
            await enter_filter(pilot, app, "")
            await until(
                pilot,
                lambda: status(app).where is None and status(app).state == "streaming",
                "the unfiltered follow",
            )
            assert status(app).live and not notice.display
            await until(
                pilot,
                lambda: not all(matches(value) for value in chart_points(app).get("power_kw", [])),
                "unfiltered rows",
            )
            press_now(app, "c")
            await until(pilot, lambda: status(app).state == "cancelled", "the stop")
            await until(pilot, lambda: not followers(gateway), "every follower to go")

    with simulated_gateway(tmp_path) as gateway:
        asyncio.run(scenario(gateway))


# Tokens and TLS --------------------------------------------------------------------------


def locked_gateway(tmp_path: Path, **settings):
    locked = tmp_path / "locked"
    locked.mkdir()
    pq.write_table(SENSORS.slice(0, 100), locked / "secret.parquet")
    tenant = TenantConfig("vault", path=locked, tokens=(Secret("t0k", False),))
    return running_gateway({"demo": DEMO_DATA, "vault": tenant}, **settings)


def tenants_in(app: StreamkitApp) -> set[str]:
    return {entry.tenant for entry in app.query_one(DatasetTree).datasets()}


def test_without_a_token_only_open_tenants_show(tmp_path, monkeypatch):
    monkeypatch.delenv("STREAMKIT_TOKEN", raising=False)

    async def scenario(url: str) -> None:
        app = make_tui(url)
        async with app.run_test(size=SIZE) as pilot:
            tree = app.query_one(DatasetTree)
            await until(pilot, lambda: tree.node_of("demo/sensors"), "the open tenant")
            assert tenants_in(app) == {"demo"}
            assert "token" not in app.sub_title

    with locked_gateway(tmp_path) as gateway:
        asyncio.run(scenario(gateway.flight_url))


def test_with_the_token_the_locked_tenant_is_listed_and_streams(tmp_path, monkeypatch):
    monkeypatch.delenv("STREAMKIT_TOKEN", raising=False)

    async def scenario(url: str) -> None:
        app = make_tui(url, token="t0k")
        async with app.run_test(size=SIZE) as pilot:
            await stream(pilot, app, "vault/secret")
            await until(pilot, lambda: status(app).state == "done", "the stream")
            assert status(app).rows == 100
            assert tenants_in(app) == {"demo", "vault"}
            assert app.sub_title.endswith("· token")

    with locked_gateway(tmp_path) as gateway:
        asyncio.run(scenario(gateway.flight_url))


def test_a_wrong_token_is_shown_as_an_authentication_error(tmp_path, monkeypatch):
    monkeypatch.setenv("STREAMKIT_TOKEN", "wrong")  # the environment is used like --token

    async def scenario(url: str) -> None:
        app = make_tui(url)
        async with app.run_test(size=SIZE) as pilot:
            notice = app.query_one(Notice)
            await until(pilot, lambda: notice.message, "the error")
            assert notice.message == "authentication failed: the token is not valid"
            assert "wrong" not in notice.message  # never echo a secret
            assert "check the token" in str(notice.render())
            assert app.query_one(DatasetTree).datasets() == []

    with locked_gateway(tmp_path) as gateway:
        asyncio.run(scenario(gateway.flight_url))


def test_a_locked_tenant_without_a_token_fails_clearly(tmp_path, monkeypatch):
    monkeypatch.delenv("STREAMKIT_TOKEN", raising=False)

    async def scenario(url: str) -> None:
        app = make_tui(url)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.query_one(DatasetTree).node_of("demo/sensors"), "tree")
            # A dataset of the locked tenant, as if it had been listed (e.g. before a restart).
            entry = DatasetEntry("vault", "secret", 100, -1, SENSORS.schema)
            app.start_stream(entry, follow=True)
            await until(pilot, lambda: status(app).state == "failed", "the refusal")
            notice = app.query_one(Notice)
            assert notice.message.startswith("authentication failed:")
            assert "--token" in str(notice.render())

    with locked_gateway(tmp_path) as gateway:
        asyncio.run(scenario(gateway.flight_url))


def test_tls_gateway_verified_with_tls_ca(tmp_path):
    certs = tmp_path / "certs"
    write_dev_certs(certs)
    tls = {"tls_cert": certs / "server.pem", "tls_key": certs / "server.key"}

    async def scenario(url: str) -> None:
        app = make_tui(url, tls_ca=certs / "ca.pem")
        async with app.run_test(size=SIZE) as pilot:
            await stream(pilot, app, "demo/sales")
            await until(pilot, lambda: status(app).state == "done", "the stream")
            assert status(app).rows > 0

    with running_gateway({"demo": DEMO_DATA}, **tls) as gateway:
        assert gateway.flight_url.startswith("grpc+tls://")
        asyncio.run(scenario(gateway.flight_url))


def test_tui_command_refuses_a_missing_ca_and_a_bad_url(tmp_path):
    result = CliRunner().invoke(cli, ["tui", "--tls-ca", str(tmp_path / "nope.pem")])
    assert result.exit_code == 1
    assert "cannot read --tls-ca" in result.output
    result = CliRunner().invoke(cli, ["tui", "--gateway", "http://x"])
    assert result.exit_code == 2
    assert "is not grpc://HOST:PORT" in result.output
    with pytest.raises(ClientError):
        make_tui("grpc://host:99999")


# Headless parts --------------------------------------------------------------------------


def test_series_stays_bounded_and_keeps_bucket_means():
    series = Series(capacity=16)
    values = [float(i % 97) for i in range(100_000)]
    for start in range(0, len(values), 999):
        series.add(pa.array(values[start : start + 999]))
        assert len(series.points) <= 16
    stride = series.stride
    expected = [sum(values[i : i + stride]) / stride for i in range(0, len(values), stride)]
    assert series.points == pytest.approx(expected[: len(series.points)])
    assert len(series.points) == len(values) // stride
    assert (series.latest, series.minimum, series.maximum) == (values[-1], 0.0, 96.0)
    assert series.count == len(values)


def test_rolling_series_keeps_the_newest_values():
    series = RollingSeries(window=25)
    for start in range(0, 100, 10):
        series.add(pa.array([float(i) for i in range(start, start + 10)]))
        assert series.values() == tuple(float(i) for i in range(max(0, start - 15), start + 10))
    assert (series.latest, series.minimum, series.maximum, series.count) == (99.0, 75.0, 99.0, 100)
    series.add(pa.array([float(i) for i in range(1000)]))  # one batch wider than the window
    assert series.values() == tuple(float(i) for i in range(975, 1000))
    series.add(pa.array([None, float("nan")], pa.float64()))
    assert series.latest == 999.0 and len(series.values()) == 25


def test_accumulator_counts_skipped_rows():
    accumulator = StreamAccumulator(pa.schema([("x", pa.int64())]), rolling=5)
    batch = pa.record_batch([pa.array(range(8))], names=["x"])
    accumulator.add(batch)
    accumulator.add(batch, skipped=100)
    snapshot = accumulator.snapshot()
    assert (snapshot.rows, snapshot.skipped) == (16, 100)
    assert snapshot.charts[0].points == (3.0, 4.0, 5.0, 6.0, 7.0)
    assert (snapshot.charts[0].minimum, snapshot.charts[0].maximum) == (3.0, 7.0)


def test_series_skips_nulls_nan_and_infinities():
    series = Series()
    series.add(pa.array([1.0, None, float("nan"), float("inf"), 3.0]))
    assert series.values() == (1.0, 3.0)
    assert (series.minimum, series.maximum, series.latest) == (1.0, 3.0, 3.0)
    series.add(pa.array([None], pa.float64()))
    assert series.latest == 3.0


def test_accumulator_charts_numeric_columns_and_keeps_the_latest_rows():
    schema = pa.schema(
        [("name", pa.string()), ("n", pa.int64()), ("flag", pa.bool_()), ("x", pa.float32())]
        + [(f"c{i}", pa.float64()) for i in range(8)]
    )
    assert [schema.field(i).name for i in numeric_columns(schema)] == [
        "n",
        "x",
        "c0",
        "c1",
        "c2",
        "c3",
    ]
    accumulator = StreamAccumulator(schema)
    rows = LATEST_ROWS + 10
    batch = pa.record_batch(
        [pa.array([str(i) for i in range(rows)]), pa.array(range(rows))]
        + [pa.array([True] * rows), pa.array([0.5] * rows, pa.float32())]
        + [pa.array([float(i)] * rows) for i in range(8)],
        schema=schema,
    )
    assert accumulator.add(batch) is True
    assert accumulator.add(batch.slice(0, 5)) is False  # already told, not yet drawn
    snapshot = accumulator.snapshot()
    assert (snapshot.rows, snapshot.batches) == (rows + 5, 2)
    assert [chart.name for chart in snapshot.charts] == ["n", "x", "c0", "c1", "c2", "c3"]
    assert snapshot.latest_rows[-1][:2] == ("4", 4)
    assert snapshot.latest_rows[-6][:2] == (str(rows - 1), rows - 1)
    assert len(snapshot.latest_rows) == LATEST_ROWS
    assert accumulator.add(batch) is True  # drawn since: tell again


def test_formatting():
    assert _format.size(-1) == "?"
    assert _format.size(999) == "999 B"
    assert _format.size(172_590) == "173 kB"
    assert _format.size(20_538) == "20.5 kB"
    assert _format.size(999_999) == "1.0 MB"
    assert _format.short_count(2000) == "2,000"
    assert _format.short_count(10_080) == "10.1k"
    assert _format.number(1011.694) == "1,011.69"
    assert _format.number(3.0) == "3.00"
    assert _format.number(3.0, integer=True) == "3"
    assert _format.number(0.001) == "0.001"
    assert _format.number(2.5e7) == "2.5e+07"
    assert _format.number(None) == "-"
    assert _format.cell("x" * 40).endswith("…")
    day = dt.datetime(2025, 3, 1, 12, 0, 0, tzinfo=dt.UTC)
    assert _format.cell(day) == "2025-03-01 12:00:00"
    assert _format.cell(day, today=day.date()) == "12:00:00"  # live rows: the time is enough
    assert _format.cell(day.replace(microsecond=250_000), today=day.date()) == "12:00:00.250"
    assert _format.duration(75) == "1:15"


def test_gateway_url_resolution(monkeypatch):
    monkeypatch.delenv("STREAMKIT_GATEWAY", raising=False)
    assert resolve_gateway() == DEFAULT_GATEWAY == "grpc://localhost:8815"
    monkeypatch.setenv("STREAMKIT_GATEWAY", "grpc://elsewhere:1")
    assert resolve_gateway() == "grpc://elsewhere:1"
    assert resolve_gateway("grpc://flag:2") == "grpc://flag:2"
    assert make_tui().gateway == "grpc://elsewhere:1"


def test_tui_command_is_registered():
    result = CliRunner().invoke(cli, ["tui", "--help"])
    assert result.exit_code == 0
    for option in ("--gateway", "--token", "--tls-ca"):
        assert option in result.output


def test_throttle_coalesces_requests_and_never_drops_the_last_one():
    calls: list[int] = []
    timers: list[FakeTimer] = []

    def set_timer(delay: float, callback: Callable[[], None]) -> FakeTimer:
        timers.append(FakeTimer(delay, callback))
        return timers[-1]

    throttle = Throttle(10, lambda: calls.append(len(calls)), set_timer)
    throttle.request()
    assert calls == [0] and not timers  # the first request runs at once
    throttle.request()
    throttle.request()
    assert calls == [0] and len(timers) == 1  # the next ones wait for one timer
    assert 0 < timers[0].delay <= 0.1
    timers[0].callback()
    assert calls == [0, 1]
    throttle.request()
    assert len(timers) == 2
    throttle.flush()  # the end of a stream: draw now, drop the pending timer
    assert timers[1].stopped and calls == [0, 1, 2]


class FakeTimer:
    def __init__(self, delay: float, callback: Callable[[], None]) -> None:
        self.delay, self.callback, self.stopped = delay, callback, False

    def stop(self) -> None:
        self.stopped = True
