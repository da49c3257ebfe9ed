"""A connector behind a one-way network dials the gateway in: real processes, and a real
boundary. The connector runs in its own network namespace, joined to this host by a veth
pair; policy routing lets this host send to it only replies from the gateway's HTTP port,
so the gateway (or anyone here) cannot open a connection to the connector's host at all,
and the connector listens on no port. Everything a user does goes through the tunnel."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.feather as feather
import pyarrow.flight as flight
import pyarrow.parquet as pq
import pytest
from conftest import DEMO_DATA, REPO, Process, wait_for

CONNECTOR_TOKEN = "plant-connector-secret-42"
READER_TOKEN = "plant-reader-secret-42"
ENV = {"PLANT_CONNECTOR_TOKEN": CONNECTOR_TOKEN, "PLANT_READER_TOKEN": READER_TOKEN}
BIG_ROWS = 3_000_000


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


@dataclass
class Site:
    """A network namespace that reaches this host at ``gateway_ip``; this host reaches it
    (``site_ip``) with nothing but replies from the port given to :meth:`reply_only_from`."""

    name: str
    gateway_ip: str
    site_ip: str
    rule_priority: int
    rules: list[str] = field(default_factory=list)

    @property
    def prefix(self) -> tuple[str, ...]:
        return ("ip", "netns", "exec", self.name)

    def reply_only_from(self, port: int) -> None:
        self.drop_rules()
        allow = ["to", self.site_ip, "ipproto", "tcp", "sport", str(port), "lookup", "main"]
        ip("rule", "add", "priority", str(self.rule_priority), *allow)
        ip("rule", "add", "priority", str(self.rule_priority + 1), "to", self.site_ip, "prohibit")
        self.rules = [str(self.rule_priority), str(self.rule_priority + 1)]

    def drop_rules(self) -> None:
        for priority in self.rules:
            subprocess.run(["ip", "rule", "del", "priority", priority], capture_output=True)
        self.rules = []


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.fail("the one-way network test needs root and iproute2 (ip netns, veth)")
    tag = f"{os.getpid() % 100_000}"
    octet = random.randrange(16, 250)
    made = Site(f"sk-site-{tag}", f"10.203.{octet}.1", f"10.203.{octet}.2", 20_000 + octet * 2)
    host_end, site_end = f"skh{tag}", f"sks{tag}"
    ip("netns", "add", made.name)
    try:
        ip("link", "add", host_end, "type", "veth", "peer", "name", site_end)
        ip("link", "set", site_end, "netns", made.name)
        ip("addr", "add", f"{made.gateway_ip}/30", "dev", host_end)
        ip("link", "set", host_end, "up")
        ip("netns", "exec", made.name, "ip", "addr", "add", f"{made.site_ip}/30", "dev", site_end)
        ip("netns", "exec", made.name, "ip", "link", "set", site_end, "up")
        ip("netns", "exec", made.name, "ip", "link", "set", "lo", "up")
        yield made
    finally:
        made.drop_rules()
        subprocess.run(["ip", "link", "del", host_end], capture_output=True)
        subprocess.run(["ip", "netns", "del", made.name], capture_output=True)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("site-data")
    pq.write_table(pq.read_table(DEMO_DATA / "sensors.parquet"), root / "sensors.parquet")
    big = pa.table(
        {
            "seq": pa.array(range(BIG_ROWS), pa.int64()),
            "value": pa.array([i * 0.5 for i in range(BIG_ROWS)], pa.float64()),
        }
    )
    feather.write_feather(big, root / "big.arrow", compression="uncompressed")
    return root


class Deployment:
    """The gateway here, the connector in the site; both restartable on the same ports."""

    def __init__(self, site: Site, data: Path, workdir: Path) -> None:
        self.site, self.data, self.workdir = site, data, workdir
        self.config = workdir / "streamkit.toml"
        self.config.write_text(
            '[gateway]\nhost = "0.0.0.0"\n\n[tenants.plant]\nconnector_mode = "websocket"\n'
            'connector_token = "env:PLANT_CONNECTOR_TOKEN"\ntokens = ["env:PLANT_READER_TOKEN"]\n'
        )
        self.processes: list[Process] = []
        self.gateway: Process | None = None
        self.connector: Process | None = None
        self.flight_port = self.http_port = 0

    def start_gateway(self) -> None:
        self.gateway = self._start(
            "gateway",
            "up",
            "--config",
            str(self.config),
            "--flight-port",
            str(self.flight_port),
            "--http-port",
            str(self.http_port),
        )
        self.flight_port = int(self.gateway.wait_for_stderr(r"flight +grpc://\S+:(\d+)").group(1))
        self.http_port = int(self.gateway.wait_for_stderr(r"dashboard +http://\S+:(\d+)/").group(1))
        self.site.reply_only_from(self.http_port)

    def start_connector(self) -> None:
        url = f"ws://{self.site.gateway_ip}:{self.http_port}/connect"
        self.connector = self._start(
            "connector",
            "serve",
            str(self.data),
            "--dial",
            url,
            "--tenant",
            "plant",
            "--token",
            "env:PLANT_CONNECTOR_TOKEN",
            "--batch-bytes",
            str(256 * 1024),
            prefix=self.site.prefix,
        )
        self.connector.wait_for_stderr(r"dialed in to ws://")

    def _start(self, *args: str, prefix: tuple[str, ...] = ()) -> Process:
        process = Process(*args, cwd=self.workdir, env=ENV, prefix=prefix)
        self.processes.append(process)
        return process

    @property
    def flight_url(self) -> str:
        return f"grpc://127.0.0.1:{self.flight_port}"

    def client(self) -> flight.FlightClient:
        return flight.connect(self.flight_url)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "streamkit", *args, "--gateway", self.flight_url],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=REPO,
            env={**os.environ, "STREAMKIT_TOKEN": READER_TOKEN},
        )

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()


@pytest.fixture
def deployment(site, data, tmp_path) -> Iterator[Deployment]:
    made = Deployment(site, data, tmp_path)
    try:
        made.start_gateway()
        yield made
    finally:
        made.stop()


OPTIONS = flight.FlightCallOptions(headers=[(b"authorization", f"Bearer {READER_TOKEN}".encode())])


def read(client: flight.FlightClient, dataset: str) -> pa.Table:
    info = client.get_flight_info(flight.FlightDescriptor.for_path("plant", dataset), OPTIONS)
    return client.do_get(info.endpoints[0].ticket, OPTIONS).read_all()


def listening_ports(pid: int) -> list[str]:
    """TCP ports listening in ``pid``'s network namespace (its /proc view)."""
    ports = []
    for name in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{name}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A":  # LISTEN
                ports.append(fields[1])
    return ports


def test_the_boundary_is_one_way(deployment, site):
    deployment.start_connector()
    assert deployment.connector is not None
    assert listening_ports(deployment.connector.proc.pid) == []  # nothing listens in the site
    for port in (22, 50051, deployment.http_port):
        with pytest.raises(OSError):
            socket.create_connection((site.site_ip, port), timeout=2).close()


def test_every_surface_through_the_boundary(deployment):
    deployment.start_connector()
    listed = deployment.cli("ls")
    assert listed.returncode == 0, listed.stderr
    assert "tenant plant: dialed in" in listed.stderr
    assert {line.split("\t")[1] for line in listed.stdout.splitlines()} == {"big", "sensors"}
    queried = deployment.cli("query", "plant/sensors", "--format", "csv")
    assert queried.returncode == 0, queried.stderr
    expected = pq.read_table(DEMO_DATA / "sensors.parquet")
    table = pcsv.read_csv(pa.py_buffer(queried.stdout.encode()))
    assert table.num_rows == expected.num_rows and table.column_names == expected.column_names
    # A second outside client: curl-like HTTP, with the reader's token.
    request = urllib.request.Request(
        f"http://127.0.0.1:{deployment.http_port}/api/stream/plant/sensors?limit=100",
        headers={"Authorization": f"Bearer {READER_TOKEN}"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert pa.ipc.open_stream(response.read()).read_all().num_rows == 100
    # Publish from a file, then read it back (DoPut through the tunnel).
    csv_file = deployment.workdir / "readings.csv"
    csv_file.write_text("seq,value\n1,0.5\n2,1.5\n")
    published = deployment.cli("publish", "plant/readings", str(csv_file), "--format", "csv")
    assert published.returncode == 0, published.stderr
    with deployment.client() as client:
        assert read(client, "readings").column("seq").to_pylist() == [1, 2]
        # No token, no data: the tenant's tokens apply through the tunnel too.
        with pytest.raises(flight.FlightUnauthenticatedError):
            client.get_flight_info(flight.FlightDescriptor.for_path("plant", "sensors"))
    bench = deployment.cli(
        "bench",
        "--dataset",
        "plant/sensors",
        "--runs",
        "1",
        "--clients",
        "4",
        "--json",
        "--http",
        f"http://127.0.0.1:{deployment.http_port}",
        "--token",
        READER_TOKEN,
    )
    assert bench.returncode == 0, bench.stderr
    report = json.loads(bench.stdout)
    assert report["paths"]["gateway_flight"]["rows"] == expected.num_rows
    assert report["concurrency"]["errors"] == 0


def test_connector_killed_mid_stream_then_restarted_then_gateway_restarted(deployment):
    deployment.start_connector()
    assert deployment.connector is not None
    with deployment.client() as client:
        info = client.get_flight_info(flight.FlightDescriptor.for_path("plant", "big"), OPTIONS)
        reader = client.do_get(info.endpoints[0].ticket, OPTIONS)
        reader.read_chunk()
        failure: list[BaseException] = []

        def drain() -> None:
            try:
                reader.read_all()
            except BaseException as exc:
                failure.append(exc)

        drainer = threading.Thread(target=drain, daemon=True)
        drainer.start()
        deployment.connector.signal(signal.SIGKILL)  # the site vanishes mid-stream
        drainer.join(30)
        assert not drainer.is_alive(), "the stream hung after the tunnel was cut"
        assert failure and isinstance(failure[0], flight.FlightUnavailableError), failure
        assert "plant" in str(failure[0])

    def not_connected() -> bool:
        result = deployment.cli("ls")
        return "tenant plant: not connected" in result.stderr

    wait_for(not_connected, 30, "ls to say not connected")
    down = deployment.cli("query", "plant/sensors", "--format", "csv")
    assert down.returncode == 4 and "connector of tenant 'plant' is not connected" in down.stderr

    deployment.start_connector()  # restarted; the gateway was not
    with deployment.client() as client:
        assert wait_for(lambda: _served(client), 30, "served again").num_rows == 10_080

    assert deployment.gateway is not None
    deployment.gateway.stop()
    deployment.start_gateway()  # same ports; the connector dials back by itself
    with deployment.client() as client:
        table = wait_for(lambda: _served(client), 30, "served by the restarted gateway")
    assert table.num_rows == 10_080
    assert wait_for(lambda: "tenant plant: dialed in" in deployment.cli("ls").stderr, 30, "ls")


def _served(client: flight.FlightClient) -> pa.Table | None:
    try:
        return read(client, "sensors")
    except flight.FlightUnavailableError:
        return None
