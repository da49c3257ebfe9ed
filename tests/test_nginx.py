"""Several gateways behind a real nginx running the shipped ``deploy/nginx.conf``.

Three gateway processes, each on a host of its own (a network namespace on a bridge), run
the same streamkit.toml with the same ``ticket_key`` and read one connector on a fourth
host; nginx runs here with the file's gateway addresses, listen ports and access log
replaced, nothing else. Its access log (``upstream=`` and ``conn=``) tells which gateway
served each call. A gateway is killed, and another host drops off the network, to see nginx
skip them. A control nginx, the same file without its stream timeouts, shows that nginx's
60 s defaults do cut the quiet streams that the shipped file keeps.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.flight as flight
import pytest
from conftest import REPO, Process, wait_for
from websockets.sync.client import ClientConnection, connect

NGINX_CONF = REPO / "deploy" / "nginx.conf"
TICKET_KEY = "nginx-test-ticket-key-0123456789"
READER_TOKEN = "nginx-reader-secret-42"
CONNECTOR_TOKEN = "nginx-connector-secret-42"
ENV = {
    "STREAMKIT_TICKET_KEY": TICKET_KEY,
    "PLANT_READER_TOKEN": READER_TOKEN,
    "PLANT_CONNECTOR_TOKEN": CONNECTOR_TOKEN,
}
OPTIONS = flight.FlightCallOptions(headers=[(b"authorization", f"Bearer {READER_TOKEN}".encode())])
AUTH = {"Authorization": f"Bearer {READER_TOKEN}"}
GATEWAYS = 3
FLIGHT_PORT, HTTP_PORT, CONNECTOR_PORT = 8815, 8080, 50051  # on every host: the defaults
CLIENTS = 1000
NGINX_DEFAULT_TIMEOUT = 60.0
QUIET_SECONDS = NGINX_DEFAULT_TIMEOUT + 8  # longer than nginx's defaults, with a margin
STREAM_TIMEOUTS = (
    "grpc_read_timeout",
    "grpc_send_timeout",
    "client_body_timeout",
    "proxy_read_timeout",
    "proxy_send_timeout",
)

ROWS = 2000
READINGS = pa.table(
    {
        "id": pa.array(range(ROWS), pa.int64()),
        "label": pa.array([f"reading {i}" for i in range(ROWS)]),
        "value": pa.array([i * 0.25 for i in range(ROWS)], pa.float64()),
    }
)
BIG_ROWS = 1_000_000  # 16 MB: many ~1 MiB Arrow messages
BIG = pa.table(
    {
        "seq": pa.array(range(BIG_ROWS), pa.int64()),
        "value": pa.array([i * 0.5 for i in range(BIG_ROWS)], pa.float64()),
    }
)


# -- nginx ----------------------------------------------------------------------------------


def render_nginx_conf(
    flight_servers: list[str],
    http_servers: list[str],
    flight_listen: str,
    http_listen: str,
    access_log: Path,
    drop: tuple[str, ...] = (),
    source: Path = NGINX_CONF,
) -> str:
    """deploy/nginx.conf with its gateways, listen addresses and access log replaced and the
    ``drop`` directives removed; fails if the file no longer has what is replaced."""
    text = source.read_text()
    text = _upstream(text, "streamkit_flight", flight_servers)
    text = _upstream(text, "streamkit_http", http_servers)
    text = _once(r"listen 8815 http2;", f"listen {flight_listen} http2;", text)
    text = _once(r"listen 8080;", f"listen {http_listen};", text)
    text = _once(r"access_log \S+ streamkit;", f"access_log {access_log} streamkit;", text)
    for directive in drop:
        text, found = re.subn(rf"^\s*{directive} [^;]*;\n", "", text, flags=re.M)
        assert found, f"deploy/nginx.conf has no {directive}"
    return text


def _once(pattern: str, replacement: str, text: str) -> str:
    out, found = re.subn(pattern, lambda _: replacement, text)
    assert found == 1, f"deploy/nginx.conf: expected one {pattern!r}, found {found}"
    return out


def _upstream(text: str, name: str, servers: list[str]) -> str:
    """The ``upstream name`` block's server lines replaced by ``servers``, with the first
    line's parameters (max_fails, ...)."""
    block = re.search(rf"upstream {name} \{{.*?\n    \}}", text, re.S)
    assert block, f"deploy/nginx.conf has no upstream {name}"
    lines = block.group(0).splitlines(keepends=True)
    listed = [i for i, line in enumerate(lines) if line.lstrip().startswith("server ")]
    assert listed, f"upstream {name} lists no server"
    shape = re.match(r"(\s*)server \S+?((?: [^;]*)?);", lines[listed[0]])
    assert shape
    indent, params = shape.groups()
    lines[listed[0]] = "".join(f"{indent}server {server}{params};\n" for server in servers)
    kept = [line for i, line in enumerate(lines) if i not in listed[1:]]
    return text.replace(block.group(0), "".join(kept))


@dataclass(frozen=True)
class Entry:
    """One access log line: the call (a Flight method, or an HTTP path), the gateways tried
    in order, and the client connection's serial number."""

    call: str
    status: int
    grpc: str
    upstreams: tuple[str, ...]
    conn: int


LOG_LINE = re.compile(
    r'"\w+ (?P<path>\S+) HTTP/[\d.]+" (?P<status>\d+) grpc=(?P<grpc>\S+) '
    r"upstream=(?P<upstreams>.*?) conn=(?P<conn>\d+) "
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


class Nginx:
    """nginx in the foreground on free loopback ports, with the rendered deploy/nginx.conf."""

    def __init__(
        self,
        workdir: Path,
        flight_servers: list[str],
        http_servers: list[str],
        drop: tuple[str, ...] = (),
        source: Path = NGINX_CONF,
    ) -> None:
        nginx = shutil.which("nginx", path=f"{os.environ.get('PATH', '')}:/usr/sbin")
        if nginx is None:
            pytest.fail("nginx is not installed (./dev test installs it)")
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir, self.access_log = workdir, workdir / "access.log"
        self.flight_port, self.http_port = free_port(), free_port()
        conf = workdir / "nginx.conf"
        conf.write_text(
            render_nginx_conf(
                flight_servers,
                http_servers,
                f"127.0.0.1:{self.flight_port}",
                f"127.0.0.1:{self.http_port}",
                self.access_log,
                drop,
                source,
            )
        )
        settings = f"daemon off; pid {workdir}/nginx.pid; error_log {workdir}/error.log notice;"
        with open(workdir / "stderr.log", "w") as stderr:
            self.proc = subprocess.Popen(
                [nginx, "-p", f"{workdir}/", "-c", str(conf), "-g", settings],
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                start_new_session=True,  # its workers too, should it have to be killed
            )
        try:
            wait_for(self._listening, 20, "nginx to listen")
        except BaseException:
            self.stop()
            raise

    def _listening(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"nginx exited:\n{self.errors()}")
        return accepts(self.flight_port) and accepts(self.http_port)

    @property
    def flight_url(self) -> str:
        return f"grpc://127.0.0.1:{self.flight_port}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def errors(self) -> str:
        return "".join(
            path.read_text()
            for path in (self.workdir / "stderr.log", self.workdir / "error.log")
            if path.exists()
        )

    def mark(self) -> int:
        """Where the access log ends now: :meth:`entries` after it."""
        return self.access_log.stat().st_size if self.access_log.exists() else 0

    def entries(self, since: int = 0, flight_only: bool = False) -> list[Entry]:
        """The lines after ``since``; ``flight_only``: without HTTP requests (nginx logs a
        request once done with it, maybe after its client saw the end, so an earlier test's
        last HTTP read can be logged after a later mark)."""
        with open(self.access_log, "rb") as log:
            log.seek(since)
            lines = log.read().decode().splitlines()
        found = []
        for line in lines:
            match = LOG_LINE.search(line)
            assert match, f"unexpected access log line: {line}"
            found.append(
                Entry(
                    match["path"].rsplit("/", 1)[-1] if "FlightService" in line else match["path"],
                    int(match["status"]),
                    match["grpc"],
                    tuple(match["upstreams"].split(", ")),
                    int(match["conn"]),
                )
            )
        return [e for e in found if not e.call.startswith("/")] if flight_only else found

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)


# -- hosts and the deployment ---------------------------------------------------------------


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


@dataclass(frozen=True)
class Host:
    netns: str
    address: str
    device: str  # its end of the veth pair

    def link(self, state: str) -> None:
        """``down``: the host drops off the network, with no reset of its connections."""
        ip("netns", "exec", self.netns, "ip", "link", "set", self.device, state)

    @property
    def prefix(self) -> tuple[str, ...]:
        return ("ip", "netns", "exec", self.netns)


@pytest.fixture(scope="module")
def hosts() -> Iterator[list[Host]]:
    """A bridge here and a network namespace per host on it: the connector's, then the
    gateways'. The bridge joins them at layer 2 (no forwarding to turn on)."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.fail("the nginx test needs root and iproute2 (ip netns, veth, bridge)")
    tag = f"{os.getpid() % 100_000}"
    subnet = f"10.211.{random.randrange(16, 250)}"
    bridge = f"skb{tag}"
    made: list[Host] = []
    ip("link", "add", bridge, "type", "bridge")
    try:
        ip("addr", "add", f"{subnet}.1/24", "dev", bridge)
        ip("link", "set", bridge, "up")
        for i in range(GATEWAYS + 1):
            outside, inside = f"skv{tag}{i}", f"skn{tag}{i}"
            host = Host(f"sk-nginx-{tag}-{i}", f"{subnet}.{10 + i}", inside)
            ip("netns", "add", host.netns)
            made.append(host)
            ip("link", "add", outside, "type", "veth", "peer", "name", inside)
            ip("link", "set", inside, "netns", host.netns)
            ip("link", "set", outside, "master", bridge)
            ip("link", "set", outside, "up")
            inner = ("netns", "exec", host.netns, "ip")
            ip(*inner, "addr", "add", f"{host.address}/24", "dev", inside)
            ip(*inner, "link", "set", inside, "up")
            ip(*inner, "link", "set", "lo", "up")
        yield made
    finally:
        for host in made:  # its end of the veth pair goes with it, and so the pair
            subprocess.run(["ip", "netns", "del", host.netns], capture_output=True)
        subprocess.run(["ip", "link", "del", bridge], capture_output=True)


class Deployment:
    """A connector, the gateways (one config file for all) and nginx in front of them."""

    def __init__(self, hosts: list[Host], workdir: Path) -> None:
        self.connector_host, *self.gateway_hosts = hosts
        self.workdir = workdir
        self.data = workdir / "data"
        self.data.mkdir()
        feather.write_feather(READINGS, self.data / "readings.arrow", compression="uncompressed")
        feather.write_feather(BIG, self.data / "big.arrow", compression="uncompressed")
        self.config = workdir / "streamkit.toml"
        self.config.write_text(
            '[gateway]\nhost = "0.0.0.0"\nticket_key = "env:STREAMKIT_TICKET_KEY"\n'
            'default_tenant = "plant"\n\n[tenants.plant]\n'
            f'connector = "grpc://{self.connector_host.address}:{CONNECTOR_PORT}"\n'
            'connector_token = "env:PLANT_CONNECTOR_TOKEN"\ntokens = ["env:PLANT_READER_TOKEN"]\n'
        )
        self.flight_servers = [f"{h.address}:{FLIGHT_PORT}" for h in self.gateway_hosts]
        self.http_servers = [f"{h.address}:{HTTP_PORT}" for h in self.gateway_hosts]
        self.processes: list[Process] = []
        self.gateways: list[Process] = []
        self.nginxes: list[Nginx] = []
        self.nginx: Nginx  # the one in front, from start()

    def start(self) -> None:
        connector = self._start(
            self.connector_host,
            "connector",
            "serve",
            str(self.data),
            "--host",
            self.connector_host.address,
            "--port",
            str(CONNECTOR_PORT),
            "--token",
            "env:PLANT_CONNECTOR_TOKEN",
        )
        connector.wait_for_stderr(r"connector serving")
        self.gateways = [self.start_gateway(i) for i in range(GATEWAYS)]
        self.nginx = self.start_nginx("nginx")

    def start_gateway(self, i: int) -> Process:
        gateway = self._start(
            self.gateway_hosts[i],
            "gateway",
            "up",
            "--config",
            str(self.config),
            "--flight-port",
            str(FLIGHT_PORT),
            "--http-port",
            str(HTTP_PORT),
        )
        gateway.wait_for_stderr(r"flight +grpc://")
        return gateway

    def kill_gateway(self, i: int) -> None:
        self.gateways[i].signal(signal.SIGKILL)
        self.gateways[i].proc.wait(10)

    def restart_gateway(self, i: int) -> None:
        self.gateways[i] = self.start_gateway(i)

    def start_nginx(self, name: str, drop: tuple[str, ...] = ()) -> Nginx:
        nginx = Nginx(self.workdir / name, self.flight_servers, self.http_servers, drop)
        self.nginxes.append(nginx)
        return nginx

    def _start(self, host: Host, *args: str) -> Process:
        process = Process(*args, cwd=self.workdir, env=ENV, prefix=host.prefix)
        self.processes.append(process)
        return process

    def direct(self, i: int) -> flight.FlightClient:
        """A client of gateway ``i`` itself, not through nginx."""
        return flight.connect(f"grpc://{self.flight_servers[i]}")

    def stop(self) -> None:
        for nginx in self.nginxes:
            nginx.stop()
        for process in reversed(self.processes):
            process.stop()


@pytest.fixture(scope="module")
def deployment(hosts, tmp_path_factory) -> Iterator[Deployment]:
    made = Deployment(hosts, tmp_path_factory.mktemp("nginx"))
    try:
        made.start()
        with flight.connect(made.nginx.flight_url) as client:
            wait_for(lambda: _readable(client), 30, "a read through nginx")
        yield made
    finally:
        made.stop()


def _readable(client: flight.FlightClient) -> bool:
    try:
        return read(client, limit=1).num_rows == 1
    except flight.FlightUnavailableError:
        return False


# -- helpers --------------------------------------------------------------------------------


def command(dataset: str = "readings", **options: object) -> flight.FlightDescriptor:
    return flight.FlightDescriptor.for_command(
        json.dumps({"tenant": "plant", "dataset": dataset, **options})
    )


def read(client: flight.FlightClient, dataset: str = "readings", **options: object) -> pa.Table:
    info = client.get_flight_info(command(dataset, **options), OPTIONS)
    return client.do_get(info.endpoints[0].ticket, OPTIONS).read_all()


def http_get(url: str) -> tuple[dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=AUTH)
    with urllib.request.urlopen(request, timeout=60) as response:
        return dict(response.headers), response.read()


def ws_connect(nginx: Nginx) -> ClientConnection:
    """A WebSocket through nginx, with the Origin a browser on nginx's address sends: the
    gateway accepts it only if nginx passed the Host header on."""
    return connect(
        f"ws://127.0.0.1:{nginx.http_port}/ws",
        additional_headers=AUTH,
        origin=nginx.http_url,
        compression=None,
        max_size=None,
        open_timeout=10,
    )


def canonical(obj: object) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


# -- tests ----------------------------------------------------------------------------------


def test_a_ticket_from_one_gateway_is_served_by_another(deployment):
    for a, b in [(0, 1), (1, 2), (2, 0)]:
        with deployment.direct(a) as minter, deployment.direct(b) as server:
            info = minter.get_flight_info(command(limit=700, columns=["id", "value"]), OPTIONS)
            table = server.do_get(info.endpoints[0].ticket, OPTIONS).read_all()
        assert table.equals(READINGS.select(["id", "value"]).slice(0, 700))

    mark = deployment.nginx.mark()
    with flight.connect(deployment.nginx.flight_url) as client:
        for limit in range(1, 7):
            assert read(client, limit=limit * 100).equals(READINGS.slice(0, limit * 100))
    entries = deployment.nginx.entries(mark, flight_only=True)
    assert [e.call for e in entries] == ["GetFlightInfo", "DoGet"] * 6
    assert all(e.status == 200 and e.grpc == "0" for e in entries)
    pairs = list(zip(entries[::2], entries[1::2], strict=True))
    crossed = [info.upstreams != get.upstreams for info, get in pairs]
    # nginx balances per request, so one client's two calls went to different gateways.
    assert sum(crossed) >= 3, pairs
    assert {get.upstreams[-1] for _, get in pairs} == set(deployment.flight_servers)


def test_forged_and_altered_tickets_are_invalid(deployment):
    query = {"dataset": "readings", "limit": 5, "tenant": "plant"}
    forged_sig = hmac.new(b"not-the-deployment-key", canonical(query), hashlib.sha256)
    forged = canonical({"signed": query, "sig": forged_sig.hexdigest()})
    with flight.connect(deployment.nginx.flight_url) as via_nginx, deployment.direct(1) as direct:
        minted = via_nginx.get_flight_info(command(limit=5), OPTIONS).endpoints[0].ticket.ticket
        altered = json.loads(minted)
        assert altered["signed"]["limit"] == 5
        altered["signed"]["limit"] = ROWS
        for client in (via_nginx, direct):
            assert client.do_get(flight.Ticket(minted), OPTIONS).read_all().num_rows == 5
            for bad in (forged, canonical(altered)):
                with pytest.raises(flight.FlightServerError) as refused:
                    client.do_get(flight.Ticket(bad), OPTIONS).read_all()
                assert "invalid: the ticket's signature does not match" in str(refused.value)


def test_large_reads_and_healthz_over_flight_and_http(deployment):
    nginx = deployment.nginx
    with flight.connect(nginx.flight_url) as client:
        assert read(client, "big").equals(BIG)
    headers, body = http_get(f"{nginx.http_url}/api/stream/plant/big")
    assert headers["Content-Type"] == "application/vnd.apache.arrow.stream"
    assert headers.get("Transfer-Encoding") == "chunked"
    assert pa.ipc.open_stream(body).read_all().equals(BIG)
    _, health = http_get(f"{nginx.http_url}/healthz")
    assert json.loads(health)["status"] == "ok"
    with pytest.raises(urllib.error.HTTPError) as refused:
        http_get(f"{nginx.http_url}/metrics")  # any one gateway's: not served through nginx
    assert refused.value.code == 404


def test_websocket_query_through_nginx(deployment):
    with ws_connect(deployment.nginx) as ws:
        ws.send(json.dumps({"action": "query", "dataset": "readings", "limit": 300, "id": "q"}))
        frames = []
        while isinstance(message := ws.recv(timeout=30), bytes):
            frames.append(message)
        assert json.loads(message)["type"] == "end"
        assert pa.ipc.open_stream(b"".join(frames)).read_all().equals(READINGS.slice(0, 300))
        ws.send(json.dumps({"action": "query", "dataset": "missing", "id": "m"}))
        assert json.loads(ws.recv(timeout=30))["code"] == "not_found"  # and the socket stays


def test_puts_larger_than_nginx_default_body_limit(deployment):
    """nginx refuses request bodies over 1 MB by default; a DoPut is one body. Put as 8
    batches, and as one 32 MB Arrow message."""
    for name, rows, chunk in [("uploads", 400_000, 50_000), ("one-message", 2_000_000, None)]:
        table = pa.table({"seq": pa.array(range(rows), pa.int64()), "x": pa.array([1.5] * rows)})
        with flight.connect(deployment.nginx.flight_url) as client:
            descriptor = flight.FlightDescriptor.for_path("plant", name)
            writer, _ = client.do_put(descriptor, table.schema, OPTIONS)
            writer.write_table(table, max_chunksize=chunk)
            writer.close()
            assert read(client, name).equals(table)


def test_a_killed_gateway_is_skipped(deployment):
    nginx, victim = deployment.nginx, GATEWAYS - 1
    dead = {deployment.flight_servers[victim], deployment.http_servers[victim]}
    mark = nginx.mark()
    deployment.kill_gateway(victim)
    try:

        def one(i: int) -> bool:
            limit = 50 + i
            with flight.connect(nginx.flight_url) as client:
                flight_ok = read(client, limit=limit).equals(READINGS.slice(0, limit))
            _, body = http_get(f"{nginx.http_url}/api/stream/plant/readings?limit={limit}")
            return flight_ok and pa.ipc.open_stream(body).read_all().equals(
                READINGS.slice(0, limit)
            )

        with ThreadPoolExecutor(8) as pool:
            assert all(pool.map(one, range(60)))
        entries = nginx.entries(mark)
        assert all(e.status == 200 and e.upstreams[-1] not in dead for e in entries)
        for servers in (deployment.flight_servers, deployment.http_servers):
            # Tried first, refused, and the request passed on to a live gateway.
            skipped = [e for e in entries if e.upstreams[0] == servers[victim]]
            assert skipped and all(len(e.upstreams) > 1 for e in skipped), entries
    finally:
        deployment.restart_gateway(victim)

    since = nginx.mark()

    def back_in_rotation() -> bool:
        with flight.connect(nginx.flight_url) as client:
            read(client, limit=1)
        http_get(f"{nginx.http_url}/api/stream/plant/readings?limit=1")
        return dead <= {e.upstreams[-1] for e in nginx.entries(since) if e.status == 200}

    wait_for(back_in_rotation, 30, "nginx to send requests to the restarted gateway")


def test_a_thousand_clients_each_with_its_own_connection(deployment):
    """1,000 clients hold a connection to nginx each, all at once (with those to the gateways,
    more than nginx's default 512 a worker), and each reads a different prefix of the data."""
    nginx = deployment.nginx
    mark = nginx.mark()
    clients = [flight.connect(nginx.flight_url) for _ in range(CLIENTS)]
    try:
        with ThreadPoolExecutor(50) as pool:
            infos = list(
                pool.map(
                    lambda i: clients[i].get_flight_info(command(limit=1 + i % ROWS), OPTIONS),
                    range(CLIENTS),
                )
            )

            def read_one(i: int) -> bool:
                table = clients[i].do_get(infos[i].endpoints[0].ticket, OPTIONS).read_all()
                return table.equals(READINGS.slice(0, 1 + i % ROWS))

            exact = list(pool.map(read_one, range(CLIENTS)))
    finally:
        for client in clients:
            client.close()
    assert all(exact)
    entries = nginx.entries(mark, flight_only=True)
    assert Counter(e.call for e in entries) == {"GetFlightInfo": CLIENTS, "DoGet": CLIENTS}
    assert all(e.status == 200 and e.grpc == "0" and len(e.upstreams) == 1 for e in entries)
    # Both calls of each client on its one connection, held open while the others read.
    assert len({e.conn for e in entries}) == CLIENTS, "connections closed by nginx, reopened"
    per_gateway = Counter(e.upstreams[0] for e in entries if e.call == "DoGet")
    assert set(per_gateway) == set(deployment.flight_servers)
    assert min(per_gateway.values()) > CLIENTS / GATEWAYS / 2, per_gateway


class FlightFollower:
    """A follow stream read in a thread: the values of its ``x`` column as they come."""

    def __init__(self, client: flight.FlightClient, dataset: str) -> None:
        info = client.get_flight_info(command(dataset, follow=True), OPTIONS)
        self.reader = client.do_get(info.endpoints[0].ticket, OPTIONS)
        self.values: list[int] = []
        self.error: BaseException | None = None
        self.ended = threading.Event()
        self.ended_after = 0.0
        self._started = time.monotonic()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            while True:
                chunk = self.reader.read_chunk()
                if chunk.data is not None:
                    self.values.extend(chunk.data.column("x").to_pylist())
        except BaseException as exc:  # StopIteration too: a follow does not end by itself
            self.error = exc
        finally:
            self.ended_after = time.monotonic() - self._started
            self.ended.set()

    def stop(self) -> None:
        self.reader.cancel()
        self._thread.join(10)


class WebSocketFollower:
    """A follow query over a WebSocket through nginx, read in a thread."""

    def __init__(self, nginx: Nginx, dataset: str) -> None:
        self.ws = ws_connect(nginx)
        self.ws.send(
            json.dumps({"action": "query", "tenant": "plant", "dataset": dataset, "follow": True})
        )
        self.frames: list[bytes] = []
        self.texts: list[str] = []
        self.error: Exception | None = None
        self.ended = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for message in self.ws:
                if isinstance(message, bytes):
                    self.frames.append(message)
                else:
                    self.texts.append(message)
        except Exception as exc:
            self.error = exc
        finally:
            self.ended.set()

    @property
    def values(self) -> list[int]:
        frames = list(self.frames)
        if not frames:
            return []
        return pa.ipc.open_stream(b"".join(frames)).read_all().column("x").to_pylist()

    def stop(self) -> None:
        self.ws.close()
        self._thread.join(10)


def publisher(
    client: flight.FlightClient, dataset: str, values: list[int]
) -> flight.FlightStreamWriter:
    """An open DoPut that has written one batch."""
    batch = pa.table({"x": pa.array(values, pa.int64())})
    writer, _ = client.do_put(
        flight.FlightDescriptor.for_path("plant", dataset), batch.schema, OPTIONS
    )
    writer.write_table(batch)
    return writer


def opened(start: Callable[[], FlightFollower]) -> FlightFollower | None:
    """A follower, once the first put has created its dataset."""
    try:
        return start()
    except flight.FlightServerError as exc:
        if "not found" in str(exc):
            return None
        raise


def test_quiet_streams_outlive_nginx_default_timeouts(deployment):
    """A publisher and followers that go quiet for longer than nginx's 60 s defaults: kept
    by the shipped file, cut by the same file without its timeouts (the control)."""
    control = deployment.start_nginx("nginx-control", drop=STREAM_TIMEOUTS)
    main_client = flight.connect(deployment.nginx.flight_url)
    control_client = flight.connect(control.flight_url)
    followers: list[FlightFollower | WebSocketFollower] = []
    try:
        writer = publisher(main_client, "quiet", [1, 2, 3])
        control_writer = publisher(control_client, "quiet-control", [7])
        follower = wait_for(lambda: opened(lambda: FlightFollower(main_client, "quiet")), 20)
        cut = wait_for(lambda: opened(lambda: FlightFollower(control_client, "quiet-control")), 20)
        ws_follower = WebSocketFollower(deployment.nginx, "quiet")
        followers += [follower, cut, ws_follower]
        wait_for(lambda: follower.values == [1, 2, 3] and cut.values == [7], 20, "history")
        wait_for(lambda: ws_follower.values == [1, 2, 3], 20, "history over the WebSocket")

        deadline = time.monotonic() + QUIET_SECONDS  # nothing is written until then
        assert cut.ended.wait(deadline - time.monotonic()), "the control kept its quiet stream"
        assert isinstance(cut.error, flight.FlightError)
        assert cut.ended_after > NGINX_DEFAULT_TIMEOUT - 5  # cut by nginx's timeout
        assert not follower.ended.wait(max(0.0, deadline - time.monotonic())), follower.error
        assert not ws_follower.ended.is_set() and ws_follower.texts == [], ws_follower.error
        # (The WebSocket would be kept by the gateway's pings every 20 s even at nginx's
        # defaults; the Flight streams have nothing like them.)

        writer.write_table(pa.table({"x": pa.array([4, 5], pa.int64())}))  # the same put
        wait_for(lambda: follower.values == [1, 2, 3, 4, 5], 20, "the new batch followed")
        wait_for(lambda: ws_follower.values == [1, 2, 3, 4, 5], 20, "and on the WebSocket")
        writer.close()  # the quiet put was kept too, and completes
        with pytest.raises(flight.FlightError):  # the control's put was cut (408)
            control_writer.write_table(pa.table({"x": pa.array([8], pa.int64())}))
            control_writer.close()
        assert read(main_client, "quiet").column("x").to_pylist() == [1, 2, 3, 4, 5]
    finally:
        for each in followers:
            each.stop()
        main_client.close()
        control_client.close()
        control.stop()


UNARY_TIMEOUT = 30.0  # deploy/nginx.conf's read timeout for calls other than streams


def test_a_vanished_gateway_host_costs_one_timeout(deployment):
    """A gateway host that drops off the network resets nothing: nginx's kept-alive
    connections to it never answer. A call sent on one fails after the file's 30 s (not the
    7 days that streams get), an HTTP request is resent to another gateway then, and the
    host is skipped from then on (new connections to it would time out in 2 s)."""
    nginx, victim = deployment.nginx, GATEWAYS - 1
    host = deployment.gateway_hosts[victim]
    victims = {deployment.flight_servers[victim], deployment.http_servers[victim]}
    with flight.connect(nginx.flight_url) as client:  # one connection: one nginx worker
        warm = nginx.mark()

        def warmed() -> bool:  # the worker keeps a connection to each gateway, the victim's too
            for _ in range(GATEWAYS):  # (an earlier test may have had nginx skip it a while)
                client.get_flight_info(command(limit=1), OPTIONS)
                http_get(f"{nginx.http_url}/healthz")
            return victims <= {e.upstreams[-1] for e in nginx.entries(warm) if e.status == 200}

        wait_for(warmed, 30, "nginx to send calls to every gateway")
        mark = nginx.mark()
        host.link("down")
        try:
            with ThreadPoolExecutor(1) as pool:
                url = f"{nginx.http_url}/healthz"
                health = pool.submit(lambda: [http_get(url)[1] for _ in range(GATEWAYS)])
                started = time.monotonic()
                first: BaseException | None = None
                for _ in range(GATEWAYS):
                    try:
                        client.get_flight_info(command(limit=10), OPTIONS)
                    except flight.FlightUnavailableError as exc:
                        first, took = exc, time.monotonic() - started
                bodies = health.result()
            tables = [read(client, limit=10) for _ in range(2 * GATEWAYS)]  # all skip it
        finally:
            host.link("up")
    assert first is not None and "504" in str(first)
    assert UNARY_TIMEOUT - 1 < took < UNARY_TIMEOUT + 10
    assert all(json.loads(body)["status"] == "ok" for body in bodies)
    assert all(table.equals(READINGS.slice(0, 10)) for table in tables)
    entries = nginx.entries(mark)
    gone = (deployment.flight_servers[victim], deployment.http_servers[victim])
    tried = [(e.call, e.status, len(e.upstreams)) for e in entries if e.upstreams[0] in gone]
    # The call on the dead connection; the HTTP request, resent (or its connect timed out).
    assert sorted(tried) == [("/healthz", 200, 2), ("GetFlightInfo", 504, 1)], entries
    assert all(e.status == 200 for e in entries if e.upstreams[0] not in gone)
