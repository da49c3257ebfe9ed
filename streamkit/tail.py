"""Following files that grow: new complete rows of ``.jsonl``/``.ndjson``, ``.csv`` and
``.arrows`` (Arrow IPC stream) files, as they are appended. A partial last line (or IPC
message) waits until it is whole. The column types are those of the file's schema.

Memory is bounded: text is read ``MAX_READ_BYTES`` at a time, so a line longer than that
is an ``invalid`` error; ``from: end`` finds its start by scanning back from the end.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterator
from typing import BinaryIO

import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.json as pjson

from streamkit import errors
from streamkit.catalog import Entry

FOLLOWABLE = {"jsonl", "csv", "arrows"}
POLL_SECONDS = 0.05
MAX_READ_BYTES = 16 * 1024 * 1024
SCAN_BYTES = 64 * 1024  # the step of the backwards scan for the last newline


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
        used, batches = parse.read(entry, offset, size, schema)
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
                return _after_last_newline(f, entry)
            return len(f.readline()) if self.csv else 0

    def read(
        self, entry: Entry, offset: int, size: int, schema: pa.Schema
    ) -> tuple[int, list[pa.RecordBatch]]:
        """``(bytes used, batches)`` of the whole lines from ``offset`` (at most one read)."""
        with open(entry.path, "rb") as f:
            f.seek(offset)
            data = f.read(min(size - offset, MAX_READ_BYTES))
        used = data.rfind(b"\n") + 1
        if used == 0 and len(data) == MAX_READ_BYTES:  # no newline in a whole read
            raise _too_long(entry)
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


def _after_last_newline(f: BinaryIO, entry: Entry) -> int:
    """Where the last (partial) line of a file starts, reading back at most one line's limit."""
    end = f.seek(0, io.SEEK_END)
    position = end
    while position > 0 and end - position < MAX_READ_BYTES:
        step = min(SCAN_BYTES, position, MAX_READ_BYTES - (end - position))
        position -= step
        f.seek(position)
        found = f.read(step).rfind(b"\n")
        if found >= 0:
            return position + found + 1
    if position > 0:
        raise _too_long(entry)
    return 0


def _too_long(entry: Entry) -> errors.Invalid:
    return errors.invalid(
        f"dataset {entry.name!r}: a line is longer than {MAX_READ_BYTES // 2**20} MB, "
        "the most that can be followed"
    )


class _ArrowStream:
    def start(self, entry: Entry, from_start: bool) -> int:
        with pa.memory_map(str(entry.path)) as source:
            reader = pa.ipc.open_stream(source)
            offset: int = source.tell()
            if from_start:
                return offset
            try:
                while True:
                    reader.read_next_batch()
                    offset = source.tell()
            except (StopIteration, pa.ArrowInvalid, OSError):
                return offset

    def read(
        self, entry: Entry, offset: int, size: int, schema: pa.Schema
    ) -> tuple[int, list[pa.RecordBatch]]:
        """The whole messages from ``offset``: about ``MAX_READ_BYTES``, but at least one
        message however large (its batch is held in memory anyway)."""
        used, batches = 0, []
        with pa.OSFile(str(entry.path)) as source:
            source.seek(offset)
            while used < min(size - offset, MAX_READ_BYTES):
                try:
                    message = pa.ipc.read_message(source)
                except (EOFError, pa.ArrowInvalid, OSError):
                    break  # end-of-stream marker or a message still being written
                batches.append(pa.ipc.read_record_batch(message, schema))
                used = source.tell() - offset
        return used, batches


_ARROWS = _ArrowStream()
