"""Datasets of every Arrow type on disk, and one reader per path that hands them on
(connector Flight, gateway Flight, HTTP, WebSocket), for ``tests/test_every_type.py``."""

from __future__ import annotations

import json
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.flight as flight
import pyarrow.parquet as pq
from arrow_types import chunked_equal, every_type_table, parquet_table, tables_equal
from websockets.sync.client import connect

EOS = b"\xff\xff\xff\xff\x00\x00\x00\x00"


@dataclass(frozen=True)
class Dataset:
    name: str
    expected: pa.Table
    check_metadata: bool = True
    file_schema: pa.Schema | None = None  # as read from the file, if not expected's

    @property
    def schema(self) -> pa.Schema:
        return self.file_schema or self.expected.schema


def write_datasets(folder: Path, table: pa.Table | None = None) -> list[Dataset]:
    """``table`` (default :func:`every_type_table`) as an Arrow IPC stream file (``.arrows``,
    which keeps dictionaries that change from batch to batch) and an IPC file (``.arrow``,
    which cannot: its dictionaries are unified), and :func:`parquet_table` as Parquet (when
    ``table`` is None). Returns each dataset with the table a reader must get back."""
    folder.mkdir(parents=True, exist_ok=True)
    made = table if table is not None else every_type_table()
    stream = folder / "every.arrows"
    with pa.OSFile(str(stream), "wb") as sink, pa.ipc.new_stream(sink, made.schema) as writer:
        for batch in made.to_batches():
            writer.write_batch(batch)
    # pyarrow's unify_dictionaries re-encodes the nested dictionaries of the table it writes
    # in place (list<dictionary>, struct<dictionary>), so write a private copy.
    copy = pa.ipc.open_stream(stream.read_bytes()).read_all()
    ipc_file = folder / "every_file.arrow"
    options = pa.ipc.IpcWriteOptions(unify_dictionaries=True)
    with (
        pa.OSFile(str(ipc_file), "wb") as sink,
        pa.ipc.new_file(sink, copy.schema, options=options) as writer,
    ):
        writer.write_table(copy)
    datasets = [
        Dataset("every", made),
        Dataset("every_file", pa.ipc.open_file(ipc_file.read_bytes()).read_all()),
    ]
    if table is None:
        path = folder / "parquet.parquet"
        pq.write_table(parquet_table(), path, row_group_size=10)
        # Parquet renames list items and map entries; values and types come back exact.
        # Arrow IPC (so Flight) does not carry a map's entries name: as every reader sees it.
        schema = pa.ipc.read_schema(pq.read_schema(path).serialize())
        datasets.append(Dataset("parquet", parquet_table(), False, schema))
    return datasets


def differences(got: pa.Table, want: pa.Table, *, check_metadata: bool = True) -> list[str]:
    """What differs, column by column, for an assertion message (empty when equal)."""
    if got.schema.names != want.schema.names:
        return [f"columns {got.schema.names} != {want.schema.names}"]
    out = []
    for name in want.column_names:
        a, b = got.schema.field(name), want.schema.field(name)
        if not a.equals(b, check_metadata=check_metadata):
            out.append(f"{name}: field {a} != {b}")
        elif not chunked_equal(got.column(name), want.column(name)):
            out.append(f"{name}: values differ")
    if not out and not got.schema.equals(want.schema, check_metadata=check_metadata):
        out.append(f"schema metadata {got.schema.metadata} != {want.schema.metadata}")
    return out


def assert_same(got: pa.Table, want: pa.Table, *, check_metadata: bool = True) -> None:
    assert tables_equal(got, want, check_metadata=check_metadata), differences(
        got, want, check_metadata=check_metadata
    )


def without_empty_batches(table: pa.Table) -> list[pa.RecordBatch]:
    return [batch for batch in table.to_batches() if batch.num_rows]


# --- the paths -------------------------------------------------------------------------------


def flight_read(client: flight.FlightClient, descriptor: flight.FlightDescriptor) -> pa.Table:
    """GetFlightInfo, then DoGet of its first endpoint's ticket (DESIGN.md's client code)."""
    info = client.get_flight_info(descriptor)
    reader = client.do_get(info.endpoints[0].ticket)
    table = reader.read_all()
    assert table.schema.equals(info.schema, check_metadata=True), "FlightInfo schema differs"
    return table


def command(**query: object) -> flight.FlightDescriptor:
    return flight.FlightDescriptor.for_command(json.dumps(query).encode())


def http_body(http_url: str, tenant: str, dataset: str, query: str = "") -> bytes:
    url = f"{http_url}/api/stream/{tenant}/{dataset}{query}"
    with urllib.request.urlopen(url, timeout=30) as response:
        assert response.headers["Content-Type"] == "application/vnd.apache.arrow.stream"
        return response.read()


def ws_query(http_port: int, **query: object) -> tuple[list[bytes], dict]:
    """A ``query`` over a fresh WebSocket: its binary frames and the closing text frame."""
    url = f"ws://127.0.0.1:{http_port}/ws"
    with connect(url, compression=None, max_size=None, open_timeout=10) as ws:
        ws.send(json.dumps({"action": "query", **query}))
        frames = []
        while True:
            message = ws.recv(timeout=30)
            if isinstance(message, bytes):
                frames.append(message)
            else:
                return frames, json.loads(message)


def whole_messages(frame: bytes) -> int:
    """The IPC messages in a frame; fails if the frame ends inside one."""
    reader = pa.BufferReader(frame)
    count = 0
    while reader.tell() < len(frame):
        start = reader.tell()
        try:
            pa.ipc.read_message(reader)
        except EOFError:  # only the end-of-stream marker, and only at the very end
            assert frame[start:] == EOS, f"a frame ends inside a message at byte {start}"
            return count + 1
        count += 1
    return count


def decode_frame_by_frame(frames: list[bytes]) -> pa.Table:
    """Decode as a browser does while frames arrive: after each frame, the bytes so far are a
    readable stream (whole messages only) holding at least the rows before it."""
    assert frames and frames[-1].endswith(EOS), "the last frame must end the stream"
    rows = 0
    for count in range(1, len(frames) + 1):
        assert whole_messages(frames[count - 1]) >= 1
        so_far = pa.ipc.open_stream(b"".join(frames[:count])).read_all()
        assert so_far.num_rows >= rows
        rows = so_far.num_rows
    return so_far
