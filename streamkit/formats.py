"""Output formats of ``streamkit query``: one writer per format, fed batch by batch.

``arrow`` keeps every type and value. ``parquet`` keeps every type Parquet can hold; a schema
with one it cannot hold (unions, run-end encoded arrays, month_day_nano intervals) is refused
before a byte is written, in one line naming the column and its type (and so is, when its row
group is written, a column whose values pyarrow fails to write). ``csv``, ``json``,
``ndjson`` and the ``table`` preview print every value of every type, with one text form per
type family (CSV and the table print the same text; JSON the same, quoted where a string):

- integers and floats: numbers, floats (float16 too) in their shortest spelling that reads back
  to the same value; NaN and ±infinity are ``null`` in JSON, ``nan``/``inf``/``-inf`` in text
- booleans (and ``arrow.bool8``): ``true`` / ``false``
- strings as they are; binary of every kind as base64 (JSON strings)
- decimals exact, with as many digits after the point as the scale has (``-1.50``),
  never an exponent; JSON strings
- dates ``2024-02-29``; times ``13:45:00.123``; timestamps ISO 8601, ``2024-03-31T03:00:00+02:00``
  in their zone with its offset (naive ones without); fraction digits as many as the unit has
- durations: seconds, exact (``1.5``, ``-0.000000001``; JSON numbers)
- month_day_nano intervals: ``{"months": 1, "days": 2, "nanoseconds": 3}``
- dictionaries: their values; run-end encoded: the decoded values; unions: the value of the
  row's child; ``arrow.uuid``: ``12345678-1234-5678-1234-567812345678``; other extension
  types: the text of their storage
- lists (every kind), structs, maps, unions: JSON; a map is an object whose keys are the keys'
  text; in a CSV cell and the table the same JSON text. Nanoseconds nested in a struct, a list
  or a map are cut to microseconds there, as Python's datetime (and so this command's JSON) has
  always held them; top-level columns (and list views) keep every digit.

Flat columns are turned into text in Arrow (casts and string kernels in C++); nested ones are
encoded per value from their children's text. Every writer flushes after each batch: rows
reach the reader while the stream is still running, and memory stays bounded by one batch
(Parquet: one row group).
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import decimal
import itertools
import json
import math
import zoneinfo
from collections.abc import Callable
from enum import StrEnum
from json.encoder import encode_basestring  # the C implementation when available
from pathlib import Path
from typing import Any, BinaryIO, Protocol, cast

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from streamkit import errors
from streamkit.batches import batch_bytes

PARQUET_ROW_GROUP_BYTES = 64 * 1024 * 1024
TEXT = pa.large_string()
_NULL = "null"
_UTC = frozenset({"UTC", "utc", "Etc/UTC", "Z", "+00:00", "GMT", "Etc/GMT"})
_FRACTION_DIGITS = {"s": 0, "ms": 3, "us": 6, "ns": 9}
_PER_SECOND = {unit: 10**digits for unit, digits in _FRACTION_DIGITS.items()}
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_ZONE_RULES_END = 2_145_916_800  # 2038-01-01T00:00:00Z, seconds since the epoch


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


class UnsupportedType(errors.Invalid, ValueError):
    """A column whose type the chosen format cannot hold (or, with ``reason``, whose values
    pyarrow failed to write in it)."""

    def __init__(self, fmt: Format, field: pa.Field, reason: str | None = None) -> None:
        what = f"cannot hold column {field.name!r} of type {field.type}"
        if reason is not None:
            what = f"could not write column {field.name!r} of type {field.type} ({reason})"
        super().__init__(f"{fmt.value} {what}; use --format arrow, or --columns without it")
        self.field = field


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
    """An Arrow IPC stream: ``pyarrow.ipc.open_stream`` reads it back (dictionaries that change
    from batch to batch included: the stream format carries replacement dictionaries)."""

    def __init__(self, sink: BinaryIO, schema: pa.Schema) -> None:
        self.sink = sink
        self.writer = pa.ipc.new_stream(pa.PythonFile(sink, mode="w"), schema)

    def write(self, batch: pa.RecordBatch) -> None:
        self.writer.write_batch(batch)
        self.sink.flush()

    def close(self) -> None:
        self.writer.close()
        self.sink.flush()


class _ParquetFileWriter(pq.ParquetWriter):  # type: ignore[misc]  # pyarrow has no stubs
    """Not closed by the garbage collector: a stream that failed or was interrupted leaves an
    unfinished file (removed by the caller), not a footer written after the error, or a
    traceback on stderr when that write hits a closed pipe."""

    def __del__(self) -> None:
        pass


class ParquetWriter:
    """Parquet written sequentially (no seeking, so stdout works); row groups up to ~64 MB."""

    def __init__(self, sink: BinaryIO, schema: pa.Schema) -> None:
        refuse_for_parquet(schema)
        self.sink = sink
        self.writer = _ParquetFileWriter(pa.PythonFile(sink, mode="w"), schema)
        self.pending: list[pa.RecordBatch] = []
        self.pending_bytes = 0

    def write(self, batch: pa.RecordBatch) -> None:
        self.pending.append(batch)
        self.pending_bytes += batch_bytes(batch)
        if self.pending_bytes >= PARQUET_ROW_GROUP_BYTES:
            self._flush()

    def _flush(self) -> None:
        if self.pending:
            table = pa.Table.from_batches(self.pending)
            try:
                self.writer.write_table(table)
            except pa.ArrowException as exc:
                raise _write_failure(table, exc) from None
            self.sink.flush()
        self.pending, self.pending_bytes = [], 0

    def close(self) -> None:
        self._flush()
        self.writer.close()
        self.sink.flush()


def refuse_for_parquet(schema: pa.Schema) -> None:
    """Raise :class:`UnsupportedType` for the first column Parquet has no type for (about
    0.1 ms a column: a writer is opened on a scratch buffer, never on the sink)."""
    for field in schema:
        try:
            _ParquetFileWriter(pa.BufferOutputStream(), pa.schema([field])).close()
        except (pa.ArrowException, TypeError, ValueError):
            raise UnsupportedType(Format.parquet, field) from None


def _write_failure(table: pa.Table, exc: pa.ArrowException) -> Exception:
    """The column that pyarrow fails to write (e.g. ``list<struct<string_view>>`` holding
    ``[[null], null]``: "Slicing not implemented for StringView"), as one line."""
    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    for field, column in zip(table.schema, table.columns, strict=True):
        try:
            pq.write_table(pa.table([column], schema=pa.schema([field])), pa.BufferOutputStream())
        except pa.ArrowException:
            return UnsupportedType(Format.parquet, field, reason)
    return cast(Exception, exc)  # pyarrow has no stubs: ArrowException is Any


class CsvWriter:
    """CSV with a header. Numbers, booleans and strings go to pyarrow's writer as they are;
    every other column is turned into its text first (nested values: JSON text)."""

    def __init__(self, sink: BinaryIO, schema: pa.Schema) -> None:
        self.sink = sink
        self.converted = [i for i, f in enumerate(schema) if not _csv_native(f.type)]
        for i in self.converted:
            schema = schema.set(i, pa.field(schema.field(i).name, TEXT))
        self.schema = schema
        self.writer = pcsv.CSVWriter(pa.PythonFile(sink, mode="w"), schema)
        self.sink.flush()

    def write(self, batch: pa.RecordBatch) -> None:
        if self.converted:
            columns = list(batch.columns)
            for i in self.converted:
                columns[i] = text(columns[i])
            batch = pa.RecordBatch.from_arrays(columns, schema=self.schema)
        self.writer.write_batch(batch)
        self.sink.flush()

    def close(self) -> None:
        self.writer.close()
        self.sink.flush()


def _csv_native(kind: pa.DataType) -> bool:
    return bool(
        pa.types.is_null(kind)
        or pa.types.is_boolean(kind)
        or pa.types.is_integer(kind)
        or pa.types.is_floating(kind)
        or pa.types.is_string(kind)
        or pa.types.is_large_string(kind)
    )


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
            chunk = ("\n" if self.first else ",\n") + ",\n".join(lines)
        else:
            chunk = "\n".join(lines) + "\n"
        self.first = False
        self.sink.write(chunk.encode("utf-8"))
        self.sink.flush()

    def close(self) -> None:
        if self.array:
            self.sink.write(b"]\n" if self.first else b"\n]\n")
        self.sink.flush()


def json_lines(batch: pa.RecordBatch) -> list[str]:
    """One JSON object per row, encoded column by column (several times faster than
    ``json.dumps`` per row dict); keys in schema order."""
    keys = [encode_basestring(name).replace("%", "%%") for name in batch.schema.names]
    template = "{" + ", ".join(f"{key}: %s" for key in keys) + "}"
    columns = [json_values(column) for column in batch.columns]
    return [template % values for values in zip(*columns, strict=True)]


def rows(batch: pa.RecordBatch) -> list[dict[str, str | None]]:
    """The batch as rows of text cells (what CSV writes), for the table preview."""
    names = batch.schema.names
    columns = [text(column).to_pylist() for column in batch.columns]
    return [dict(zip(names, values, strict=True)) for values in zip(*columns, strict=True)]


# --- the text of each value ----------------------------------------------------------------


def text(column: pa.Array) -> pa.Array:
    """Each value's text as CSV and the table print it (a large_string array, nulls kept)."""
    kind = column.type
    if isinstance(kind, pa.BaseExtensionType):
        if kind == pa.uuid():
            return _uuid_text(column)
        if kind == pa.bool8():
            return column.storage.cast(pa.bool_()).cast(TEXT)
        return text(column.storage)
    if pa.types.is_dictionary(kind):
        return text(column.dictionary).take(column.indices)
    if pa.types.is_run_end_encoded(kind):
        return text(pc.run_end_decode(column))
    if pa.types.is_union(kind):  # JSON text, but NaN and infinity as CSV spells them
        values = _union_values(column, _union_child_text)
        return pa.array([None if v == _NULL else v for v in values], TEXT)
    flat = _flat_text(column)
    if flat is not None:
        return flat
    values = json_values(column)  # nested: JSON text; a null (or a union's null value): null
    return pa.array([None if v == _NULL else v for v in values], TEXT)


def _flat_text(column: pa.Array) -> pa.Array | None:
    kind = column.type
    if pa.types.is_null(kind):
        return pa.nulls(len(column), TEXT)
    if (
        pa.types.is_boolean(kind)
        or pa.types.is_integer(kind)
        or pa.types.is_floating(kind)
        or pa.types.is_string(kind)
        or pa.types.is_large_string(kind)
        or pa.types.is_string_view(kind)
        or pa.types.is_date(kind)
        or pa.types.is_time(kind)
    ):
        return column.cast(TEXT)
    if pa.types.is_decimal(kind):
        return _decimals(column)
    if pa.types.is_timestamp(kind):
        return _iso_timestamps(column, kind)
    if pa.types.is_duration(kind):
        return _seconds(column, kind.unit)
    if (
        pa.types.is_binary(kind)
        or pa.types.is_large_binary(kind)
        or pa.types.is_binary_view(kind)
        or pa.types.is_fixed_size_binary(kind)
    ):
        encoded = [None if v is None else base64.b64encode(v) for v in column.to_pylist()]
        return pa.array(encoded, pa.large_binary()).cast(TEXT)
    return None


def _decimals(column: pa.Array) -> pa.Array:
    """Exact, with the scale's digits after the point; Arrow spells values under 1e-6 (zero
    included, ``0E-10``) with an exponent, and those few are rewritten in Python."""
    texts = column.cast(TEXT)
    exponent = pc.fill_null(pc.match_substring(texts, "E"), False)
    if not pc.any(exponent).as_py():
        return texts
    plain = [format(decimal.Decimal(v), "f") for v in pc.filter(texts, exponent).to_pylist()]
    return pc.replace_with_mask(texts, exponent, pa.array(plain, TEXT))


def _iso_timestamps(column: pa.Array, kind: pa.TimestampType) -> pa.Array:
    """ISO 8601 text; UTC and naive values take a fast path (no time zone database)."""
    if kind.tz is not None and kind.tz not in _UTC:
        return _zoned_timestamps(column, kind)
    texts = column.cast(pa.timestamp(kind.unit)).cast(TEXT)
    texts = pc.replace_substring(texts, " ", "T", max_replacements=1)
    return texts if kind.tz is None else _join(texts, "+00:00")


def _zoned_timestamps(column: pa.Array, kind: pa.TimestampType) -> pa.Array:
    """Local time and offset in the column's zone, by Arrow, except for two kinds of rows that
    Arrow gets wrong and Python spells right (as ``datetime.isoformat`` does):

    - offsets of minutes and seconds (local mean time before ~1900, Madrid's -00:14:44): ``%Ez``
      keeps the minutes, so the local time and the offset disagree;
    - instants from 2038 on, past the transitions the zone files list: Arrow stops applying
      daylight saving time there (apache/arrow#36110).
    """
    texts = pc.strftime(column, format="%Y-%m-%dT%H:%M:%S%Ez").cast(TEXT)
    if kind.tz[0] in "+-":  # a fixed offset in whole minutes: Arrow is right
        return texts
    counts = column.cast(pa.int64())
    shift = pc.subtract(pc.local_timestamp(column).cast(pa.int64()), counts)
    odd = pc.not_equal(pc.remainder(shift, 60 * _PER_SECOND[kind.unit]), 0)
    late = pc.greater_equal(counts, _ZONE_RULES_END * _PER_SECOND[kind.unit])
    redo = pc.fill_null(pc.or_(odd, late), False)
    if not pc.any(redo).as_py():
        return texts
    try:
        zone = zoneinfo.ZoneInfo(kind.tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return texts
    arrow_texts = pc.filter(texts, redo).to_pylist()
    python_texts = [
        _iso_in_zone(count, kind.unit, zone) or text
        for count, text in zip(pc.filter(counts, redo).to_pylist(), arrow_texts, strict=True)
    ]
    return pc.replace_with_mask(texts, redo, pa.array(python_texts, TEXT))


def _iso_in_zone(count: int, unit: str, zone: dt.tzinfo) -> str | None:
    """ISO 8601 in ``zone``, or None past the years Python's datetime holds."""
    seconds, fraction = divmod(count, _PER_SECOND[unit])
    try:
        local = (_EPOCH + dt.timedelta(seconds=seconds)).astimezone(zone).isoformat()
    except OverflowError:
        return None
    digits = _FRACTION_DIGITS[unit]
    return local[:19] + (f".{fraction:0{digits}d}" if digits else "") + local[19:]


def _seconds(column: pa.Array, unit: str) -> pa.Array:
    """Durations as exact seconds: ``-1500`` ms → ``-1.5``, in Arrow string kernels."""
    counts = column.cast(pa.int64()).cast(TEXT)
    digits = _FRACTION_DIGITS[unit]
    if digits == 0:
        return counts
    magnitude = pc.utf8_lpad(pc.utf8_ltrim(counts, "-"), width=digits + 1, padding="0")
    whole = pc.utf8_slice_codeunits(magnitude, 0, -digits)
    fraction = pc.utf8_rtrim(pc.utf8_slice_codeunits(magnitude, -digits), "0")
    number = pc.if_else(pc.equal(fraction, ""), whole, _join(whole, fraction, separator="."))
    signed = _join("-", number)
    return pc.if_else(pc.starts_with(counts, "-"), signed, number)


def _uuid_text(column: pa.Array) -> pa.Array:
    """The canonical 8-4-4-4-12 form: the 16 bytes in hex (in one call), then dashes."""
    storage = column.storage
    validity, data = storage.buffers()
    if data is None or len(storage) == 0:
        return pa.nulls(len(storage), TEXT)
    hexed = data.slice(0, (storage.offset + len(storage)) * 16).to_pybytes().hex()
    hex_text = pa.Array.from_buffers(
        pa.binary(32), len(storage), [validity, pa.py_buffer(hexed.encode())], offset=storage.offset
    ).cast(TEXT)
    spans = ((0, 8), (8, 12), (12, 16), (16, 20), (20, 32))
    parts = [pc.utf8_slice_codeunits(hex_text, a, b) for a, b in spans]
    return _join(*parts, separator="-")


def _join(*parts: pa.Array | str, separator: str = "") -> pa.Array:
    """Concatenate text arrays and constants row by row (null where any part is null)."""
    texts = [pa.scalar(p, TEXT) if isinstance(p, str) else p for p in parts]
    return pc.binary_join_element_wise(*texts, pa.scalar(separator, TEXT))


# --- JSON ----------------------------------------------------------------------------------


def json_values(column: pa.Array) -> list[str]:
    """Each value as JSON text (``null`` for a null)."""
    if _is_nested(column.type):
        kind = _microseconds(column.type)
        if kind != column.type:
            with contextlib.suppress(pa.ArrowNotImplementedError):  # then every digit
                column = column.cast(kind, safe=False)
    return _json(column)


def _is_nested(kind: pa.DataType) -> bool:
    return pa.types.is_nested(kind) or (
        isinstance(kind, pa.BaseExtensionType) and _is_nested(kind.storage_type)
    )


def _json(column: pa.Array) -> list[str]:
    kind = column.type
    if isinstance(kind, pa.BaseExtensionType) and kind not in (pa.uuid(), pa.bool8()):
        return _json(column.storage)
    if pa.types.is_dictionary(kind):
        values = _json(column.dictionary)
        return [_NULL if i is None else values[i] for i in column.indices.to_pylist()]
    if pa.types.is_run_end_encoded(kind):
        return _json(pc.run_end_decode(column))
    if pa.types.is_interval(kind):
        return [_NULL if v is None else _interval(v) for v in column.to_pylist()]
    if pa.types.is_nested(kind):
        return _nested_json(column)
    texts = text(column)
    if pa.types.is_floating(kind):  # NaN and infinity have no JSON spelling
        texts = pc.if_else(pc.is_finite(column), texts, pa.scalar(None, TEXT))
    values = texts.to_pylist()
    if _is_json_number(kind):
        return [_NULL if v is None else v for v in values]
    return [_NULL if v is None else encode_basestring(v) for v in values]


def _is_json_number(kind: pa.DataType) -> bool:
    return bool(
        pa.types.is_integer(kind)
        or pa.types.is_floating(kind)
        or pa.types.is_boolean(kind)
        or pa.types.is_duration(kind)
        or kind == pa.bool8()
    )


def _interval(value: pa.MonthDayNano) -> str:
    months, days, nanoseconds = value.months, value.days, value.nanoseconds
    return f'{{"months": {months}, "days": {days}, "nanoseconds": {nanoseconds}}}'


def _nested_json(column: pa.Array) -> list[str]:
    kind = column.type
    if pa.types.is_struct(kind):
        return _struct_json(column)
    if pa.types.is_union(kind):
        return _union_json(column)
    valid = column.is_valid().to_pylist()
    if pa.types.is_fixed_size_list(kind):
        size = kind.list_size
        values = _json(column.values.slice(column.offset * size, len(column) * size))
        spans = [(i * size, (i + 1) * size) for i in range(len(column))]
    elif pa.types.is_list_view(kind) or pa.types.is_large_list_view(kind):
        values = _json(column.values)
        offsets, sizes = column.offsets.to_pylist(), column.sizes.to_pylist()
        spans = [(o, o + n) for o, n in zip(offsets, sizes, strict=True)]
    else:  # list, large_list, map: offsets into the children
        offsets = column.offsets.to_pylist()
        first, count = offsets[0], offsets[-1] - offsets[0]
        spans = [(a - first, b - first) for a, b in itertools.pairwise(offsets)]
        if pa.types.is_map(kind):
            keys = _json(column.keys.slice(first, count))
            items = _json(column.items.slice(first, count))
            pairs = [f"{_key(k)}: {v}" for k, v in zip(keys, items, strict=True)]
            return [
                "{" + ", ".join(pairs[a:b]) + "}" if ok else _NULL
                for ok, (a, b) in zip(valid, spans, strict=True)
            ]
        values = _json(column.values.slice(first, count))
    return [
        "[" + ", ".join(values[a:b]) + "]" if ok else _NULL
        for ok, (a, b) in zip(valid, spans, strict=True)
    ]


def _key(value: str) -> str:
    """A map key's JSON text as an object key: a JSON string (numbers and such quoted)."""
    return value if value.startswith('"') else encode_basestring(value)


def _struct_json(column: pa.StructArray) -> list[str]:
    keys = [encode_basestring(f.name).replace("%", "%%") for f in column.type]
    template = "{" + ", ".join(f"{key}: %s" for key in keys) + "}"
    children = [_json(child) for child in column.flatten()]
    if not children:
        objects = ["{}"] * len(column)
    else:
        objects = [template % values for values in zip(*children, strict=True)]
    if column.null_count:
        valid = column.is_valid().to_pylist()
        objects = [o if ok else _NULL for o, ok in zip(objects, valid, strict=True)]
    return objects


def _union_json(column: pa.UnionArray) -> list[str]:
    return _union_values(column, _json)


def _union_child_text(child: pa.Array) -> list[str]:
    if pa.types.is_floating(child.type):
        return [_NULL if v is None else v for v in text(child).to_pylist()]
    return _json(child)


def _union_values(column: pa.UnionArray, values_of: Callable[[pa.Array], list[Any]]) -> list[Any]:
    """Each row's value from its child, as ``values_of`` gives a child's values."""
    kind = column.type
    child_of = {code: i for i, code in enumerate(kind.type_codes)}
    children = [values_of(column.field(i)) for i in range(kind.num_fields)]
    codes = _union_buffer(column, 1, pa.int8()).to_pylist()
    if kind.mode == "sparse":  # field() is already sliced like the union
        return [children[child_of[c]][i] for i, c in enumerate(codes)]
    offsets = _union_buffer(column, 2, pa.int32()).to_pylist()
    return [children[child_of[c]][o] for c, o in zip(codes, offsets, strict=True)]


def _union_buffer(column: pa.UnionArray, index: int, kind: pa.DataType) -> pa.Array:
    """Type codes (1) or dense offsets (2) of this slice of the union (pyarrow's
    ``type_codes`` and ``offsets`` ignore a slice's offset)."""
    buffer = column.buffers()[index]
    return pa.Array.from_buffers(kind, len(column), [None, buffer], offset=column.offset)


def _microseconds(kind: pa.DataType) -> pa.DataType:
    """``kind`` with nanosecond temporal types (in structs, lists and maps) in microseconds."""
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


# --- JSON of Python values (the CLI's other JSON output) ---------------------------------------


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
