"""A small built-in feed for demos: sensor readings published to a live dataset a few times
a second, so a newcomer sees sparklines and charts move."""

from __future__ import annotations

import math
import random
import threading
from datetime import UTC, datetime

import pyarrow as pa

from streamkit.live import LiveRegistry

BATCHES_PER_SECOND = 5
ROWS_PER_BATCH = 10
SCHEMA = pa.schema(
    [
        ("ts", pa.timestamp("ms", tz="UTC")),
        ("temperature", pa.float64()),
        ("humidity", pa.float64()),
        ("power_kw", pa.float64()),
    ]
)


class Simulator:
    """Publishes to ``name`` in ``registry`` from a daemon thread until ``stop()``."""

    def __init__(self, registry: LiveRegistry, name: str) -> None:
        registry.reset(name)  # a demo feed starts fresh each run, so it never piles up
        self.dataset = registry.get_or_create(name)
        self._stop = threading.Event()
        self._random = random.Random(7)
        self._step = 0
        self.dataset.append(self.batch())  # exists (with its schema) from the start
        self._thread = threading.Thread(target=self._run, name="streamkit-simulator", daemon=True)
        self._thread.start()

    def batch(self) -> pa.RecordBatch:
        now = datetime.now(UTC).timestamp()
        rows = []
        for i in range(ROWS_PER_BATCH):
            t = self._step + i / ROWS_PER_BATCH
            rows.append(
                (
                    datetime.fromtimestamp(now - (ROWS_PER_BATCH - i) * 0.02, UTC),
                    21 + 3 * math.sin(t / 40) + self._random.gauss(0, 0.15),
                    50 + 12 * math.sin(t / 55 + 1) + self._random.gauss(0, 0.5),
                    max(0.0, 4 + 2.5 * math.sin(t / 9) + self._random.gauss(0, 0.3)),
                )
            )
        self._step += 1
        columns = list(zip(*rows, strict=True))
        return pa.record_batch(
            [pa.array(c, f.type) for c, f in zip(columns, SCHEMA, strict=True)], schema=SCHEMA
        )

    def _run(self) -> None:
        while not self._stop.wait(1 / BATCHES_PER_SECOND):
            self.dataset.append(self.batch())

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)
