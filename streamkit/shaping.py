"""A query's ``columns``, ``offset`` and ``limit`` applied to batches as they pass, wherever
a stream is shaped (file readers, followed streams, a live hub's followers)."""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa

from streamkit import errors
from streamkit.flight_streams import Item
from streamkit.live_wire import batch_metadata, row_offset, skipped_rows


class Shaper:
    def __init__(
        self,
        columns: tuple[str, ...] | None,
        limit: int | None,
        name: str,
        offset: int | None = None,
    ) -> None:
        self.columns = list(columns) if columns is not None else None
        self.remaining = limit
        self.name = name
        self.skip = offset or 0  # rows still to drop before any may pass
        self.cut = 0  # rows dropped from the front of the last batch

    @property
    def done(self) -> bool:
        """The limit is reached: nothing more may pass."""
        return self.remaining == 0

    def __call__(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        if self.columns is not None and batch.schema.names != self.columns:
            missing = [c for c in self.columns if c not in batch.schema.names]
            if missing:
                raise errors.invalid(f"dataset {self.name!r} has no column {missing[0]!r}")
            batch = batch.select(self.columns)
        self.cut = min(self.skip, batch.num_rows)
        if self.cut:
            batch = batch.slice(self.cut)
            self.skip -= self.cut
        if self.remaining is not None:
            batch = batch.slice(0, self.remaining)
            self.remaining -= batch.num_rows
        return batch


def shape(items: Iterator[Item], shaper: Shaper) -> Iterator[Item]:
    """Shape a stream whose batches may carry metadata; it ends once the limit is reached
    (a followed stream would otherwise wait for rows it may not send)."""
    if shaper.done:
        return
    for item in items:
        batch, metadata = item if isinstance(item, tuple) else (item, None)
        batch = shaper(batch)
        if shaper.cut:
            if not batch.num_rows:
                continue  # all before the offset
            start = row_offset(metadata)
            if start is not None:  # the batch's first row is now a later one
                metadata = batch_metadata(start + shaper.cut, skipped_rows(metadata))
        yield (batch, metadata) if metadata is not None else batch
        if shaper.done:
            return
