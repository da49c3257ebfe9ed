"""What a connector does, whoever asks: list, describe, open and publish the datasets under
one root. Its Flight server (``server.py``) and a gateway's embedded tenant (in-process, with
no gRPC hop) both call it; errors are the contract's Flight errors either way.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.flight as flight

from streamkit import errors
from streamkit.catalog import Catalog, Entry, safe_name
from streamkit.connector.live_streams import follow_file, follow_live, take_put
from streamkit.flight_streams import Chunk, Item
from streamkit.live import LiveDataset, LiveRegistry
from streamkit.live_wire import LIVE_INFO_METADATA, batch_metadata, skipped_rows
from streamkit.query import Query
from streamkit.readers import (
    DEFAULT_BATCH_BYTES,
    DEFAULT_BATCH_ROWS,
    BatchStream,
    DatasetInfo,
    Readers,
)
from streamkit.shaping import Shaper, shape

if TYPE_CHECKING:
    from datafusion import DataFrame

    from streamkit.sql import BatchFilter, SqlEngine

log = logging.getLogger("streamkit.connector")


@dataclass(frozen=True)
class Opened:
    """An open dataset stream: a C++ reader, or Python items (batches, maybe with metadata)."""

    schema: pa.Schema
    source: pa.RecordBatchReader | Iterator[Item]


class Connector:
    def __init__(
        self,
        root: str,
        *,
        batch_rows: int = DEFAULT_BATCH_ROWS,
        batch_bytes: int = DEFAULT_BATCH_BYTES,
        sql_memory: int | None = None,
        spill_dir: Path | None = None,
    ) -> None:
        """``sql_memory``: bytes each SQL query may hold; past it the query fails, or
        spills into ``spill_dir`` if there is one."""
        self.sql_memory, self.spill_dir = sql_memory, spill_dir
        self.catalog = Catalog(root)
        self.readers = Readers(
            str(self.catalog.root), batch_rows=batch_rows, batch_bytes=batch_bytes
        )
        self.live = LiveRegistry(self.catalog.root)
        self.stopping = threading.Event()

    def flight_info(self, query: Query) -> flight.FlightInfo:
        if query.sql is not None or (query.where and not query.follow):
            return self._sql_info(query)
        entry, info = self._resolve(query)
        if query.where:
            self._filter(query, query.projected(info.schema))  # a bad filter fails now
        return self._flight_info(entry, info, query)

    def list_flights(self, prefix: str = "") -> Iterator[flight.FlightInfo]:
        for live in self.live.all():
            if live.name.startswith(prefix):
                yield self._flight_info(
                    _live_entry(live), _live_info(live), Query(dataset=live.name)
                )
        for entry in self.catalog.scan():
            if not entry.name.startswith(prefix):
                continue
            try:
                info = self.readers.info(entry)
            except errors.StreamkitError as exc:  # unreadable files are skipped, not fatal
                log.warning("listing skips %s: %s", entry.name, errors.clean_message(exc))
                continue
            yield self._flight_info(entry, info, Query(dataset=entry.name))

    def open(self, query: Query, should_stop: Callable[[], bool] = lambda: False) -> Opened:
        """The query's batches; ``should_stop`` ends them early (checked between batches)."""

        def stop() -> bool:
            return self.stopping.is_set() or should_stop()

        resolved = None if query.sql is not None else self._resolve(query)
        # The engine reads one file of these formats in order; a folder's files, or batches
        # it holds in memory (an Arrow stream, a JSON array), it may interleave: those are
        # filtered batch by batch as they are read (the order an offset relies on).
        if resolved is None or (
            query.where and not query.follow and _engine_keeps_order(resolved[0])
        ):
            frame, kept = self._frame(query)
            schema, batches = self.sql.batches(frame, stop)
            if kept is not None:
                schema, batches = kept, _cast(batches, kept)
            return Opened(schema, _clean_errors(batches, query.label()))
        entry, info = resolved

        live = self._live(query.dataset) if entry.format == "live" else None
        if live is None and not query.follow and not query.where:
            reader = self.readers.open(
                entry, query.columns, query.limit, query.offset, should_stop=stop
            )
            if isinstance(reader, BatchStream):
                return Opened(reader.schema, reader.batches)
            return Opened(reader.schema, reader)
        schema = query.projected(info.schema)
        items: Iterable[Item]
        if live is not None:
            items = follow_live(live, query, stop) if query.follow else live.history()
        elif query.follow:
            items = follow_file(entry, info.schema, query, stop)
        else:
            items = self.readers.open(entry, should_stop=stop).batches
        if query.where:
            items = _filtered(items, self._filter(query, info.schema))
        shaped = shape(iter(items), Shaper(query.columns, query.limit, entry.name, query.offset))
        return Opened(schema, _clean_errors(shaped, entry.name))

    def publish(self, name: str, reader: flight.MetadataRecordBatchReader) -> int:
        """Append a DoPut's batches to live dataset ``name`` (created by the first put)."""
        if not safe_name(name):
            raise errors.invalid(f"{name!r} is not a valid dataset name")
        try:
            self.catalog.resolve(name)
        except errors.StreamkitError:
            pass
        else:
            raise errors.invalid(f"dataset {name!r} is a file; publish under another name")
        live = self.live.get_or_create(name)
        try:
            rows = take_put(live, reader)
        except (errors.StreamkitError, flight.FlightError):
            raise
        except pa.ArrowException as exc:
            raise errors.invalid(f"publishing to {name!r}: {errors.clean_message(exc)}") from None
        log.info("published %d rows to %s", rows, name)
        return rows

    def stop(self) -> None:
        """Ask open streams to end at their next batch."""
        self.stopping.set()

    def _flight_info(self, entry: Entry, info: DatasetInfo, query: Query) -> flight.FlightInfo:
        schema = query.projected(info.schema)
        rows = info.rows
        if rows >= 0 and query.limit is not None:
            rows = min(rows, query.limit)
        descriptor = (
            query.to_descriptor()
            if query.columns is not None or query.limit is not None
            else flight.FlightDescriptor.for_path(entry.name)
        )
        endpoint = flight.FlightEndpoint(query.to_ticket(), [])
        # Live datasets say so: their followed batches carry row offsets (see live_streams).
        metadata = LIVE_INFO_METADATA if entry.format == "live" else b""
        return flight.FlightInfo(
            schema, descriptor, [endpoint], rows, info.bytes, app_metadata=metadata
        )

    def _resolve(self, query: Query) -> tuple[Entry, DatasetInfo]:
        """A file dataset, or a published live dataset (as a pseudo entry)."""
        try:
            entry = self.catalog.resolve(query.dataset)
        except errors.StreamkitError:
            live = self._live(query.dataset)
            if live is None:
                raise
            return _live_entry(live), _live_info(live)
        return entry, self.readers.info(entry)

    @functools.cached_property
    def sql(self) -> SqlEngine:
        """The SQL engine (DataFusion), loaded by the first query that needs it."""
        from streamkit.sql import DEFAULT_MEMORY_LIMIT, SqlEngine

        def live_entry(name: str) -> Entry | None:
            live = self._live(name)
            return _live_entry(live) if live is not None else None

        return SqlEngine(
            self.catalog,
            self._reader_for_sql,
            live_entry,
            memory_limit=self.sql_memory or DEFAULT_MEMORY_LIMIT,
            spill_dir=self.spill_dir,
        )

    def _frame(self, query: Query) -> tuple[DataFrame, pa.Schema | None]:
        """The planned query; for a filtered dataset also the schema its batches keep (the
        dataset's own types, whatever the engine makes of them)."""
        if query.sql is not None:
            return self.sql.plan(query.sql), None
        _, info = self._resolve(query)  # an unknown dataset is "not found" before any SQL
        frame = self.sql.filtered(
            query.dataset, query.where, query.columns, query.limit, query.offset
        )
        return frame, query.projected(info.schema)

    def _sql_info(self, query: Query) -> flight.FlightInfo:
        frame, kept = self._frame(query)
        schema = frame.schema() if kept is None else kept
        endpoint = flight.FlightEndpoint(query.to_ticket(), [])
        return flight.FlightInfo(schema, query.to_descriptor(), [endpoint], -1, -1)

    def _filter(self, query: Query, schema: pa.Schema) -> BatchFilter:
        from streamkit.sql import BatchFilter

        assert query.where is not None
        return BatchFilter(query.where, schema)

    def _reader_for_sql(self, entry: Entry) -> pa.RecordBatchReader:
        """A dataset the engine cannot scan itself (JSON arrays, live datasets)."""
        live = self._live(entry.name) if entry.format == "live" else None
        if live is not None:
            assert live.schema is not None
            return pa.RecordBatchReader.from_batches(live.schema, live.history())
        stream = self.readers.open(entry)
        return pa.RecordBatchReader.from_batches(stream.schema, stream.batches)

    def _live(self, name: str) -> LiveDataset | None:
        live = self.live.get(name)
        return live if live is not None and live.schema is not None else None


class LocalStream:
    """A dataset stream read in-process like a FlightStreamReader: ``read_chunk`` in one
    thread, ``cancel`` from any (the stream ends at its next batch, or within a follow's
    wait)."""

    def __init__(self, connector: Connector, query: Query) -> None:
        self._cancelled = threading.Event()
        opened = connector.open(query, self._cancelled.is_set)
        self.schema = opened.schema
        self._source = opened.source

    def read_chunk(self) -> Chunk:
        if self._cancelled.is_set():
            self._close()
            raise errors.Cancelled("cancelled")
        if isinstance(self._source, pa.RecordBatchReader):
            return Chunk(self._source.read_next_batch())  # StopIteration at the end
        try:
            item = next(self._source)
        except StopIteration:
            raise
        except BaseException:
            self._close()
            raise
        if isinstance(item, tuple):
            batch, metadata = item
            return Chunk(batch, pa.py_buffer(metadata) if isinstance(metadata, bytes) else metadata)
        return Chunk(item)

    def cancel(self) -> None:
        self._cancelled.set()

    def _close(self) -> None:
        close = getattr(self._source, "close", None)
        if close is not None:
            close()


def _live_entry(live: LiveDataset) -> Entry:
    return Entry(name=live.name, path=live.path, format="live")


def _live_info(live: LiveDataset) -> DatasetInfo:
    assert live.schema is not None
    return DatasetInfo(live.schema, live.rows, live.size)


def _cast(batches: Iterator[pa.RecordBatch], schema: pa.Schema) -> Iterator[pa.RecordBatch]:
    for batch in batches:
        yield batch if batch.schema == schema else batch.cast(schema)


def _engine_keeps_order(entry: Entry) -> bool:
    return not entry.is_folder and entry.format in ("parquet", "arrow", "csv", "tsv", "jsonl")


def _filtered(items: Iterable[Item], keep: BatchFilter) -> Iterator[Item]:
    """Followed batches, ``where`` applied; their row offsets no longer hold (kept rows are
    not consecutive), so only ``skipped`` stays in their metadata."""
    for item in items:
        batch, metadata = item if isinstance(item, tuple) else (item, None)
        kept = keep(batch)
        skipped = skipped_rows(metadata)
        if kept.num_rows or skipped:
            yield kept, batch_metadata(skipped=skipped)


def _clean_errors(items: Iterator[Item], name: str) -> Iterator[Item]:
    """Errors while following become clean ``invalid:`` errors for the client."""
    try:
        yield from items
    except errors.StreamkitError:
        raise
    except Exception as exc:
        raise errors.invalid(f"dataset {name!r}: {errors.clean_message(exc)}") from None
