"""One upstream follow per live dataset, shared by all of the gateway's followers of it.

Without this, N clients following one dataset cost the connector N streams. A hub reads
the connector's follow (``from: end``) once and offers each batch to every local follower's
bounded queue (the same lag policy as the connector's). A follower that wants history
reads it with a plain upstream DoGet after joining the hub; batches carry their row
offsets, so rows that arrive both ways are sent once and none are lost in between.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import pyarrow as pa
import pyarrow.flight as flight

from streamkit import errors
from streamkit.batches import batch_bytes
from streamkit.flight_streams import Chunk
from streamkit.live import Follower
from streamkit.live_wire import batch_metadata, row_offset
from streamkit.query import Query
from streamkit.shaping import Shaper

log = logging.getLogger("streamkit.gateway")

WAIT_SECONDS = 0.25
OPEN_TIMEOUT_SECONDS = 15.0


class Hub:
    """Opened by its first follower with :meth:`open`; closed for good when its last
    follower leaves or its feed fails (a later follower then starts a new hub)."""

    def __init__(
        self,
        key: tuple[str, str],
        on_close: Callable[[Hub], None],
        error: Callable[[BaseException], Exception],
    ):
        self.key = key
        self.followers: set[Follower] = set()
        self.lock = threading.RLock()  # see LiveDataset.lock
        self.closed = False
        self.opened = threading.Event()
        self.failure: BaseException | None = None  # why opening failed
        self.reader: flight.FlightStreamReader | None = None
        self.schema: pa.Schema | None = None
        self._on_close = on_close
        self._error = error

    def open(self, open_follow: Callable[[], flight.FlightStreamReader]) -> None:
        try:
            self.reader = open_follow()  # the connector has registered us when this returns
            self.schema = self.reader.schema
        except BaseException as exc:
            self.failure = exc
            with self.lock:
                self.closed = True
            self._on_close(self)
            raise
        finally:
            self.opened.set()
        threading.Thread(target=self._pump, name="streamkit-hub", daemon=True).start()

    def join(self, follower: Follower) -> bool:
        """Add a follower; False once the hub has closed (its followers were already told)."""
        with self.lock:
            if self.closed:
                return False
            self.followers.add(follower)
            return True

    def leave(self, follower: Follower) -> None:
        with self.lock:
            self.followers.discard(follower)
            last = not self.followers and not self.closed
            if last:
                self.closed = True
        if last:
            self._on_close(self)
            if self.reader is not None:
                self.reader.cancel()

    def _pump(self) -> None:
        assert self.reader is not None
        try:
            while True:
                try:
                    chunk = self.reader.read_chunk()
                except StopIteration:
                    raise errors.unavailable("the live feed ended") from None
                if chunk.data is None or not chunk.data.num_rows:
                    continue  # e.g. the empty batch that carries new dictionaries
                offset = row_offset(chunk.app_metadata)
                with self.lock:
                    followers = list(self.followers)
                size = batch_bytes(chunk.data)
                for follower in followers:
                    follower.offer(chunk.data, offset or 0, size, len(followers))
                    if follower.lagging:  # told when it next reads; it costs nothing more
                        self.leave(follower)
        except Exception as exc:
            with self.lock:
                self.closed = True
                followers = list(self.followers)
            self._on_close(self)
            if followers:
                failure = self._error(exc)
                for follower in followers:
                    follower.fail(failure)


class Hubs:
    def __init__(self) -> None:
        self._hubs: dict[tuple[str, str], Hub] = {}
        self._lock = threading.RLock()  # see LiveDataset.lock

    def follow(
        self,
        key: tuple[str, str],
        query: Query,
        open_follow: Callable[[], flight.FlightStreamReader],
        open_history: Callable[[], flight.FlightStreamReader],
        error: Callable[[BaseException], Exception],
    ) -> HubReader:
        """Join the hub of ``key`` (opening it if there is none), then open the history.

        The upstream follow opens outside the gateway-wide lock: a slow connector holds up
        only the followers of its own dataset."""
        follower = Follower(on_lag=query.on_lag or "error")
        while True:
            with self._lock:
                hub = self._hubs.get(key)
                opener = hub is None or hub.closed
                if opener:
                    hub = self._hubs[key] = Hub(key, self._forget, error)
            assert hub is not None
            if opener:
                hub.open(open_follow)
            elif not hub.opened.wait(OPEN_TIMEOUT_SECONDS):
                raise errors.unavailable(f"the live feed of {query.label()!r} did not open")
            if hub.failure is not None:
                raise error(hub.failure)
            assert hub.schema is not None
            schema = query.projected(hub.schema)  # before joining: nothing to undo
            if hub.join(follower):
                break
        try:
            history = open_history() if query.from_ != "end" else None
        except BaseException:
            hub.leave(follower)
            raise
        return HubReader(hub, follower, history, query, schema)

    def all(self) -> list[Hub]:
        with self._lock:
            return list(self._hubs.values())

    def _forget(self, hub: Hub) -> None:
        with self._lock:
            if self._hubs.get(hub.key) is hub:
                del self._hubs[hub.key]

    def close(self) -> None:
        with self._lock:
            hubs = list(self._hubs.values())
        for hub in hubs:
            if hub.reader is not None:
                hub.reader.cancel()


class HubReader:
    """A follow of one client, read like a FlightStreamReader: history, then live rows."""

    def __init__(
        self,
        hub: Hub,
        follower: Follower,
        history: flight.FlightStreamReader | None,
        query: Query,
        schema: pa.Schema,
    ) -> None:
        self.hub, self.follower, self.history, self.query = hub, follower, history, query
        self.schema = schema
        self.history_rows = 0  # rows before this number came with the history
        self._shape = Shaper(query.columns, query.limit, query.dataset, query.offset)
        self.cancelled = False

    def read_chunk(self) -> Chunk:
        while True:
            chunk = self.poll(WAIT_SECONDS)
            if chunk is not None:
                return chunk

    def poll(self, timeout: float) -> Chunk | None:
        """The next chunk, or None if no new rows came within ``timeout`` (read in the
        consumer's own thread, this needs no pump thread: one wake-up per batch, not two)."""
        if self._shape.done:
            self._leave()
            raise StopIteration
        if self.history is not None:
            try:
                chunk = self.history.read_chunk()
                self.history_rows += chunk.data.num_rows
                return Chunk(self._shape(chunk.data))
            except StopIteration:
                self.history = None
            except BaseException:
                self._leave()
                raise
        if self.cancelled:
            self._leave()
            raise errors.Cancelled("cancelled")
        try:
            batch, offset, skipped = self.follower.next(timeout)
        except BaseException:
            self._leave()
            raise
        if batch is None or offset + batch.num_rows <= self.history_rows:
            return None  # nothing yet, or rows already sent with the history
        if offset < self.history_rows:
            batch = batch.slice(self.history_rows - offset)
        return Chunk(self._shape(batch), batch_metadata(skipped=skipped))

    def _leave(self) -> None:
        self.hub.leave(self.follower)

    def cancel(self) -> None:
        self.cancelled = True
        if self.history is not None:
            self.history.cancel()
        self._leave()
        with self.follower.ready:
            self.follower.ready.notify()
