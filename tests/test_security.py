"""Production security, for real over loopback: TLS, tokens, connector token, allow-lists,
rate limits, origins, unimplemented methods, and secrets kept out of logs and errors."""

from __future__ import annotations

import http.client
import json
import logging
import socket
import ssl
import urllib.error
import urllib.request
from pathlib import Path

import pyarrow.flight as flight
import pyarrow.parquet as pq
import pytest
from conftest import DEMO_DATA, running_connector, running_gateway, wait_for
from synthetic_connector import SyntheticConnector
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from streamkit.certs import write_dev_certs
from streamkit.config import TenantConfig
from streamkit.connector import ConnectorServer
from streamkit.gateway import ws_session
from streamkit.secrets import Secret
from streamkit.security import RateLimit

TOKEN_A = "alpha-token-7f3e9c"
TOKEN_B = "beta-token-2b81d4"


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("certs")
    write_dev_certs(directory)
    return directory


@pytest.fixture(scope="module")
def other_certs(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("other-certs")
    write_dev_certs(directory)
    return directory


def secured_tenants() -> dict[str, TenantConfig]:
    return {
        "a": TenantConfig("a", path=DEMO_DATA, tokens=(Secret(TOKEN_A, False),)),
        "b": TenantConfig("b", path=DEMO_DATA, tokens=(Secret(TOKEN_B, False),)),
        "open": TenantConfig("open", path=DEMO_DATA),
    }


def bearer(token: str) -> flight.FlightCallOptions:
    return flight.FlightCallOptions(headers=[(b"authorization", f"Bearer {token}".encode())])


def sensors(tenant: str) -> flight.FlightDescriptor:
    return flight.FlightDescriptor.for_path(tenant, "sensors")


# -- TLS -----------------------------------------------------------------------


def test_tls_required_and_verified(certs, other_certs):
    with running_gateway(
        {"demo": DEMO_DATA}, tls_cert=certs / "server.pem", tls_key=certs / "server.key"
    ) as gateway:
        assert gateway.flight_url.startswith("grpc+tls://")
        ca = (certs / "ca.pem").read_bytes()
        with flight.connect(
            f"grpc+tls://localhost:{gateway.flight_port}", tls_root_certs=ca
        ) as client:
            info = client.get_flight_info(sensors("demo"))
            assert client.do_get(info.endpoints[0].ticket).read_all().num_rows == 10_080
        with (
            flight.connect(f"grpc://localhost:{gateway.flight_port}") as plain,
            pytest.raises(flight.FlightUnavailableError),
        ):
            plain.get_flight_info(sensors("demo"), flight.FlightCallOptions(timeout=5))
        wrong = (other_certs / "ca.pem").read_bytes()
        with (
            flight.connect(
                f"grpc+tls://localhost:{gateway.flight_port}", tls_root_certs=wrong
            ) as client,
            pytest.raises(flight.FlightUnavailableError),
        ):
            client.get_flight_info(sensors("demo"), flight.FlightCallOptions(timeout=5))

        context = ssl.create_default_context(cafile=certs / "ca.pem")
        url = f"https://localhost:{gateway.http_port}"
        with urllib.request.urlopen(f"{url}/healthz", context=context, timeout=10) as response:
            assert json.loads(response.read())["status"] == "ok"
        with pytest.raises(urllib.error.URLError):
            urllib.request.urlopen(
                f"{url}/healthz",
                context=ssl.create_default_context(cafile=other_certs / "ca.pem"),
                timeout=10,
            )
        with pytest.raises((ConnectionError, http.client.HTTPException, OSError)):
            urllib.request.urlopen(f"http://localhost:{gateway.http_port}/healthz", timeout=10)
        with connect(
            f"wss://localhost:{gateway.http_port}/ws", ssl=context, compression=None
        ) as ws:
            ws.send(json.dumps({"action": "list"}))
            assert json.loads(ws.recv(timeout=10))["type"] == "datasets"


def test_mutual_tls_to_a_connector(certs, tmp_path):
    connector = ConnectorServer(
        str(DEMO_DATA),
        "grpc://127.0.0.1:0",
        tls_cert=certs / "server.pem",
        tls_key=certs / "server.key",
        tls_client_ca=certs / "ca.pem",
    )
    try:
        uri = f"grpc+tls://localhost:{connector.port}"
        with_cert = TenantConfig(
            "m",
            connector=uri,
            connector_ca=certs / "ca.pem",
            connector_cert=certs / "client.pem",
            connector_key=certs / "client.key",
        )
        without = TenantConfig("n", connector=uri, connector_ca=certs / "ca.pem")
        with (
            running_gateway({"m": with_cert, "n": without}) as gateway,
            flight.connect(gateway.flight_url) as client,
        ):
            info = client.get_flight_info(sensors("m"))
            assert client.do_get(info.endpoints[0].ticket).read_all().num_rows == 10_080
            with pytest.raises(flight.FlightUnavailableError, match="tenant 'n'"):
                client.get_flight_info(sensors("n"))
    finally:
        connector.shutdown()


# -- tokens ----------------------------------------------------------------------


def test_flight_tokens_per_tenant(caplog):
    caplog.set_level(logging.DEBUG)
    with (
        running_gateway(secured_tenants()) as gateway,
        flight.connect(gateway.flight_url) as client,
    ):
        with pytest.raises(flight.FlightUnauthenticatedError):
            client.get_flight_info(sensors("a"))
        with pytest.raises(flight.FlightUnauthenticatedError):
            client.get_flight_info(sensors("a"), bearer("wrong-token"))
        info = client.get_flight_info(sensors("a"), bearer(TOKEN_A))
        assert client.do_get(info.endpoints[0].ticket, bearer(TOKEN_A)).read_all().num_rows
        # Another tenant, existing or not, looks the same.
        for tenant in ("b", "no-such-tenant"):
            with pytest.raises(flight.FlightUnauthorizedError) as raised:
                client.get_flight_info(sensors(tenant), bearer(TOKEN_A))
            assert "not found" not in str(raised.value)
        # A ticket minted for tenant a, replayed with b's token, is refused.
        with pytest.raises(flight.FlightUnauthorizedError):
            client.do_get(info.endpoints[0].ticket, bearer(TOKEN_B)).read_all()
        with pytest.raises(flight.FlightUnauthenticatedError):
            client.do_get(info.endpoints[0].ticket).read_all()
        # Open tenants stay open; listings show only what the caller may read.
        assert client.get_flight_info(sensors("open")).total_records == 10_080
        tenants = {i.descriptor.path[0] for i in client.list_flights(b"", bearer(TOKEN_A))}
        assert tenants == {b"a", b"open"}
        assert {i.descriptor.path[0] for i in client.list_flights()} == {b"open"}
        with pytest.raises(flight.FlightUnauthorizedError):
            list(client.list_flights(b"b", bearer(TOKEN_A)))
        messages = " ".join(r.getMessage() for r in caplog.records)
    assert TOKEN_A not in messages and TOKEN_B not in messages and "wrong-token" not in messages


def http_get(url: str, token: str | None = None, source: str | None = None):
    host, _, rest = url.removeprefix("http://").partition("/")
    name, port = host.split(":")
    conn = http.client.HTTPConnection(
        name, int(port), timeout=10, source_address=(source, 0) if source else None
    )
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    conn.request("GET", "/" + rest, headers=headers)
    response = conn.getresponse()
    body = response.read()
    conn.close()
    return response.status, body


def test_http_tokens_and_healthz():
    with running_gateway(secured_tenants()) as gateway:
        base = gateway.http_url
        status, body = http_get(f"{base}/api/stream/a/sensors?limit=5")
        assert status == 401 and json.loads(body)["code"] == "unauthenticated"
        status, body = http_get(f"{base}/api/stream/a/sensors?limit=5", "bad")
        assert status == 401
        status, body = http_get(f"{base}/api/stream/b/sensors?limit=5", TOKEN_A)
        assert status == 403 and json.loads(body)["code"] == "unauthorized"
        status, body = http_get(f"{base}/api/stream/a/sensors?limit=5", TOKEN_A)
        assert status == 200 and body.startswith(b"\xff\xff\xff\xff")
        status, body = http_get(f"{base}/healthz")
        assert status == 200 and json.loads(body) == {"status": "ok"}
        status, body = http_get(f"{base}/healthz", TOKEN_B)
        assert set(json.loads(body)["tenants"]) == {"b", "open"}
        assert TOKEN_A.encode() not in body and TOKEN_B.encode() not in body


def test_websocket_auth_by_header_and_by_first_message():
    with running_gateway(secured_tenants()) as gateway:
        url = f"ws://127.0.0.1:{gateway.http_port}/ws"
        with connect(
            url, additional_headers={"Authorization": f"Bearer {TOKEN_A}"}, compression=None
        ) as ws:
            ws.send(json.dumps({"action": "list"}))
            tenants = {d["tenant"] for d in json.loads(ws.recv(timeout=10))["datasets"]}
            assert tenants == {"a", "open"}
        with connect(url, compression=None) as ws:
            ws.send(json.dumps({"action": "query", "tenant": "a", "dataset": "sensors"}))
            assert json.loads(ws.recv(timeout=10))["code"] == "unauthenticated"
            ws.send(json.dumps({"action": "auth", "token": "nope"}))
            reply = json.loads(ws.recv(timeout=10))
            assert reply["code"] == "unauthenticated" and "nope" not in reply["message"]
            ws.send(json.dumps({"action": "auth", "token": TOKEN_B}))
            assert json.loads(ws.recv(timeout=10)) == {
                "type": "authenticated",
                "id": None,
                "tenants": ["b", "open"],
            }
            ws.send(json.dumps({"action": "query", "tenant": "a", "dataset": "sensors"}))
            assert json.loads(ws.recv(timeout=10))["code"] == "unauthorized"
            ws.send(
                json.dumps({"action": "query", "tenant": "b", "dataset": "sensors", "limit": 3})
            )
            while isinstance(message := ws.recv(timeout=10), bytes):
                pass
            assert json.loads(message)["rows"] == 3
        with pytest.raises(InvalidStatus) as raised:
            connect(url, additional_headers={"Authorization": "Bearer nope"})
        assert raised.value.response.status_code == 401


def test_socket_without_auth_is_closed_when_nothing_is_open(monkeypatch):
    monkeypatch.setattr(ws_session, "AUTH_TIMEOUT_SECONDS", 0.3)
    tenants = secured_tenants()
    del tenants["open"]
    with (
        running_gateway(tenants) as gateway,
        connect(f"ws://127.0.0.1:{gateway.http_port}/ws") as ws,
    ):
        with pytest.raises(ConnectionClosed) as raised:
            ws.recv(timeout=10)
        assert raised.value.rcvd.code == 1008


def test_connector_token(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    secret = "connector-secret-91ac"
    with running_connector(DEMO_DATA, token=secret) as connector:
        with flight.connect(f"grpc://127.0.0.1:{connector.port}") as direct:
            with pytest.raises(flight.FlightUnauthenticatedError):
                direct.get_flight_info(flight.FlightDescriptor.for_path("sensors"))
            with pytest.raises(flight.FlightUnauthenticatedError):
                list(direct.list_flights(b"", bearer("guess")))
            assert (
                direct.get_flight_info(
                    flight.FlightDescriptor.for_path("sensors"), bearer(secret)
                ).total_records
                == 10_080
            )
        uri = f"grpc://127.0.0.1:{connector.port}"
        good = TenantConfig("good", connector=uri, connector_token=Secret(secret, False))
        bad = TenantConfig("bad", connector=uri, connector_token=Secret("guess", False))
        with (
            running_gateway({"good": good, "bad": bad}) as gateway,
            flight.connect(gateway.flight_url) as client,
        ):
            info = client.get_flight_info(sensors("good"))
            assert client.do_get(info.endpoints[0].ticket).read_all().num_rows == 10_080
            with pytest.raises(flight.FlightUnavailableError, match="refused the gateway") as e:
                client.get_flight_info(sensors("bad"))
            assert "guess" not in str(e.value) and secret not in str(e.value)
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert secret not in messages and "guess" not in messages


# -- peers, origins, limits --------------------------------------------------------


def test_allow_list_on_both_listeners():
    with running_gateway({"demo": DEMO_DATA}, allow=("127.0.0.2/32",)) as gateway:
        with (
            flight.connect(gateway.flight_url) as client,
            pytest.raises(flight.FlightUnauthorizedError, match="peer not allowed"),
        ):
            client.get_flight_info(sensors("demo"))
        status, body = http_get(f"{gateway.http_url}/healthz", source="127.0.0.1")
        assert status == 403 and b"peer not allowed" in body
        status, body = http_get(f"{gateway.http_url}/healthz", source="127.0.0.2")
        assert status == 200
        sock = socket.create_connection(
            ("127.0.0.1", gateway.http_port), source_address=("127.0.0.1", 0)
        )
        with pytest.raises(InvalidStatus) as raised:
            connect(f"ws://127.0.0.1:{gateway.http_port}/ws", sock=sock)
        assert raised.value.response.status_code == 403
    with (
        running_gateway({"demo": DEMO_DATA}, allow=("127.0.0.1/32",)) as gateway,
        flight.connect(gateway.flight_url) as client,
    ):
        assert client.get_flight_info(sensors("demo")).total_records == 10_080


def test_cross_origin_websocket_is_refused():
    with running_gateway({"demo": DEMO_DATA}) as gateway:
        url = f"ws://127.0.0.1:{gateway.http_port}/ws"
        with pytest.raises(InvalidStatus) as raised:
            connect(url, origin="http://evil.example")
        assert raised.value.response.status_code == 403
        with connect(url, origin=f"http://127.0.0.1:{gateway.http_port}") as ws:
            ws.send(json.dumps({"action": "list"}))
            assert json.loads(ws.recv(timeout=10))["type"] == "datasets"
    with running_gateway(
        {"demo": DEMO_DATA}, allowed_origins=("https://dash.example.com",)
    ) as gateway:
        url = f"ws://127.0.0.1:{gateway.http_port}/ws"
        with connect(url, origin="https://dash.example.com"):
            pass
        with pytest.raises(InvalidStatus):
            connect(url, origin=f"http://127.0.0.1:{gateway.http_port}")


def test_rate_limits_per_caller():
    limits = RateLimit(requests_per_second=0.01, burst=3, max_streams=1)
    upstream = SyntheticConnector(batches=2000)
    tenants = {
        "demo": TenantConfig(
            "demo",
            path=DEMO_DATA,
            rate_limit=limits,
            tokens=(Secret(TOKEN_A, False), Secret(TOKEN_B, False)),
        ),
        "syn": TenantConfig(
            "syn",
            connector=f"grpc://127.0.0.1:{upstream.port}",
            rate_limit=RateLimit(requests_per_second=100, burst=100, max_streams=1),
        ),
    }
    try:
        with running_gateway(tenants) as gateway, flight.connect(gateway.flight_url) as client:
            for _ in range(3):
                client.get_flight_info(sensors("demo"), bearer(TOKEN_A))
            with pytest.raises(flight.FlightUnavailableError, match="^rate limited: "):
                client.get_flight_info(sensors("demo"), bearer(TOKEN_A))
            # Another caller is not disturbed; refused requests took nothing from it.
            client.get_flight_info(sensors("demo"), bearer(TOKEN_B))
            status, body = http_get(f"{gateway.http_url}/api/stream/demo/sensors", TOKEN_A)
            assert status == 429 and json.loads(body)["code"] == "rate_limited"

            # One concurrent stream per caller on "syn".
            ticket = flight.Ticket(b'{"tenant": "syn", "dataset": "synthetic"}')
            first = client.do_get(ticket)
            first.read_chunk()
            with pytest.raises(flight.FlightUnavailableError, match="concurrent streams"):
                client.do_get(ticket).read_all()
            with connect(f"ws://127.0.0.1:{gateway.http_port}/ws") as ws:
                ws.send(json.dumps({"action": "query", "tenant": "syn", "dataset": "synthetic"}))
                reply = json.loads(ws.recv(timeout=10))
                assert reply["code"] == "rate_limited"
            first.cancel()
            wait_for(upstream.finished.is_set, 15, "the first stream to end")

            def stream_again() -> bool:
                try:
                    reader = client.do_get(
                        flight.Ticket(b'{"tenant": "syn", "dataset": "synthetic"}')
                    )
                except flight.FlightUnavailableError:
                    return False
                reader.read_chunk()
                reader.cancel()
                return True

            wait_for(stream_again, 15, "the stream slot to be given back")
    finally:
        upstream.shutdown()


def test_unimplemented_methods(demo_gateway, demo_connector):
    with flight.connect(f"grpc://127.0.0.1:{demo_connector.port}") as client:
        with pytest.raises(flight.FlightServerError, match="^unimplemented: DoAction") as e:
            list(client.do_action(flight.Action("x", b"")))
        assert "Traceback" not in str(e.value)
        with pytest.raises(flight.FlightServerError, match="^unimplemented: ListActions"):
            list(client.list_actions())
    # The gateway serves "health", "metrics" and Flight SQL's; any other is a clean "invalid".
    with flight.connect(demo_gateway.flight_url) as client:
        actions = [a.type for a in client.list_actions()]
        assert actions == [
            "health", "metrics", "reload", "CreatePreparedStatement", "ClosePreparedStatement"
        ]
        with pytest.raises(flight.FlightServerError, match="^invalid: unknown action 'x'") as e:
            list(client.do_action(flight.Action("x", b"")))
        assert "Traceback" not in str(e.value)
        (result,) = client.do_action(flight.Action("health", b""))
        health = json.loads(result.body.to_pybytes())
        assert health["status"] == "ok" and health["tenants"]["demo"]["reachable"] is True


# -- safe defaults and configuration -----------------------------------------------------


def test_non_loopback_needs_tokens_or_insecure(tmp_path, process):
    (tmp_path / "data").mkdir()
    pq.write_table(pq.read_table(DEMO_DATA / "sensors.parquet"), tmp_path / "data" / "s.parquet")
    config = tmp_path / "streamkit.toml"
    config.write_text('[gateway]\nhost = "0.0.0.0"\n[tenants.t]\npath = "data"\n')
    refused = process("gateway", "up", "--config", str(config))
    assert refused.proc.wait(30) == 1
    refused.stop()
    assert "refusing to serve 0.0.0.0" in refused.stderr and "--insecure" in refused.stderr
    allowed = process(
        "gateway",
        "up",
        "--config",
        str(config),
        "--insecure",
        "--flight-port",
        "0",
        "--http-port",
        "0",
    )
    allowed.wait_for_stderr(r"flight +grpc://0\.0\.0\.0:\d+")

    connector = process("connector", "serve", str(tmp_path / "data"), "--host", "0.0.0.0")
    assert connector.proc.wait(30) == 1
    connector.stop()
    assert "without --token" in connector.stderr
    tokened = process(
        "connector",
        "serve",
        str(tmp_path / "data"),
        "--host",
        "0.0.0.0",
        "--port",
        "0",
        "--token",
        "env:STREAMKIT_TEST_TOKEN",
        env={"STREAMKIT_TEST_TOKEN": "t0ken-value"},
    )
    tokened.wait_for_stderr("connector serving")
    assert "t0ken-value" not in tokened.stderr


def test_security_config_validation(tmp_path, process, monkeypatch):
    from streamkit.config import ConfigError, load

    def config(body: str) -> Path:
        path = tmp_path / "streamkit.toml"
        path.write_text(body)
        return path

    data = f'path = "{DEMO_DATA}"\n'
    cases = [
        ('[gateway]\ntls_cert = "x.pem"\n[tenants.a]\n' + data, "gateway.tls_cert: 'x.pem'"),
        (
            "[tenants.a]\n" + data + 'tokens = ["env:STREAMKIT_NOPE"]\n',
            "tenants.a.tokens[0]: environment variable STREAMKIT_NOPE is not set",
        ),
        (
            "[tenants.a]\n" + data + 'connector_token = "env:X"\n',
            "tenants.a.connector_token: only for a remote 'connector'",
        ),
        (
            "[tenants.a]\n" + data + "rate_limit = { burst = 2 }\n",
            "tenants.a.rate_limit: needs positive",
        ),
        (
            '[gateway]\nallow = ["not-a-net"]\n[tenants.a]\n' + data,
            "gateway.allow: 'not-a-net' is not an address",
        ),
    ]
    for body, message in cases:
        with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
            load(config(body))
    monkeypatch.setenv("STREAMKIT_TEST_SECRET", "from-env")
    (tmp_path / "token.txt").write_text("from-file\n")
    loaded = load(
        config(
            "[tenants.a]\n"
            + data
            + 'tokens = ["env:STREAMKIT_TEST_SECRET", "file:token.txt", "plain"]\n'
        )
    )
    assert [t.value for t in loaded.tenants["a"].tokens] == ["from-env", "from-file", "plain"]
    assert loaded.warnings == (
        "tenants.a.tokens[2]: a literal secret; prefer env:NAME or file:PATH",
    )
    assert "plain" not in repr(loaded)


def test_certs_dev_command(tmp_path, process):
    proc = process("certs", "dev", str(tmp_path / "c"))
    assert proc.proc.wait(60) == 0
    proc.stop()
    names = sorted(p.name for p in (tmp_path / "c").iterdir())
    assert names == ["ca.key", "ca.pem", "client.key", "client.pem", "server.key", "server.pem"]
    assert (tmp_path / "c" / "server.key").stat().st_mode & 0o077 == 0
