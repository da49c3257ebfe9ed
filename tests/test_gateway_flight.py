"""The gateway's Flight service: routing, listing, errors, cancel propagation, recovery."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.flight as flight
import pyarrow.parquet as pq
import pytest
from conftest import DEMO_DATA, running_connector, running_gateway, wait_for
from synthetic_connector import SyntheticConnector

from streamkit.connector import ConnectorServer

ALPHA = pa.table({"id": list(range(500)), "who": ["alpha"] * 500})
BETA = pa.table({"id": list(range(300)), "who": ["beta"] * 300})


@pytest.fixture
def two_roots(tmp_path: Path) -> tuple[Path, Path]:
    alpha, beta = tmp_path / "alpha", tmp_path / "beta"
    (alpha / "sub").mkdir(parents=True)
    beta.mkdir()
    pq.write_table(ALPHA, alpha / "items.parquet")
    pcsv.write_csv(ALPHA, alpha / "sub" / "nested.csv")
    pq.write_table(BETA, beta / "items.parquet")
    return alpha, beta


def test_design_snippet_works_unchanged(demo_gateway):
    client = flight.connect(f"grpc://localhost:{demo_gateway.flight_port}")
    info = client.get_flight_info(flight.FlightDescriptor.for_path("demo", "sensors"))
    reader = client.do_get(info.endpoints[0].ticket)
    table = reader.read_all()
    assert table.num_rows == 10_080
    assert info.total_records == 10_080
    assert table.equals(pq.read_table(DEMO_DATA / "sensors.parquet"))
    client.close()


def test_routing_and_listing_across_tenants(two_roots, client_for):
    alpha, beta = two_roots
    with (
        running_connector(alpha) as a,
        running_connector(beta) as b,
        running_gateway(
            {
                "alpha": f"grpc://127.0.0.1:{a.port}",
                "beta": f"grpc://127.0.0.1:{b.port}",
                "demo": DEMO_DATA,
            }
        ) as gateway,
    ):
        client = client_for(gateway.flight)
        paths = {tuple(p.decode() for p in i.descriptor.path) for i in client.list_flights()}
        assert {
            ("alpha", "items"),
            ("alpha", "sub/nested"),
            ("beta", "items"),
            ("demo", "sensors"),
        } <= paths
        only_beta = {
            tuple(p.decode() for p in i.descriptor.path) for i in client.list_flights(b"beta")
        }
        assert only_beta == {("beta", "items")}

        for tenant, expected in (("alpha", ALPHA), ("beta", BETA)):
            info = client.get_flight_info(flight.FlightDescriptor.for_path(tenant, "items"))
            assert info.total_records == expected.num_rows
            assert client.do_get(info.endpoints[0].ticket).read_all().equals(expected)

        command = flight.FlightDescriptor.for_command(
            json.dumps({"tenant": "alpha", "dataset": "sub/nested", "columns": ["who"], "limit": 7})
        )
        info = client.get_flight_info(command)
        assert info.schema.names == ["who"] and info.total_records == -1  # CSV: unknown
        table = client.do_get(info.endpoints[0].ticket).read_all()
        assert table.column("who").to_pylist() == ["alpha"] * 7
        assert client.get_schema(command).schema.names == ["who"]


@pytest.mark.parametrize(
    ("descriptor", "message"),
    [
        (flight.FlightDescriptor.for_path("nobody", "items"), "^not found: tenant 'nobody'"),
        (flight.FlightDescriptor.for_path("demo", "nothing"), "^not found: dataset 'nothing'"),
        (flight.FlightDescriptor.for_path("demo", "../examples/data/sensors"), "^not found: "),
        (flight.FlightDescriptor.for_path("sensors"), "^invalid: "),
        (flight.FlightDescriptor.for_command(b'{"dataset": "sensors"}'), "^invalid: .*tenant"),
        (flight.FlightDescriptor.for_command(b"{not json"), "^invalid: "),
        (
            flight.FlightDescriptor.for_command(
                json.dumps({"tenant": "demo", "dataset": "sensors", "columns": ["nope"]})
            ),
            "^invalid: .*nope",
        ),
    ],
)
def test_error_cases(demo_gateway, client_for, descriptor, message):
    client = client_for(demo_gateway.flight)
    with pytest.raises(flight.FlightServerError, match=message) as raised:
        client.get_flight_info(descriptor)
    assert "Traceback" not in str(raised.value)
    assert str(DEMO_DATA) not in str(raised.value)
    with pytest.raises(flight.FlightServerError, match="^not found: tenant"):
        client.do_get(flight.Ticket(b'{"tenant": "nobody", "dataset": "x"}')).read_all()
    assert client.get_flight_info(flight.FlightDescriptor.for_path("demo", "sales")).schema


def test_connector_down_then_back_without_gateway_restart(two_roots, client_for):
    alpha, beta = two_roots
    down = ConnectorServer(str(beta), "grpc://127.0.0.1:0")
    port = down.port
    down.shutdown()
    with running_gateway({"alpha": alpha, "beta": f"grpc://127.0.0.1:{port}"}) as gateway:
        client = client_for(gateway.flight)
        with pytest.raises(flight.FlightUnavailableError, match="tenant 'beta'"):
            client.get_flight_info(flight.FlightDescriptor.for_path("beta", "items"))
        with pytest.raises(flight.FlightUnavailableError, match="tenant 'beta'"):
            client.do_get(flight.Ticket(b'{"tenant": "beta", "dataset": "items"}')).read_all()
        with pytest.raises(flight.FlightUnavailableError, match="tenant 'beta'"):
            list(client.list_flights(b"beta"))
        # The other tenant keeps working, and the listing shows what is reachable.
        listed = {i.descriptor.path[0].decode() for i in client.list_flights()}
        assert listed == {"alpha"}
        health = gateway.upstreams.health()
        assert health["beta"]["reachable"] is False and health["alpha"]["reachable"] is True

        with _connector_on(beta, port):

            def served() -> bool:
                try:
                    info = client.get_flight_info(flight.FlightDescriptor.for_path("beta", "items"))
                    return client.do_get(info.endpoints[0].ticket).read_all().equals(BETA)
                except flight.FlightUnavailableError:
                    return False

            wait_for(served, 15, "the restarted connector to be served again")


class _connector_on:
    def __init__(self, root: Path, port: int) -> None:
        self.server = ConnectorServer(str(root), f"grpc://127.0.0.1:{port}")

    def __enter__(self) -> ConnectorServer:
        return self.server

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()


def test_client_cancel_stops_the_upstream_read(client_for):
    upstream = SyntheticConnector(batches=2000)  # ~6.4 GB if read to the end
    try:
        with running_gateway({"syn": f"grpc://127.0.0.1:{upstream.port}"}) as gateway:
            client = client_for(gateway.flight)
            reader = client.do_get(flight.Ticket(b'{"tenant": "syn", "dataset": "synthetic"}'))
            reader.read_chunk()
            reader.cancel()
            wait_for(upstream.finished.is_set, 15, "the upstream stream to end")
            assert upstream.produced < 200
    finally:
        upstream.shutdown()


def test_slow_client_does_not_make_the_gateway_buffer(client_for):
    upstream = SyntheticConnector(batches=2000)
    try:
        with running_gateway({"syn": f"grpc://127.0.0.1:{upstream.port}"}) as gateway:
            client = client_for(gateway.flight)
            reader = client.do_get(flight.Ticket(b'{"tenant": "syn", "dataset": "synthetic"}'))
            reader.read_chunk()  # then read nothing: upstream production must level off
            counts: list[int] = []

            def levelled_off() -> bool:
                counts.append(upstream.produced)
                return len(counts) > 25 and len(set(counts[-25:])) == 1

            wait_for(levelled_off, 30, "upstream production to level off")
            assert upstream.produced < 100, upstream.produced  # ~320 MB at most in flight
            reader.cancel()
    finally:
        upstream.shutdown()


def test_stalled_upstream_is_cancelled_after_the_idle_time(client_for):
    upstream = SyntheticConnector(batches=10, stall_after=2)
    try:
        with running_gateway(
            {"syn": f"grpc://127.0.0.1:{upstream.port}"}, idle_timeout=1.0
        ) as gateway:
            client = client_for(gateway.flight)
            reader = client.do_get(flight.Ticket(b'{"tenant": "syn", "dataset": "synthetic"}'))
            with pytest.raises(flight.FlightUnavailableError, match="made no progress for 1 s"):
                reader.read_all()
            wait_for(upstream.finished.is_set, 15, "the stalled upstream to be cancelled")
            # Long healthy streams are not cut: no whole-call deadline.
            upstream.stall_after = None
            table = client.do_get(
                flight.Ticket(b'{"tenant": "syn", "dataset": "synthetic"}')
            ).read_all()
            assert table.num_rows == 10 * 50_000
    finally:
        upstream.shutdown()


def test_cancel_while_the_upstream_is_quiet_reaches_the_connector(client_for):
    upstream = SyntheticConnector(batches=10, stall_after=1)
    try:
        with running_gateway({"syn": f"grpc://127.0.0.1:{upstream.port}"}) as gateway:
            client = client_for(gateway.flight)
            reader = client.do_get(flight.Ticket(b'{"tenant": "syn", "dataset": "synthetic"}'))
            reader.read_chunk()  # the upstream now waits before its next batch
            reader.cancel()
            # Well before the 60 s idle timeout: the gateway noticed the client went away.
            wait_for(upstream.finished.is_set, 10, "the quiet upstream call to be cancelled")
    finally:
        upstream.shutdown()
