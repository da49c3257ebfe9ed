"""The connector's live side: following live and growing datasets, and taking DoPut batches."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TypeAlias

import pyarrow as pa
import pyarrow.flight as flight

from streamkit.catalog import Entry
from streamkit.live import Follower, LiveDataset
from streamkit.live_wire import batch_metadata
from streamkit.query import Query
from streamkit.tail import tail_file

WAIT_SECONDS = 0.25  # how often a waiting follower checks for cancellation

Item: TypeAlias = pa.RecordBatch | tuple[pa.RecordBatch, pa.Buffer]


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
                    yield batch, batch_metadata(offset)
                    offset += batch.num_rows
            while True:
                batch, offset, skipped = follower.next(WAIT_SECONDS)
                if batch is not None:
                    yield batch, batch_metadata(offset, skipped)
                elif should_stop():
                    # Asked only while the feed is quiet (it costs a gRPC queue poll): while
                    # batches flow, a client that left fails the next write.
                    return
        finally:
            dataset.unfollow(follower)

    return batches()


def follow_file(
    entry: Entry, schema: pa.Schema, query: Query, should_stop: Callable[[], bool]
) -> Iterator[pa.RecordBatch]:
    return tail_file(entry, schema, from_start=query.from_ != "end", should_stop=should_stop)


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
