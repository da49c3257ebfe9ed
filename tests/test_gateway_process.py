"""The gateway as a real process: configuration errors, start-up output, request log lines,
stopping on signals with stalled clients, and a connector killed mid-stream."""

from __future__ import annotations

import json
import re
import signal
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.flight as flight
import pyarrow.parquet as pq
import pytest
from conftest import DEMO_DATA, wait_for
from websockets.sync.client import connect

STOP_LIMIT_SECONDS = 2.0
SLACK_SECONDS = 1.0


def write_config(tmp_path: Path, body: str) -> Path:
    config = tmp_path / "streamkit.toml"
    config.write_text(body)
    return config


def start_gateway(process, config: Path):
    proc = process(
        "gateway", "up", "--config", str(config), "--flight-port", "0", "--http-port", "0"
    )
    flight_port = int(proc.wait_for_stderr(r"flight +grpc://127\.0\.0\.1:(\d+)").group(1))
    http_port = int(proc.wait_for_stderr(r"dashboard +http://127\.0\.0\.1:(\d+)/").group(1))
    return proc, flight_port, http_port


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ('[gateway]\nflight_prt = 1\n[tenants.a]\npath = "."\n', "gateway.flight_prt: unknown key"),
        (
            '[gateway]\nhttp_port = 70000\n[tenants.a]\npath = "."\n',
            "gateway.http_port: 70000 is not a port",
        ),
        (
            '[gateway]\nflight_port = "x"\n[tenants.a]\npath = "."\n',
            "gateway.flight_port: must be a int",
        ),
        ("[tenants.a]\n", "tenants.a: set exactly one of"),
        ('[tenants.a]\npath = "."\nconnector = "grpc://h:1"\n', "tenants.a: set exactly one of"),
        (
            '[tenants.a]\npath = "missing-folder"\n',
            "tenants.a.path: 'missing-folder' is not a folder",
        ),
        ('[tenants.a]\nconnector = "http://x"\n', "tenants.a.connector: expected grpc://HOST:PORT"),
        ('[tenants.a]\npath = "."\ncolour = 1\n', "tenants.a.colour: unknown key"),
        ("[gateway]\n", "tenants: at least one"),
        (
            '[gateway]\ndefault_tenant = "zz"\n[tenants.a]\npath = "."\n',
            "gateway.default_tenant: no tenant named 'zz'",
        ),
        ("not toml [", "not valid TOML"),
        (
            '[gateway]\nbatch_bytes = 100\n[tenants.a]\npath = "."\n',
            "gateway.batch_bytes: must be at least 1024",
        ),
    ],
)
def test_config_errors_are_one_line_before_start(tmp_path, process, body, reason):
    config = write_config(tmp_path, body)
    proc = process("gateway", "up", "--config", str(config))
    assert proc.proc.wait(30) == 1
    proc.stop()
    assert f"{config}: {reason}" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and "gateway up" not in proc.stderr


def test_missing_config_and_bad_port_flag(tmp_path, process):
    proc = process("gateway", "up", "--config", str(tmp_path / "none.toml"))
    assert proc.proc.wait(30) == 1
    proc.stop()
    assert "none.toml: file not found" in proc.stderr
    config = write_config(tmp_path, f'[tenants.demo]\npath = "{DEMO_DATA}"\n')
    proc = process("gateway", "up", "--config", str(config), "--flight-port", "99999")
    assert proc.proc.wait(30) == 1
    proc.stop()
    assert "--flight-port: 99999 is not a port" in proc.stderr


def test_repository_config_serves_the_demo(process):
    proc, flight_port, _ = start_gateway(process, Path("streamkit.toml"))
    with flight.connect(f"grpc://127.0.0.1:{flight_port}") as client:
        info = client.get_flight_info(flight.FlightDescriptor.for_path("demo", "sensors"))
        assert client.do_get(info.endpoints[0].ticket).read_all().num_rows == 10_080
    line = proc.wait_for_stderr(
        r"flight tenant=demo dataset=sensors rows=10080 bytes=\d+ "
        r"seconds=[\d.]+ outcome=ok"
    )
    assert line


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_stops_within_limit_with_stalled_clients(tmp_path, process, signum):
    big = pa.table({"id": range(4_000_000), "x": [0.5] * 4_000_000})
    (tmp_path / "data").mkdir()
    pq.write_table(big, tmp_path / "data" / "big.parquet", row_group_size=50_000)
    config = write_config(tmp_path, '[tenants.t]\npath = "data"\n')
    proc, flight_port, http_port = start_gateway(process, config)
    client = flight.connect(f"grpc://127.0.0.1:{flight_port}")
    ws = connect(f"ws://127.0.0.1:{http_port}/ws", compression=None, max_size=None, max_queue=2)
    try:
        reader = client.do_get(flight.Ticket(b'{"tenant": "t", "dataset": "big"}'))
        reader.read_chunk()  # and then stop reading
        ws.send(json.dumps({"action": "query", "dataset": "big"}))
        assert isinstance(ws.recv(timeout=30), bytes)  # and then stop reading
        schema = pa.schema([("x", pa.int64())])
        writer, _ = client.do_put(flight.FlightDescriptor.for_path("t", "feed"), schema)
        writer.write_batch(pa.record_batch({"x": [1]}))  # a publisher that stays, silent
        # The put is on its way: follow once the gateway has made the dataset.
        wait_for(
            lambda: any(i.descriptor.path == [b"t", b"feed"] for i in client.list_flights()),
            what="the published dataset",
        )
        follow = client.do_get(flight.Ticket(b'{"tenant": "t", "dataset": "feed", "follow": true}'))
        assert follow.read_chunk().data.num_rows == 1  # the put has arrived
        started = time.monotonic()
        proc.signal(signum)
        proc.proc.wait(STOP_LIMIT_SECONDS + SLACK_SECONDS)
        elapsed = time.monotonic() - started
    finally:
        ws.close_socket()
        client.close()
    assert proc.proc.returncode == 0, proc.stderr
    assert elapsed < STOP_LIMIT_SECONDS + SLACK_SECONDS
    assert "Traceback" not in proc.stderr


def test_connector_killed_mid_stream_then_restarted(tmp_path, process):
    big = pa.table({"id": range(3_000_000), "x": [0.25] * 3_000_000})
    (tmp_path / "data").mkdir()
    pq.write_table(big, tmp_path / "data" / "big.parquet", row_group_size=20_000)
    connector = process(
        "connector", "serve", str(tmp_path / "data"), "--port", "0", "--batch-rows", "20000"
    )
    port = int(connector.wait_for_stderr(r"at grpc://127\.0\.0\.1:(\d+)").group(1))
    config = write_config(
        tmp_path,
        f'[tenants.far]\nconnector = "grpc://127.0.0.1:{port}"\n'
        f'[tenants.near]\npath = "{DEMO_DATA}"\n',
    )
    gateway, flight_port, _ = start_gateway(process, config)
    with flight.connect(f"grpc://127.0.0.1:{flight_port}") as client:
        reader = client.do_get(flight.Ticket(b'{"tenant": "far", "dataset": "big"}'))
        reader.read_chunk()
        connector.proc.kill()
        connector.proc.wait(10)
        with pytest.raises(flight.FlightError):
            while True:
                reader.read_chunk()
        assert gateway.proc.poll() is None
        with pytest.raises(flight.FlightUnavailableError, match="tenant 'far'"):
            client.get_flight_info(flight.FlightDescriptor.for_path("far", "big"))
        info = client.get_flight_info(flight.FlightDescriptor.for_path("near", "sales"))
        assert client.do_get(info.endpoints[0].ticket).read_all().num_rows == 2000

        restarted = process("connector", "serve", str(tmp_path / "data"), "--port", str(port))
        restarted.wait_for_stderr("connector serving")

        def served() -> bool:
            try:
                info = client.get_flight_info(flight.FlightDescriptor.for_path("far", "big"))
            except flight.FlightUnavailableError:
                return False
            return info.total_records == 3_000_000

        wait_for(served, 15, "the restarted connector")


def test_a_crash_is_logged_with_every_thread(tmp_path, process):
    """Nothing should kill a server; if something still does, its stderr says where."""
    config = write_config(tmp_path, f'[tenants.demo]\npath = "{DEMO_DATA}"\n')
    proc, flight_port, _ = start_gateway(process, config)
    with flight.connect(f"grpc://127.0.0.1:{flight_port}") as client:
        assert client.do_get(flight.Ticket(b'{"tenant":"demo","dataset":"sales"}')).read_all()
    proc.signal(signal.SIGSEGV)
    assert proc.proc.wait(10) == -signal.SIGSEGV
    proc.stop()  # and read the rest of its stderr
    assert "Fatal Python error: Segmentation fault" in proc.stderr
    assert re.search(r"Thread 0x[0-9a-f]+ \(most recent call first\)", proc.stderr)
