"""Replicas and shards on hosts of their own (network namespaces): a replica host killed,
and one that vanishes from the network without a word, in the middle of a read; shards read
in parallel across hosts. The gateway runs here; rows are compared exactly."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.flight as flight
import pyarrow.parquet as pq
import pytest
from conftest import Process, running_gateway, wait_for
from netns_helpers import Host, make_host, remove_host

from streamkit.config import TenantConfig
from streamkit.secrets import Secret

ROWS = 2_000_000
PORT = 50051  # every host its own address, so the same port on each


@pytest.fixture(scope="module")
def hosts() -> Iterator[list[Host]]:
    made: list[Host] = []
    try:
        for label in ("r0", "r1", "s0", "s1"):
            made.append(make_host(label))
        yield made
    finally:
        for host in made:
            remove_host(host)


@pytest.fixture(scope="module")
def roots(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    base = tmp_path_factory.mktemp("hosts")
    ids = pa.array(range(ROWS), pa.int64())
    whole = pa.table({"id": ids, "v": pa.array([0.5] * ROWS)})
    paths = [base / name for name in ("r0", "r1", "s0", "s1")]
    for path in paths:
        path.mkdir()
    for replica in paths[:2]:
        pq.write_table(whole, replica / "big.parquet", row_group_size=100_000)
    pq.write_table(whole.slice(0, ROWS // 4), paths[2] / "big.parquet")
    pq.write_table(whole.slice(ROWS // 4), paths[3] / "big.parquet")
    return paths


def serve(host: Host, root: Path) -> Process:
    proc = Process(
        "connector", "serve", str(root), "--host", host.address, "--port", str(PORT),
        "--insecure", prefix=host.prefix,
    )
    proc.wait_for_stderr(r"connector serving .* at grpc://")
    return proc


@pytest.fixture
def connectors(hosts: list[Host], roots: list[Path]) -> Iterator[list[Process]]:
    procs = []
    try:
        for host, root in zip(hosts, roots, strict=True):
            procs.append(serve(host, root))
        yield procs
    finally:
        for proc in procs:
            proc.stop()
        for host in hosts:
            host.plug()


def tenants(hosts: list[Host]) -> dict[str, TenantConfig]:
    uris = [f"grpc://{h.address}:{PORT}" for h in hosts]
    return {
        "replicated": TenantConfig("replicated", replicas=tuple(uris[:2])),
        "sharded": TenantConfig("sharded", shards=tuple(uris[2:])),
    }


def read_rest(reader: flight.FlightStreamReader, first: pa.RecordBatch) -> list[int]:
    ids = first.column("id").to_pylist()
    for chunk in reader:
        ids.extend(chunk.data.column("id").to_pylist())
    return ids


@pytest.mark.parametrize("failure", ["killed", "unplugged"])
def test_a_replica_host_lost_mid_read(hosts, connectors, failure):
    # A short idle timeout: a silent replica is given up after half of it.
    with (
        running_gateway(tenants(hosts), idle_timeout=6.0) as gateway,
        flight.connect(gateway.flight_url) as client,
    ):
        ticket = flight.Ticket(json.dumps({"tenant": "replicated", "dataset": "big"}))
        reader = client.do_get(ticket)  # starts on replica 0
        first = reader.read_chunk().data
        started = time.monotonic()
        if failure == "killed":
            connectors[0].signal(signal.SIGKILL)
        else:
            hosts[0].unplug()
        assert read_rest(reader, first) == list(range(ROWS))
        assert time.monotonic() - started < 30
        assert gateway.upstreams.tenants["replicated"].up == {0: False, 1: True}


def test_shards_on_two_hosts_read_in_parallel(hosts, connectors):
    with (
        running_gateway(tenants(hosts), idle_timeout=6.0) as gateway,
        flight.connect(gateway.flight_url) as client,
    ):
        info = client.get_flight_info(flight.FlightDescriptor.for_path("sharded", "big"))
        assert len(info.endpoints) == 2 and info.total_records == ROWS
        parts = [client.do_get(e.ticket) for e in info.endpoints]
        ids = sorted(i for p in parts for i in p.read_all().column("id").to_pylist())
        assert ids == list(range(ROWS))
        # A shard host gone: a read of all of them fails clearly, naming the tenant.
        hosts[3].unplug()
        with pytest.raises(flight.FlightError, match="sharded"):
            client.get_flight_info(
                flight.FlightDescriptor.for_path("sharded", "big"),
                flight.FlightCallOptions(timeout=30),
            )
        wait_for(
            lambda: gateway.upstreams.tenants["sharded"].up.get(1) is False,
            timeout=20,
            what="the probe to see the shard down",
        )


REMOTE_ACTION = """
import sys, pyarrow.flight as flight
client = flight.connect(sys.argv[1])
headers = [(b"authorization", b"Bearer " + sys.argv[3].encode())] if len(sys.argv) > 3 else []
try:
    options = flight.FlightCallOptions(headers=headers)
    [result] = client.do_action(flight.Action(sys.argv[2], b""), options)
    print("ok", len(result.body))
except flight.FlightError as exc:
    print(type(exc).__name__, str(exc).splitlines()[0])
"""


def test_reload_and_metrics_from_another_host(hosts, tmp_path):
    """Reload only from the gateway's own machine; metrics from elsewhere only with the
    metrics token."""
    root = tmp_path / "data"
    root.mkdir()
    token = Secret("metrics-token-for-netns", False)
    with running_gateway({"a": root}, host="0.0.0.0", metrics_token=token) as gateway:
        url = f"grpc://{hosts[0].peer}:{gateway.flight_port}"

        def remote(*args: str) -> str:
            done = subprocess.run(
                [*hosts[0].prefix, sys.executable, "-c", REMOTE_ACTION, url, *args],
                capture_output=True, text=True, timeout=60,
            )
            assert done.returncode == 0, done.stderr
            return done.stdout.strip()

        assert remote("reload").startswith("FlightUnauthorizedError unauthorized: reload is")
        assert remote("metrics").startswith("FlightUnauthorizedError unauthorized: metrics")
        assert remote("metrics", token.value).startswith("ok ")
        assert remote("reload", token.value).startswith("FlightUnauthorizedError")
