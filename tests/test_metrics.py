"""The gateway's Prometheus metrics: after known traffic they equal what was served, they
are shown only to the peers and token configured, and they never carry a secret or a path."""

from __future__ import annotations

import contextlib
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
from streamkit.gateway.metrics import ConnectorStates, Metrics
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


def test_refusals_before_a_tenant_is_known_are_counted(data: Path):
    """A token that is no one's, and a forged ticket, fail before any tenant is known:
    counted under ``(unknown)``, so token guessing shows in the metrics (and in top)."""
    tenant = TenantConfig("t", path=data, tokens=(Secret(TOKEN, False),))
    wrong = flight.FlightCallOptions(headers=[(b"authorization", b"Bearer guessed")])
    with running_gateway({"t": tenant}) as gw, flight.connect(gw.flight_url) as client:
        for _ in range(3):
            with pytest.raises(flight.FlightUnauthenticatedError):
                client.do_get(flight.Ticket(b'{"tenant": "t", "dataset": "items"}'), wrong)
        request = urllib.request.Request(
            f"{gw.http_url}/api/stream/t/items", headers={"Authorization": "Bearer guessed"}
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code == 401
        bearer = flight.FlightCallOptions(headers=[(b"authorization", f"Bearer {TOKEN}".encode())])
        with pytest.raises(flight.FlightServerError, match="invalid: the ticket"):
            client.do_get(flight.Ticket(b'{"signed": 1, "sig": "x"}'), bearer).read_all()
        found = scrape(gw)
    unknown = {"tenant": "(unknown)"}
    assert value(found, "streamkit_requests_total", **unknown, surface="flight",
                 outcome="unauthenticated") == 3  # fmt: skip
    assert value(found, "streamkit_requests_total", **unknown, surface="http",
                 outcome="unauthenticated") == 1  # fmt: skip
    assert value(found, "streamkit_requests_total", **unknown, surface="flight",
                 outcome="invalid") == 1  # fmt: skip


def test_a_removed_tenant_is_not_brought_back_by_a_late_call():
    """Calls still under way when a reload removes a tenant report its connector after
    it was forgotten: no ``connector_up`` series comes back for it."""
    tenants = {"a", "b"}
    metrics = Metrics(lambda: tenants)
    states = ConnectorStates(metrics)
    metrics.sample(states)
    for name in ("a", "b"):
        states.seen(name, False)
        states.seen(name, True)
    tenants.discard("b")
    metrics.forget("b")
    states.forget("b")
    states.seen("b", False)
    states.seen("b", True)
    found = samples(metrics.render().decode())
    assert value(found, "streamkit_connector_up", tenant="a") == 1
    assert ("streamkit_connector_up", (("tenant", "b"),)) not in found
    assert value(found, "streamkit_connector_reconnects_total", tenant="a") == 1
    assert ("streamkit_connector_reconnects_total", (("tenant", "b"),)) not in found


@pytest.mark.parametrize("remote", [False, True], ids=["embedded", "remote"])
def test_a_cancelled_websocket_follow_is_counted_cancelled_with_what_it_sent(
    data: Path, remote: bool
):
    with contextlib.ExitStack() as stack:
        where: Path | str = data
        if remote:
            where = f"grpc://127.0.0.1:{stack.enter_context(running_connector(data)).port}"
        gw = stack.enter_context(running_gateway({"t": where}))
        client = stack.enter_context(flight.connect(gw.flight_url))
        writer, _ = client.do_put(
            flight.FlightDescriptor.for_path("t", "feed"), pa.schema([("x", pa.int64())])
        )
        writer.write_batch(pa.record_batch({"x": [1, 2, 3]}))
        writer.close()
        with connect(f"ws://127.0.0.1:{gw.http_port}/ws", max_size=None) as ws:
            ws.send(json.dumps({"action": "query", "id": 1, "tenant": "t", "dataset": "feed",
                                "follow": True}))  # fmt: skip
            received = 0
            while received < 2:  # the schema, then the batch
                assert isinstance(ws.recv(timeout=30), bytes)
                received += 1
            ws.send(json.dumps({"action": "cancel", "id": 1}))
            while isinstance(end := ws.recv(timeout=30), bytes):
                pass
        end = json.loads(end)
        assert end["type"] == "end" and end.get("cancelled") is True, end
        assert end["rows"] == 3 and end["batches"] == 1 and end["bytes"] > 0, end
        found = wait_for(
            lambda: (f := scrape(gw))
            and value(f, "streamkit_open_streams", tenant="t", surface="ws") == 0
            and f,
            what="the follow closed",
        )
    assert value(found, "streamkit_requests_total", tenant="t", surface="ws",
                 outcome="cancelled") == 1  # fmt: skip
    assert value(found, "streamkit_requests_total", tenant="t", surface="ws", outcome="ok") == 0
