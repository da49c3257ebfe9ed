"""Bounded summaries of a stream of record batches, for the TUI to draw (no Textual here).

However long a stream runs, memory stays bounded. A stream that ends (a file) keeps, per
numeric column, at most ``capacity`` points, each the mean of ``stride`` rows; when the
points fill up, neighbours merge and the stride doubles, so the series always covers the
whole stream so far. A followed (live) stream never ends, so its series is a rolling window
of the newest ``ROLLING_WINDOW`` values instead, and its chart scrolls. Rows are only
touched through pyarrow compute kernels, never in a Python per-row loop.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from streamkit.batches import batch_bytes, empty_batch

MAX_CHARTS = 6
"""At most this many numeric columns get a sparkline."""
SERIES_CAPACITY = 256
"""Points kept per column; more than any terminal is wide."""
LATEST_ROWS = 50
"""Rows kept for the table of latest rows."""
ROLLING_WINDOW = 600
"""Values per column a followed (live) stream's sparkline shows: the newest, scrolling.
The demo simulator sends 50 rows a second, so its charts span the last 12 seconds."""
FEW_BUCKETS = 16
"""Up to this many buckets in one batch are summed one by one, more with a running sum."""


def is_numeric(data_type: pa.DataType) -> bool:
    return bool(
        pa.types.is_integer(data_type)
        or pa.types.is_floating(data_type)
        or pa.types.is_decimal(data_type)
    )


def numeric_columns(schema: pa.Schema, limit: int = MAX_CHARTS) -> list[int]:
    """The indices of the first ``limit`` numeric columns of ``schema``."""
    return [i for i, field in enumerate(schema) if is_numeric(field.type)][:limit]


class Series:
    """One column's values: a downsampled series plus exact latest, min and max."""

    def __init__(self, capacity: int = SERIES_CAPACITY) -> None:
        if capacity < 2:
            raise ValueError("a series needs room for at least two points")
        self.capacity = capacity
        self.points: list[float] = []
        self.stride = 1  # rows per point
        self._pending_sum = 0.0  # the bucket being filled
        self._pending_count = 0
        self.count = 0
        self.latest: float | None = None
        self.minimum: float | None = None
        self.maximum: float | None = None

    def add(self, column: pa.Array | pa.ChunkedArray) -> None:
        """Add a batch's column; nulls, NaN and infinities are skipped."""
        values = finite_values(column)
        if len(values) == 0:
            return
        self.count += len(values)
        self.latest = values[-1].as_py()
        low_high = pc.min_max(values)
        low, high = low_high["min"].as_py(), low_high["max"].as_py()
        self.minimum = low if self.minimum is None else min(self.minimum, low)
        self.maximum = high if self.maximum is None else max(self.maximum, high)
        while len(self.points) + (self._pending_count + len(values)) // self.stride > (
            self.capacity
        ):
            self._compact()
        self._append(values)

    def _append(self, values: pa.Array) -> None:
        fill = min(self.stride - self._pending_count, len(values))
        self._pending_sum += _sum(values.slice(0, fill))
        self._pending_count += fill
        if self._pending_count == self.stride:
            self.points.append(self._pending_sum / self.stride)
            self._pending_sum, self._pending_count = 0.0, 0
        rest = values.slice(fill)
        if len(rest) == 0:
            return
        whole = len(rest) // self.stride
        if 0 < whole <= FEW_BUCKETS:  # the usual case once the stride has grown
            for start in range(0, whole * self.stride, self.stride):
                self.points.append(_sum(rest.slice(start, self.stride)) / self.stride)
        elif whole:
            # Bucket sums as differences of the running sum at each bucket's end.
            ends = pa.array(range(self.stride - 1, whole * self.stride, self.stride))
            totals = pc.take(pc.cumulative_sum(rest.slice(0, whole * self.stride)), ends)
            previous = 0.0
            for total in totals.to_pylist():
                self.points.append((total - previous) / self.stride)
                previous = total
        tail = rest.slice(whole * self.stride)
        self._pending_sum, self._pending_count = _sum(tail), len(tail)

    def _compact(self) -> None:
        """Merge neighbouring points; the stride doubles."""
        points = self.points
        merged = [(points[i] + points[i + 1]) / 2 for i in range(0, len(points) - 1, 2)]
        if len(points) % 2:  # the odd last point joins the bucket being filled
            self._pending_sum += points[-1] * self.stride
            self._pending_count += self.stride
        self.points = merged
        self.stride *= 2

    def values(self) -> tuple[float, ...]:
        """The points, plus the bucket being filled so the newest rows show up at once."""
        if self._pending_count:
            return (*self.points, self._pending_sum / self._pending_count)
        return tuple(self.points)


def finite_values(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    """A column as float64 without nulls, NaN and infinities."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    values = pc.cast(column, pa.float64())
    if column.null_count or not pa.types.is_integer(column.type):
        values = values.filter(pc.is_finite(values))  # null -> dropped
    return values


class RollingSeries:
    """A followed column: its newest ``window`` values, and their min and max.

    Batches are kept as slices (no copy) until they fall out of the window; the values are
    turned into Python floats only when the screen asks, at most a few times a second.
    """

    def __init__(self, window: int = ROLLING_WINDOW) -> None:
        if window < 2:
            raise ValueError("a window needs room for at least two values")
        self.window = window
        self._chunks: deque[pa.Array] = deque()
        self._held = 0  # values in _chunks, at most one chunk more than the window
        self._values: tuple[float, ...] | None = ()
        self.count = 0
        self.latest: float | None = None

    def add(self, column: pa.Array | pa.ChunkedArray) -> None:
        values = finite_values(column)
        if len(values) == 0:
            return
        self.count += len(values)
        self.latest = values[-1].as_py()
        values = values.slice(max(0, len(values) - self.window))
        self._chunks.append(values)
        self._held += len(values)
        while self._held - len(self._chunks[0]) >= self.window:
            self._held -= len(self._chunks.popleft())
        self._values = None

    def values(self) -> tuple[float, ...]:
        if self._values is None:
            window = pa.concat_arrays(list(self._chunks))
            self._values = tuple(window.slice(max(0, len(window) - self.window)).to_pylist())
        return self._values

    @property
    def minimum(self) -> float | None:
        return min(self.values(), default=None)

    @property
    def maximum(self) -> float | None:
        return max(self.values(), default=None)


def _sum(values: pa.Array) -> float:
    if len(values) == 0:
        return 0.0
    return pc.sum(values).as_py() or 0.0


@dataclass(frozen=True)
class ColumnSummary:
    name: str
    points: tuple[float, ...]
    latest: float | None
    minimum: float | None
    maximum: float | None
    integer: bool = False  # an integer column: its values print without decimals


@dataclass(frozen=True)
class StreamSnapshot:
    """What the screen shows of a stream at one moment; immutable, safe to hand across threads."""

    rows: int
    batches: int
    bytes: int
    charts: tuple[ColumnSummary, ...]
    column_names: tuple[str, ...]
    latest_rows: tuple[tuple[object, ...], ...]
    skipped: int = 0
    """Rows the gateway skipped because the follower fell behind (``on_lag: skip``)."""


class StreamAccumulator:
    """Batches go in from a worker thread; snapshots come out on the UI thread.

    ``add`` returns True when the UI should be told (the first change since the last
    ``snapshot``), so at most one notification is in flight however fast batches arrive.
    With ``rolling``, the charts show the newest ``rolling`` values (a followed stream).
    """

    def __init__(
        self, schema: pa.Schema, *, capacity: int = SERIES_CAPACITY, rolling: int | None = None
    ) -> None:
        self.schema = schema
        self.rolling = rolling
        self._lock = threading.Lock()
        self._series: dict[int, Series | RollingSeries] = {
            index: RollingSeries(rolling) if rolling else Series(capacity)
            for index in numeric_columns(schema)
        }
        self._tail = pa.Table.from_batches([empty_batch(schema)])  # unions lack empty_table
        self._notified = False
        self.rows = 0
        self.batches = 0
        self.bytes = 0
        self.skipped = 0

    @property
    def chart_columns(self) -> list[str]:
        """The columns that get a sparkline."""
        return [self.schema.field(index).name for index in self._series]

    def add(self, batch: pa.RecordBatch, skipped: int = 0) -> bool:
        """Count ``batch`` (and ``skipped`` rows missed before it); True: tell the UI."""
        with self._lock:
            self.skipped += skipped
            self.rows += batch.num_rows
            self.batches += 1
            self.bytes += batch_bytes(batch)
            for index, series in self._series.items():
                series.add(batch.column(index))
            if batch.num_rows:
                recent = batch.slice(max(0, batch.num_rows - LATEST_ROWS))
                tail = pa.concat_tables([self._tail, pa.Table.from_batches([recent])])
                self._tail = tail.slice(max(0, tail.num_rows - LATEST_ROWS))
            tell, self._notified = not self._notified, True
            return tell

    def snapshot(self) -> StreamSnapshot:
        with self._lock:
            self._notified = False
            columns = [_values(column) for column in self._tail.columns]
            return StreamSnapshot(
                rows=self.rows,
                batches=self.batches,
                bytes=self.bytes,
                charts=tuple(
                    ColumnSummary(
                        self.schema.field(i).name,
                        s.values(),
                        s.latest,
                        s.minimum,
                        s.maximum,
                        integer=pa.types.is_integer(self.schema.field(i).type),
                    )
                    for i, s in self._series.items()
                ),
                column_names=tuple(self.schema.names),
                latest_rows=tuple(zip(*columns, strict=True)) if columns else (),
                skipped=self.skipped,
            )


def _values(column: pa.ChunkedArray) -> list[object]:
    """Python values for the latest-rows table; a nanosecond time, timestamp or duration
    that Python's datetime cannot hold, as its exact ISO text instead."""
    try:
        values: list[object] = column.to_pylist()
        return values
    except ValueError:
        return [_value(chunk, i) for chunk in column.chunks for i in range(len(chunk))]


def _value(chunk: pa.Array, index: int) -> object:
    try:
        return chunk[index].as_py()
    except ValueError:
        from streamkit.formats import text

        return text(chunk.slice(index, 1))[0].as_py()
