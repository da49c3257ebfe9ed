"""The connector's live side: following live and growing datasets, and taking DoPut batches."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import pyarrow as pa
import pyarrow.flight as flight

from streamkit import errors
from streamkit.catalog import Entry
from streamkit.live import Follower, LiveDataset
from streamkit.query import Query
from streamkit.tail import tail_file

WAIT_SECONDS = 0.25  # how often a waiting follower checks for cancellation

Item = pa.RecordBatch | tuple[pa.RecordBatch, pa.Buffer]


def follow_live(
    dataset: LiveDataset, query: Query, should_stop: Callable[[], bool]
) -> Iterator[Item]:
    """History (unless ``from: end``), then each published batch until cancelled.

    Rows skipped under ``on_lag: skip`` are reported as ``{"skipped": N}`` metadata on the
    next batch sent.
    """
    follower = Follower(on_lag=query.on_lag or "error")
    history_end = dataset.follow(follower)
    try:
        if query.from_ != "end":
            yield from dataset.history(history_end)
        while not should_stop():
            batch, skipped = follower.next(WAIT_SECONDS)
            if batch is None:
                continue
            if skipped:
                yield batch, pa.py_buffer(json.dumps({"skipped": skipped}).encode())
            else:
                yield batch
    finally:
        dataset.unfollow(follower)


def follow_file(
    entry: Entry, schema: pa.Schema, query: Query, should_stop: Callable[[], bool]
) -> Iterator[pa.RecordBatch]:
    return tail_file(entry, schema, from_start=query.from_ != "end", should_stop=should_stop)


def shape(items: Iterator[Item], query: Query, name: str) -> Iterator[Item]:
    """Apply ``columns`` and ``limit`` to a stream that may carry metadata."""
    remaining = query.limit
    for item in items:
        if remaining is not None and remaining <= 0:
            return
        batch, metadata = item if isinstance(item, tuple) else (item, None)
        if query.columns is not None:
            missing = [c for c in query.columns if c not in batch.schema.names]
            if missing:
                raise errors.invalid(f"dataset {name!r} has no column {missing[0]!r}")
            batch = batch.select(list(query.columns))
        if remaining is not None:
            batch = batch.slice(0, remaining)
            remaining -= batch.num_rows
        yield (batch, metadata) if metadata is not None else batch


def projected(schema: pa.Schema, query: Query) -> pa.Schema:
    if query.columns is None:
        return schema
    return pa.schema([schema.field(c) for c in query.columns])


def take_put(dataset: LiveDataset, reader: flight.MetadataRecordBatchReader) -> int:
    """Append every batch of a DoPut to the live dataset as it arrives; returns the rows."""
    rows = 0
    while True:
        try:
            chunk = reader.read_chunk()
        except StopIteration:
            return rows
        if chunk.data is not None:
            dataset.append(chunk.data)
            rows += chunk.data.num_rows
