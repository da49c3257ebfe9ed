"""Reads of a tenant whose datasets are split over several shards (DESIGN.md "Scale-out").

A Flight client gets one endpoint per shard and reads them in parallel. A client that
takes one stream (WebSocket, HTTP, a ticket that names no shard) gets the shards merged:
each shard is read in a thread of its own into one short queue, so the slowest part sets
the pace and memory stays a few batches per shard. Rows of different shards interleave.

SQL is answered shard by shard only where the union of the answers is the answer: one
table, projections, filters, and a LIMIT (which the gateway cuts again). Anything that
aggregates, sorts, joins, removes duplicates, skips rows or uses a subquery is ``invalid``.
"""

from __future__ import annotations

import queue
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.flight as flight

from streamkit import errors

QUEUE_PER_SHARD = 2
SHARD_SAFE_PLANS = {"Projection", "Filter", "TableScan", "SubqueryAlias", "EmptyRelation"}
_MISSING_TABLE = re.compile(r"table '(?:datafusion\.public\.)?(.+)' not found")
_DONE = object()


def combined_info(
    infos: Sequence[flight.FlightInfo], label: str, descriptor: flight.FlightDescriptor
) -> flight.FlightInfo:
    """One dataset's FlightInfo over its shards: their schema (which must agree), summed
    rows and bytes (unknown if any shard does not know)."""
    schema = infos[0].schema
    for info in infos[1:]:
        if not info.schema.equals(schema):
            raise errors.invalid(f"the shards of {label!r} disagree on its schema")
    rows = [i.total_records for i in infos]
    sizes = [i.total_bytes for i in infos]
    return flight.FlightInfo(
        schema,
        descriptor,
        [],
        sum(rows) if min(rows) >= 0 else -1,
        sum(sizes) if min(sizes) >= 0 else -1,
    )


class MergedReader:
    """The shards' streams as one, read like a FlightStreamReader."""

    def __init__(self, readers: Sequence[flight.FlightStreamReader], limit: int | None) -> None:
        self.readers = list(readers)
        self.schema = self.readers[0].schema
        for reader in self.readers[1:]:
            if not reader.schema.equals(self.schema):
                self.cancel()
                raise errors.invalid("the shards disagree on the schema")
        self.remaining = limit
        self._queue: queue.Queue[object] = queue.Queue(QUEUE_PER_SHARD * len(self.readers))
        self._running = len(self.readers)
        self._cancelled = threading.Event()
        for reader in self.readers:
            threading.Thread(target=self._read, args=(reader,), daemon=True).start()

    def _read(self, reader: flight.FlightStreamReader) -> None:
        try:
            for chunk in reader:
                if not self._put(chunk):
                    return
        except BaseException as exc:
            self._put(exc)
            return
        self._put(_DONE)

    def _put(self, item: object) -> bool:
        while not self._cancelled.is_set():
            try:
                self._queue.put(item, timeout=0.25)
                return True
            except queue.Full:
                continue
        return False

    def read_chunk(self) -> flight.FlightStreamChunk | Cut:
        while True:
            if self.remaining == 0 or self._running == 0:
                self.cancel()
                raise StopIteration
            item = self._queue.get()
            if item is _DONE:
                self._running -= 1
                continue
            if isinstance(item, BaseException):
                self.cancel()
                raise item
            assert isinstance(item, flight.FlightStreamChunk)
            if self.remaining is not None and item.data is not None:
                if item.data.num_rows > self.remaining:
                    cut = Cut(item.data.slice(0, self.remaining), item.app_metadata)
                    self.remaining = 0
                    return cut
                self.remaining -= item.data.num_rows
            return item

    def cancel(self) -> None:
        self._cancelled.set()
        for reader in self.readers:
            reader.cancel()


@dataclass
class Cut:
    """A chunk cut at the limit (a FlightStreamChunk cannot be made in Python)."""

    data: pa.RecordBatch
    app_metadata: pa.Buffer | None


def shard_plan(sql: str, schema_of: Callable[[str], pa.Schema]) -> int | None:
    """Check that ``sql`` may be answered shard by shard; returns its LIMIT (None if it has
    none), which the merged answer is cut to. ``schema_of`` gives a table's schema (the
    planner asks for the tables it needs, as at the connector)."""
    from datafusion import SessionContext, Table

    if len(re.findall(r"\bselect\b", _without_literals(sql), re.IGNORECASE)) > 1:
        raise _not_by_shard("it has more than one SELECT: a subquery or a union")
    context = SessionContext()
    for _ in range(32):
        try:
            plan = context.sql(sql).logical_plan()
            break
        except Exception as exc:
            found = _MISSING_TABLE.search(str(exc))
            if found is None:
                raise errors.invalid(f"sql: {errors.clean_message(exc)}") from None
            name = found.group(1)
            empty = ds.dataset(schema_of(name).empty_table())
            context.catalog().schema("public").register_table(name, Table(empty))
    else:
        raise errors.invalid("sql: too many tables")
    limit: int | None = None
    kind = type(plan.to_variant()).__name__
    if kind == "Limit":
        node = plan.to_variant()
        skip, fetch = node.skip(), node.fetch()
        if skip is not None and skip.python_value():
            raise _not_by_shard("it has an OFFSET")
        limit = fetch.python_value() if fetch is not None else None
        if limit is not None and not isinstance(limit, int):
            raise _not_by_shard("its LIMIT is not a number")
        plan = plan.inputs()[0]
    scans = 0
    pending = [plan]
    while pending:
        node = pending.pop()
        kind = type(node.to_variant()).__name__
        if kind not in SHARD_SAFE_PLANS:
            raise _not_by_shard(f"its plan has {kind}")
        scans += kind == "TableScan"
        pending.extend(node.inputs())
    if scans > 1:
        raise _not_by_shard("it reads more than one table")
    return limit


def _not_by_shard(why: str) -> errors.StreamkitError:
    return errors.invalid(
        f"this SQL cannot be answered shard by shard ({why}): only filters, projections "
        "and a LIMIT over one table are; read the shards' endpoints and combine them yourself"
    )


def _without_literals(sql: str) -> str:
    """``sql`` without its string literals, quoted names and comments."""
    return re.sub(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|--[^\n]*|/\*.*?\*/", " ", sql, flags=re.S)
