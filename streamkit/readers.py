"""Open a dataset as a stream of record batches: projection pushed into the reader, bounded
memory, and errors that name the dataset but never a server path.

Parquet and Arrow go through ``pyarrow.dataset`` scanners, entirely in C++. CSV and JSON Lines
use pyarrow's streaming readers, which fix the column types from the first block, so a later
value that does not fit is an error for that request rather than a silently different column.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.dataset as ds
import pyarrow.flight as flight
import pyarrow.json as pjson

from streamkit import errors
from streamkit.catalog import Entry
from streamkit.guarded_stream import GuardedStream, check_document_depth

DEFAULT_BATCH_ROWS = 65_536
BLOCK_BYTES = 1 << 20  # CSV/JSON read block; also the longest row accepted
MAX_JSON_ARRAY_BYTES = 256 * 1024 * 1024
# Parquet footers are thrift: cap what a hostile footer can make the reader allocate.
THRIFT_STRING_LIMIT = 16 * 1024 * 1024
THRIFT_CONTAINER_LIMIT = 10_000

_PARQUET = ds.ParquetFileFormat(
    default_fragment_scan_options=ds.ParquetFragmentScanOptions(
        thrift_string_size_limit=THRIFT_STRING_LIMIT,
        thrift_container_size_limit=THRIFT_CONTAINER_LIMIT,
    )
)


@dataclass(frozen=True)
class DatasetInfo:
    schema: pa.Schema
    rows: int  # -1 when only a full read would tell
    bytes: int


@dataclass(frozen=True)
class BatchStream:
    schema: pa.Schema
    batches: Iterator[pa.RecordBatch]

    def to_flight(self) -> flight.FlightDataStream:
        return flight.GeneratorStream(self.schema, self.batches)


def flight_stream(source: pa.RecordBatchReader | BatchStream) -> flight.FlightDataStream:
    if isinstance(source, BatchStream):
        return source.to_flight()
    return flight.RecordBatchStream(source)


class Readers:
    """Opens datasets; remembers each file's schema and size until the file changes."""

    def __init__(self, root: str, batch_rows: int = DEFAULT_BATCH_ROWS) -> None:
        self.root = root
        self.batch_rows = batch_rows
        self._cache: dict[tuple[str, int, int], DatasetInfo] = {}
        self._lock = threading.Lock()

    def info(self, entry: Entry) -> DatasetInfo:
        with _errors_for(entry, self.root):
            size, mtime_ns = entry.stat()
            key = (str(entry.path), mtime_ns, size)
            with self._lock:
                cached = self._cache.get(key)
            if cached:
                return cached
            if size == 0:
                raise errors.invalid(f"dataset {entry.name!r}: the file is empty")
            if entry.format in ("parquet", "arrow"):
                dataset = _pyarrow_dataset(entry)
                info = DatasetInfo(dataset.schema, dataset.count_rows(), size)
            else:
                reader = _open_text(entry, None)
                info = DatasetInfo(reader.schema, -1, size)
                reader.close()
            with self._lock:
                if len(self._cache) > 4096:
                    self._cache.clear()
                self._cache[key] = info
            return info

    def open(
        self,
        entry: Entry,
        columns: tuple[str, ...] | None = None,
        limit: int | None = None,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> pa.RecordBatchReader | BatchStream:
        """The dataset's batches, at most ``batch_rows`` rows each.

        A plain C++ reader when nothing needs Python's attention; otherwise a Python stream
        that applies the limit and turns read errors into clean Flight errors (a generator
        wrapped in a RecordBatchReader would send clients the Python traceback instead).
        """
        schema = self.info(entry).schema
        for column in columns or ():
            if column not in schema.names:
                raise errors.invalid(f"dataset {entry.name!r} has no column {column!r}")
        with _errors_for(entry, self.root):
            if entry.format in ("parquet", "arrow"):
                scanner = _pyarrow_dataset(entry).scanner(
                    columns=list(columns) if columns is not None else None,
                    batch_size=self.batch_rows,
                    batch_readahead=4,
                    fragment_readahead=2,
                )
                reader = scanner.to_reader()
                if limit is None:
                    return reader  # all in C++: no Python per batch
            else:
                reader = _open_text(entry, columns)
        batches = _guarded_batches(
            entry, self.root, reader, columns, limit, self.batch_rows, should_stop
        )
        schema = (
            reader.schema
            if columns is None
            else pa.schema([reader.schema.field(c) for c in columns])
        )
        return BatchStream(schema, batches)


def _pyarrow_dataset(entry: Entry) -> ds.Dataset:
    if entry.format == "arrow":
        return ds.dataset(entry.path, format="ipc")
    return ds.dataset(entry.path, format=_PARQUET, partitioning="hive" if entry.is_folder else None)


def _open_text(entry: Entry, columns: tuple[str, ...] | None) -> pa.RecordBatchReader:
    source = pa.input_stream(str(entry.path), compression=entry.compression)
    if entry.format in ("csv", "tsv"):
        stream = GuardedStream(source, compressed_size=_compressed_size(entry))
        return pcsv.open_csv(
            stream,
            read_options=pcsv.ReadOptions(block_size=BLOCK_BYTES),
            parse_options=pcsv.ParseOptions(delimiter="\t" if entry.format == "tsv" else ","),
            convert_options=pcsv.ConvertOptions(
                include_columns=list(columns) if columns is not None else None
            ),
        )
    if entry.format == "arrows":
        return pa.ipc.open_stream(source)
    stream = GuardedStream(source, compressed_size=_compressed_size(entry), check_json_depth=True)
    if entry.format == "json" and _starts_with_array(entry):
        stream.close()
        return _json_array_reader(entry)
    return pjson.open_json(stream, read_options=pjson.ReadOptions(block_size=BLOCK_BYTES))


def _compressed_size(entry: Entry) -> int | None:
    return entry.path.stat().st_size if entry.compression else None


def _starts_with_array(entry: Entry) -> bool:
    with pa.input_stream(str(entry.path), compression=entry.compression) as stream:
        head = stream.read(4096).lstrip()
    return head.startswith(b"[")


def _json_array_reader(entry: Entry) -> pa.RecordBatchReader:
    """A ``[{...}, ...]`` file: pyarrow reads only JSON Lines, so re-encode it (size-capped)."""
    source = pa.input_stream(str(entry.path), compression=entry.compression)
    with GuardedStream(source, compressed_size=_compressed_size(entry)) as stream:
        raw = stream.read(MAX_JSON_ARRAY_BYTES + 1)
    if len(raw) > MAX_JSON_ARRAY_BYTES:
        raise errors.invalid(
            f"dataset {entry.name!r}: JSON array files over {MAX_JSON_ARRAY_BYTES >> 20} MB are"
            " not supported; use JSON Lines"
        )
    check_document_depth(raw)
    try:
        rows = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise errors.invalid(f"dataset {entry.name!r}: malformed JSON: {exc}") from None
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise errors.invalid(f"dataset {entry.name!r}: a JSON file must hold objects")
    if not rows:
        raise errors.invalid(f"dataset {entry.name!r}: the JSON array is empty")
    lines = "\n".join(json.dumps(r, ensure_ascii=False) for r in rows).encode()
    table = pjson.read_json(
        pa.BufferReader(lines), read_options=pjson.ReadOptions(block_size=max(len(lines), 1))
    )
    return pa.RecordBatchReader.from_batches(table.schema, table.to_batches())


def _guarded_batches(
    entry: Entry,
    root: str,
    reader: pa.RecordBatchReader,
    columns: tuple[str, ...] | None,
    limit: int | None,
    batch_rows: int,
    should_stop: Callable[[], bool],
) -> Iterator[pa.RecordBatch]:
    """Re-slice to ``batch_rows``, apply the limit, stop early, and make read errors clean."""
    remaining = limit
    try:
        with _errors_for(entry, root):
            while remaining is None or remaining > 0:
                if should_stop():
                    raise errors.unavailable(f"stream of {entry.name!r} was stopped")
                try:
                    batch = reader.read_next_batch()
                except StopIteration:
                    return
                if columns is not None and batch.schema.names != list(columns):
                    batch = batch.select(list(columns))
                if remaining is not None:
                    batch = batch.slice(0, remaining)
                    remaining -= batch.num_rows
                for offset in range(0, batch.num_rows, batch_rows):
                    yield batch.slice(offset, batch_rows)
    finally:
        reader.close()


class _errors_for:
    """Context manager: any read failure becomes ``invalid: dataset 'x': reason``."""

    def __init__(self, entry: Entry, root: str) -> None:
        self.entry, self.root = entry, root

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type | None, exc: BaseException | None, tb: object) -> bool:
        if exc is None or isinstance(exc, GeneratorExit):
            return False
        if not isinstance(exc, Exception):
            return False
        raise errors.as_flight_error(
            _explain(exc), f"dataset {self.entry.name!r}", hide=self.root
        ) from None


def _explain(exc: Exception) -> Exception:
    """Replace pyarrow's internal wording with what the user can act on."""
    text = str(exc)
    if "straddling" in text or "straddles" in text:
        return ValueError(f"a row is longer than {BLOCK_BYTES >> 20} MB")
    if isinstance(exc, FileNotFoundError):
        return ValueError("the file disappeared")
    if "thrift" in text.lower() or "Couldn't deserialize" in text:
        return ValueError(f"corrupt or oversized Parquet metadata ({errors.clean_message(exc)})")
    return exc
