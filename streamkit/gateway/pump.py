"""An upstream stream read in a thread of its own and handed on through a short queue.

Whoever forwards the stream (a Flight handler thread, the HTTP/WebSocket event loop) waits
on the queue with a timeout, so it notices in its own thread that its client left, that
the stream idles or that the gateway stops — no other thread ever touches the call.
(pyarrow's ``ServerCallContext`` dies with its call: checking it from a watchdog thread
after the call ended crashed the gateway under load.) The queue holds ``depth`` chunks at
most, so a slow client stops the reads and a stream costs a few batches of memory whatever
the dataset's size; reading ahead also overlaps the next upstream read with this send.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

import pyarrow as pa

DEPTH = 2


class Ended(Exception):
    """The upstream stream is complete (StopIteration cannot leave a coroutine)."""


class Chunk(Protocol):
    data: pa.RecordBatch
    app_metadata: pa.Buffer | None


class Upstream(Protocol):
    """A FlightStreamReader, or anything read like one (``live_hub.HubReader``)."""

    schema: pa.Schema

    def read_chunk(self) -> Any: ...

    def cancel(self) -> None: ...


class Pump:
    def __init__(
        self, reader: Upstream, depth: int = DEPTH, wake: Callable[[], None] | None = None
    ) -> None:
        self.reader = reader
        self.schema = reader.schema
        self.wake = wake  # called (in the pump's thread) after each chunk and at the end
        self._depth = depth
        self._chunks: deque[Chunk] = deque()
        self._ready = threading.Condition()
        self._ended = False
        self._error: BaseException | None = None
        self._cancelled = False
        threading.Thread(target=self._run, name="streamkit-pump", daemon=True).start()

    def _run(self) -> None:
        try:
            while True:
                with self._ready:
                    while len(self._chunks) >= self._depth and not self._cancelled:
                        self._ready.wait()
                    if self._cancelled:
                        return
                try:
                    chunk = self.reader.read_chunk()
                except StopIteration:
                    return
                with self._ready:
                    self._chunks.append(chunk)
                    self._ready.notify_all()
                self._notify()
        except BaseException as exc:  # handed to the consumer, which decides what it means
            self._error = exc
        finally:
            with self._ready:
                self._ended = True
                self._ready.notify_all()
            self._notify()

    def _notify(self) -> None:
        wake = self.wake
        if wake is not None:
            wake()

    def get(self, timeout: float) -> Chunk | None:
        """The next chunk; None if none came within ``timeout`` seconds (0: do not wait).

        Raises :class:`Ended` at the end of the stream, or the error that ended it."""
        with self._ready:
            if not self._chunks and not self._ended and timeout > 0:
                self._ready.wait(timeout)
            if self._chunks:
                chunk = self._chunks.popleft()
                self._ready.notify_all()
                return chunk
            if not self._ended:
                return None
        if self._error is not None:
            raise self._error
        raise Ended

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def cancel(self) -> None:
        """Stop reading and cancel the upstream call (safe from any thread, more than once)."""
        with self._ready:
            if self._cancelled:
                return
            self._cancelled = True
            self._chunks.clear()
            self._ready.notify_all()
        self.reader.cancel()


class Polled:
    """An upstream that can wait with a timeout itself (a live hub's follower), read in the
    consumer's own thread: like a :class:`Pump`, without a thread of its own."""

    def __init__(self, reader: Upstream) -> None:
        self.reader = reader
        self.schema = reader.schema
        self.cancelled = False

    def get(self, timeout: float) -> Chunk | None:
        try:
            return self.reader.poll(timeout)  # type: ignore[attr-defined, no-any-return]
        except StopIteration:
            raise Ended from None

    def cancel(self) -> None:
        self.cancelled = True
        self.reader.cancel()


class AsyncPump:
    """A :class:`Pump` awaited from an event loop: no thread of the loop's pool waits."""

    def __init__(self, pump: Pump, loop: asyncio.AbstractEventLoop) -> None:
        self._arrived = asyncio.Event()
        self._loop = loop
        self.pump = pump
        pump.wake = self._wake  # a chunk already queued is seen by the first get

    def _wake(self) -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody is waiting
            self._loop.call_soon_threadsafe(self._arrived.set)

    async def get(self, timeout: float | None) -> Chunk | None:
        """Like :meth:`Pump.get`; ``timeout=None`` waits as long as it takes."""
        deadline = None if timeout is None else self._loop.time() + timeout
        while True:
            chunk = self.pump.get(0)
            if chunk is not None:
                return chunk
            self._arrived.clear()
            chunk = self.pump.get(0)  # a chunk may have come before the clear
            if chunk is not None:
                return chunk
            left = None if deadline is None else deadline - self._loop.time()
            if left is not None and left <= 0:
                return None
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(left):  # no task per wait, unlike wait_for
                    await self._arrived.wait()
