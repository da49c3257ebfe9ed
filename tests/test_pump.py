"""The gateway's upstream pump: bounded read-ahead, cancel from any thread, errors, asyncio."""

from __future__ import annotations

import asyncio
import threading

import pyarrow as pa
import pytest
from conftest import wait_for

from streamkit.gateway.pump import DEPTH, AsyncPump, Ended, Pump

BATCH = pa.record_batch({"x": [1, 2, 3]})


class Chunk:
    def __init__(self, data: pa.RecordBatch) -> None:
        self.data, self.app_metadata = data, None


class FakeReader:
    """Yields ``total`` chunks (None: endless), blocking before ``hold_at`` until released."""

    schema = BATCH.schema

    def __init__(self, total: int | None = None, hold_at: int | None = None, fail_at=None):
        self.total, self.hold_at, self.fail_at = total, hold_at, fail_at
        self.reads = 0
        self.release = threading.Event()
        self.cancelled = threading.Event()

    def read_chunk(self) -> Chunk:
        if self.reads == self.hold_at:
            while not self.release.wait(0.01):
                if self.cancelled.is_set():
                    raise RuntimeError("cancelled")
        if self.reads == self.fail_at:
            raise ValueError("upstream broke")
        if self.total is not None and self.reads >= self.total:
            raise StopIteration
        self.reads += 1
        return Chunk(BATCH)

    def cancel(self) -> None:
        self.cancelled.set()


def drain(pump: Pump) -> int:
    count = 0
    while True:
        try:
            chunk = pump.get(5)
        except Ended:
            return count
        assert chunk is not None, "nothing arrived within 5 s"
        count += 1


def test_every_chunk_arrives_then_the_end():
    assert drain(Pump(FakeReader(total=50))) == 50


def test_a_consumer_that_stops_reading_stops_the_reads():
    reader = FakeReader()  # endless
    pump = Pump(reader)
    for consumed in range(20):  # reads stay DEPTH ahead of the consumer, never more
        ahead = consumed + DEPTH
        wait_for(lambda ahead=ahead: reader.reads == ahead, 5, "the read-ahead")
        assert pump.get(0) is not None
        assert reader.reads <= ahead + 1
    pump.cancel()
    assert reader.cancelled.is_set()


def test_cancel_reaches_a_read_that_waits_on_a_quiet_upstream():
    reader = FakeReader(hold_at=1)
    pump = Pump(reader)
    assert pump.get(5) is not None
    assert pump.get(0.05) is None  # quiet upstream: nothing yet
    threading.Thread(target=pump.cancel).start()
    wait_for(reader.cancelled.is_set, 5, "the upstream cancel")
    with pytest.raises(RuntimeError, match="cancelled"):
        drain(pump)


def test_an_upstream_error_reaches_the_consumer_after_the_chunks_before_it():
    pump = Pump(FakeReader(fail_at=3))
    assert [pump.get(5) is not None for _ in range(3)] == [True] * 3
    with pytest.raises(ValueError, match="upstream broke"):
        pump.get(5)


def test_awaited_from_an_event_loop_without_a_waiting_thread():
    async def consume() -> tuple[int, bool]:
        reader = FakeReader(total=10, hold_at=5)
        pump = AsyncPump(Pump(reader), asyncio.get_running_loop())
        got = 0
        while got < 5:
            got += await pump.get(5) is not None
        quiet = await pump.get(0.05) is None
        reader.release.set()
        while True:
            try:
                chunk = await pump.get(5)
            except Ended:
                return got, quiet
            assert chunk is not None
            got += 1

    assert asyncio.run(consume()) == (10, True)
