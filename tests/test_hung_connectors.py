"""Connectors that hang or are only slow, and clients that leave while a stream opens.

A stopped connector (SIGSTOP: its kernel still answers TCP, so nothing ever fails) must not
hold a read, or its stream slot, forever: a replica read goes on another replica, a lone
connector's read ends ``unavailable``. A connector that is slow but answers is waited for,
replica or not. A WebSocket client that leaves while its stream opens leaves nothing open.
"""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pyarrow as pa
import pyarrow.flight as flight
import pyarrow.parquet as pq
import pytest
from conftest import Process, running_gateway, wait_for
from test_metrics import scrape, value
from websockets.sync.client import connect

from streamkit.config import TenantConfig
from streamkit.gateway import opening
from streamkit.query import Query
from streamkit.security import RateLimit

ROWS = 200_000
PORT = r"at grpc://127\.0\.0\.1:(\d+)"
DEADLINE = flight.FlightCallOptions(timeout=60)  # a read that hangs fails the test instead
ONE_STREAM = RateLimit(requests_per_second=1000, burst=1000, max_streams=1)


@pytest.fixture(autouse=True)
def quick_patience(monkeypatch: pytest.MonkeyPatch) -> None:
    """Seconds, not the default ten, before a silent connector is given up on."""
    monkeypatch.setattr(opening, "PATIENCE_S", 0.5)
    monkeypatch.setattr(opening, "PING_TIMEOUT_S", 0.5)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    ids = pa.array(range(ROWS), pa.int64())
    pq.write_table(pa.table({"id": ids}), folder / "items.parquet", row_group_size=20_000)
    return folder


@contextmanager
def connector_process(root: Path) -> Iterator[tuple[Process, str]]:
    proc = Process("connector", "serve", str(root), "--port", "0")
    try:
        port = int(proc.wait_for_stderr(PORT).group(1))
        yield proc, f"grpc://127.0.0.1:{port}"
    finally:
        proc.proc.send_signal(signal.SIGCONT)  # a stopped process cannot stop
        proc.stop()


def read_ids(client: flight.FlightClient, tenant: str) -> list[int]:
    ticket = flight.Ticket(json.dumps({"tenant": tenant, "dataset": "items"}))
    return client.do_get(ticket, DEADLINE).read_all().column("id").to_pylist()


def test_a_stopped_replica_is_skipped_and_holds_no_stream_slot(root: Path):
    with connector_process(root) as (stopped, first), connector_process(root) as (_, second):
        tenant = TenantConfig("r", replicas=(first, second), rate_limit=ONE_STREAM)
        with (
            running_gateway({"r": tenant}) as gateway,
            flight.connect(gateway.flight_url) as client,
        ):
            assert read_ids(client, "r") == list(range(ROWS))  # both up
            stopped.proc.send_signal(signal.SIGSTOP)
            # Reads take turns over the replicas: each that starts on the stopped one goes
            # on the other, and one stream at a time is all the caller may have.
            for _ in range(4):
                assert read_ids(client, "r") == list(range(ROWS))
            assert not gateway.forwarder.open_streams()
            found = scrape(gateway)
            assert value(found, "streamkit_open_streams", tenant="r", surface="flight") == 0
            assert value(found, "streamkit_requests_total", tenant="r", surface="flight",
                         outcome="ok") == 5  # fmt: skip


def test_a_stopped_lone_connector_ends_unavailable_and_frees_the_slot(root: Path):
    with connector_process(root) as (stopped, url):
        tenant = TenantConfig("c", connector=url, rate_limit=ONE_STREAM)
        with (
            running_gateway({"c": tenant}) as gateway,
            flight.connect(gateway.flight_url) as client,
        ):
            assert read_ids(client, "c") == list(range(ROWS))
            stopped.proc.send_signal(signal.SIGSTOP)
            for _ in range(2):  # the slot of the first is free for the second
                with pytest.raises(flight.FlightUnavailableError, match="tenant 'c'"):
                    read_ids(client, "c")
            stopped.proc.send_signal(signal.SIGCONT)
            # The calls given up on are cancelled when they open; the connector is read again.
            assert read_ids(client, "c") == list(range(ROWS))
            wait_for(lambda: not opening._abandoned, what="the abandoned opens to end")
            assert not gateway.forwarder.open_streams()


class SlowConnector(flight.FlightServerBase):
    """Batches of ``id`` with ``gap`` seconds between them; ``gate``: set to let a stream
    open (its DoGet waits for it)."""

    def __init__(self, batches: int, gap: float = 0.0) -> None:
        super().__init__("grpc://127.0.0.1:0")
        self.batches, self.gap = batches, gap
        self.gate = threading.Event()
        self.gate.set()
        self.opened = 0
        self.schema = pa.schema([("id", pa.int64())])

    def get_flight_info(self, context, descriptor):
        ticket = Query(dataset="items").to_ticket()
        return flight.FlightInfo(self.schema, descriptor, [flight.FlightEndpoint(ticket, [])],
                                 -1, -1)  # fmt: skip

    def do_get(self, context, ticket):
        while not self.gate.wait(0.05):
            if context.is_cancelled():
                raise flight.FlightCancelledError("cancelled")
        self.opened += 1
        query = Query.from_ticket(ticket)
        start = query.offset or 0
        pause = threading.Event()  # never set: waiting on it is the connector being slow

        def batches() -> Iterator[pa.RecordBatch]:
            for number in range(start // 10, self.batches):
                if number > start // 10:
                    pause.wait(self.gap)
                yield pa.record_batch([pa.array(range(number * 10, number * 10 + 10))],
                                      schema=self.schema)  # fmt: skip

        return flight.GeneratorStream(self.schema, batches())


@contextmanager
def slow_connectors(count: int, batches: int, gap: float = 0.0) -> Iterator[list[SlowConnector]]:
    servers = [SlowConnector(batches, gap) for _ in range(count)]
    try:
        yield servers
    finally:
        for server in servers:
            server.gate.set()
            server.shutdown()


def test_a_slow_replica_is_waited_for_not_resumed_elsewhere():
    """Quiet for longer than a replica's stall time (half the idle timeout), but answering:
    read to the end on its first replica, as a lone connector would be."""
    with slow_connectors(2, batches=4, gap=1.5) as servers:
        urls = tuple(f"grpc://127.0.0.1:{s.port}" for s in servers)
        tenant = TenantConfig("r", replicas=urls)
        with (
            running_gateway({"r": tenant}, idle_timeout=2.5) as gateway,
            flight.connect(gateway.flight_url) as client,
        ):
            assert read_ids(client, "r") == list(range(40))
            assert sum(s.opened for s in servers) == 1


def test_a_websocket_client_that_leaves_while_its_stream_opens_leaves_nothing_open():
    with slow_connectors(1, batches=3) as [server]:
        tenant = TenantConfig("t", connector=f"grpc://127.0.0.1:{server.port}",
                              rate_limit=ONE_STREAM)  # fmt: skip
        with running_gateway({"t": tenant}) as gateway:
            server.gate.clear()  # the stream takes its time to open
            with connect(f"ws://127.0.0.1:{gateway.http_port}/ws") as ws:
                ws.send(json.dumps({"action": "query", "tenant": "t", "dataset": "items"}))
                wait_for(lambda: gateway.web.open_sockets == 1, what="the socket")
            # The session gives its query a few seconds to end, then cancels it: the stream
            # is opened after that, by a query nobody waits for.
            wait_for(lambda: gateway.web.open_sockets == 0, 15, "the session to end")
            server.gate.set()
            wait_for(lambda: server.opened == 1, what="the stream to open")
            wait_for(lambda: not gateway.forwarder.open_streams(), what="the stream closed")
            found = scrape(gateway)
            assert value(found, "streamkit_open_streams", tenant="t", surface="ws") == 0
            assert value(found, "streamkit_requests_total", tenant="t", surface="ws",
                         outcome="cancelled") == 1  # fmt: skip
            with flight.connect(gateway.flight_url) as client:  # its slot is free again
                assert read_ids(client, "t") == list(range(30))


def open_threads() -> int:
    return sum(t.name == "streamkit-open" for t in threading.enumerate())


def test_opens_on_a_connector_known_not_to_answer_park_no_more_threads(root: Path):
    """The opens under way when a connector stops answering each leave a parked call; the
    ones that come after fail at once, with no thread of their own."""
    with connector_process(root) as (stopped, url):
        client = flight.connect(url)
        ticket = Query(dataset="items").to_ticket()
        try:
            client.do_get(ticket).read_all()
            stopped.proc.send_signal(signal.SIGSTOP)
            failures: list[BaseException] = []

            def try_open() -> None:
                try:
                    opening.open_stream(client, ticket, lambda t: flight.FlightCallOptions(t))
                except flight.FlightUnavailableError as exc:
                    failures.append(exc)

            first = [threading.Thread(target=try_open) for _ in range(5)]
            for thread in first:
                thread.start()
            for thread in first:
                thread.join(30)
            assert len(failures) == 5 and opening._abandoned[client] == 5
            parked = open_threads()
            later = [threading.Thread(target=try_open) for _ in range(20)]
            for thread in later:
                thread.start()
            for thread in later:
                thread.join(30)
            assert len(failures) == 25
            assert "still waiting" in str(failures[-1])
            assert open_threads() == parked and opening._abandoned[client] == 5
            stopped.proc.send_signal(signal.SIGCONT)
            wait_for(lambda: not opening._abandoned, what="the parked calls to end")
            assert open_threads() == 0
        finally:
            client.close()


def test_a_reload_ends_opens_waiting_on_the_connector_it_replaced(
    root: Path, monkeypatch: pytest.MonkeyPatch
):
    """The replaced connector's client is closed: a pending open asking it is told it is
    gone (not that it answered), ends ``unavailable`` and gives its stream slot back."""
    monkeypatch.setattr(opening, "PATIENCE_S", 2.0)  # the reload comes before the question
    with connector_process(root) as (stopped, old), connector_process(root) as (_, new):
        tenant = TenantConfig("c", connector=old, rate_limit=ONE_STREAM)
        with (
            running_gateway({"c": tenant}) as gateway,
            flight.connect(gateway.flight_url) as client,
        ):
            stopped.proc.send_signal(signal.SIGSTOP)
            failures: list[BaseException] = []

            def pending() -> None:
                try:
                    read_ids(client, "c")
                except flight.FlightError as exc:
                    failures.append(exc)

            reader = threading.Thread(target=pending)
            reader.start()
            wait_for(lambda: open_threads() == 1, what="the open to wait")
            moved = TenantConfig("c", connector=new, rate_limit=ONE_STREAM)
            assert gateway.apply(replace(gateway.config, tenants={"c": moved})).reconnected
            reader.join(30)
            assert not reader.is_alive()
            assert len(failures) == 1 and isinstance(failures[0], flight.FlightUnavailableError)
            assert read_ids(client, "c") == list(range(ROWS))  # the slot is free
