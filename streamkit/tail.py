"""Following files that grow: new complete rows of ``.jsonl``/``.ndjson``, ``.csv`` and
``.arrows`` (Arrow IPC stream) files, as they are appended. A partial last line (or IPC
message) waits until it is whole. The column types are those of the file's schema.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterator

import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.json as pjson

from streamkit import errors
from streamkit.catalog import Entry

FOLLOWABLE = {"jsonl", "csv", "arrows"}
POLL_SECONDS = 0.05
MAX_READ_BYTES = 16 * 1024 * 1024


def tail_file(
    entry: Entry,
    schema: pa.Schema,
    *,
    from_start: bool,
    should_stop: Callable[[], bool],
) -> Iterator[pa.RecordBatch]:
    if entry.format not in FOLLOWABLE or entry.compression:
        raise errors.invalid(
            f"dataset {entry.name!r} cannot be followed: only uncompressed .jsonl, .ndjson, "
            ".csv and .arrows files grow"
        )
    parse = _ARROWS if entry.format == "arrows" else _TextRows(entry, schema)
    offset = parse.start(entry, from_start)
    while not should_stop():
        size = entry.path.stat().st_size
        if size < offset:  # truncated or rotated: start over
            offset = parse.start(entry, True)
        if size == offset:
            time.sleep(POLL_SECONDS)
            continue
        with open(entry.path, "rb") as f:
            f.seek(offset)
            data = f.read(min(size - offset, MAX_READ_BYTES))
        used, batches = parse.rows(data, schema)
        if used == 0:
            time.sleep(POLL_SECONDS)  # only a partial row so far
            continue
        offset += used
        yield from batches


class _TextRows:
    def __init__(self, entry: Entry, schema: pa.Schema) -> None:
        self.csv = entry.format == "csv"
        self.schema = schema

    def start(self, entry: Entry, from_start: bool) -> int:
        with open(entry.path, "rb") as f:
            if not from_start:
                data = f.read()
                return data.rfind(b"\n") + 1
            return len(f.readline()) if self.csv else 0

    def rows(self, data: bytes, schema: pa.Schema) -> tuple[int, list[pa.RecordBatch]]:
        used = data.rfind(b"\n") + 1
        if used == 0 or not data[:used].strip():
            return used, []
        complete = io.BytesIO(data[:used])
        try:
            if self.csv:
                table = pcsv.read_csv(
                    complete,
                    read_options=pcsv.ReadOptions(column_names=schema.names),
                    convert_options=pcsv.ConvertOptions(column_types=schema),
                )
            else:
                table = pjson.read_json(
                    complete,
                    parse_options=pjson.ParseOptions(
                        explicit_schema=schema, unexpected_field_behavior="ignore"
                    ),
                )
        except pa.ArrowException as exc:
            raise errors.invalid(
                f"new rows do not fit the file's columns: {errors.clean_message(exc)}"
            ) from None
        return used, table.select(schema.names).to_batches()


class _ArrowStream:
    def start(self, entry: Entry, from_start: bool) -> int:
        with pa.memory_map(str(entry.path)) as source:
            reader = pa.ipc.open_stream(source)
            offset = source.tell()
            if from_start:
                return offset
            try:
                while True:
                    reader.read_next_batch()
                    offset = source.tell()
            except (StopIteration, pa.ArrowInvalid, OSError):
                return offset

    def rows(self, data: bytes, schema: pa.Schema) -> tuple[int, list[pa.RecordBatch]]:
        source = pa.BufferReader(data)
        used, batches = 0, []
        while used < len(data):
            try:
                message = pa.ipc.read_message(source)
            except (EOFError, pa.ArrowInvalid, OSError):
                break  # end-of-stream marker or a message still being written
            batches.append(pa.ipc.read_record_batch(message, schema))
            used = source.tell()
        return used, batches


_ARROWS = _ArrowStream()
