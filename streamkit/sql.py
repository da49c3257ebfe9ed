"""SQL at the connector (DESIGN.md "SQL at the connector"): one SELECT over this connector's
datasets, run by DataFusion, streamed batch by batch.

The sandbox: a statement must start with SELECT or WITH (so no EXPLAIN, which prints file
paths); DataFusion's SQL options refuse DDL, DML (COPY) and statements (SET); no file, URL or
table function is registered, so the engine sees the datasets and nothing else. Tables are
registered as the query names them, through the connector's catalog (which never leaves its root):
Parquet and Arrow files, CSV/TSV and JSON Lines through DataFusion's own streaming readers
(projection and filters pushed down), the rest (JSON arrays, live datasets) read into memory
up to ``MAX_IN_MEMORY_BYTES``. Each query has its own memory pool (``memory_limit``): past
it the query fails ``invalid``, or, if the connector has a spill folder, spills there.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
from datafusion import DataFrame, RuntimeEnvBuilder, SessionConfig, SessionContext, SQLOptions
from datafusion.catalog import Table

from streamkit import errors
from streamkit.batches import empty_batch
from streamkit.catalog import Catalog, Entry
from streamkit.readers import csv_options

DEFAULT_MEMORY_LIMIT = 256 * 1024 * 1024
MAX_IN_MEMORY_BYTES = 256 * 1024 * 1024
MAX_SQL_CHARS = 64 * 1024
MAX_TABLES = 64
_COMMENTS = re.compile(r"--[^\n]*|/\*.*?\*/", re.DOTALL)
_FIRST_WORD = re.compile(r"^\s*\(*\s*([A-Za-z]+)")
_NOT_FOUND = re.compile(r"table '(?:datafusion\.)?(?:public\.)?([^']*)' not found")
_NO_FIELD = re.compile(r"No field named ([^\s.]+\.)?([^\s.]+)")

# Reads a dataset that DataFusion cannot scan by itself: (entry) -> its batches' reader.
OpenReader = Callable[[Entry], pa.RecordBatchReader]


def check_select(sql: str) -> str:
    """``sql`` if it is one SELECT (or WITH … SELECT); else ``invalid``."""
    if not isinstance(sql, str) or not sql.strip():
        raise errors.invalid("'sql' must be a non-empty string")
    if len(sql) > MAX_SQL_CHARS:
        raise errors.invalid(f"'sql' is longer than {MAX_SQL_CHARS} characters")
    first = _FIRST_WORD.match(_COMMENTS.sub(" ", sql))
    if first is None or first.group(1).upper() not in ("SELECT", "WITH"):
        raise errors.invalid("only SELECT (or WITH … SELECT) queries are allowed")
    return sql


def quote(name: str) -> str:
    """A dataset name as a SQL identifier (``"sales/2024"``)."""
    return '"' + name.replace('"', '""') + '"'


class SqlEngine:
    def __init__(
        self,
        catalog: Catalog,
        open_reader: OpenReader,
        live_entry: Callable[[str], Entry | None],
        *,
        memory_limit: int = DEFAULT_MEMORY_LIMIT,
        spill_dir: Path | None = None,
    ) -> None:
        """``live_entry``: the pseudo entry of a published live dataset, or None."""
        self.catalog, self.open_reader, self.live_entry = catalog, open_reader, live_entry
        # Without a spill folder a query that outgrows its pool fails at once: DataFusion
        # bounds spill files by nothing, so spilling is for connectors that choose a disk.
        self.memory_limit, self.spill_dir = memory_limit, spill_dir

    def context(self, partitions: int = 2) -> SessionContext:
        """A session of its own for one query: its memory pool, no tables yet."""
        runtime = RuntimeEnvBuilder().with_fair_spill_pool(self.memory_limit)
        if self.spill_dir is None:
            runtime = runtime.with_disk_manager_disabled()
        else:
            runtime = runtime.with_temp_file_path(str(self.spill_dir))
        config = (
            SessionConfig()
            .with_information_schema(False)
            .with_target_partitions(partitions)
            # Parquet strings as the file has them (string, not DataFusion's string_view).
            .set("datafusion.execution.parquet.schema_force_view_types", "false")
        )
        return SessionContext(config, runtime)

    def plan(self, sql: str) -> DataFrame:
        """``sql`` planned, not run. Errors are ``invalid`` (syntax, refused) or ``not
        found`` (an unknown dataset).

        Tables are registered as the planner asks for them (its "not found" names the next
        one): the engine never sees a dataset the query does not name."""
        check_select(sql)
        options = (
            SQLOptions().with_allow_ddl(False).with_allow_dml(False).with_allow_statements(False)
        )
        context = self.context()
        for _ in range(MAX_TABLES):
            try:
                return context.sql_with_options(sql, options)
            except Exception as exc:
                found = _NOT_FOUND.search(str(exc))
                if found is None or not self._register(context, found.group(1)):
                    with engine_errors(self.catalog.root):
                        raise
        raise errors.invalid(f"a query may read at most {MAX_TABLES} datasets")

    def filtered(
        self,
        dataset: str,
        where: str | None,
        columns: tuple[str, ...] | None,
        limit: int | None,
        offset: int | None = None,
    ) -> DataFrame:
        """One dataset, filtered by the SQL expression ``where`` (never a statement), its
        ``columns``, the matching rows after the first ``offset``, at most ``limit``."""
        with engine_errors(self.catalog.root):
            context = self.context(partitions=1)  # rows in the dataset's order
            if not self._register(context, dataset):
                raise errors.not_found(f"dataset {dataset!r}")
            frame = context.table(quote(dataset))
            if where:
                frame = frame.filter(where)
            if columns is not None:
                frame = frame.select(*(quote(c) for c in columns))
            if limit is not None or offset:
                # DataFusion's Python API wants a count even for an offset alone.
                frame = frame.limit(limit if limit is not None else 2**63 - 1, offset or 0)
            return frame

    def batches(
        self, frame: DataFrame, should_stop: Callable[[], bool]
    ) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
        """Run ``frame``: its schema, and its batches as the engine makes them."""
        with engine_errors(self.catalog.root):
            schema: pa.Schema = frame.schema()
            stream = frame.execute_stream()

        def run() -> Iterator[pa.RecordBatch]:
            with engine_errors(self.catalog.root):
                for batch in stream:
                    if should_stop():
                        return  # dropping the stream stops the engine
                    data: pa.RecordBatch = batch.to_pyarrow()
                    if data.num_rows:
                        yield data

        return schema, run()

    def _register(self, context: SessionContext, name: str) -> bool:
        """Make dataset ``name`` a table of ``context``; False if there is no such dataset."""
        entry = self.live_entry(name)
        if entry is None:
            try:
                entry = self.catalog.resolve(name)
            except errors.StreamkitError:
                return False
        with engine_errors(self.catalog.root):
            table = self._table(context, entry)
            # The schema's own register: the name is taken as it is (with '/' or '.').
            context.catalog().schema("public").register_table(name, table)
        return True

    def _table(self, context: SessionContext, entry: Entry) -> Table:
        path = str(entry.path)
        if entry.format == "parquet" and not entry.is_folder:
            return Table(context.read_parquet(path))
        if entry.format == "parquet":  # a folder, hive partitions included
            return Table(ds.dataset(path, format="parquet", partitioning="hive"))
        if entry.format == "arrow":  # pyarrow's scan of IPC files is ~3x DataFusion's own
            return Table(ds.dataset(path, format="ipc"))
        if entry.format in ("csv", "tsv") and entry.compression != "zstd":
            # pyarrow's own CSV reader (as plain reads have), so the types and the null
            # markers ("NA", "null", "#N/A") are the same; it decompresses gzip by the name.
            read_options, parse_options = csv_options(entry)
            csv = ds.CsvFileFormat(read_options=read_options, parse_options=parse_options)
            return Table(ds.dataset(path, format=csv))
        if entry.format == "jsonl":
            compression = {"gzip": "gzip", "zstd": "zstd"}.get(entry.compression or "", "")
            extension = Path(path).name[len(Path(path).name.split(".")[0]) :]
            return Table(
                context.read_json(
                    path, file_extension=extension, file_compression_type=compression or None
                )
            )
        return Table(ds.dataset(self._in_memory(entry)))

    def _in_memory(self, entry: Entry) -> pa.Table:
        reader = self.open_reader(entry)
        batches, size = [], 0
        for batch in reader:
            size += batch.get_total_buffer_size()
            if size > MAX_IN_MEMORY_BYTES:
                raise errors.invalid(
                    f"dataset {entry.name!r} is too large for SQL in its format "
                    f"(over {MAX_IN_MEMORY_BYTES // 2**20} MB in memory)"
                )
            batches.append(batch)
        return pa.Table.from_batches(batches, schema=reader.schema)


class BatchFilter:
    """``where`` applied to each batch of a followed stream (about 0.3 ms a batch). The
    engine only finds the rows that match; pyarrow takes them, so every type stays as it was."""

    ROW = "__streamkit_row"

    def __init__(self, where: str, schema: pa.Schema) -> None:
        self.where = where
        self.context = SessionContext()
        self(empty_batch(schema))  # a bad filter fails now, not at the first batch

    def __call__(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        numbered = batch.append_column(self.ROW, pa.array(range(batch.num_rows), pa.int64()))
        with engine_errors(Path("/")):
            found = (
                self.context.from_arrow(numbered)
                .filter(self.where)
                .select(quote(self.ROW))
                .collect()
            )
        # The engine's partitions come back in any order: the row numbers are sorted so the
        # kept rows keep theirs.
        rows = pa.chunked_array([part.column(0) for part in found], pa.int64()).combine_chunks()
        return _take(batch, rows.sort())


_VIEW_STORAGE = {pa.string_view(): pa.large_string(), pa.binary_view(): pa.large_binary()}


def _take(batch: pa.RecordBatch, rows: pa.Array) -> pa.RecordBatch:
    """``batch.take(rows)``; pyarrow has no take kernel for view or run-end encoded columns,
    so those go through their large or decoded types and back (a type it cannot take at all
    is ``invalid``)."""
    columns = []
    for field, column in zip(batch.schema, batch.columns, strict=True):
        storage = _VIEW_STORAGE.get(field.type)
        try:
            if pa.types.is_run_end_encoded(field.type):
                kept = pc.run_end_decode(column).take(rows)
                run_ends = field.type.run_end_type
                columns.append(pc.run_end_encode(kept, run_end_type=run_ends))
            elif storage is None:
                columns.append(column.take(rows))
            else:
                columns.append(column.cast(storage).take(rows).cast(field.type))
        except pa.ArrowNotImplementedError:
            raise errors.invalid(
                f"'where' cannot filter column {field.name!r} of type {field.type}"
            ) from None
    return pa.RecordBatch.from_arrays(columns, schema=batch.schema)


class engine_errors:
    """DataFusion's errors as typed ones: unknown tables ``not found``, the rest ``invalid``,
    never a server path (the root is cut from messages)."""

    def __init__(self, root: Path) -> None:
        self.root = str(root)

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any
    ) -> Literal[False]:
        if exc is None or isinstance(exc, errors.StreamkitError | GeneratorExit):
            return False
        if not isinstance(exc, Exception):
            return False
        message = str(exc).replace(self.root + "/", "").replace(self.root, "")
        message = message.split("\n")[0].strip()
        found = _NOT_FOUND.search(message)
        if found:
            raise errors.not_found(f"dataset {found.group(1)!r}") from None
        field = _NO_FIELD.search(message)
        if field:
            raise errors.invalid(f"no column {field.group(2)!r}") from None
        message = re.sub(r"^(DataFusion error: )?", "", message)
        if "Resources exhausted" in message or "cannot spill" in message:
            raise errors.invalid(
                "the query needs more memory than this connector allows a query"
            ) from None
        raise errors.invalid(f"sql: {message}") from None
