"""Shared by tests/test_memory.py and benchmarks/memory_slow_readers.py: data that looks like
what users write (numbers, timestamps, low- and high-cardinality strings), a connector's RSS
sampled in a thread, and a Flight reader that takes its time over every batch."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import psutil
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.flight as flight

NOTE_CHARS = 40  # random letters, which snappy barely compresses (like ids or hashes)
LETTERS = bytes(97 + b % 26 for b in range(256))  # any byte -> a..z


def sample_table(rows: int, seed: int = 0) -> pa.Table:
    """~87 bytes a row in memory, ~62 in Parquet (snappy). Pure pyarrow (no numpy)."""
    ids = pa.array(range(rows), pa.int64())
    text = random.Random(seed).randbytes(rows * NOTE_CHARS).translate(LETTERS)
    offsets = pa.array(range(0, rows * NOTE_CHARS + 1, NOTE_CHARS), pa.int64())
    note = pa.LargeStringArray.from_buffers(rows, offsets.buffers()[1], pa.py_buffer(text))
    sensors = pa.array([f"sensor-{i:04d}" for i in range(1000)])

    def uniform(scale: float, salt: int) -> pa.Array:
        return pc.multiply(pc.random(rows, initializer=seed * 7 + salt), scale)

    return pa.table(
        {
            "id": ids,
            "ts": pc.add(ids, 1_735_689_600_000_000).cast(pa.timestamp("us")),
            "sensor": sensors.take(pc.floor(uniform(1000, 1)).cast(pa.int64())),
            "value": pc.add(uniform(40.0, 2), 0.5),
            "count": pc.floor(uniform(1 << 20, 3)).cast(pa.int32()),
            "note": note.cast(pa.string()),
        }
    )


class RssSampler:
    """Samples a process's resident set size every ``interval`` seconds until stopped."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        self.process = psutil.Process(pid)
        self.interval = interval
        self.baseline = self.process.memory_info().rss
        self.peak = self.baseline
        self.samples = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join(5)
        self.sample()

    def sample(self) -> None:
        try:
            rss = self.process.memory_info().rss
        except psutil.NoSuchProcess:
            return
        self.peak = max(self.peak, rss)
        self.samples += 1

    def _run(self) -> None:
        while not self._done.wait(self.interval):
            self.sample()


@dataclass
class ReadResult:
    rows: int = 0
    batches: int = 0
    bytes: int = 0
    seconds: float = 0.0


def read_slowly(
    url: str,
    dataset: str,
    pause: float = 0.0,
    max_batches: int | None = None,
    on_batch: Callable[[], None] | None = None,
) -> ReadResult:
    """Read ``dataset`` batch by batch with ``read_chunk``, pausing ``pause`` s after each;
    stop after ``max_batches``; ``on_batch`` runs after every batch."""
    result = ReadResult()
    started = time.perf_counter()
    with flight.connect(url) as client:
        info = client.get_flight_info(flight.FlightDescriptor.for_path(dataset))
        reader = client.do_get(info.endpoints[0].ticket)
        while max_batches is None or result.batches < max_batches:
            try:
                chunk = reader.read_chunk()
            except StopIteration:
                break
            result.rows += chunk.data.num_rows
            result.batches += 1
            result.bytes += chunk.data.nbytes
            if on_batch is not None:
                on_batch()
            if pause:
                time.sleep(pause)
        if max_batches is not None:
            reader.cancel()
    result.seconds = time.perf_counter() - started
    return result
