"""Parsing what ``streamkit publish`` reads into record batches, as it arrives.

CSV and NDJSON are read as lines: a reader thread hands over whatever complete lines a read
returns, and a batch is cut after ``batch_rows`` lines or ``linger`` seconds after its first
line, whichever comes first. Each batch is parsed by pyarrow; the schema is fixed by the first
batch, so later batches are parsed to the same types. Arrow input is an IPC stream (or a
seekable IPC file), forwarded batch by batch.
"""

from __future__ import annotations

import io
import os
import queue
import threading
import time
from collections.abc import Iterator
from typing import BinaryIO

import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.json as pjson

from streamkit import errors

READ_BYTES = 64 * 1024
MAX_BATCH_BYTES = 16 * 1024 * 1024
_EOF = None


def arrow_batches(stream: BinaryIO) -> Iterator[pa.RecordBatch]:
    """An IPC stream (stdin or .arrows); a seekable IPC *file* (.arrow/.feather) also works."""
    try:
        reader = pa.ipc.open_stream(stream)
    except pa.ArrowInvalid as exc:
        if not stream.seekable():
            raise errors.Invalid(f"the input is not an Arrow IPC stream: {exc}") from None
        try:
            stream.seek(0)
            ipc_file = pa.ipc.open_file(stream)
        except pa.ArrowInvalid:
            raise errors.StreamkitError(f"the input is not Arrow IPC: {exc}") from None
        for i in range(ipc_file.num_record_batches):
            yield ipc_file.get_batch(i)
        return
    while True:
        try:
            yield reader.read_next_batch()
        except StopIteration:
            return
        except pa.ArrowInvalid as exc:
            raise errors.Invalid(f"bad Arrow IPC input: {exc}") from None


def text_batches(
    stream: BinaryIO, csv: bool, batch_rows: int, linger: float
) -> Iterator[pa.RecordBatch]:
    """CSV (``csv``) or NDJSON lines as batches of at most ``batch_rows`` rows, each sent at
    most ``linger`` seconds after its first line arrived."""
    parser = _CsvParser() if csv else _JsonParser()
    for lines in _line_groups(stream, batch_rows, linger):
        yield from parser.parse(lines)


def _line_groups(stream: BinaryIO, max_lines: int, linger: float) -> Iterator[bytes]:
    """Whole lines, grouped: a group ends after ``max_lines`` lines (or 16 MB), ``linger``
    seconds after its first line arrived, or at the end of the input."""
    chunks: queue.Queue[bytes | None] = queue.Queue(maxsize=64)
    failure: list[BaseException] = []
    threading.Thread(
        target=_read_lines, args=(stream, chunks, failure), name="publish-reader", daemon=True
    ).start()
    pending: list[bytes] = []
    lines = size = 0
    due = 0.0
    while True:
        wait = max(due - time.monotonic(), 0.0) if pending else 0.5
        try:
            chunk = chunks.get(timeout=wait)
        except queue.Empty:
            if pending:
                yield b"".join(pending)
                pending, lines, size = [], 0, 0
            continue
        if chunk is _EOF:
            if failure:
                raise errors.Invalid(f"cannot read the input: {failure[0]}")
            if pending:
                yield b"".join(pending)
            return
        if not pending:
            due = time.monotonic() + linger
        pending.append(chunk)
        lines += chunk.count(b"\n")
        size += len(chunk)
        if lines >= max_lines or size >= MAX_BATCH_BYTES:
            data = b"".join(pending)
            while lines >= max_lines:
                cut = _after_line(data, max_lines)
                yield data[:cut]
                data, lines = data[cut:], lines - max_lines
            if size >= MAX_BATCH_BYTES and data:
                yield data
                data, lines = b"", 0
            pending, size = ([data], len(data)) if data else ([], 0)
            due = time.monotonic() + linger


def _after_line(data: bytes, n: int) -> int:
    """The offset just after the ``n``-th newline of ``data`` (which has at least ``n``)."""
    at = -1
    for _ in range(n):
        at = data.index(b"\n", at + 1)
    return at + 1


def _read_lines(
    stream: BinaryIO, out: queue.Queue[bytes | None], failure: list[BaseException]
) -> None:
    """Hand over complete lines as soon as a read returns them (a pipe returns what is there)."""
    partial = b""
    try:
        # The raw descriptor: a daemon thread blocked here must hold no buffer lock, or
        # the interpreter cannot finish after Ctrl-C.
        fd = stream.fileno()

        def read(size: int, /) -> bytes:
            return os.read(fd, size)

    except (OSError, ValueError, io.UnsupportedOperation):
        read = getattr(stream, "read1", stream.read)
    try:
        while True:
            data = read(READ_BYTES)
            if not data:
                break
            data = partial + data
            cut = data.rfind(b"\n") + 1
            partial = data[cut:]
            if cut:
                out.put(data[:cut])
        if partial.strip():
            out.put(partial + b"\n")
    except (OSError, ValueError) as exc:
        failure.append(exc)
    finally:
        out.put(_EOF)


class _SchemaFixer:
    """The first parsed batch fixes the schema; every later one is cast to it."""

    schema: pa.Schema | None = None

    def _fixed(self, table: pa.Table) -> list[pa.RecordBatch]:
        if self.schema is None:
            self.schema = _settled(table.schema)
        batches: list[pa.RecordBatch] = _cast(table, self.schema).combine_chunks().to_batches()
        return batches


class _JsonParser(_SchemaFixer):
    """NDJSON lines to batches; the first batch's inferred schema is imposed on the rest."""

    def __init__(self) -> None:
        self.schema: pa.Schema | None = None

    def parse(self, data: bytes) -> list[pa.RecordBatch]:
        if not data.strip():
            return []
        options = pjson.ParseOptions(newlines_in_values=False)
        if self.schema is not None:
            options = pjson.ParseOptions(
                explicit_schema=self.schema, unexpected_field_behavior="error"
            )
        try:
            table = pjson.read_json(
                io.BytesIO(data),
                read_options=pjson.ReadOptions(block_size=max(len(data), 1 << 20)),
                parse_options=options,
            )
        except pa.ArrowInvalid as exc:
            raise errors.Invalid(_parse_error("NDJSON", exc, self.schema)) from None
        return self._fixed(table)


class _CsvParser(_SchemaFixer):
    """CSV lines to batches; the header is the first line, the first batch fixes the types."""

    def __init__(self) -> None:
        self.header: bytes | None = None
        self.schema: pa.Schema | None = None

    def parse(self, data: bytes) -> list[pa.RecordBatch]:
        if self.header is None:
            cut = data.find(b"\n") + 1
            self.header, data = data[:cut], data[cut:]
        if not data.strip():
            return []
        convert = pcsv.ConvertOptions()
        if self.schema is not None:
            convert = pcsv.ConvertOptions(column_types={f.name: f.type for f in self.schema})
        try:
            table = pcsv.read_csv(
                io.BytesIO(self.header + data),
                read_options=pcsv.ReadOptions(
                    block_size=max(len(data) + len(self.header), 1 << 20)
                ),
                convert_options=convert,
            )
        except pa.ArrowInvalid as exc:
            raise errors.Invalid(_parse_error("CSV", exc, self.schema)) from None
        return self._fixed(table)


def _settled(schema: pa.Schema) -> pa.Schema:
    """Columns that were all null in the first batch can still hold text later."""
    return pa.schema([f.with_type(pa.string()) if pa.types.is_null(f.type) else f for f in schema])


def _cast(table: pa.Table, schema: pa.Schema) -> pa.Table:
    if table.schema.equals(schema):
        return table
    if table.schema.names != schema.names:
        raise errors.Invalid(
            f"the input's columns changed: {', '.join(table.schema.names)}"
            f" (the first batch had {', '.join(schema.names)})"
        )
    try:
        return table.cast(schema)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise errors.Invalid(_parse_error("input", exc, schema)) from None


def _parse_error(what: str, exc: BaseException, schema: pa.Schema | None) -> str:
    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if schema is None:
        return f"cannot parse the {what}: {reason}"
    return f"a line does not fit the schema of the first batch: {reason}"
