"""Live datasets: batches published with DoPut, kept as Arrow IPC stream files under
``ROOT/.streamkit/live/NAME.arrows``, and fanned out to followers as they arrive.

Each follower has a bounded queue filled without blocking the publisher. A follower that
falls behind by more than its queue is told and disconnected (``lagging``), or, if it asked
for ``on_lag: skip``, jumps to the newest batch and is told how many rows it missed. So a
slow follower never makes the connector's memory grow, and one publish costs one file write
plus a queue append per follower, however many follow.
"""

from __future__ import annotations

import functools
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from streamkit import errors
from streamkit.batches import batch_bytes
from streamkit.ipc_frames import IpcFramer

LIVE_FOLDER = Path(".streamkit") / "live"
SUFFIX = ".arrows"
# A follower may fall this far behind before it is told (``lagging``) or skips ahead. Small
# batches coalesce when sent, so a follower thousands of batches behind catches up in a few
# sends; the byte cap is what bounds memory (queued batches are shared by every follower).
FOLLOWER_QUEUE_BATCHES = 8192
FOLLOWER_QUEUE_BYTES = 64 * 1024 * 1024
# Sending costs per message (~35 us on the gateway for a small batch): past a few thousand
# sends a second they queue up in gRPC's buffers, where nothing coalesces, and latency grows
# without bound. So while batches come faster than one per ``hold``, a follower sends at most
# once per hold, and what arrives meanwhile joins the next message: at least MIN_HOLD, and
# for a big fan-out enough that its followers share about FANOUT_SENDS_PER_SECOND sends,
# never over MAX_HOLD. Slower feeds are sent batch by batch, the moment each arrives.
FANOUT_SENDS_PER_SECOND = 5000
MIN_HOLD_SECONDS = 0.002
MAX_HOLD_SECONDS = 0.010


@dataclass(eq=False)  # followers are compared by identity
class Follower:
    on_lag: str = "error"  # or "skip"
    capacity: int = field(default_factory=lambda: FOLLOWER_QUEUE_BATCHES)
    byte_capacity: int = field(default_factory=lambda: FOLLOWER_QUEUE_BYTES)
    queue: deque[tuple[pa.RecordBatch, int]] = field(default_factory=deque)
    queued_bytes: int = 0
    _last_sent: float = 0.0  # monotonic time of the last message handed out
    _last_offer: float = 0.0
    _interval: float = 1.0  # seconds between offered batches, averaged
    _hold: float = 0.0  # see FANOUT_SENDS_PER_SECOND
    _holding: bool = False
    ready: threading.Condition = field(default_factory=threading.Condition)
    lagging: bool = False
    skipped: int = 0  # rows missed since the follower was last told
    failure: Exception | None = None  # set when the source itself failed

    def offer(
        self, batch: pa.RecordBatch, offset: int, size: int | None = None, fanout: int = 1
    ) -> None:
        """Called by the publisher with the batch's first row number (and, offering one
        batch to ``fanout`` followers, its size: ``nbytes`` costs microseconds); never
        blocks."""
        size = batch_bytes(batch) if size is None else size
        now = time.monotonic()
        with self.ready:
            self._hold = min(
                MAX_HOLD_SECONDS, max(MIN_HOLD_SECONDS, fanout / FANOUT_SENDS_PER_SECOND)
            )
            if self._last_offer:  # a running average of the time between batches
                self._interval += (now - self._last_offer - self._interval) / 8
            self._last_offer = now
            full = len(self.queue) >= self.capacity or self.queued_bytes + size > self.byte_capacity
            if full and self.queue:
                if self.on_lag == "skip":
                    self.skipped += sum(b.num_rows for b, _ in self.queue)
                else:
                    self.lagging = True
                self.queue.clear()
                self.queued_bytes = 0
            if not self.lagging:
                self.queue.append((batch, offset))
                self.queued_bytes += size
            if not self._holding or self.lagging:  # a holding follower wakes on its own
                self.ready.notify()

    def fail(self, failure: Exception) -> None:
        with self.ready:
            self.failure = failure
            self.ready.notify()

    def next(self, timeout: float) -> tuple[pa.RecordBatch | None, int, int]:
        """Everything queued as one batch (None after ``timeout``), its first row number,
        and the rows skipped before it. Under load, many small batches go out as one
        message: fewer sends, and a follower catches up instead of falling behind. When
        batches come faster than a big fan-out can send them one by one, a follower sends
        at most once per ``_hold`` and what arrives meanwhile joins the next message; else
        a batch goes out the moment it arrives."""
        with self.ready:
            if not self.queue and not self.lagging and self.failure is None:
                self.ready.wait(timeout)
            self._check()
            if not self.queue:
                return None, 0, 0
            fast = self._interval < self._hold
            hold_until = self._last_sent + self._hold if fast else 0.0
            self._holding = True
            try:
                while (left := hold_until - time.monotonic()) > 0:
                    self.ready.wait(left)
                    self._check()
            finally:
                self._holding = False
            items = list(self.queue)
            self.queue.clear()
            self.queued_bytes = 0
            skipped, self.skipped = self.skipped, 0
            self._last_sent = time.monotonic()
        offset = items[0][1]
        if len(items) == 1:
            return items[0][0], offset, skipped
        table = pa.Table.from_batches([b for b, _ in items]).combine_chunks()
        return table.to_batches()[0], offset, skipped

    def _check(self) -> None:
        if self.failure is not None:
            raise self.failure
        if self.lagging:
            raise errors.lagging(
                f"the follower fell more than {self.capacity} batches or "
                f"{self.byte_capacity // 2**20} MiB behind"
            )


class LiveDataset:
    def __init__(self, name: str, path: Path) -> None:
        self.name = name
        self.path = path
        # Reentrant: a follower's generator may be finalized by the garbage collector while
        # this thread holds the lock (in ``append``), and it unfollows on the way out.
        self.lock = threading.RLock()
        self.followers: set[Follower] = set()
        self.schema: pa.Schema | None = None
        self.rows = 0
        self.size = 0  # bytes of whole messages in the file
        self._framer: IpcFramer | None = None
        if path.exists():
            self._recover()

    def _recover(self) -> None:
        """Read what a previous run wrote; cut a message left half-written by a crash."""
        good = 0
        with pa.memory_map(str(self.path)) as source:
            try:
                reader = pa.ipc.open_stream(source)
                self.schema = reader.schema
                good = source.tell()
                while True:
                    batch = reader.read_next_batch()
                    self.rows += batch.num_rows
                    good = source.tell()
            except StopIteration:
                pass
            except (pa.ArrowInvalid, OSError, EOFError):
                pass
        if self.schema is None:
            good = 0
        if good < self.path.stat().st_size:
            with open(self.path, "r+b") as f:
                f.truncate(good)
        self.size = good

    def append(self, batch: pa.RecordBatch) -> None:
        with self.lock:
            if self.schema is None:
                self.schema = batch.schema
            elif not batch.schema.equals(self.schema):
                raise errors.invalid(
                    f"live dataset {self.name!r} has schema ({_describe(self.schema)}); "
                    f"the batch has ({_describe(batch.schema)})"
                )
            if batch.num_rows == 0:
                return
            data = b"".join(self._writer().frames(batch))
            if self.size and data.startswith(self._schema_bytes):
                data = data[len(self._schema_bytes) :]  # the file already starts with it
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "ab") as f:
                f.write(data)
            self.size += len(data)
            offset = self.rows
            self.rows += batch.num_rows
            size, followers = batch_bytes(batch), list(self.followers)
            for follower in followers:
                follower.offer(batch, offset, size, len(followers))
                if follower.lagging:  # told when it next reads; it costs nothing more
                    self.followers.discard(follower)

    def _writer(self) -> IpcFramer:
        if self._framer is None:
            assert self.schema is not None
            self._framer = IpcFramer(self.schema)
        return self._framer

    @functools.cached_property
    def _schema_bytes(self) -> bytes:
        assert self.schema is not None
        return IpcFramer(self.schema).end()[:-8]

    def follow(self, follower: Follower) -> int:
        """Register a follower; returns the file size its history ends at."""
        with self.lock:
            self.followers.add(follower)
            return self.size

    def unfollow(self, follower: Follower) -> None:
        with self.lock:
            self.followers.discard(follower)

    def history(self, upto: int | None = None) -> Iterator[pa.RecordBatch]:
        """The batches in the file, up to byte ``upto`` (what existed when following began)."""
        end = self.size if upto is None else upto
        if not end:
            return
        with pa.memory_map(str(self.path)) as source:
            reader = pa.ipc.open_stream(source.read_buffer(end))
            yield from reader


def _describe(schema: pa.Schema) -> str:
    return ", ".join(f"{f.name}: {f.type}" for f in schema)


class LiveRegistry:
    """The live datasets of one connector root, found on disk and created on first publish."""

    def __init__(self, root: Path) -> None:
        self.folder = root / LIVE_FOLDER
        self.datasets: dict[str, LiveDataset] = {}
        self.lock = threading.Lock()
        if self.folder.is_dir():
            for path in sorted(self.folder.rglob(f"*{SUFFIX}")):
                name = path.relative_to(self.folder).as_posix()[: -len(SUFFIX)]
                self.datasets[name] = LiveDataset(name, path)

    def get(self, name: str) -> LiveDataset | None:
        with self.lock:
            return self.datasets.get(name)

    def get_or_create(self, name: str) -> LiveDataset:
        with self.lock:
            dataset = self.datasets.get(name)
            if dataset is None:
                path = self.folder / f"{name}{SUFFIX}"
                dataset = self.datasets[name] = LiveDataset(name, path)
            return dataset

    def reset(self, name: str) -> None:
        """Forget a live dataset and delete its file."""
        with self.lock:
            self.datasets.pop(name, None)
            (self.folder / f"{name}{SUFFIX}").unlink(missing_ok=True)

    def all(self) -> list[LiveDataset]:
        with self.lock:
            return [d for d in self.datasets.values() if d.schema is not None]
