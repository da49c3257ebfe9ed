"""Output formats of ``streamkit query``: one writer per format, fed batch by batch.

CSV, Arrow IPC and Parquet go through pyarrow's C++ writers; JSON and NDJSON have no pyarrow
writer, so rows are encoded per batch (temporal and decimal columns are turned into strings in
Arrow first). Every writer flushes after each batch: rows reach the reader while the stream
is still running, and memory stays bounded by one batch (Parquet: one row group).
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import json
import math
from enum import StrEnum
from json.encoder import encode_basestring  # the C implementation when available
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

PARQUET_ROW_GROUP_BYTES = 64 * 1024 * 1024
_NULL = "null"
_UTC = frozenset({"UTC", "utc", "Etc/UTC", "Z", "+00:00", "GMT", "Etc/GMT"})


class Format(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"
    ndjson = "ndjson"
    parquet = "parquet"
    arrow = "arrow"


EXTENSIONS = {
    ".csv": Format.csv,
    ".json": Format.json,
    ".ndjson": Format.ndjson,
    ".jsonl": Format.ndjson,
    ".parquet": Format.parquet,
    ".pq": Format.parquet,
    ".arrow": Format.arrow,
    ".arrows": Format.arrow,
    ".ipc": Format.arrow,
    ".txt": Format.table,
}


def format_for_path(path: Path) -> Format | None:
    return EXTENSIONS.get(path.suffix.lower())


class Writer(Protocol):
    def write(self, batch: pa.RecordBatch) -> None: ...

    def close(self) -> None: ...


def make_writer(fmt: Format, sink: BinaryIO, schema: pa.Schema) -> Writer:
    if fmt is Format.csv:
        return CsvWriter(sink, schema)
    if fmt is Format.json:
        return JsonWriter(sink, array=True)
    if fmt is Format.ndjson:
        return JsonWriter(sink, array=False)
    if fmt is Format.parquet:
        return ParquetWriter(sink, schema)
    if fmt is Format.arrow:
        return ArrowWriter(sink, schema)
    raise ValueError(f"no streaming writer for {fmt.value}")


class ArrowWriter:
    """An Arrow IPC stream: ``pyarrow.ipc.open_stream`` reads it back."""

    def __init__(self, sink: BinaryIO, schema: pa.Schema) -> None:
        self.sink = sink
        self.writer = pa.ipc.new_stream(pa.PythonFile(sink, mode="w"), schema)

    def write(self, batch: pa.RecordBatch) -> None:
        self.writer.write_batch(batch)
        self.sink.flush()

    def close(self) -> None:
        self.writer.close()
        self.sink.flush()


class ParquetWriter:
    """Parquet written sequentially (no seeking, so stdout works); row groups up to ~64 MB."""

    def __init__(self, sink: BinaryIO, schema: pa.Schema) -> None:
        self.sink = sink
        self.writer = pq.ParquetWriter(pa.PythonFile(sink, mode="w"), schema)
        self.pending: list[pa.RecordBatch] = []
        self.pending_bytes = 0

    def write(self, batch: pa.RecordBatch) -> None:
        self.pending.append(batch)
        self.pending_bytes += batch.nbytes
        if self.pending_bytes >= PARQUET_ROW_GROUP_BYTES:
            self._flush()

    def _flush(self) -> None:
        if self.pending:
            self.writer.write_table(pa.Table.from_batches(self.pending))
            self.sink.flush()
        self.pending, self.pending_bytes = [], 0

    def close(self) -> None:
        self._flush()
        self.writer.close()
        self.sink.flush()


class CsvWriter:
    """CSV with a header; lists, structs and maps are written as JSON text."""

    def __init__(self, sink: BinaryIO, schema: pa.Schema) -> None:
        self.sink = sink
        self.nested = [i for i, f in enumerate(schema) if pa.types.is_nested(f.type)]
        for i in self.nested:
            schema = schema.set(i, pa.field(schema.field(i).name, pa.large_string()))
        self.schema = schema
        self.writer = pcsv.CSVWriter(pa.PythonFile(sink, mode="w"), schema)
        self.sink.flush()

    def write(self, batch: pa.RecordBatch) -> None:
        if self.nested:
            columns = list(batch.columns)
            for i in self.nested:
                columns[i] = pa.array(
                    [None if v is None else dumps(v) for v in pylist(columns[i])],
                    pa.large_string(),
                )
            batch = pa.RecordBatch.from_arrays(columns, schema=self.schema)
        self.writer.write_batch(batch)
        self.sink.flush()

    def close(self) -> None:
        self.writer.close()
        self.sink.flush()


class JsonWriter:
    """A JSON array of objects (``array=True``) or one object per line (NDJSON)."""

    def __init__(self, sink: BinaryIO, *, array: bool) -> None:
        self.sink = sink
        self.array = array
        self.first = True
        if array:
            sink.write(b"[")

    def write(self, batch: pa.RecordBatch) -> None:
        if batch.num_rows == 0:
            return
        lines = json_lines(batch)
        if self.array:
            text = ("\n" if self.first else ",\n") + ",\n".join(lines)
        else:
            text = "\n".join(lines) + "\n"
        self.first = False
        self.sink.write(text.encode("utf-8"))
        self.sink.flush()

    def close(self) -> None:
        if self.array:
            self.sink.write(b"]\n" if self.first else b"\n]\n")
        self.sink.flush()


def json_lines(batch: pa.RecordBatch) -> list[str]:
    """One JSON object per row, encoded column by column (several times faster than
    ``json.dumps`` per row dict); keys in schema order."""
    batch = jsonable(batch)
    keys = [encode_basestring(name).replace("%", "%%") for name in batch.schema.names]
    template = "{" + ", ".join(f"{key}: %s" for key in keys) + "}"
    columns = [_encode_column(column) for column in batch.columns]
    return [template % values for values in zip(*columns, strict=True)]


def _encode_column(column: pa.Array) -> list[str]:
    kind = column.type
    if pa.types.is_integer(kind) or pa.types.is_float32(kind) or pa.types.is_float64(kind):
        # Arrow prints numbers in C++ (shortest round-trip form); NaN and infinity become null.
        text = column.cast(pa.string())
        if pa.types.is_floating(kind):
            text = pc.if_else(pc.is_finite(column), text, pa.scalar(None, pa.string()))
        return [_NULL if v is None else v for v in text.to_pylist()]
    values = pylist(column)
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return [_NULL if v is None else encode_basestring(v) for v in values]
    if pa.types.is_boolean(kind):
        return [_NULL if v is None else ("true" if v else "false") for v in values]
    return [_NULL if v is None else dumps(v) for v in values]


def jsonable(batch: pa.RecordBatch) -> pa.RecordBatch:
    """Top-level temporal and decimal columns as ISO 8601 / exact decimal strings, in Arrow."""
    columns, fields, changed = [], [], False
    for field, column in zip(batch.schema, batch.columns, strict=True):
        kind = field.type
        if pa.types.is_timestamp(kind):
            column = _iso_timestamps(column, kind)
        elif pa.types.is_temporal(kind) or pa.types.is_decimal(kind):
            column = column.cast(pa.string())
        else:
            columns.append(column)
            fields.append(field)
            continue
        changed = True
        columns.append(column)
        fields.append(pa.field(field.name, column.type))
    return pa.RecordBatch.from_arrays(columns, schema=pa.schema(fields)) if changed else batch


def _iso_timestamps(column: pa.Array, kind: pa.TimestampType) -> pa.Array:
    """ISO 8601 text; UTC and naive values take a fast path (no time zone database)."""
    if kind.tz is not None and kind.tz not in _UTC:
        return pc.strftime(column, format="%Y-%m-%dT%H:%M:%S%Ez")
    text = column.cast(pa.timestamp(kind.unit)).cast(pa.string())
    text = pc.replace_substring(text, " ", "T", max_replacements=1)
    if kind.tz is not None:
        text = pc.binary_join_element_wise(text, pa.scalar("+00:00"), "")
    return text


def rows(batch: pa.RecordBatch) -> list[dict[str, Any]]:
    """The batch as Python dicts ready for JSON (see :func:`jsonable` and :func:`pylist`)."""
    batch = jsonable(batch)
    names = batch.schema.names
    columns = [pylist(column) for column in batch.columns]
    return [dict(zip(names, values, strict=True)) for values in zip(*columns, strict=True)]


def pylist(column: pa.Array) -> list[Any]:
    """``to_pylist``, with nanoseconds nested in lists or structs cut to microseconds
    (Python's datetime has no nanoseconds; top-level columns keep them via :func:`jsonable`)."""
    try:
        return column.to_pylist()
    except ValueError:
        return column.cast(_microseconds(column.type), safe=False).to_pylist()


def _microseconds(kind: pa.DataType) -> pa.DataType:
    if pa.types.is_timestamp(kind) and kind.unit == "ns":
        return pa.timestamp("us", kind.tz)
    if pa.types.is_duration(kind) and kind.unit == "ns":
        return pa.duration("us")
    if pa.types.is_time64(kind) and kind.unit == "ns":
        return pa.time64("us")
    if pa.types.is_struct(kind):
        return pa.struct([f.with_type(_microseconds(f.type)) for f in kind])
    if pa.types.is_large_list(kind):
        return pa.large_list(kind.value_field.with_type(_microseconds(kind.value_type)))
    if pa.types.is_list(kind):
        return pa.list_(kind.value_field.with_type(_microseconds(kind.value_type)))
    if pa.types.is_fixed_size_list(kind):
        return pa.list_(kind.value_field.with_type(_microseconds(kind.value_type)), kind.list_size)
    if pa.types.is_map(kind):
        return pa.map_(
            kind.key_field.with_type(_microseconds(kind.key_type)),
            kind.item_field.with_type(_microseconds(kind.item_type)),
        )
    return kind


def dumps(value: Any) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, allow_nan=False, default=_json_default)
    except ValueError:  # NaN or infinity somewhere: JSON has no spelling for them
        return json.dumps(_finite(value), ensure_ascii=False, default=_json_default)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _json_default(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    return str(value)
