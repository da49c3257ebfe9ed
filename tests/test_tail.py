"""Following growing files (streamkit.tail): where ``from: end`` starts, without reading
the file; lines and IPC messages longer than one read."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pyarrow as pa
import pyarrow.flight as flight
import pytest
from conftest import running_connector

from streamkit import errors, tail
from streamkit.catalog import Entry
from streamkit.tail import MAX_READ_BYTES, tail_file

SCHEMA = pa.schema([("seq", pa.int64()), ("note", pa.string())])
TOO_LONG = r"^invalid: dataset 'app': a line is longer than 16 MB"


def line(seq: int, note: str = "") -> bytes:
    return json.dumps({"seq": seq, "note": note}).encode() + b"\n"


def entry(path: Path) -> Entry:
    return Entry(name="app", path=path, format=path.suffix.lstrip("."))


def until(seconds: float, then: Callable[[], None] | None = None) -> Callable[[], bool]:
    """A ``should_stop`` that runs ``then`` at its first call (right after the follower has
    found where to start) and stops the follower after ``seconds``."""
    deadline = time.monotonic() + seconds
    pending = [then] if then else []

    def should_stop() -> bool:
        while pending:
            pending.pop()()
        return time.monotonic() > deadline

    return should_stop


def append(path: Path, data: bytes) -> Callable[[], None]:
    def write() -> None:
        with open(path, "ab") as f:
            f.write(data)

    return write


def seqs(batches: list[pa.RecordBatch]) -> list[int]:
    return [s for b in batches for s in b.column("seq").to_pylist()]


def test_from_end_reads_only_the_end_of_a_large_file(tmp_path: Path) -> None:
    path = tmp_path / "app.jsonl"
    with open(path, "wb") as f:
        f.write(line(0))
        f.seek(256 * 1024 * 1024)  # a sparse 256 MB hole, never to be read
        f.write(b"\n" + line(1))
    me = psutil.Process()
    before = me.io_counters().read_chars
    follower = tail_file(
        entry(path), SCHEMA, from_start=False, should_stop=until(10, append(path, line(2)))
    )
    assert seqs([next(follower)]) == [2]
    assert me.io_counters().read_chars - before < 1024 * 1024


@pytest.mark.parametrize("suffix", ["jsonl", "csv"])
def test_from_end_starts_at_the_last_partial_line(tmp_path: Path, suffix: str) -> None:
    """The backwards scan crosses several of its reads to find the start of a long last line."""
    long_note = "x" * 300_000
    if suffix == "csv":
        rows = [b"seq,note\n", b"0,a\n", b"1,b\n", f"2,{long_note}\n".encode(), b"3,c\n"]
    else:
        rows = [line(0, "a"), line(1, "b"), line(2, long_note), line(3, "c")]
    path = tmp_path / f"app.{suffix}"
    path.write_bytes(b"".join(rows[:-2]) + rows[-2][:-10])
    follower = tail_file(
        entry(path),
        SCHEMA,
        from_start=False,
        should_stop=until(10, append(path, rows[-2][-10:] + rows[-1])),
    )
    first = next(follower)
    assert seqs([first]) == [2, 3]
    assert first.column("note").to_pylist() == [long_note, "c"]


@pytest.mark.parametrize("complete", [False, True])
def test_a_line_longer_than_the_limit_is_an_error(tmp_path: Path, complete: bool) -> None:
    path = tmp_path / "app.jsonl"
    path.write_bytes(line(0) + b"x" * MAX_READ_BYTES + (b"\n" if complete else b""))
    follower = tail_file(entry(path), SCHEMA, from_start=True, should_stop=until(10))
    assert seqs([next(follower)]) == [0]
    with pytest.raises(errors.Invalid, match=TOO_LONG):
        next(follower)


def test_from_end_after_a_line_longer_than_the_limit_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "app.jsonl"
    path.write_bytes(line(0) + b"x" * (MAX_READ_BYTES + 1))
    follower = tail_file(entry(path), SCHEMA, from_start=False, should_stop=until(10))
    with pytest.raises(errors.Invalid, match=TOO_LONG):
        next(follower)


def test_a_line_up_to_the_limit_is_followed(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(tail, "MAX_READ_BYTES", 64)
    path = tmp_path / "app.jsonl"
    exact = line(1, "y" * (64 - len(line(1))))
    assert len(exact) == 64
    path.write_bytes(line(0) + exact)
    follower = tail_file(entry(path), SCHEMA, from_start=True, should_stop=until(10))
    assert seqs([next(follower), next(follower)]) == [0, 1]


def test_the_follower_is_told_the_line_is_too_long(tmp_path: Path) -> None:
    (tmp_path / "app.jsonl").write_bytes(line(0) + b"x" * (MAX_READ_BYTES + 1))
    ticket = flight.Ticket(json.dumps({"dataset": "app", "follow": True}).encode())
    with (
        running_connector(tmp_path) as connector,
        flight.connect(f"grpc://127.0.0.1:{connector.port}") as client,
    ):
        reader = client.do_get(ticket, flight.FlightCallOptions(timeout=10))
        assert reader.read_chunk().data.column("seq").to_pylist() == [0]
        with pytest.raises(flight.FlightServerError, match=TOO_LONG) as raised:
            reader.read_chunk()
    assert str(tmp_path) not in str(raised.value)


def test_an_ipc_message_larger_than_one_read_is_followed(tmp_path: Path) -> None:
    schema = pa.schema([("seq", pa.int64())])
    big = pa.record_batch([pa.array(range(3_000_000), pa.int64())], schema=schema)  # 24 MB
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, schema) as writer:
        writer.write_batch(pa.record_batch([pa.array([-1], pa.int64())], schema=schema))
        writer.write_batch(big)
    data = sink.getvalue().to_pybytes()[:-8]  # still open: no end-of-stream marker
    assert len(data) > MAX_READ_BYTES
    path = tmp_path / "app.arrows"
    path.write_bytes(data)
    follower = tail_file(entry(path), schema, from_start=True, should_stop=until(10))
    assert next(follower).num_rows == 1
    assert next(follower).equals(big)
