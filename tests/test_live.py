"""Live datasets: publish, persistence, follow (history then new rows), growing files,
slow followers, cancel, and the WebSocket follow."""

from __future__ import annotations

import json
import logging
import threading

import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.flight as flight
import pyarrow.parquet as pq
import pytest
from conftest import running_connector, running_gateway, wait_for
from websockets.sync.client import connect

from streamkit import live as live_module
from streamkit.config import TenantConfig

SCHEMA = pa.schema([("seq", pa.int64()), ("value", pa.float64())])


def batch(start: int, rows: int = 3) -> pa.RecordBatch:
    return pa.record_batch(
        [
            pa.array(range(start, start + rows), pa.int64()),
            pa.array([i * 0.5 for i in range(start, start + rows)]),
        ],
        schema=SCHEMA,
    )


def publish(client: flight.FlightClient, path: list[str], batches: list[pa.RecordBatch]) -> None:
    writer, _ = client.do_put(flight.FlightDescriptor.for_path(*path), batches[0].schema)
    for b in batches:
        writer.write_batch(b)
    writer.close()


def ticket(**query) -> flight.Ticket:
    return flight.Ticket(json.dumps(query).encode())


class Collector:
    """Reads a followed stream in a thread, keeping every row's ``seq`` and metadata."""

    def __init__(self, reader: flight.FlightStreamReader) -> None:
        self.reader = reader
        self.seqs: list[int] = []
        self.metadata: list[dict] = []
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            for chunk in self.reader:
                self.seqs.extend(chunk.data.column("seq").to_pylist())
                if chunk.app_metadata:
                    self.metadata.append(json.loads(chunk.app_metadata.to_pybytes()))
        except BaseException as exc:
            self.error = exc

    def stop(self) -> None:
        self.reader.cancel()
        self.thread.join(10)


def test_publish_through_the_gateway_then_read_back_and_restart(tmp_path):
    with running_connector(tmp_path) as connector:
        uri = f"grpc://127.0.0.1:{connector.port}"
        with running_gateway({"t": uri}) as gateway, flight.connect(gateway.flight_url) as c:
            publish(c, ["t", "metrics/cpu"], [batch(0), batch(3)])
            publish(c, ["t", "metrics/cpu"], [batch(6)])
            info = c.get_flight_info(flight.FlightDescriptor.for_path("t", "metrics/cpu"))
            assert info.total_records == 9
            table = c.do_get(info.endpoints[0].ticket).read_all()
            assert table.column("seq").to_pylist() == list(range(9))
            listed = {i.descriptor.path[1] for i in c.list_flights()}
            assert b"metrics/cpu" in listed
    stored = tmp_path / ".streamkit" / "live" / "metrics" / "cpu.arrows"
    assert pa.ipc.open_stream(stored.read_bytes()).read_all().num_rows == 9
    # A half-written message at the end (a crash mid-append) is cut on restart.
    with open(stored, "ab") as f:
        f.write(b"\xff\xff\xff\xff\x40\x00\x00\x00partial")
    with (
        running_connector(tmp_path) as again,
        flight.connect(f"grpc://127.0.0.1:{again.port}") as c,
    ):
        table = c.do_get(ticket(dataset="metrics/cpu")).read_all()
        assert table.column("seq").to_pylist() == list(range(9))
        publish(c, ["metrics/cpu"], [batch(9)])
        table = c.do_get(ticket(dataset="metrics/cpu")).read_all()
        assert table.column("seq").to_pylist() == list(range(12))


def test_wrong_schema_and_file_names_are_refused(tmp_path):
    pcsv.write_csv(pa.table({"a": [1]}), tmp_path / "static.csv")
    with (
        running_connector(tmp_path) as connector,
        flight.connect(f"grpc://127.0.0.1:{connector.port}") as c,
    ):
        publish(c, ["events"], [batch(0)])
        other = pa.record_batch({"seq": ["not a number"]})
        with pytest.raises(flight.FlightServerError, match="^invalid: live dataset 'events'"):
            publish(c, ["events"], [other])
        with pytest.raises(flight.FlightServerError, match="^invalid: dataset 'static' is a file"):
            publish(c, ["static"], [batch(0)])
        for bad in ("../escape", "a/../../b", ".hidden", "a\\b"):
            with pytest.raises(flight.FlightServerError, match="^invalid: "):
                publish(c, [bad], [batch(0)])
        assert not (tmp_path.parent / "escape.arrows").exists()
        assert c.do_get(ticket(dataset="events")).read_all().num_rows == 3


def test_follow_sees_history_then_new_rows_in_order(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="streamkit.requests")
    with running_connector(tmp_path) as connector:
        uri = f"grpc://127.0.0.1:{connector.port}"
        with running_gateway({"t": uri}) as gateway, flight.connect(gateway.flight_url) as c:
            publish(c, ["t", "feed"], [batch(0), batch(3)])
            history = Collector(c.do_get(ticket(tenant="t", dataset="feed", follow=True)))
            only_new = Collector(
                c.do_get(ticket(tenant="t", dataset="feed", follow=True, **{"from": "end"}))
            )
            wait_for(lambda: len(history.seqs) == 6, 10, "history")
            feed = connector.live.get("feed")
            # Two clients, one upstream follow: the gateway fans out.
            wait_for(lambda: len(feed.followers) == 1, 10, "the gateway's shared follower")
            hub = gateway.upstreams.hubs._hubs[("t", "feed")]
            assert len(hub.followers) == 2
            for start in range(6, 300, 3):
                publish(c, ["t", "feed"], [batch(start)])
            wait_for(lambda: len(history.seqs) == 300, 15, "all rows")
            wait_for(lambda: len(only_new.seqs) == 294, 15, "new rows")
            assert history.seqs == list(range(300))
            assert only_new.seqs == list(range(6, 300))
            history.stop()
            only_new.stop()
            # Cancelling ends the upstream work too: the connector forgets both followers.
            wait_for(lambda: not feed.followers, 10, "followers to be released")
            lines = [r.getMessage() for r in caplog.records if "dataset=feed" in r.getMessage()]
            wait_for(
                lambda: sum("outcome=cancelled" in r.getMessage() for r in caplog.records) >= 2,
                10,
                "both log lines",
            )
            assert not any("outcome=idle" in line for line in lines)


@pytest.mark.parametrize("policy", ["error", "skip"])
def test_slow_follower_policy(tmp_path, monkeypatch, policy):
    monkeypatch.setattr(live_module, "FOLLOWER_QUEUE_BATCHES", 4)  # read at each Follower()
    big = pa.record_batch(
        [pa.array(range(100_000), pa.int64()), pa.array([0.5] * 100_000)], schema=SCHEMA
    )  # 1.6 MB
    with (
        running_connector(tmp_path) as connector,
        flight.connect(f"grpc://127.0.0.1:{connector.port}") as c,
    ):
        publish(c, ["fast"], [big])
        query = {"dataset": "fast", "follow": True, "from": "end"}
        if policy == "skip":
            query["on_lag"] = "skip"
        reader = c.do_get(ticket(**query))
        feed = connector.live.get("fast")
        wait_for(lambda: feed.followers, 10, "the follower")
        follower = next(iter(feed.followers))
        # Publish far more than the queue and the transport buffers hold, without reading.
        for _ in range(60):
            feed.append(big)
        if policy == "error":
            wait_for(lambda: follower.lagging, 10, "the follower to be marked lagging")
            with pytest.raises(flight.FlightUnavailableError, match="lagging: "):
                reader.read_all()
            wait_for(lambda: not feed.followers, 10, "the lagging follower to be dropped")
        else:
            wait_for(lambda: follower.skipped > 0, 10, "rows to be skipped")
            skipped = 0
            while skipped == 0:
                chunk = reader.read_chunk()
                if chunk.app_metadata:
                    skipped = json.loads(chunk.app_metadata.to_pybytes()).get("skipped", 0)
            assert skipped > 0 and skipped % 100_000 == 0
            assert len(follower.queue) <= 4
            reader.cancel()


@pytest.mark.parametrize("suffix", ["jsonl", "csv", "arrows"])
def test_growing_files_are_followed_with_partial_rows_waiting(tmp_path, suffix):
    target = tmp_path / f"app.{suffix}"

    def rows(start: int, count: int) -> bytes:
        if suffix == "jsonl":
            return b"".join(
                json.dumps({"seq": i, "value": i * 0.5}).encode() + b"\n"
                for i in range(start, start + count)
            )
        if suffix == "csv":
            return b"".join(f"{i},{i * 0.5}\n".encode() for i in range(start, start + count))
        return b"".join(_ipc_message(batch(i, 1)) for i in range(start, start + count))

    header = b"seq,value\n" if suffix == "csv" else b""
    if suffix == "arrows":
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, SCHEMA) as writer:
            writer.write_batch(batch(0, 2))
        first = sink.getvalue().to_pybytes()[:-8]  # an open stream: no end marker yet
    else:
        first = header + rows(0, 2)
    target.write_bytes(first)
    with (
        running_connector(tmp_path) as connector,
        flight.connect(f"grpc://127.0.0.1:{connector.port}") as c,
    ):
        follower = Collector(c.do_get(ticket(dataset="app", follow=True)))
        wait_for(lambda: follower.seqs == [0, 1], 10, "existing rows")
        more = rows(2, 3)
        with open(target, "ab") as f:
            f.write(more[:-5])  # a partial last row: must wait
            f.flush()
            wait_for(
                lambda: follower.seqs == [0, 1, 2, 3] or len(follower.seqs) > 4 or follower.error,
                10,
                "whole rows before the partial one",
            )
            assert follower.seqs == [0, 1, 2, 3]  # the partial row waits
            f.write(more[-5:])
        wait_for(lambda: follower.seqs == [0, 1, 2, 3, 4], 10, "the completed row")
        follower.stop()
        assert follower.error is None or isinstance(follower.error, flight.FlightCancelledError)


def _ipc_message(b: pa.RecordBatch) -> bytes:
    """One record batch message, as appended to an open IPC stream file."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, SCHEMA) as writer:
        writer.write_batch(b)
    return sink.getvalue().to_pybytes()[len(_schema_message()) : -8]


def _schema_message() -> bytes:
    sink = pa.BufferOutputStream()
    pa.ipc.new_stream(sink, SCHEMA).close()
    return sink.getvalue().to_pybytes()[:-8]


def test_static_formats_cannot_be_followed(tmp_path):
    pq.write_table(pa.Table.from_batches([batch(0)]), tmp_path / "fixed.parquet")
    with (
        running_connector(tmp_path) as connector,
        flight.connect(f"grpc://127.0.0.1:{connector.port}") as c,
        pytest.raises(flight.FlightServerError, match="^invalid: .*cannot be followed"),
    ):
        c.do_get(ticket(dataset="fixed", follow=True)).read_all()


def _rows_so_far(frames: list[bytes]) -> int:
    """Rows in the frames received so far (each frame holds whole IPC messages)."""
    reader = pa.ipc.open_stream(b"".join(frames))
    rows = 0
    while True:
        try:
            rows += reader.read_next_batch().num_rows
        except StopIteration:
            return rows


def test_websocket_follow_and_cancel(tmp_path):
    with running_connector(tmp_path) as connector:
        uri = f"grpc://127.0.0.1:{connector.port}"
        with (
            running_gateway({"t": uri}) as gateway,
            flight.connect(gateway.flight_url) as c,
            connect(f"ws://127.0.0.1:{gateway.http_port}/ws", compression=None) as ws,
        ):
            publish(c, ["t", "ticks"], [batch(0)])
            ws.send(
                json.dumps({"action": "query", "dataset": "ticks", "follow": True, "id": "live"})
            )
            frames = [ws.recv(timeout=10)]
            feed = connector.live.get("ticks")
            wait_for(lambda: feed.followers, 10, "the follower")
            publish(c, ["t", "ticks"], [batch(3)])

            while len(frames) < 2 or _rows_so_far(frames) < 6:
                frames.append(ws.recv(timeout=10))
            ws.send(json.dumps({"action": "cancel", "id": "live"}))
            while isinstance(message := ws.recv(timeout=10), bytes):
                frames.append(message)
            end = json.loads(message)
            assert end["type"] == "end" and end["cancelled"] is True and end["rows"] == 6
            table = pa.ipc.open_stream(b"".join(frames)).read_all()
            assert table.column("seq").to_pylist() == list(range(6))
            wait_for(lambda: not feed.followers, 10, "the upstream follower to end")


def test_simulated_demo_dataset(tmp_path):
    tenant = TenantConfig("demo", path=tmp_path, simulate="live/sensors")
    with running_gateway({"demo": tenant}) as gateway, flight.connect(gateway.flight_url) as c:
        reader = c.do_get(
            ticket(tenant="demo", dataset="live/sensors", follow=True, **{"from": "end"})
        )
        first, second = reader.read_chunk(), reader.read_chunk()
        assert first.data.schema.names == ["ts", "temperature", "humidity", "power_kw"]
        assert second.data.column("ts")[0].value > first.data.column("ts")[0].value
        reader.cancel()


@pytest.mark.parametrize("through", ["connector", "gateway"])
def test_an_unknown_follow_column_is_invalid(tmp_path, through):
    (tmp_path / "log.jsonl").write_text('{"seq": 1, "value": 0.5}\n')
    with running_connector(tmp_path) as connector:
        uri = f"grpc://127.0.0.1:{connector.port}"
        with running_gateway({"t": uri}) as gateway, flight.connect(gateway.flight_url) as g:
            publish(g, ["t", "ticks"], [batch(0)])
            port = connector.port if through == "connector" else gateway.flight_port
            with flight.connect(f"grpc://127.0.0.1:{port}") as c:
                for dataset in ("ticks", "log"):
                    query = {"dataset": dataset, "follow": True, "columns": ["seq", "nope"]}
                    if through == "gateway":
                        query["tenant"] = "t"
                    with pytest.raises(flight.FlightServerError, match="^invalid: .*'nope'"):
                        c.do_get(ticket(**query)).read_all()
                assert c.do_get(ticket(**{**query, "columns": ["seq"], "limit": 1})).read_all()


def test_live_dictionaries_reach_followers_through_the_gateway(tmp_path):
    """Changing dictionaries (a new one per publish) arrive exact, history and new rows."""

    def tagged(start: int, tags: list[str]) -> pa.RecordBatch:
        return pa.record_batch(
            {
                "seq": pa.array(range(start, start + len(tags)), pa.int64()),
                "tag": pa.array(tags).dictionary_encode(),
            }
        )

    with running_connector(tmp_path) as connector:
        uri = f"grpc://127.0.0.1:{connector.port}"
        with running_gateway({"t": uri}) as gateway, flight.connect(gateway.flight_url) as c:
            publish(c, ["t", "tags"], [tagged(0, ["a", "b", "a"])])
            reader = c.do_get(ticket(tenant="t", dataset="tags", follow=True))
            tags: list[str] = []
            publish(c, ["t", "tags"], [tagged(3, ["x", "y"]), tagged(5, ["b", "z"])])
            while len(tags) < 7:
                chunk = reader.read_chunk()
                tags.extend(chunk.data.column("tag").to_pylist())
            reader.cancel()
            assert tags == ["a", "b", "a", "x", "y", "b", "z"]
            whole = c.do_get(ticket(tenant="t", dataset="tags")).read_all()
            assert whole.column("tag").to_pylist() == tags


def test_a_follow_after_get_flight_info_asks_the_connector_once(tmp_path):
    with running_connector(tmp_path) as connector:
        uri = f"grpc://127.0.0.1:{connector.port}"
        with running_gateway({"t": uri}) as gateway, flight.connect(gateway.flight_url) as c:
            publish(c, ["t", "ticks"], [batch(0)])
            asked = []
            plain = connector.get_flight_info
            connector.get_flight_info = lambda ctx, d: asked.append(d) or plain(ctx, d)
            command = json.dumps({"tenant": "t", "dataset": "ticks", "follow": True})
            info = c.get_flight_info(flight.FlightDescriptor.for_command(command))
            reader = c.do_get(info.endpoints[0].ticket)
            assert reader.read_chunk().data.num_rows == 3
            reader.cancel()
            assert len(asked) == 1  # the DoGet knew the dataset is live without asking again
