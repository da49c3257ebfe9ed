"""The gateway's Prometheus metrics: after known traffic they equal what was served, they
are shown only to the peers and token configured, and they never carry a secret or a path."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pyarrow as pa
import pyarrow.flight as flight
import pyarrow.parquet as pq
import pytest
from conftest import running_connector, running_gateway, wait_for
from prometheus_client.parser import text_string_to_metric_families
from websockets.sync.client import connect

from streamkit.config import TenantConfig
from streamkit.connector import ConnectorServer
from streamkit.secrets import Secret
from streamkit.security import RateLimit

TOKEN = "reader-token-3f9a"
METRICS_TOKEN = "metrics-token-77c1"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample as ``(name, sorted labels) -> value``."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(found: dict, name: str, **labels: str) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


def scrape(gateway, token: str | None = None) -> dict:
    request = urllib.request.Request(f"{gateway.http_url}/metrics")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/plain")
        return samples(response.read().decode())


@pytest.fixture
def data(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    root.mkdir()
    table = pa.table(
        {
            "id": pa.array(range(50_000), pa.int64()),
            "name": pa.array([f"item-{i % 97}" for i in range(50_000)]),
            "kind": pa.array([["a", "b", "c"][i % 3] for i in range(50_000)]).dictionary_encode(),
        }
    )
    pq.write_table(table, root / "items.parquet", row_group_size=7_000)
    return root


def read_flight(client: flight.FlightClient, tenant: str, dataset: str) -> tuple[int, int]:
    reader = client.do_get(flight.Ticket(json.dumps({"tenant": tenant, "dataset": dataset})))
    rows = nbytes = 0
    for chunk in reader:
        rows += chunk.data.num_rows
        nbytes += chunk.data.nbytes
    return rows, nbytes


def test_counts_equal_what_was_served(data: Path, caplog: pytest.LogCaptureFixture):
    caplog.set_level("INFO", logger="streamkit.requests")
    with (
        running_connector(data) as connector,
        running_gateway({"local": data, "remote": f"grpc://127.0.0.1:{connector.port}"}) as gw,
    ):
        served: dict[tuple[str, str], list[int]] = {}
        with flight.connect(gw.flight_url) as client:
            for tenant in ("local", "remote", "remote"):
                rows, nbytes = read_flight(client, tenant, "items")
                total = served.setdefault((tenant, "flight"), [0, 0])
                total[0] += rows
                total[1] += nbytes
            for tenant, dataset in (("remote", "missing"), ("nosuch", "items")):
                with pytest.raises(flight.FlightError):
                    read_flight(client, tenant, dataset)
            client.get_flight_info(flight.FlightDescriptor.for_path("local", "items"))
        with urllib.request.urlopen(f"{gw.http_url}/api/stream/local/items", timeout=30) as r:
            table = pa.ipc.open_stream(r.read()).read_all()
        served[("local", "http")] = [table.num_rows, 0]
        with connect(f"ws://127.0.0.1:{gw.http_port}/ws", max_size=None) as ws:
            ws.send(json.dumps({"action": "query", "tenant": "remote", "dataset": "items"}))
            while isinstance(ws.recv(timeout=30), bytes):
                pass
        found = scrape(gw)

    assert served[("local", "flight")][0] == 50_000
    logged: dict[tuple[str, str], int] = {}
    for record in caplog.records:
        fields = record.request  # type: ignore[attr-defined]
        key = (fields["tenant"], fields["transport"])
        logged[key] = logged.get(key, 0) + fields["bytes"]
    for (tenant, surface), (rows, nbytes) in served.items():
        assert value(found, "streamkit_rows_total", tenant=tenant, surface=surface) == rows
        counted = value(found, "streamkit_bytes_total", tenant=tenant, surface=surface)
        assert counted == logged[(tenant, surface)]  # the request log says the same
        if nbytes:  # the client's own count of the same batches (buffers may be shared)
            assert counted == pytest.approx(nbytes, rel=0.02)
    assert value(found, "streamkit_rows_total", tenant="remote", surface="ws") == 50_000
    assert value(found, "streamkit_requests_total", tenant="remote", surface="flight",
                 outcome="ok") == 2
    assert value(found, "streamkit_requests_total", tenant="remote", surface="flight",
                 outcome="not_found") == 1
    # A tenant nobody configured is not a label of its own (a client cannot grow the series).
    assert value(found, "streamkit_requests_total", tenant="(unknown)", surface="flight",
                 outcome="not_found") == 1
    assert not any(("tenant", "nosuch") in labels for _, labels in found)
    # One FlightInfo request, one stream each for http and ws.
    assert value(found, "streamkit_requests_total", tenant="local", surface="flight",
                 outcome="ok") == 2
    assert value(found, "streamkit_requests_total", tenant="local", surface="http",
                 outcome="ok") == 1
    assert value(found, "streamkit_stream_seconds_count", tenant="remote", surface="flight") == 2
    assert value(found, "streamkit_first_batch_seconds_count", tenant="local", surface="http") == 1
    assert value(found, "streamkit_open_streams", tenant="local", surface="flight") == 0
    assert value(found, "streamkit_connector_up", tenant="remote") == 1
    assert value(found, "streamkit_connector_up", tenant="local") == 1


def test_open_streams_and_live_followers_while_they_run(data: Path):
    with running_gateway({"t": data}) as gw, flight.connect(gw.flight_url) as client:
        writer, _ = client.do_put(
            flight.FlightDescriptor.for_path("t", "feed"), pa.schema([("x", pa.int64())])
        )
        writer.write_batch(pa.record_batch({"x": [1, 2, 3]}))
        writer.close()
        readers = [
            client.do_get(flight.Ticket(json.dumps({"tenant": "t", "dataset": "feed",
                                                    "follow": True})))
            for _ in range(2)
        ]
        for reader in readers:
            assert reader.read_chunk().data.num_rows == 3
        found = wait_for(
            lambda: (f := scrape(gw))
            and value(f, "streamkit_live_followers", tenant="t") == 2
            and f,
            what="two followers counted",
        )
        assert value(found, "streamkit_open_streams", tenant="t", surface="flight") == 2
        assert value(found, "streamkit_rows_total", tenant="t", surface="flight") == 6
        for reader in readers:
            reader.cancel()
        found = wait_for(
            lambda: (f := scrape(gw))
            and value(f, "streamkit_open_streams", tenant="t", surface="flight") == 0
            and value(f, "streamkit_live_followers", tenant="t") == 0
            and f,
            what="the follows closed",
        )
        assert value(found, "streamkit_requests_total", tenant="t", surface="flight",
                     outcome="cancelled") == 2
        assert value(found, "streamkit_requests_total", tenant="t", surface="flight",
                     outcome="ok") == 1  # the publish


def test_rate_limited_refusals_are_counted(data: Path):
    tenant = TenantConfig("t", path=data, rate_limit=RateLimit(0.01, burst=2, max_streams=5))
    with running_gateway({"t": tenant}) as gw, flight.connect(gw.flight_url) as client:
        read_flight(client, "t", "items")
        read_flight(client, "t", "items")
        for _ in range(3):
            with pytest.raises(flight.FlightError, match="rate_limited|rate limit|over"):
                read_flight(client, "t", "items")
        found = scrape(gw)
    assert value(found, "streamkit_rate_limited_total", tenant="t") == 3
    assert value(found, "streamkit_requests_total", tenant="t", surface="flight",
                 outcome="rate_limited") == 3
    assert value(found, "streamkit_requests_total", tenant="t", surface="flight",
                 outcome="ok") == 2


def test_connector_down_and_back_counts_a_reconnect(data: Path):
    first = ConnectorServer(str(data))
    port = first.port
    try:
        with (
            running_gateway({"r": f"grpc://127.0.0.1:{port}"}) as gw,
            flight.connect(gw.flight_url) as client,
        ):
            read_flight(client, "r", "items")
            first.shutdown()
            with pytest.raises(flight.FlightError, match="unreachable"):
                read_flight(client, "r", "items")
            assert value(scrape(gw), "streamkit_connector_up", tenant="r") == 0
            again = ConnectorServer(str(data), f"grpc://127.0.0.1:{port}")
            try:
                wait_for(
                    lambda: value(scrape(gw), "streamkit_connector_up", tenant="r") == 1,
                    timeout=20,
                    what="the probe to see the connector back",
                )
                found = scrape(gw)
            finally:
                again.shutdown()
    finally:
        first.shutdown()
    assert value(found, "streamkit_connector_reconnects_total", tenant="r") == 1


def test_metrics_only_for_allowed_peers_or_the_metrics_token(data: Path):
    tenant = TenantConfig("t", path=data, tokens=(Secret(TOKEN, False),))
    with running_gateway(
        {"t": tenant},
        metrics_allow=("10.99.0.0/16",),
        metrics_token=Secret(METRICS_TOKEN, False),
    ) as gw:
        for token in (None, TOKEN, "wrong"):
            with pytest.raises(urllib.error.HTTPError) as refused:
                scrape(gw, token)
            assert refused.value.code == 403
        with flight.connect(gw.flight_url) as client:
            with pytest.raises(flight.FlightUnauthorizedError, match="metrics_allow"):
                list(client.do_action(flight.Action("metrics", b"")))
            reader_options = flight.FlightCallOptions(
                headers=[(b"authorization", f"Bearer {TOKEN}".encode())]
            )
            read_flight_with(client, reader_options)
            options = flight.FlightCallOptions(
                headers=[(b"authorization", f"Bearer {METRICS_TOKEN}".encode())]
            )
            [result] = list(client.do_action(flight.Action("metrics", b""), options))
            text = result.body.to_pybytes().decode()
        over_http = scrape(gw, METRICS_TOKEN)
    found = samples(text)
    assert value(found, "streamkit_rows_total", tenant="t", surface="flight") == 50_000
    assert value(over_http, "streamkit_rows_total", tenant="t", surface="flight") == 50_000
    for secret in (TOKEN, METRICS_TOKEN, str(data), "token:"):
        assert secret not in text


def read_flight_with(client: flight.FlightClient, options: flight.FlightCallOptions) -> None:
    ticket = flight.Ticket(json.dumps({"tenant": "t", "dataset": "items"}))
    assert client.do_get(ticket, options).read_all().num_rows == 50_000


def test_scrapes_while_hundreds_of_streams_run(data: Path):
    """Scraping takes locks the data path also takes: neither may stall the other."""
    with running_gateway({"t": data}) as gw:
        failures: list[BaseException] = []

        def reader() -> None:
            try:
                with flight.connect(gw.flight_url) as client:
                    for _ in range(3):
                        read_flight(client, "t", "items")
            except BaseException as exc:
                failures.append(exc)

        threads = [threading.Thread(target=reader) for _ in range(100)]
        for thread in threads:
            thread.start()
        scrapes = 0
        while any(t.is_alive() for t in threads):
            scrape(gw)
            scrapes += 1
        for thread in threads:
            thread.join()
        found = scrape(gw)
    assert not failures
    assert scrapes > 0
    assert value(found, "streamkit_rows_total", tenant="t", surface="flight") == 300 * 50_000
    assert value(found, "streamkit_requests_total", tenant="t", surface="flight",
                 outcome="ok") == 300
    assert value(found, "streamkit_open_streams", tenant="t", surface="flight") == 0
