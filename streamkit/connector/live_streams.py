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

    The follower is registered now, before the stream starts, so a caller that has the
    stream open has missed nothing. Every batch carries ``{"offset": N}`` metadata (the
    dataset row number of its first row, which lets the gateway share one follow among
    many clients), plus ``"skipped": N`` for rows skipped under ``on_lag: skip``.
    """
    follower = Follower(on_lag=query.on_lag or "error")
    history_end = dataset.follow(follower)

    def batches() -> Iterator[Item]:
        try:
            if query.from_ != "end":
                offset = 0
                for batch in dataset.history(history_end):
                    yield batch, _metadata(offset, 0)
                    offset += batch.num_rows
            while not should_stop():
                batch, offset, skipped = follower.next(WAIT_SECONDS)
                if batch is not None:
                    yield batch, _metadata(offset, skipped)
        finally:
            dataset.unfollow(follower)

    return batches()


def _metadata(offset: int, skipped: int) -> pa.Buffer:
    fields = {"offset": offset, "skipped": skipped} if skipped else {"offset": offset}
    return pa.py_buffer(json.dumps(fields).encode())


def follow_file(
    entry: Entry, schema: pa.Schema, query: Query, should_stop: Callable[[], bool]
) -> Iterator[pa.RecordBatch]:
    return tail_file(entry, schema, from_start=query.from_ != "end", should_stop=should_stop)


def shape(items: Iterator[Item], query: Query, name: str) -> Iterator[Item]:
    """Apply ``columns`` and ``limit`` to a stream that may carry metadata."""
    remaining = query.limit
    if remaining == 0:
        return
    for item in items:
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
        if remaining == 0:
            return  # a followed stream ends once its limit is reached


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
