"""``streamkit publish``: files and pipes reach a live dataset, batch by batch, as read."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.flight as flight
import pytest
from conftest import REPO, running_connector, running_gateway, wait_for

from streamkit.client import EXIT_INTERRUPTED, EXIT_INVALID


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[str]:
    """A connector over an empty root behind a gateway: yields the gateway's Flight URL."""
    root = tmp_path / "root"
    root.mkdir()
    with (
        running_connector(root) as connector,
        running_gateway({"t": f"grpc://127.0.0.1:{connector.port}"}) as gw,
    ):
        try:
            yield gw.flight_url
        finally:
            # Connector first: it ends its followed streams, so the gateway's forwarding
            # threads return and the gateway can stop (it would wait on idle follows).
            connector.stop()


def run_publish(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "streamkit", "publish", *args],
        input=stdin,
        capture_output=True,
        cwd=REPO,
        timeout=60,
        env={**os.environ, "STREAMKIT_TOKEN": ""},
    )


def read_back(url: str, dataset: str) -> pa.Table:
    with flight.connect(url) as client:
        info = client.get_flight_info(flight.FlightDescriptor.for_path("t", dataset))
        return client.do_get(info.endpoints[0].ticket).read_all()


def source_table() -> pa.Table:
    return pa.table(
        {
            "seq": pa.array(range(25_000), pa.int64()),
            "name": pa.array([f"n{i % 7}é" for i in range(25_000)]),
            "value": pa.array([i * 0.25 for i in range(25_000)]),
        }
    )


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".arrows", ".arrow"])
def test_publish_a_file_then_read_it_back(gateway, tmp_path, suffix):
    table = source_table()
    path = tmp_path / f"input{suffix}"
    if suffix == ".csv":
        pcsv.write_csv(table, path)
    elif suffix == ".jsonl":
        path.write_text("".join(json.dumps(row) + "\n" for row in table.to_pylist()))
    elif suffix == ".arrow":  # an IPC file, not a stream
        with pa.ipc.new_file(path, table.schema) as writer:
            writer.write_table(table, max_chunksize=1000)
    else:
        with pa.ipc.new_stream(path, table.schema) as writer:
            for batch in table.to_batches(max_chunksize=1000):
                writer.write_batch(batch)
    done = run_publish(f"t/pub{suffix[1:]}", str(path), "--gateway", gateway)
    assert done.returncode == 0, done.stderr
    assert f"published {table.num_rows:,} rows" in done.stderr.decode()
    back = read_back(gateway, f"pub{suffix[1:]}")
    assert back.equals(table)


def test_publish_from_stdin_with_explicit_format(gateway):
    lines = b"a,b\n1,x\n2,\n3,z"  # no newline at the end: the last line still counts
    done = run_publish("t/fromstdin", "-", "--format", "csv", "--gateway", gateway, stdin=lines)
    assert done.returncode == 0, done.stderr
    back = read_back(gateway, "fromstdin")
    assert back.column("a").to_pylist() == [1, 2, 3]
    assert back.column("b").to_pylist() == ["x", "", "z"]


class Follower:
    """Follows ``t/DATASET`` through the gateway in a thread, keeping every row."""

    def __init__(self, url: str, dataset: str) -> None:
        self.client = flight.connect(url)
        ticket = json.dumps({"tenant": "t", "dataset": dataset, "follow": True})
        self.reader = None
        self.rows: list[dict] = []
        self.ticket = flight.Ticket(ticket.encode())
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Follower:
        self.thread.start()
        return self

    def _run(self) -> None:
        # The dataset exists only after the first batch: retry until it does.
        while self.reader is None:
            try:
                self.reader = self.client.do_get(self.ticket)
                self.reader.schema  # noqa: B018 - fails here while the dataset does not exist
            except flight.FlightError:
                self.reader = None
                threading.Event().wait(0.02)
        try:
            for chunk in self.reader:
                self.rows.extend(chunk.data.to_pylist())
        except flight.FlightError:
            pass

    def stop(self) -> None:
        if self.reader is not None:
            self.reader.cancel()
        self.thread.join(10)
        self.client.close()


@contextmanager
def publisher(url: str, *args: str) -> Iterator[subprocess.Popen]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamkit", "publish", *args, "--gateway", url],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        cwd=REPO,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        for stream in (proc.stdin, proc.stderr):
            if stream and not stream.closed:
                stream.close()


def test_a_pipe_is_published_line_by_line_while_it_stays_open(gateway):
    follower = Follower(gateway, "logs").start()
    try:
        with publisher(gateway, "t/logs", "-", "--format", "ndjson") as proc:
            assert proc.stdin is not None
            for i in range(3):
                proc.stdin.write(json.dumps({"seq": i, "msg": f"line {i}"}).encode() + b"\n")
                proc.stdin.flush()
                # Each line arrives while stdin is still open, like ``tail -f | publish``.
                wait_for(lambda i=i: len(follower.rows) == i + 1, 20, f"line {i} at a follower")
            assert proc.poll() is None
            proc.stdin.close()
            assert proc.wait(20) == 0
            assert b"published 3 rows in 3 batches" in proc.stderr.read()
        assert [row["seq"] for row in follower.rows] == [0, 1, 2]
    finally:
        follower.stop()


def test_wrong_schema_is_refused_with_exit_6(gateway, tmp_path):
    first = tmp_path / "first.csv"
    first.write_text("seq,value\n1,0.5\n")
    assert run_publish("t/strict", str(first), "--gateway", gateway).returncode == 0
    other = tmp_path / "other.jsonl"
    other.write_text('{"name": "not the same columns"}\n')
    done = run_publish("t/strict", str(other), "--gateway", gateway)
    assert done.returncode == EXIT_INVALID
    err = done.stderr.decode()
    assert "schema" in err and "Traceback" not in err
    assert err.splitlines()[0].startswith("streamkit: invalid: live dataset 'strict'")
    assert read_back(gateway, "strict").num_rows == 1


def test_a_line_that_does_not_fit_the_first_batch_exits_6(gateway):
    lines = b'{"n": 1}\n{"n": "text"}\n'
    done = run_publish(
        "t/mixed",
        "-",
        "--format",
        "ndjson",
        "--batch-rows",
        "1",
        "--gateway",
        gateway,
        stdin=lines,
    )
    assert done.returncode == EXIT_INVALID
    err = done.stderr.decode()
    assert "does not fit the schema of the first batch" in err
    assert "published 1 rows in 1 batches" in err
    assert read_back(gateway, "mixed").column("n").to_pylist() == [1]


def test_unknown_extension_is_a_usage_error(tmp_path):
    path = tmp_path / "data.xyz"
    path.write_text("x")
    done = run_publish("t/x", str(path), "--gateway", "grpc://127.0.0.1:1")
    assert done.returncode == 2
    assert "use --format" in done.stderr.decode()


def test_ctrl_c_keeps_what_was_sent(gateway):
    def published() -> int:
        try:
            return read_back(gateway, "interrupted").num_rows
        except flight.FlightError:
            return 0

    with publisher(gateway, "t/interrupted", "-", "--format", "ndjson") as proc:
        assert proc.stdin is not None and proc.stderr is not None
        proc.stdin.write(b'{"a": 1}\n{"a": 2}\n')
        proc.stdin.flush()
        wait_for(lambda: published() == 2, 20, "the rows to be published")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(20) == EXIT_INTERRUPTED
        err = proc.stderr.read().decode()
        assert "published 2 rows in 1 batches" in err and "Fatal" not in err
    assert published() == 2
