"""The gateway's WebSocket protocol and HTTP endpoints, with a real websockets client."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import DEMO_DATA, running_gateway, wait_for
from synthetic_connector import SyntheticConnector
from websockets.sync.client import connect


def ws_url(gateway) -> str:
    return f"ws://127.0.0.1:{gateway.http_port}/ws"


def open_ws(gateway):
    return connect(ws_url(gateway), compression=None, max_size=None, open_timeout=10)


def run_query(ws, **query) -> tuple[list[bytes], dict]:
    """Send a query; return its binary frames and the closing text frame."""
    ws.send(json.dumps({"action": "query", **query}))
    frames = []
    while True:
        message = ws.recv(timeout=30)
        if isinstance(message, bytes):
            frames.append(message)
        else:
            return frames, json.loads(message)


def messages_in(frame: bytes) -> int:
    """Count the IPC messages in a frame; fails if the frame ends mid-message."""
    reader = pa.BufferReader(frame)
    count = 0
    while reader.tell() < len(frame):
        start = reader.tell()
        try:
            pa.ipc.read_message(reader)
        except EOFError:  # the end-of-stream marker, which must close the frame
            assert frame[start:] == b"\xff\xff\xff\xff\x00\x00\x00\x00"
            return count + 1
        count += 1
    return count


def test_list_and_query_decode_frame_by_frame(demo_gateway):
    with open_ws(demo_gateway) as ws:
        ws.send(json.dumps({"action": "list"}))
        listing = json.loads(ws.recv(timeout=10))
        assert listing["type"] == "datasets"
        sensors = next(d for d in listing["datasets"] if d["dataset"] == "sensors")
        assert sensors["tenant"] == "demo" and sensors["rows"] == 10_080
        assert {"name": "temperature", "type": "double"} in sensors["schema"]

        frames, end = run_query(ws, tenant="demo", dataset="sensors", id="q1")
    assert end["type"] == "end" and end["id"] == "q1"
    assert end["rows"] == 10_080 and end["bytes"] == sum(map(len, frames))
    assert end["batches"] >= 1 and "cancelled" not in end
    assert all(messages_in(frame) >= 1 for frame in frames)
    # Decoding as frames arrive gives the same table as the whole stream.
    table = pa.ipc.open_stream(b"".join(frames)).read_all()
    assert table.equals(pq.read_table(DEMO_DATA / "sensors.parquet"))


def test_query_defaults_to_the_default_tenant_with_columns_and_limit(demo_gateway):
    with open_ws(demo_gateway) as ws:
        frames, end = run_query(ws, dataset="sales", columns=["region", "amount"], limit=17)
    table = pa.ipc.open_stream(b"".join(frames)).read_all()
    assert table.column_names == ["region", "amount"] and table.num_rows == 17
    assert end["rows"] == 17


def test_errors_keep_the_socket_open(demo_gateway):
    with open_ws(demo_gateway) as ws:

        def error_for(payload: str) -> dict:
            ws.send(payload)
            reply = json.loads(ws.recv(timeout=10))
            assert reply["type"] == "error", reply
            return reply

        assert error_for("{nope")["code"] == "invalid"
        assert error_for("[1, 2]")["code"] == "invalid"
        assert error_for(json.dumps({"action": "fly"}))["code"] == "invalid"
        assert error_for(json.dumps({"action": "list", "pad": "x" * 100_000}))["code"] == "invalid"
        reply = error_for(json.dumps({"action": "query", "dataset": "nothing", "id": 7}))
        assert reply["code"] == "not_found" and reply["id"] == 7
        assert (
            error_for(json.dumps({"action": "query", "tenant": "x", "dataset": "a"}))["code"]
            == "not_found"
        )
        assert (
            error_for(json.dumps({"action": "query", "dataset": "sales", "limit": -3}))["code"]
            == "invalid"
        )
        assert error_for(json.dumps({"action": "cancel", "id": "none"}))["code"] == "invalid"
        ws.send(b"\x00binary")
        assert json.loads(ws.recv(timeout=10))["code"] == "invalid"
        _, end = run_query(ws, dataset="sensors", limit=3)
        assert end["rows"] == 3


@pytest.fixture
def synthetic():
    upstream = SyntheticConnector(batches=2000)
    try:
        with running_gateway({"syn": f"grpc://127.0.0.1:{upstream.port}"}) as gateway:
            yield gateway, upstream
    finally:
        upstream.shutdown()


def test_busy_then_cancel_ends_upstream(synthetic):
    gateway, upstream = synthetic
    with open_ws(gateway) as ws:
        ws.send(json.dumps({"action": "query", "dataset": "synthetic", "id": "big"}))
        first = ws.recv(timeout=30)
        assert isinstance(first, bytes)
        ws.send(json.dumps({"action": "query", "dataset": "synthetic", "id": "second"}))
        ws.send(json.dumps({"action": "cancel", "id": "big"}))
        busy = end = None
        frames = [first]
        while end is None:
            message = ws.recv(timeout=30)
            if isinstance(message, bytes):
                frames.append(message)
                continue
            reply = json.loads(message)
            if reply["type"] == "error":
                busy = reply
            elif reply["type"] == "end":
                end = reply
        assert busy is not None and busy["code"] == "busy" and busy["id"] == "second"
        assert end["id"] == "big" and end["cancelled"] is True
        wait_for(upstream.finished.is_set, 15, "upstream to stop")
        assert upstream.produced < 2000
        # What arrived is still a valid stream (ends with the end-of-stream marker).
        table = pa.ipc.open_stream(b"".join(frames)).read_all()
        assert table.num_rows == end["rows"]
        # The socket serves the next query.
        ws.send(json.dumps({"action": "list"}))
        assert json.loads(ws.recv(timeout=10))["type"] == "datasets"


def test_closing_the_socket_mid_query_cancels_upstream(synthetic):
    gateway, upstream = synthetic
    with open_ws(gateway) as ws:
        ws.send(json.dumps({"action": "query", "dataset": "synthetic"}))
        assert isinstance(ws.recv(timeout=30), bytes)
    wait_for(upstream.finished.is_set, 15, "upstream to stop after the socket closed")
    assert upstream.produced < 2000


def test_slow_websocket_reader_levels_off_upstream(synthetic):
    gateway, upstream = synthetic
    with connect(
        ws_url(gateway), compression=None, max_size=None, max_queue=4, close_timeout=1
    ) as ws:
        ws.send(json.dumps({"action": "query", "dataset": "synthetic"}))
        assert isinstance(ws.recv(timeout=30), bytes)
        counts: list[int] = []

        def levelled_off() -> bool:
            counts.append(upstream.produced)
            return len(counts) > 25 and len(set(counts[-25:])) == 1

        wait_for(levelled_off, 30, "upstream production to level off")
        assert upstream.produced < 100, upstream.produced


def test_http_stream_and_healthz(demo_gateway):
    base = demo_gateway.http_url.replace("127.0.0.1", "127.0.0.1")
    with urllib.request.urlopen(
        f"{base}/api/stream/demo/sensors?columns=ts,humidity&limit=99", timeout=10
    ) as response:
        assert response.headers["Content-Type"] == "application/vnd.apache.arrow.stream"
        table = pa.ipc.open_stream(response.read()).read_all()
    assert table.column_names == ["ts", "humidity"] and table.num_rows == 99

    for url, status, code in [
        ("/api/stream/demo/nothing", 404, "not_found"),
        ("/api/stream/ghost/sensors", 404, "not_found"),
        ("/api/stream/demo/sensors?limit=abc", 400, "invalid"),
        ("/api/stream/demo/sensors?columns=nope", 400, "invalid"),
        ("/api/stream/demo/..%2F..%2Fetc%2Fpasswd", 404, "not_found"),
    ]:
        with pytest.raises(urllib.error.HTTPError) as raised:
            urllib.request.urlopen(base + url, timeout=10)
        assert raised.value.code == status, url
        assert json.loads(raised.value.read())["code"] == code

    with urllib.request.urlopen(f"{base}/healthz", timeout=10) as response:
        health = json.loads(response.read())
    assert health["status"] == "ok"
    assert health["tenants"]["demo"]["reachable"] is True
    assert health["tenants"]["demo"]["datasets"] >= 9
    with urllib.request.urlopen(f"{base}/", timeout=10) as response:
        assert b"<html" in response.read().lower()
    with pytest.raises(urllib.error.HTTPError) as raised:
        urllib.request.urlopen(f"{base}/../streamkit.toml", timeout=10)
    assert raised.value.code == 404


def test_stalled_websocket_query_gets_an_error_after_the_idle_time():
    upstream = SyntheticConnector(batches=10, stall_after=1)
    try:
        with (
            running_gateway(
                {"syn": f"grpc://127.0.0.1:{upstream.port}"}, idle_timeout=1.0
            ) as gateway,
            open_ws(gateway) as ws,
        ):
            frames, reply = run_query(ws, dataset="synthetic", id="slow")
            # The first batch arrived before the stall (no end-of-stream marker after it).
            assert pa.ipc.open_stream(b"".join(frames)).read_all().num_rows == 50_000
            assert reply["type"] == "error" and reply["code"] == "unavailable"
            assert "no progress" in reply["message"] and reply["id"] == "slow"
            wait_for(upstream.finished.is_set, 15, "the stalled upstream to be cancelled")
    finally:
        upstream.shutdown()


def test_unions_and_dictionaries_over_http_and_websocket(tmp_path):
    """Types without a from_pylist form (unions) once cut the HTTP body and silenced the
    WebSocket; every stream must arrive exact."""
    dense = pa.UnionArray.from_dense(
        pa.array([0, 1, 0], pa.int8()),
        pa.array([0, 0, 1], pa.int32()),
        [pa.array([1, 2]), pa.array(["x"])],
        ["i", "s"],
    )
    sparse = pa.UnionArray.from_sparse(
        pa.array([1, 0, 1], pa.int8()), [pa.array([1, 2, 3]), pa.array(["p", "q", "r"])]
    )
    table = pa.table(
        {"dense": dense, "sparse": sparse, "tag": pa.array(["a", "b", "a"]).dictionary_encode()}
    )
    with (
        pa.OSFile(str(tmp_path / "unions.arrow"), "wb") as sink,
        pa.ipc.new_file(sink, table.schema) as writer,
    ):
        writer.write_table(table)
    with running_gateway({"t": tmp_path}) as gateway:
        url = f"{gateway.http_url}/api/stream/t/unions"
        with urllib.request.urlopen(url, timeout=10) as response:
            assert pa.ipc.open_stream(response.read()).read_all().equals(table)
        with open_ws(gateway) as ws:
            frames, end = run_query(ws, tenant="t", dataset="unions")
            assert end["type"] == "end" and end["rows"] == 3
            assert pa.ipc.open_stream(b"".join(frames)).read_all().equals(table)
