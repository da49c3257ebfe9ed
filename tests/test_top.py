"""``streamkit top``: the model against known metric text, the app with Textual's pilot
against real gateways, and the real command in a real terminal (tmux) at 80x24 and 120x36."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path

import pyarrow as pa
import pyarrow.flight as flight
import pyarrow.parquet as pq
import pytest
from conftest import DEMO_DATA, REPO, running_gateway, until, wait_for
from prometheus_client import CollectorRegistry, Counter, generate_latest
from textual import events
from typer.testing import CliRunner

from streamkit.cli import app as cli
from streamkit.client import ClientError, GatewayClient, read_chunks
from streamkit.gateway import Gateway
from streamkit.query import Query
from streamkit.secrets import Secret
from streamkit.tui.top import TopModel, parse
from streamkit.tui.top_app import TenantTable, TopApp, blocks, make_top, megabytes, per_second

SENSORS = pq.read_table(DEMO_DATA / "sensors.parquet")
TMUX = shutil.which("tmux") or "/usr/bin/tmux"


def scrape_text(*samples: str) -> str:
    return "\n".join(samples) + "\n"


def update(model: TopModel, now: float, *samples: str):
    return model.update(scrape_text(*samples), now, wall_time=1_000.0 + now)


def tenant(snapshot, name: str):
    return next(t for t in snapshot.tenants if t.name == name)


# The model --------------------------------------------------------------------------------


def test_rates_come_from_counter_deltas_between_scrapes():
    model = TopModel()
    first = update(
        model,
        0.0,
        'streamkit_bytes_total{tenant="demo",surface="flight"} 1000000',
        'streamkit_bytes_total{tenant="demo",surface="ws"} 0',
        'streamkit_rows_total{tenant="demo",surface="flight"} 500',
        'streamkit_requests_total{tenant="demo",surface="flight",outcome="ok"} 3',
    )
    demo = tenant(first, "demo")
    assert (demo.mb_per_s, demo.rows_per_s, demo.errors_per_s) == (None, None, None)
    assert demo.mb_history == ()

    second = update(
        model,
        0.5,
        'streamkit_bytes_total{tenant="demo",surface="flight"} 1500000',
        'streamkit_bytes_total{tenant="demo",surface="ws"} 500000',
        'streamkit_rows_total{tenant="demo",surface="flight"} 1500',
        'streamkit_requests_total{tenant="demo",surface="flight",outcome="ok"} 4',
    )
    demo = tenant(second, "demo")
    assert demo.mb_per_s == pytest.approx(2.0)  # 1 MB (both surfaces) in 0.5 s
    assert demo.rows_per_s == pytest.approx(2000)
    assert demo.requests_per_s == pytest.approx(2)
    assert demo.errors_per_s == 0 and demo.refusals_per_s == 0
    assert demo.mb_history == pytest.approx((2.0,))
    assert second.total("mb_per_s") == pytest.approx(2.0)
    assert second.wall_time == 1_000.5

    # Rates average the last RATE_WINDOW (2 s); the history keeps each interval.
    third = update(
        model,
        1.0,
        'streamkit_bytes_total{tenant="demo",surface="flight"} 1500000',
        'streamkit_bytes_total{tenant="demo",surface="ws"} 500000',
        'streamkit_rows_total{tenant="demo",surface="flight"} 1500',
    )
    demo = tenant(third, "demo")
    assert demo.mb_per_s == pytest.approx(1.0)
    assert demo.mb_history == pytest.approx((2.0, 0.0))


def test_a_counter_reset_counts_from_zero_and_no_rate_is_negative():
    model = TopModel(rate_window=0.1)
    update(model, 0.0, 'streamkit_rows_total{tenant="demo",surface="flight"} 90000')
    update(model, 1.0, 'streamkit_rows_total{tenant="demo",surface="flight"} 100000')
    # The gateway restarted: 400 rows since.
    after = update(model, 2.0, 'streamkit_rows_total{tenant="demo",surface="flight"} 400')
    assert tenant(after, "demo").rows_per_s == pytest.approx(400)
    assert tenant(after, "demo").rows_history == pytest.approx((10000, 400))
    steady = update(model, 3.0, 'streamkit_rows_total{tenant="demo",surface="flight"} 1400')
    assert tenant(steady, "demo").rows_per_s == pytest.approx(1000)


def test_a_changed_created_time_is_a_reset_even_when_the_counter_grew_past_its_old_value():
    registry = CollectorRegistry()
    counter = Counter("streamkit_rows", "rows", ["tenant", "surface"], registry=registry)
    counter.labels("demo", "flight").inc()
    assert 'streamkit_rows_created{surface="flight",tenant="demo"}' in (
        generate_latest(registry).decode()
    )  # the sample a restarted gateway's registry changes

    def exposition(rows: int, created: float) -> list[str]:
        labels = '{tenant="demo",surface="flight"}'
        return [f"streamkit_rows_total{labels} {rows}", f"streamkit_rows_created{labels} {created}"]

    model = TopModel(rate_window=0.1)
    update(model, 0.0, *exposition(100, created=1_700_000_000.0))
    same = update(model, 1.0, *exposition(130, created=1_700_000_000.0))
    assert tenant(same, "demo").rows_per_s == pytest.approx(30)
    # A new registry (the gateway restarted) that has already sent more than before.
    after = update(model, 2.0, *exposition(150, created=1_700_000_100.0))
    assert tenant(after, "demo").rows_per_s == pytest.approx(150)


def test_errors_refusals_and_cancelled_requests():
    model = TopModel(event_window=10.0)

    def requests(ok: int, cancelled: int, not_found: int, limited: int, unauthorized: int):
        lines = [
            f'streamkit_requests_total{{tenant="demo",surface="flight",outcome="ok"}} {ok}',
            f'streamkit_requests_total{{tenant="demo",surface="ws",outcome="cancelled"}} '
            f"{cancelled}",
            f'streamkit_requests_total{{tenant="demo",surface="http",outcome="not_found"}} '
            f"{not_found}",
            f'streamkit_requests_total{{tenant="demo",surface="flight",outcome="rate_limited"}} '
            f"{limited}",
            f'streamkit_rate_limited_total{{tenant="demo"}} {limited}',  # the same refusals
            f'streamkit_requests_total{{tenant="demo",surface="sql",outcome="unauthorized"}} '
            f"{unauthorized}",
        ]
        return lines

    update(model, 0.0, *requests(0, 0, 0, 0, 0))
    snapshot = update(model, 2.0, *requests(10, 6, 4, 2, 2))
    demo = tenant(snapshot, "demo")
    assert demo.errors_per_s == pytest.approx(2.0)  # 4 not_found in 2 s; cancelled is no error
    assert demo.refusals_per_s == pytest.approx(2.0)  # 2 rate limited (once) + 2 unauthorized
    assert demo.requests_per_s == pytest.approx(12.0)
    assert dict(demo.outcomes) == {
        "cancelled": 6,
        "not_found": 4,
        "rate_limited": 2,
        "unauthorized": 2,
    }


def test_gauges_histograms_and_the_unknown_tenant():
    model = TopModel()
    samples = [
        'streamkit_open_streams{tenant="demo",surface="flight"} 2',
        'streamkit_open_streams{tenant="demo",surface="ws"} 1',
        'streamkit_open_streams{tenant="demo",surface="http"} 0',
        'streamkit_connector_up{tenant="demo"} 1',
        'streamkit_connector_up{tenant="plant"} 0',
        'streamkit_connector_reconnects_total{tenant="plant"} 3',
        'streamkit_live_followers{tenant="plant"} 4',
        'streamkit_live_lag_batches{tenant="plant"} 17',
        'streamkit_requests_total{tenant="(unknown)",surface="flight",outcome="not_found"} 1',
    ]
    update(
        model,
        0.0,
        *samples,
        'streamkit_first_batch_seconds_sum{tenant="demo",surface="flight"} 1.0',
        'streamkit_first_batch_seconds_count{tenant="demo",surface="flight"} 10',
    )
    snapshot = update(
        model,
        1.0,
        *samples,
        'streamkit_first_batch_seconds_sum{tenant="demo",surface="flight"} 1.2',
        'streamkit_first_batch_seconds_count{tenant="demo",surface="flight"} 14',
    )
    assert [t.name for t in snapshot.tenants] == ["(unknown)", "demo", "plant"]
    demo, plant, unknown = (tenant(snapshot, n) for n in ("demo", "plant", "(unknown)"))
    assert demo.connector_up is True and demo.open_streams == 3
    assert demo.open_by_surface == (("flight", 2), ("ws", 1))
    assert demo.first_batch_seconds == pytest.approx(0.05)  # 0.2 s over 4 first batches
    assert plant.connector_up is False and plant.reconnects == 3
    assert (plant.followers, plant.lag_batches) == (4, 17)
    assert unknown.connector_up is None and unknown.first_batch_seconds is None
    assert snapshot.open_streams == 3


def test_unknown_metrics_are_ignored_and_removed_tenants_go():
    model = TopModel()
    noise = [
        "# HELP python_gc_objects_collected_total Objects collected during gc",
        "# TYPE python_gc_objects_collected_total counter",
        'python_gc_objects_collected_total{generation="0"} 123.0',
        'streamkit_config_reloads_total{outcome="ok"} 2',
        'streamkit_something_new_total{tenant="ghost"} 5',
        'process_open_fds{tenant="ghost"} 9',
    ]
    snapshot = update(model, 0.0, *noise, 'streamkit_connector_up{tenant="demo"} 1')
    assert [t.name for t in snapshot.tenants] == ["demo"]
    assert update(model, 1.0, *noise).tenants == ()
    assert parse(scrape_text(*noise)).counters == {}


def test_history_is_bounded_and_bad_text_is_refused():
    model = TopModel(history=5)
    for step in range(20):
        snapshot = update(model, step, f'streamkit_rows_total{{tenant="t",surface="ws"}} {step}')
    assert tenant(snapshot, "t").rows_history == (1.0,) * 5
    with pytest.raises(ValueError):
        model.update("streamkit_rows_total{tenant= oops\n", 21.0, 21.0)


def test_block_sparklines_and_numbers():
    assert blocks([], 4) == "    "
    assert blocks([0, 0], 4) == "  ▁▁"
    assert blocks([0, 5, 10], 3) == "▁▅█"
    assert blocks([0, 1, 2, 3, 4], 3) == "▅▆█"  # the newest values only
    assert len(blocks([1.0] * 50, 10)) == 10
    assert [megabytes(v) for v in (None, 0, 1.234, 12.34, 1234.5)] == [
        "-",
        "0",
        "1.23",
        "12.3",
        "1,234",
    ]
    assert [per_second(v) for v in (None, 0, 1 / 30, 1.55, 250)] == ["-", "0", "0.03", "1.6", "250"]


# The command ------------------------------------------------------------------------------


def test_command_refuses_a_bad_url_or_ca_before_any_screen(tmp_path):
    runner = CliRunner()
    result = runner.invoke(cli, ["top", "--gateway", "http://x:1"])
    assert result.exit_code == 2
    assert "is not grpc://HOST:PORT" in result.output
    result = runner.invoke(cli, ["top", "--tls-ca", str(tmp_path / "missing.pem")])
    assert result.exit_code == 1
    assert "cannot read --tls-ca" in result.output
    result = runner.invoke(cli, ["top", "--interval", "0"])
    assert result.exit_code == 2


def test_client_metrics_returns_the_gateway_text(demo_gateway):
    with GatewayClient(demo_gateway.flight_url) as client:
        _, reader = client.open(Query("sensors", tenant="demo"))
        with client.errors():
            assert reader.read_all().num_rows == 10080
        sent = 'streamkit_rows_total{surface="flight",tenant="demo"} 10080.0'

        def counted() -> str | None:
            text = client.metrics()
            return text if sent in text else None

        text = wait_for(counted, what="the stream's rows in the metrics")
    assert "# TYPE streamkit_requests_total counter" in text


# The app, with the pilot, against real gateways -------------------------------------------


@contextmanager
def traffic(url: str, *targets: tuple[str, str]) -> Iterator[None]:
    """Read each ``(tenant, dataset)`` over and over from its own thread until the block ends
    (errors too: a refused or unknown tenant counts as traffic)."""
    stop = threading.Event()

    def read(tenant: str, dataset: str) -> None:
        while not stop.is_set():
            try:
                with GatewayClient(url) as client:
                    while not stop.is_set():
                        _, reader = client.open(Query(dataset, tenant=tenant))
                        with client.errors():
                            for _ in read_chunks(reader):
                                if stop.is_set():
                                    return
            except ClientError:
                stop.wait(0.02)  # pacing for a gateway that refuses or is restarting

    threads = [threading.Thread(target=read, args=t, daemon=True) for t in targets]
    for thread in threads:
        thread.start()
    try:
        yield
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)


@contextmanager
def live_follower(url: str, tenant: str, dataset: str) -> Iterator[None]:
    """A publisher appending to ``tenant/dataset`` and a client following it."""
    stop = threading.Event()
    schema = pa.schema([("n", pa.int64())])
    with GatewayClient(url) as client, GatewayClient(url) as follower:
        writer = client.publish(tenant, dataset, schema)
        try:  # a put left open would keep the gateway from stopping
            with client.errors():
                writer.write_batch(pa.record_batch([pa.array([0])], schema=schema))
            reader = wait_for(lambda: open_follow(follower, tenant, dataset), what="the dataset")

            def publish() -> None:
                n = 1
                while not stop.wait(0.05):  # a live dataset that grows 20 batches a second
                    with client.errors():
                        writer.write_batch(pa.record_batch([pa.array([n])], schema=schema))
                    n += 1

            def follow() -> None:
                with suppress(flight.FlightCancelledError):  # cancelled at the end
                    for _ in read_chunks(reader):
                        pass

            threads = [threading.Thread(target=f, daemon=True) for f in (publish, follow)]
            for thread in threads:
                thread.start()
            try:
                yield
            finally:
                stop.set()
                reader.cancel()
                for thread in threads:
                    thread.join(10)
        finally:
            with client.errors():
                writer.done_writing()
                writer.close()


def open_follow(
    client: GatewayClient, tenant: str, dataset: str
) -> flight.FlightStreamReader | None:
    """A follow of ``tenant/dataset``; None while the first put has not created it yet."""
    try:
        _, reader = client.open(Query(dataset, tenant=tenant, follow=True))
    except ClientError as exc:
        if exc.code == "not_found":
            return None
        raise
    return reader


@contextmanager
def busy_gateway(tenants: dict[str, Path], **settings: object) -> Iterator[Gateway]:
    """A gateway whose tenants' ``sensors`` are read over and over while the block runs."""
    with (
        running_gateway(tenants, **settings) as gateway,
        traffic(gateway.flight_url, *((name, "sensors") for name in tenants)),
    ):
        yield gateway




async def press(pilot, app: TopApp, key: str, done: Callable[[], object]) -> None:
    """Press ``key`` and wait until ``done``: ``pilot.press`` waits for the process to be
    idle, which it never quite is with a gateway streaming in it."""
    app.post_message(events.Key(key, key if len(key) == 1 else None))
    await until(pilot, done, f"{key} to take effect")


def moving(app: TopApp, *names: str) -> bool:
    """Every tenant of ``names`` is on screen with bytes flowing."""
    shown = {t.name: t for t in app.shown.tenants} if app.shown else {}
    return all(shown.get(n) and (shown[n].mb_per_s or 0) > 0 for n in names)


def text_of(app: TopApp, selector: str) -> str:
    return str(app.query_one(selector).render())


@pytest.fixture
def plant(tmp_path: Path) -> Path:
    """A second tenant's folder (writable: it gets a live dataset)."""
    pq.write_table(SENSORS, tmp_path / "sensors.parquet")
    return tmp_path


def test_app_shows_two_busy_tenants_sorts_pauses_and_moves(plant):
    async def scenario(url: str) -> None:
        app = make_top(url, interval=0.2)
        async with app.run_test(size=(120, 36)) as pilot:
            await until(pilot, lambda: moving(app, "demo", "plant"), "both tenants moving")
            await until(
                pilot,
                lambda: app.shown and {"demo", "plant", "(unknown)"} <= names(app),
                "the unknown tenant's errors",
            )
            await until(pilot, lambda: shown(app, "plant").followers >= 1, "the follower")
            await until(pilot, lambda: (shown(app, "(unknown)").errors_per_s or 0) > 0, "errors")
            demo = shown(app, "demo")
            assert demo.connector_up is True
            assert len(demo.mb_history) >= 1
            summary = text_of(app, "#summary")
            assert url in summary and "tenants" in summary and "MB/s" in summary
            assert not app.query_one("#banner").display

            # Sorted by name, the unknown tenant last; the table shows MB/s and sparklines.
            assert app._order == ["demo", "plant", "(unknown)"]
            table = app.query_one(TenantTable)
            row = [str(cell) for cell in table.get_row("demo")]
            assert row[0] == "● demo"
            assert float(row[2].split()[0]) > 0 and re.search("[▁▂▃▄▅▆▇█]", row[2])
            assert str(table.get_row("plant")[6]).startswith("1/")  # followers/lag

            await press(pilot, app, "m", lambda: app.sort_key == "mb")  # busiest first
            assert app.descending is True
            expected = sorted(
                sorted(app.shown.tenants, key=lambda t: (t.name == "(unknown)", t.name)),
                key=lambda t: t.mb_per_s or 0,
                reverse=True,
            )
            assert app._order == [t.name for t in expected]
            assert "MB/s ▼" in str(table.columns["mb"].label)
            await press(pilot, app, "m", lambda: not app.descending)  # the other way round
            await press(pilot, app, "s", lambda: app.sort_key == "rows")  # the next column
            assert app.descending is True
            await press(pilot, app, "n", lambda: app.sort_key == "tenant")
            assert app._order == ["demo", "plant", "(unknown)"]

            # Arrows move the selection; the detail follows it.
            assert app.selected_tenant() == "demo"
            await press(pilot, app, "down", lambda: app.selected_tenant() == "plant")
            assert app.query_one("#detail").border_title == "plant"
            await until(pilot, lambda: "following" in text_of(app, "#detail-info"), "details")
            detail = text_of(app, "#detail-info")
            assert "connector up" in detail and "req/s" in detail

            # p pauses the screen (scrapes go on), p again shows the newest.
            await press(pilot, app, "p", lambda: app.paused)
            frozen = app.shown
            await until(pilot, lambda: app.snapshot is not frozen, "a scrape while paused")
            assert app.shown is frozen and "PAUSED" in text_of(app, "#summary")
            await press(pilot, app, "p", lambda: not app.paused)
            assert app.shown is app.snapshot
            assert app.selected_tenant() == "plant"  # the selection stays through redraws

            await press(pilot, app, "q", lambda: app.return_code is not None)
        assert app.return_code == 0

    tenants = {"demo": DEMO_DATA, "plant": plant}
    with running_gateway(tenants) as gateway, live_follower(gateway.flight_url, "plant", "ticks"):
        targets = [("demo", "sensors"), ("plant", "sensors"), ("nowhere", "sensors")]
        with traffic(gateway.flight_url, *targets):
            asyncio.run(scenario(gateway.flight_url))


def names(app: TopApp) -> set[str]:
    return {t.name for t in app.shown.tenants} if app.shown else set()


def shown(app: TopApp, name: str):
    return next(t for t in app.shown.tenants if t.name == name)


def test_app_survives_a_gateway_restart_with_a_banner_and_no_negative_rates(plant):
    """Unreachable: a banner over the last data, retries; back: counters restarted at zero."""
    tenants = {"demo": DEMO_DATA, "plant": plant}

    async def scenario(stack: ExitStack, first: Gateway) -> None:
        app = make_top(first.flight_url, interval=0.2)
        async with app.run_test(size=(80, 24)) as pilot:
            await until(pilot, lambda: moving(app, "demo", "plant"), "both tenants moving")
            port = first.flight_port
            first.stop()
            banner = app.query_one("#banner")
            await until(pilot, lambda: banner.display, "the banner")
            assert "cannot reach the gateway" in text_of(app, "#banner")
            assert "retrying every 0.2 s" in text_of(app, "#banner")
            assert "(stale)" in text_of(app, "#summary")
            assert names(app) == {"demo", "plant"}  # the last data stays on screen

            # The same port again: the traffic threads and top find it by themselves.
            stack.enter_context(running_gateway(tenants, flight_port=port))
            await until(pilot, lambda: not banner.display, "the banner to go")
            await until(pilot, lambda: moving(app, "demo", "plant"), "traffic again")
            for _ in range(5):  # a few scrapes of the new gateway: none negative
                seen = app.shown
                await until(pilot, lambda: app.shown is not seen, "a scrape")  # noqa: B023
                for t in app.shown.tenants:
                    assert min((*t.mb_history, *t.rows_history)) >= 0
                    assert (t.mb_per_s or 0) >= 0 and (t.errors_per_s or 0) >= 0
            await press(pilot, app, "q", lambda: app.return_code is not None)

    with ExitStack() as stack:
        first = stack.enter_context(running_gateway(tenants))
        stack.enter_context(traffic(first.flight_url, ("demo", "sensors"), ("plant", "sensors")))
        asyncio.run(scenario(stack, first))


def test_app_shows_a_refusal_and_reads_with_the_metrics_token(plant):
    async def scenario(url: str, token: str | None, expect: str) -> None:
        app = make_top(url, token=token, interval=0.2)
        async with app.run_test(size=(80, 24)) as pilot:
            if expect == "refused":
                banner = app.query_one("#banner")
                await until(pilot, lambda: banner.display, "the banner")
                text = text_of(app, "#banner")
                assert "not authorized" in text and "metrics_allow" in text
                assert "--token" in text and "retrying" in text
                assert "no data yet" in text_of(app, "#summary")
            else:
                await until(pilot, lambda: moving(app, "plant"), "the tenant moving")
                assert not app.query_one("#banner").display
            await press(pilot, app, "q", lambda: app.return_code is not None)

    with busy_gateway(
        {"plant": plant},
        metrics_allow=("10.99.0.0/16",),
        metrics_token=Secret("m3trics", False),
    ) as gateway:
        asyncio.run(scenario(gateway.flight_url, None, "refused"))
        asyncio.run(scenario(gateway.flight_url, "wrong", "refused"))
        asyncio.run(scenario(gateway.flight_url, "m3trics", "reads"))


# The real command in a real terminal ------------------------------------------------------


# Without COLUMNS and LINES (set under pytest), which would beat the terminal's own size.
TERMINAL_ENV = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}


class Tmux:
    """A tmux server of its own (its socket in ``cwd``) running one command, detached."""

    def __init__(self, command: list[str], width: int, height: int, cwd: Path) -> None:
        self.socket = str(cwd / f"tmux-{width}x{height}.sock")
        self.session = "top"
        self.rc_file = cwd / f"rc-{width}x{height}"
        shell = " ".join(_quote(part) for part in command) + f"; echo $? > {self.rc_file}"
        self.tmux(
            "new-session", "-d", "-s", self.session, "-x", str(width), "-y", str(height),
            "-c", str(REPO), shell,
        )  # fmt: skip

    def tmux(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [TMUX, "-S", self.socket, "-f", "/dev/null", *args],
            capture_output=True,
            text=True,
            timeout=10,
            env=TERMINAL_ENV,
        )

    def screen(self) -> list[str]:
        return self.tmux("capture-pane", "-p", "-t", self.session).stdout.split("\n")

    def alive(self) -> bool:
        return self.tmux("has-session", "-t", self.session).returncode == 0

    def kill(self) -> None:
        self.tmux("kill-server")


def _quote(part: str) -> str:
    return "'" + part.replace("'", "'\\''") + "'"


SPARK = 10
"""Scrapes a row's sparkline shows (at least) before the screen is checked."""
TABLE_HEADER = re.compile(r"Tenant.*Open.*MB/s.*Rows/s.*Err/s.*Ref/s.*Fol/Lag")


def tenant_row(screen: list[str], name: str) -> re.Match[str] | None:
    """A whole row of ``name``: state, name, open, MB/s and its sparkline, rows/s and its
    sparkline, errors, refusals and followers/lag — all on one line."""
    pattern = (
        rf"^ [●○] {re.escape(name)}\s+(?P<open>\d+)\s+(?P<mb>[\d.,]+)\s+(?P<mb_spark>[▁-█]+)"
        rf"\s+(?P<rows>[\d.,]+[kMG]?)\s+(?P<rows_spark>[▁-█]+)\s+(?P<err>[\d.-]+)"
        rf"\s+(?P<ref>[\d.-]+)\s+(?P<live>[\d/-]+)\s*$"
    )
    for line in screen:
        if match := re.match(pattern, line):
            return match
    return None


@pytest.mark.parametrize("width,height", [(80, 24), (120, 36)])
def test_top_in_a_real_terminal(plant, tmp_path, width, height):
    with busy_gateway({"demo": DEMO_DATA, "plant": plant}) as gateway:
        command = [sys.executable, "-m", "streamkit", "top", "--gateway", gateway.flight_url]
        terminal = Tmux(command, width, height, tmp_path)
        try:
            screen = wait_for(
                lambda: busy_screen(terminal, "demo", "plant"),
                timeout=30,
                what="both tenants with MB/s on screen",
            )
            check_layout(screen, width, height, gateway.flight_url)
            terminal.tmux("send-keys", "-t", terminal.session, "q")
            wait_for(lambda: not terminal.alive(), timeout=15, what="q to end the session")
            assert terminal.rc_file.read_text().strip() == "0"
        finally:
            terminal.kill()


def busy_screen(terminal: Tmux, *names: str) -> list[str] | None:
    """The screen once every tenant of ``names`` has a whole row with MB/s above zero and
    ``SPARK`` scrapes in its sparkline."""
    if not terminal.alive():
        raise AssertionError("streamkit top exited")
    screen = terminal.screen()
    rows = [tenant_row(screen, name) for name in names]
    if all(
        row and float(row["mb"].replace(",", "")) > 0 and len(row["mb_spark"]) >= SPARK
        for row in rows
    ):
        return screen
    return None


def check_layout(screen: list[str], width: int, height: int, url: str) -> None:
    text = "\n".join(screen)
    assert len(screen) >= height and all(len(line) <= width for line in screen)
    assert url in screen[0] and "updated" in screen[0]
    assert re.search(r"2 tenants .* MB/s .* rows/s", screen[1])
    headers = [line for line in screen if TABLE_HEADER.search(line)]
    assert len(headers) == 1, text
    assert headers[0].rstrip().endswith("Fol/Lag") and len(headers[0].rstrip()) < width
    assert "╭─ demo" in text and "connector up" in text  # the selected tenant's details
    assert "q Quit" in screen[height - 1]
    for name in ("demo", "plant"):
        row = tenant_row(screen, name)
        assert row is not None, text
        assert row["err"] == "0" and row["ref"] == "0"
    # Wider terminals get longer sparklines (MB/s is its figure, then its sparkline).
    gap = headers[0].index("Rows/s") - headers[0].index("MB/s")
    assert gap >= (19 if width < 120 else 29)


def test_counters_that_are_not_finite_are_left_out():
    """A broken exporter (or a proxy in front of it) may send NaN or +Inf: no rate, no crash."""
    model = TopModel(rate_window=0.1)
    rows = 'streamkit_rows_total{tenant="t",surface="flight"}'
    mb = 'streamkit_bytes_total{tenant="t",surface="flight"}'
    still = 'streamkit_open_streams{tenant="t",surface="flight"} 1'
    update(model, 0.0, f"{rows} 10", f"{mb} 0", still)
    snapshot = update(model, 1.0, f"{rows} +Inf", f"{mb} NaN", still)
    for value in (snapshot, update(model, 2.0, f"{rows} NaN", f"{mb} -Inf", still)):
        view = tenant(value, "t")
        assert view.open_streams == 1
        for rate in (view.rows_per_s, view.mb_per_s):
            assert rate is None or rate == 0
        assert per_second(view.errors_per_s) and megabytes(view.mb_per_s)
