"""Open a dataset as a stream of record batches: projection pushed into the reader, bounded
memory, and errors that name the dataset but never a server path.

Memory per stream follows the batch, not the dataset: every reader here decodes one batch at a
time, when the stream asks for it, and batches hold at most ``batch_rows`` rows and about
``batch_bytes`` bytes. Parquet is read with ``ParquetFile.iter_batches`` through a buffered
stream without pre-buffering: ``pyarrow.dataset`` scanners decode whole row groups (1Mi rows
by default, the whole file if written as one) and, with ``pre_buffer``, keep every row group
they read until the file ends (apache/arrow#39808). Arrow IPC files are read one record batch
at a time. CSV and JSON Lines use pyarrow's streaming readers, which fix the column types from
the first block, so a later value that does not fit is an error for that request rather than a
silently different column.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from typing import Literal

import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.dataset as ds
import pyarrow.json as pjson
import pyarrow.parquet as pq

from streamkit import errors
from streamkit.catalog import Entry
from streamkit.guarded_stream import GuardedStream, check_document_depth
from streamkit.shaping import Shaper

DEFAULT_BATCH_ROWS = 65_536
# What one stream holds: about two batches (one being sent, the next being decoded) and, for
# Parquet, 1-2 MB per column read (its current data page and dictionary page), whatever the
# size of the file or of its row groups. Measured with 20 slow readers of a 6-column 400 MB
# file: 1 MiB batches peak at ~560 MB of connector RSS, 2 MiB at ~605, 4 MiB at ~730;
# one reader is as fast with 1 MiB as with bigger batches.
DEFAULT_BATCH_BYTES = 1 << 20  # about this much Arrow memory a batch (wide rows: fewer rows)
COLUMN_BYTES = 64 << 10  # at least this much of each column a batch: wide tables, more bytes
PARQUET_BUFFER_BYTES = 64 << 10  # read buffer per Parquet column (bigger pages read whole)
BLOCK_BYTES = 1 << 20  # CSV/JSON read block; also the longest row accepted
MAX_JSON_ARRAY_BYTES = 256 * 1024 * 1024
# Parquet footers are thrift: cap what a hostile footer can make the reader allocate.
THRIFT_STRING_LIMIT = 16 * 1024 * 1024
THRIFT_CONTAINER_LIMIT = 10_000

Batches = Generator[pa.RecordBatch, None, None]

_PARQUET = ds.ParquetFileFormat(
    default_fragment_scan_options=ds.ParquetFragmentScanOptions(
        thrift_string_size_limit=THRIFT_STRING_LIMIT,
        thrift_container_size_limit=THRIFT_CONTAINER_LIMIT,
    )
)
# The same footer limits, and the same types as the dataset's scanner (no extension types).
_PARQUET_FILE_OPTIONS = {
    "pre_buffer": False,
    "buffer_size": PARQUET_BUFFER_BYTES,
    "thrift_string_size_limit": THRIFT_STRING_LIMIT,
    "thrift_container_size_limit": THRIFT_CONTAINER_LIMIT,
    "arrow_extensions_enabled": False,
}


@dataclass(frozen=True)
class DatasetInfo:
    schema: pa.Schema
    rows: int  # -1 when only a full read would tell
    bytes: int


@dataclass(frozen=True)
class BatchStream:
    schema: pa.Schema
    batches: Iterator[pa.RecordBatch]


class Readers:
    """Opens datasets; remembers each file's schema and size until the file changes."""

    def __init__(
        self,
        root: str,
        batch_rows: int = DEFAULT_BATCH_ROWS,
        batch_bytes: int = DEFAULT_BATCH_BYTES,
    ) -> None:
        self.root = root
        self.batch_rows = batch_rows
        self.batch_bytes = batch_bytes
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
                with _DATASET_API:
                    with self._lock:
                        cached = self._cache.get(key)
                    if cached:  # another request found it while this one waited
                        return cached
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
        offset: int | None = None,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> BatchStream:
        """The dataset's batches, at most ``batch_rows`` rows and about ``batch_bytes`` each.

        A Python stream that reads one batch per request, applies the limit and turns read
        errors into clean Flight errors (a generator wrapped in a RecordBatchReader would send
        clients the Python traceback instead).
        """
        full = self.info(entry).schema
        for column in columns or ():
            if column not in full.names:
                raise errors.invalid(f"dataset {entry.name!r} has no column {column!r}")
        schema = full if columns is None else pa.schema([full.field(c) for c in columns])
        skip = offset or 0
        with _errors_for(entry, self.root):
            if entry.format == "parquet":
                source, skip = _parquet_batches(
                    entry, schema, self.batch_rows, self.batch_bytes, skip
                )
            elif entry.format == "arrow":
                fields = (
                    None if columns is None else sorted({full.get_field_index(c) for c in columns})
                )
                source = _ipc_batches(entry, fields)
            else:
                source = _reader_batches(_open_text(entry, columns))
        shaper = Shaper(columns, limit, entry.name, skip)
        batches = _guarded_batches(
            entry, self.root, source, shaper, self.batch_rows, self.batch_bytes, should_stop
        )
        return BatchStream(schema, batches)


# pyarrow.dataset's discovery and count_rows wait on tasks of Arrow's own thread pool: called
# from ~20 threads at once they deadlock it (seen with 20 first requests for one IPC file).
# They run once per file version (cached above), so one at a time costs nothing.
_DATASET_API = threading.Lock()


def _pyarrow_dataset(entry: Entry) -> ds.Dataset:
    if entry.format == "arrow":
        return ds.dataset(entry.path, format="ipc")
    return ds.dataset(entry.path, format=_PARQUET, partitioning="hive" if entry.is_folder else None)


def _parquet_batches(
    entry: Entry, schema: pa.Schema, batch_rows: int, batch_bytes: int, skip: int = 0
) -> tuple[Batches, int]:
    """Each file of the dataset in turn, ``schema``'s columns only (partition keys of a
    hive folder filled in), decoded batch by batch as the stream asks for them. Whole files
    and row groups within the first ``skip`` rows are not read at all (their row counts are
    in the footers); returns the batches and the rows still to skip."""
    with _DATASET_API:
        fragments = list(_pyarrow_dataset(entry).get_fragments())
    plan: list[tuple[ds.Fragment, list[int] | None]] = []
    for fragment in fragments:
        if not skip:
            plan.append((fragment, None))
            continue
        with pq.ParquetFile(fragment.path, **_PARQUET_FILE_OPTIONS) as file:
            groups: list[int] = []
            for i in range(file.metadata.num_row_groups):
                rows = file.metadata.row_group(i).num_rows
                if skip >= rows and not groups:
                    skip -= rows
                else:
                    groups.append(i)
            if groups:
                plan.append((fragment, groups))

    def batches() -> Batches:
        for fragment, groups in plan:
            keys = ds.get_partition_keys(fragment.partition_expression)
            with pq.ParquetFile(fragment.path, **_PARQUET_FILE_OPTIONS) as file:
                in_file = set(file.schema_arrow.names)
                present = [n for n in dict.fromkeys(schema.names) if n in in_file and n not in keys]
                rows = _rows_for(file.metadata, present, batch_rows, batch_bytes)
                for batch in file.iter_batches(batch_size=rows, row_groups=groups, columns=present):
                    yield _conform(batch, schema, keys)

    return batches(), skip


def _rows_for(
    metadata: pq.FileMetaData, columns: list[str], batch_rows: int, batch_bytes: int
) -> int:
    """Rows a batch of ``columns`` may hold to stay near ``batch_bytes``: bytes per row from
    the first row groups' uncompressed column sizes (close to Arrow's for most types; less
    for dictionary-encoded strings)."""
    wanted = set(columns)
    rows, size, leaves = 0, 0, 0
    for i in range(min(metadata.num_row_groups, 4)):
        group = metadata.row_group(i)
        rows += group.num_rows
        for j in range(group.num_columns):
            chunk = group.column(j)
            path = chunk.path_in_schema  # "a" or, for a leaf of a nested column, "a.b.c"
            if path in wanted or path.split(".", 1)[0] in wanted:
                size += chunk.total_uncompressed_size
                leaves += i == 0
    if rows == 0 or size == 0:
        return batch_rows
    return _rows_within(_target_bytes(batch_bytes, leaves), rows, size, batch_rows)


def _target_bytes(batch_bytes: int, columns: int) -> int:
    """``batch_bytes``, or more for a wide table: reading and sending a batch cost time per
    column (2,000 columns of 1 MiB batches read 2x slower than whole row groups), while the
    reader already holds far more per column than ``COLUMN_BYTES``."""
    return max(batch_bytes, columns * COLUMN_BYTES)


def _rows_within(target: int, rows: int, size: int, batch_rows: int) -> int:
    """Rows of ``size / rows`` bytes each that fit in ``target``: at least 1, at most
    ``batch_rows``."""
    return max(1, min(batch_rows, target * rows // size))


def _conform(batch: pa.RecordBatch, schema: pa.Schema, keys: dict[str, object]) -> pa.RecordBatch:
    """``batch`` as ``schema`` says, like the dataset scanner: partition keys as constant
    columns, a column this file lacks as nulls, another type cast."""
    if not keys and batch.schema.equals(schema):
        return batch
    index = {name: i for i, name in enumerate(batch.schema.names)}
    arrays = []
    for field in schema:
        if field.name in keys:
            arrays.append(pa.repeat(pa.scalar(keys[field.name], field.type), batch.num_rows))
        elif field.name in index:
            array = batch.column(index[field.name])
            arrays.append(array if array.type == field.type else array.cast(field.type))
        else:
            arrays.append(pa.nulls(batch.num_rows, field.type))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _ipc_batches(entry: Entry, fields: list[int] | None) -> Batches:
    """An Arrow IPC file one record batch at a time, only ``fields`` (indices) if given: the
    dataset scanner reads batches ahead of a slow stream."""
    options = pa.ipc.IpcReadOptions(included_fields=fields) if fields is not None else None
    with pa.OSFile(str(entry.path)) as source:
        reader = pa.ipc.open_file(source, options=options)
        for i in range(reader.num_record_batches):
            yield reader.get_batch(i)


def _reader_batches(reader: pa.RecordBatchReader) -> Batches:
    """A streaming reader's batches; the reader closed when the stream ends or stops."""
    try:
        yield from reader
    finally:
        reader.close()


def csv_options(entry: Entry) -> tuple[pcsv.ReadOptions, pcsv.ParseOptions]:
    """How a CSV or TSV file is read, by every reader of it (plain reads and SQL alike)."""
    return pcsv.ReadOptions(block_size=BLOCK_BYTES), pcsv.ParseOptions(
        delimiter="\t" if entry.format == "tsv" else ",",
        newlines_in_values=True,  # a quoted value may hold line breaks (~no cost)
    )


def _open_text(entry: Entry, columns: tuple[str, ...] | None) -> pa.RecordBatchReader:
    source = pa.input_stream(str(entry.path), compression=entry.compression)
    if entry.format in ("csv", "tsv"):
        stream = GuardedStream(source, compressed_size=_compressed_size(entry))
        read_options, parse_options = csv_options(entry)
        return pcsv.open_csv(
            stream,
            read_options=read_options,
            parse_options=parse_options,
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
        head: bytes = stream.read(4096).lstrip()
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
    source: Batches,
    shaper: Shaper,
    batch_rows: int,
    batch_bytes: int,
    should_stop: Callable[[], bool],
) -> Iterator[pa.RecordBatch]:
    """Re-slice to ``batch_rows`` rows and about ``batch_bytes``, apply the offset and the
    limit, stop early, and make read errors clean."""
    try:
        with _errors_for(entry, root):
            while not shaper.done:
                if should_stop():
                    raise errors.unavailable(f"stream of {entry.name!r} was stopped")
                batch = next(source, None)
                if batch is None:
                    return
                batch = shaper(batch)
                step = batch_rows
                target = _target_bytes(batch_bytes, batch.num_columns)
                if batch.num_rows > 1 and batch.nbytes > 2 * target:
                    step = _rows_within(target, batch.num_rows, batch.nbytes, batch_rows)
                for offset in range(0, batch.num_rows, step):
                    yield batch.slice(offset, step)
    finally:
        source.close()  # the file is closed at once, not when the generator is collected


class _errors_for:
    """Context manager: any read failure becomes ``invalid: dataset 'x': reason``."""

    def __init__(self, entry: Entry, root: str) -> None:
        self.entry, self.root = entry, root

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type | None, exc: BaseException | None, tb: object) -> Literal[False]:
        if exc is None or isinstance(exc, GeneratorExit):
            return False
        if not isinstance(exc, Exception):
            return False
        raise errors.as_error(
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
