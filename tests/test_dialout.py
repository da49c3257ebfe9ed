"""Connectors that dial the gateway in (DESIGN.md "Connector dial-out"), in one process:
refusals at the upgrade, every surface through a tunnel, a slow reader beside a fast one,
100 streams on one tunnel, connectors stopped, restarted and joined, gateway restarts.
(The same over a one-way network, with real processes: test_dialout_netns.py.)"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.flight as flight
import pyarrow.parquet as pq
import pytest
from conftest import DEMO_DATA, running_gateway, wait_for
from test_live import Collector, batch, publish, ticket
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as ws_connect

from streamkit.client import GatewayClient
from streamkit.config import ConfigError, TenantConfig, parse
from streamkit.connector import ConnectorServer
from streamkit.connector.dial import Dialer
from streamkit.gateway import Gateway
from streamkit.secrets import Secret
from streamkit.security import RateLimit

TOKEN = "connector-secret-0123456789"
READER = "reader-token-abcdef"
SENSORS = pq.read_table(DEMO_DATA / "sensors.parquet")


def dialing_tenant(name: str = "plant", **kwargs) -> TenantConfig:
    return TenantConfig(
        name, connector_mode="websocket", connector_token=Secret(TOKEN, False), **kwargs
    )


class DialedConnector:
    """A connector on a private Unix socket, reached only through the tunnels it dials."""

    def __init__(
        self,
        root: Path,
        gateway: Gateway,
        socket: Path,
        *,
        token: str = TOKEN,
        tenant: str = "plant",
        url: str | None = None,
        tls_ca: Path | None = None,
        **server_kwargs,
    ) -> None:
        self.server = ConnectorServer(
            str(root), f"grpc+unix://{socket}", token=TOKEN, **server_kwargs
        )
        url = url or f"ws://127.0.0.1:{gateway.http_port}/connect"
        self.dialer = Dialer(url, tenant, token, socket, tls_ca=tls_ca).start()

    def stop(self) -> None:
        self.dialer.stop()
        self.server.stop()
        self.server.shutdown()


@contextmanager
def dialed(root: Path, gateway: Gateway, socket: Path, **kwargs) -> Iterator[DialedConnector]:
    connector = DialedConnector(root, gateway, socket, **kwargs)
    try:
        yield connector
    finally:
        connector.stop()


def tunnels_of(gateway: Gateway, tenant: str = "plant"):
    tunnels = gateway.tunnels.get(tenant)
    assert tunnels is not None
    return tunnels


def wait_dialed_in(gateway: Gateway, tenant: str = "plant", idle: int = 1) -> None:
    tunnels = tunnels_of(gateway, tenant)
    wait_for(lambda: sum(t.open for t in tunnels.idle) >= idle, 15, f"{tenant} to dial in")


def served(client: flight.FlightClient, *path: str) -> pa.Table:
    info = client.get_flight_info(flight.FlightDescriptor.for_path(*path))
    return client.do_get(info.endpoints[0].ticket).read_all()


def http_status(url: str, headers: dict[str, str]) -> int:
    request = urllib.request.Request(
        url,
        headers={
            "Connection": "Upgrade",
            "Upgrade": "websocket",
            "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
            **headers,
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.fixture
def plant(tmp_path) -> Iterator[tuple[Gateway, DialedConnector]]:
    """A gateway with a dialing tenant ``plant`` (and an embedded ``demo``), dialed in."""
    root = tmp_path / "site"
    root.mkdir()
    pq.write_table(SENSORS, root / "sensors.parquet")
    with (
        running_gateway({"plant": dialing_tenant(), "demo": DEMO_DATA}) as gateway,
        dialed(root, gateway, tmp_path / "c.sock") as connector,
    ):
        wait_dialed_in(gateway)
        yield gateway, connector


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ('connector_mode = "websocket"\n', "tenants.p.connector_token: a dialing connector"),
        ('connector_mode = "ws"\n', 'tenants.p.connector_mode: must be "grpc" or "websocket"'),
        (
            'connector_mode = "websocket"\nconnector_token = "env:HOME"\npath = "."\n',
            "tenants.p.path: not for a connector that dials in",
        ),
        (
            'connector_mode = "websocket"\nconnector_token = "env:HOME"\n'
            'connector = "grpc://h:1"\n',
            "tenants.p.connector: not for a connector that dials in",
        ),
    ],
)
def test_config_of_a_dialing_tenant_is_checked(body, reason, tmp_path):
    import tomllib

    with pytest.raises(ConfigError, match=reason):
        parse(tomllib.loads("[tenants.p]\n" + body), source="s.toml", base=tmp_path)


def test_connect_is_refused_before_the_upgrade(tmp_path, caplog):
    tenants = {"plant": dialing_tenant(), "demo": DEMO_DATA}
    with running_gateway(tenants) as gateway:
        url = f"http://127.0.0.1:{gateway.http_port}/connect"
        bearer = {"Authorization": f"Bearer {TOKEN}"}
        assert http_status(url, {"X-Streamkit-Tenant": "plant"}) == 401
        assert (
            http_status(url, {"X-Streamkit-Tenant": "plant", "Authorization": "Bearer no"}) == 401
        )
        assert http_status(url, {"X-Streamkit-Tenant": "nobody", **bearer}) == 404
        assert http_status(url, {"X-Streamkit-Tenant": "demo", **bearer}) == 404  # not websocket
        assert http_status(url, bearer) == 404
        # The right token and tenant upgrade (101 reads as success to urllib's opener? no:
        # urllib cannot speak WebSocket, so check with a real client below).
        with ws_connect(
            f"ws://127.0.0.1:{gateway.http_port}/connect",
            additional_headers={"X-Streamkit-Tenant": "plant", **bearer},
        ):
            wait_dialed_in(gateway)
        # A connector with a wrong token is refused and says so; the tenant stays unavailable.
        socket = tmp_path / "c.sock"
        with dialed(tmp_path, gateway, socket, token="wrong-token") as connector:
            wait_for(lambda: connector.dialer.refused, 15, "the refusal")
            assert connector.dialer.refused.startswith("401")
            assert not tunnels_of(gateway).connected
        assert TOKEN not in caplog.text and "wrong-token" not in caplog.text


def test_a_tenant_with_no_connector_is_unavailable_and_says_why(tmp_path):
    with (
        running_gateway({"plant": dialing_tenant(), "demo": DEMO_DATA}) as gateway,
        flight.connect(gateway.flight_url) as client,
    ):
        with pytest.raises(flight.FlightUnavailableError, match="tenant 'plant' is not connected"):
            client.get_flight_info(flight.FlightDescriptor.for_path("plant", "sensors"))
        with pytest.raises(flight.FlightUnavailableError, match="tenant 'plant' is not connected"):
            list(client.list_flights(b"plant"))
        # The other tenants are listed all the same.
        assert {i.descriptor.path[0] for i in client.list_flights()} == {b"demo"}
        with GatewayClient(gateway.flight_url) as gateway_client:
            health = gateway_client.health()
        assert health["plant"]["connection"] == "not connected"
        assert health["plant"]["reachable"] is False
        assert "connection" not in health["demo"]
        with urllib.request.urlopen(f"http://127.0.0.1:{gateway.http_port}/healthz") as response:
            body = json.loads(response.read())
        assert body["status"] == "degraded"
        assert body["tenants"]["plant"]["connection"] == "not connected"
        with ws_connect(f"ws://127.0.0.1:{gateway.http_port}/ws") as ws:
            ws.send(
                json.dumps({"action": "query", "id": "q", "tenant": "plant", "dataset": "sensors"})
            )
            error = json.loads(ws.recv(timeout=10))
        assert error["type"] == "error" and error["code"] == "unavailable"
        assert "not connected" in error["message"]


def test_every_read_surface_through_a_tunnel(plant):
    gateway, _ = plant
    with flight.connect(gateway.flight_url) as client:
        listed = {tuple(p.decode() for p in i.descriptor.path) for i in client.list_flights()}
        assert ("plant", "sensors") in listed and ("demo", "sensors") in listed
        assert served(client, "plant", "sensors").equals(SENSORS)
        # Projection and limit reach the connector through the tunnel.
        command = {"tenant": "plant", "dataset": "sensors", "columns": ["sensor"], "limit": 7}
        info = client.get_flight_info(flight.FlightDescriptor.for_command(json.dumps(command)))
        part = client.do_get(info.endpoints[0].ticket).read_all()
        assert part.column_names == ["sensor"] and part.num_rows == 7
        with pytest.raises(flight.FlightServerError, match="not found: "):
            served(client, "plant", "missing")
    with GatewayClient(gateway.flight_url) as gateway_client:
        health = gateway_client.health()
    assert health["plant"] == {**health["plant"], "reachable": True, "connection": "dialed in"}
    base = f"127.0.0.1:{gateway.http_port}"
    with urllib.request.urlopen(f"http://{base}/api/stream/plant/sensors") as response:
        assert pa.ipc.open_stream(response.read()).read_all().equals(SENSORS)
    with ws_connect(f"ws://{base}/ws", max_size=None) as ws:
        ws.send(json.dumps({"action": "query", "id": "q", "tenant": "plant", "dataset": "sensors"}))
        frames = []
        while True:
            message = ws.recv(timeout=20)
            if isinstance(message, bytes):
                frames.append(message)
            elif json.loads(message)["type"] in ("end", "error"):
                assert json.loads(message)["type"] == "end", message
                break
        assert pa.ipc.open_stream(b"".join(frames)).read_all().equals(SENSORS)


def test_publish_follow_fan_out_and_cancel_through_a_tunnel(plant):
    gateway, connector = plant
    with flight.connect(gateway.flight_url) as client:
        publish(client, ["plant", "feed"], [batch(0), batch(3)])
        followers = [
            Collector(client.do_get(ticket(tenant="plant", dataset="feed", follow=True)))
            for _ in range(3)
        ]
        for follower in followers:
            wait_for(lambda f=follower: len(f.seqs) == 6, 15, "history")
        feed = connector.server.live.get("feed")
        wait_for(lambda: len(feed.followers) == 1, 15, "one shared upstream follow")
        for start in range(6, 150, 3):
            publish(client, ["plant", "feed"], [batch(start)])
        for follower in followers:
            wait_for(lambda f=follower: len(f.seqs) == 150, 15, "every row")
            assert follower.seqs == list(range(150)) and follower.error is None
        for follower in followers:
            follower.stop()
        wait_for(lambda: not feed.followers, 15, "the upstream follow to be cancelled")


def test_tokens_and_rate_limits_apply_to_a_dialed_tenant(tmp_path):
    tenant = dialing_tenant(
        tokens=(Secret(READER, False),), rate_limit=RateLimit(100.0, 100, max_streams=1)
    )
    feather.write_feather(big_table(1_000_000), tmp_path / "big.arrow")
    with (
        running_gateway({"plant": tenant}) as gateway,
        dialed(tmp_path, gateway, tmp_path / "c.sock", batch_bytes=64 * 1024),
        flight.connect(gateway.flight_url) as client,
    ):
        wait_dialed_in(gateway)
        with pytest.raises(flight.FlightUnauthenticatedError):
            served(client, "plant", "big")
        options = flight.FlightCallOptions(
            headers=[(b"authorization", f"Bearer {READER}".encode())]
        )
        info = client.get_flight_info(flight.FlightDescriptor.for_path("plant", "big"), options)
        first = client.do_get(info.endpoints[0].ticket, options)
        first.read_chunk()
        with pytest.raises(flight.FlightUnavailableError, match="rate limited: "):
            client.do_get(info.endpoints[0].ticket, options).read_all()
        first.cancel()


def big_table(rows: int) -> pa.Table:
    return pa.table(
        {
            "seq": pa.array(range(rows), pa.int64()),
            "value": pa.array([i * 0.25 for i in range(rows)], pa.float64()),
        }
    )


def test_a_slow_reader_does_not_hold_back_a_fast_one_on_the_same_tunnel(tmp_path):
    rows = 4_000_000  # 64 MB
    feather.write_feather(big_table(rows), tmp_path / "big.arrow", compression="uncompressed")
    with (
        running_gateway({"plant": dialing_tenant()}) as gateway,
        dialed(tmp_path, gateway, tmp_path / "c.sock", batch_bytes=256 * 1024),
        flight.connect(gateway.flight_url) as slow_client,
        flight.connect(gateway.flight_url) as fast_client,
    ):
        wait_dialed_in(gateway)
        info = slow_client.get_flight_info(flight.FlightDescriptor.for_path("plant", "big"))
        slow = slow_client.do_get(info.endpoints[0].ticket)
        slow_rows = slow.read_chunk().data.num_rows
        fast = fast_client.do_get(info.endpoints[0].ticket).read_all()
        assert fast.num_rows == rows
        # Both streams went through one tunnel (one HTTP/2 connection, multiplexed) ...
        assert tunnels_of(gateway).busy == 1
        # ... and the slow one, not read meanwhile, is still far from its end.
        slow_rows += slow.read_chunk().data.num_rows
        assert slow_rows < rows // 4
        rest = slow.read_all()
        assert slow_rows + rest.num_rows == rows


def test_100_concurrent_streams_through_one_tunnel(plant):
    gateway, _ = plant
    barrier = threading.Barrier(100)

    def read(_: int) -> pa.Table:
        with flight.connect(gateway.flight_url) as client:
            barrier.wait(30)
            return served(client, "plant", "sensors")

    with ThreadPoolExecutor(100) as pool:
        tables = list(pool.map(read, range(100)))
    assert all(table.equals(SENSORS) for table in tables)
    assert tunnels_of(gateway).busy == 1


def test_a_tunnel_cut_mid_stream_fails_the_stream_and_a_new_connector_serves_again(tmp_path):
    feather.write_feather(big_table(4_000_000), tmp_path / "big.arrow", compression="uncompressed")
    pq.write_table(SENSORS, tmp_path / "sensors.parquet")
    with (
        running_gateway({"plant": dialing_tenant()}) as gateway,
        flight.connect(gateway.flight_url) as client,
    ):
        first = DialedConnector(tmp_path, gateway, tmp_path / "c1.sock", batch_bytes=256 * 1024)
        try:
            wait_dialed_in(gateway)
            info = client.get_flight_info(flight.FlightDescriptor.for_path("plant", "big"))
            reader = client.do_get(info.endpoints[0].ticket)
            reader.read_chunk()
        finally:
            first.stop()  # the site goes away with a stream open
        started = time.monotonic()
        with pytest.raises(flight.FlightUnavailableError, match="plant"):
            reader.read_all()
        assert time.monotonic() - started < 15
        wait_for(lambda: not tunnels_of(gateway).connected, 15, "the tunnels to close")
        with pytest.raises(flight.FlightUnavailableError, match="not connected"):
            served(client, "plant", "sensors")
        # The connector comes back (a restart): served again, the gateway never restarted.
        with dialed(tmp_path, gateway, tmp_path / "c2.sock"):
            wait_dialed_in(gateway)
            assert wait_for(
                lambda: _try(lambda: served(client, "plant", "sensors")),
                15,
                "the tenant to be served again",
            ).equals(SENSORS)


def _try(call):
    try:
        return call()
    except flight.FlightUnavailableError:
        return None


def test_a_second_connector_joins_and_the_first_can_leave(tmp_path):
    pq.write_table(SENSORS, tmp_path / "sensors.parquet")
    with (
        running_gateway({"plant": dialing_tenant()}) as gateway,
        flight.connect(gateway.flight_url) as client,
        dialed(tmp_path, gateway, tmp_path / "c1.sock"),
    ):
        wait_dialed_in(gateway, idle=2)
        with dialed(tmp_path, gateway, tmp_path / "c2.sock") as second:
            wait_dialed_in(gateway, idle=4)  # two spares each
            assert served(client, "plant", "sensors").equals(SENSORS)
            second_tunnels = second.dialer
        wait_for(lambda: second_tunnels.connected.is_set() is False, 15, "the second to leave")
        assert wait_for(
            lambda: _try(lambda: served(client, "plant", "sensors")),
            15,
            "still served by the first",
        ).equals(SENSORS)


def test_the_connector_dials_back_when_the_gateway_restarts(tmp_path):
    pq.write_table(SENSORS, tmp_path / "sensors.parquet")
    tenants = {"plant": dialing_tenant()}
    with running_gateway(tenants) as gateway:
        port = gateway.http_port
        connector = DialedConnector(tmp_path, gateway, tmp_path / "c.sock")
        try:
            wait_dialed_in(gateway)
            with flight.connect(gateway.flight_url) as client:
                assert served(client, "plant", "sensors").equals(SENSORS)
            gateway.stop()
            wait_for(lambda: not connector.dialer.connected.is_set(), 15, "the tunnels to drop")
            with running_gateway(tenants, http_port=port) as again:
                wait_dialed_in(again)
                with flight.connect(again.flight_url) as client:
                    table = wait_for(
                        lambda: _try(lambda: served(client, "plant", "sensors")),
                        15,
                        "served by the new gateway",
                    )
                assert table.equals(SENSORS)
        finally:
            connector.stop()


def test_ls_says_dialed_in_or_not_connected(tmp_path):
    from typer.testing import CliRunner

    from streamkit.cli import app

    runner = CliRunner()
    pq.write_table(SENSORS, tmp_path / "sensors.parquet")
    with running_gateway({"plant": dialing_tenant(), "demo": DEMO_DATA}) as gateway:
        url = gateway.flight_url
        result = runner.invoke(app, ["ls", "--gateway", url], catch_exceptions=False)
        assert result.exit_code == 0, result.stderr
        assert "tenant plant: not connected" in result.stderr
        assert not any(line.startswith("plant\t") for line in result.stdout.splitlines())
        with dialed(tmp_path, gateway, tmp_path / "c.sock"):
            wait_dialed_in(gateway)
            result = runner.invoke(app, ["ls", "--gateway", url], catch_exceptions=False)
            assert result.exit_code == 0, result.stderr
            assert "tenant plant: dialed in" in result.stderr
            assert any(line.startswith("plant\tsensors\t") for line in result.stdout.splitlines())
            result = runner.invoke(app, ["ls", "plant", "--json", "--gateway", url])
            document = json.loads(result.stdout)
            assert document["tenants"]["plant"]["connection"] == "dialed in"
            assert {d["tenant"] for d in document["datasets"]} == {"plant"}


def test_wss_with_the_gateway_ca_and_the_allow_list(tmp_path):
    from streamkit.certs import write_dev_certs

    certs = tmp_path / "certs"
    other = tmp_path / "other"
    certs.mkdir()
    other.mkdir()
    write_dev_certs(certs)
    write_dev_certs(other)
    pq.write_table(SENSORS, tmp_path / "sensors.parquet")
    tls = {"tls_cert": certs / "server.pem", "tls_key": certs / "server.key"}
    with running_gateway({"plant": dialing_tenant()}, **tls) as gateway:
        url = f"wss://localhost:{gateway.http_port}/connect"
        # A gateway whose certificate the connector cannot verify is never dialed in.
        wrong_ca = other / "ca.pem"
        with dialed(tmp_path, gateway, tmp_path / "w.sock", url=url, tls_ca=wrong_ca) as wrong:
            wait_for(lambda: wrong.dialer.last_error, 15, "the failed TLS handshake")
            assert "certificate verify failed" in wrong.dialer.last_error
            assert not tunnels_of(gateway).connected
        with dialed(tmp_path, gateway, tmp_path / "c.sock", url=url, tls_ca=certs / "ca.pem"):
            wait_dialed_in(gateway)
            ca = (certs / "ca.pem").read_bytes()
            with flight.connect(
                f"grpc+tls://localhost:{gateway.flight_port}", tls_root_certs=ca
            ) as client:
                assert served(client, "plant", "sensors").equals(SENSORS)
    with (
        running_gateway({"plant": dialing_tenant()}, allow=("10.1.2.0/24",)) as gateway,
        dialed(tmp_path, gateway, tmp_path / "a.sock") as connector,
    ):
        wait_for(lambda: connector.dialer.refused, 15, "the allow-list's refusal")
        assert connector.dialer.refused.startswith("403")


def test_a_hostile_tunnel_does_not_take_the_gateway_down(tmp_path):
    pq.write_table(SENSORS, tmp_path / "sensors.parquet")
    headers = {"X-Streamkit-Tenant": "plant", "Authorization": f"Bearer {TOKEN}"}
    with (
        running_gateway({"plant": dialing_tenant(), "demo": DEMO_DATA}) as gateway,
        flight.connect(gateway.flight_url) as client,
    ):
        url = f"ws://127.0.0.1:{gateway.http_port}/connect"
        # A "connector" that answers gRPC with garbage: the calls fail cleanly, naming the
        # tenant, and nothing hangs.
        with ws_connect(url, additional_headers=headers) as fake:
            wait_dialed_in(gateway)
            failure: list[BaseException] = []

            def ask() -> None:
                try:
                    served(client, "plant", "sensors")
                except BaseException as exc:
                    failure.append(exc)

            asker = threading.Thread(target=ask)
            asker.start()
            fake.recv(timeout=15)  # the gateway's HTTP/2 preface
            fake.send(b"\x00garbage, not HTTP/2" * 100)
            asker.join(30)
            assert not asker.is_alive()
            assert isinstance(failure[0], flight.FlightUnavailableError), failure
            assert "plant" in str(failure[0])
        # Text frames and oversized messages close the tunnel; the gateway carries on.
        with ws_connect(url, additional_headers=headers) as fake:
            fake.send("hello")
        fake = ws_connect(url, additional_headers=headers, max_size=None)
        with pytest.raises(ConnectionClosed):
            fake.send(b"x" * (8 * 1024 * 1024))
            fake.recv(timeout=15)
        fake.close()
        assert served(client, "demo", "sensors").num_rows == SENSORS.num_rows
        with dialed(tmp_path, gateway, tmp_path / "c.sock"):
            wait_dialed_in(gateway)
            table = wait_for(lambda: _try(lambda: served(client, "plant", "sensors")), 15, "real")
            assert table.equals(SENSORS)


def test_sql_and_where_through_a_tunnel(plant):
    gateway, _ = plant
    statement = "SELECT sensor, count(*) AS n FROM sensors GROUP BY sensor"
    with flight.connect(gateway.flight_url) as client:
        command = json.dumps({"tenant": "plant", "sql": statement})
        info = client.get_flight_info(flight.FlightDescriptor.for_command(command))
        table = client.do_get(info.endpoints[0].ticket).read_all()
        assert sum(table["n"].to_pylist()) == SENSORS.num_rows
        command = json.dumps({"tenant": "plant", "dataset": "sensors", "where": "humidity > 50"})
        info = client.get_flight_info(flight.FlightDescriptor.for_command(command))
        kept = client.do_get(info.endpoints[0].ticket).read_all()
        expected = SENSORS.filter(pa.compute.greater(SENSORS["humidity"], 50))
        assert kept.equals(expected)
