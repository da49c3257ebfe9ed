"""Several Flight streams of one schema read as one (the endpoints of a sharded dataset):
each is read in a thread of its own into one short queue, so the slowest sets the pace and
memory stays a few batches per stream. Their rows interleave."""

from __future__ import annotations

import queue
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.flight as flight

from streamkit import errors

QUEUE_PER_STREAM = 2
_DONE = object()


class MergedReader:
    """The streams as one, read like a FlightStreamReader; ``limit`` rows at most."""

    def __init__(self, readers: Sequence[flight.FlightStreamReader], limit: int | None) -> None:
        self.readers = list(readers)
        self.schema = self.readers[0].schema
        for reader in self.readers[1:]:
            if not reader.schema.equals(self.schema):
                self.cancel()
                raise errors.invalid("the endpoints disagree on the schema")
        self.remaining = limit
        self._queue: queue.Queue[object] = queue.Queue(QUEUE_PER_STREAM * len(self.readers))
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
            item = self._next()
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

    def _next(self) -> object:
        """The next item; once cancelled, the readers put no more, so none may come."""
        while True:
            try:
                return self._queue.get(timeout=0.25)
            except queue.Empty:
                if self._cancelled.is_set():
                    raise errors.Cancelled("cancelled: the merged read was cancelled") from None

    def cancel(self) -> None:
        self._cancelled.set()
        for reader in self.readers:
            reader.cancel()


@dataclass
class Cut:
    """A chunk cut at the limit (a FlightStreamChunk cannot be made in Python)."""

    data: pa.RecordBatch
    app_metadata: pa.Buffer | None
