"""``bench --live``: latency from a producer's DoPut to the arrival at followers.

For each cell (a rate in batches per second and a number of followers), followers open
``follow`` streams from the end of a fresh live dataset through the gateway; the producer
sends warm-up batches until every follower has one, then one-row batches carrying their
send time (``time.time_ns``, the same clock in every process of this machine) at the given
rate for the given seconds. Each follower records ``now - sent`` for each batch it receives.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import statistics
import threading
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import pyarrow as pa
import pyarrow.flight as flight

from streamkit import errors

SCHEMA = pa.schema([("seq", pa.int64()), ("sent_ns", pa.int64())])
WARMUP_INTERVAL_S = 0.02
READY_TIMEOUT_S = 20.0
DRAIN_TIMEOUT_S = 3.0
AIM = {"rate_per_s": 1000, "followers": 50, "p99_ms": 20.0}


@dataclass
class CellResult:
    rate: int
    followers: int
    seconds: float
    sent: int = 0
    send_seconds: float = 0.0
    received: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        lat = sorted(self.latencies_ms)
        expected = self.sent * self.followers
        return {
            "rate_per_s": self.rate,
            "followers": self.followers,
            "seconds": self.seconds,
            "sent": self.sent,
            "sent_per_s": round(self.sent / self.send_seconds, 1) if self.send_seconds else None,
            "expected": expected,
            "received": self.received,
            "lost": expected - self.received,  # not received within DRAIN_TIMEOUT_S of the end
            "p50_ms": _round(_percentile(lat, 50)),
            "p99_ms": _round(_percentile(lat, 99)),
            "max_ms": _round(lat[-1] if lat else None),
            "mean_ms": _round(statistics.fmean(lat) if lat else None),
            "errors": self.errors[:5],
            "error_count": len(self.errors),
        }


def _percentile(values: list[float], pct: float) -> float | None:
    """Nearest-rank percentile of an ascending list: the smallest value with at least
    ``pct`` % of the values at or below it (p99 of 100 samples is the 99th, not the max)."""
    if not values:
        return None
    rank = math.ceil(len(values) * pct / 100)
    return values[min(len(values), max(1, rank)) - 1]


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


class _Follower:
    """One follow stream through the gateway, read in its own thread."""

    def __init__(
        self, url: str, tenant: str, dataset: str, headers: list[tuple[bytes, bytes]]
    ) -> None:
        self.client = flight.connect(url)
        ticket = {"tenant": tenant, "dataset": dataset, "follow": True, "from": "end"}
        self.reader = self.client.do_get(
            flight.Ticket(json.dumps(ticket).encode()), flight.FlightCallOptions(headers=headers)
        )
        self.ready = threading.Event()
        self.latencies_ns: list[int] = []
        self.error: str | None = None
        self.stopping = False
        self.thread = threading.Thread(target=self._run, name="live-follower", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            while True:
                try:
                    chunk = self.reader.read_chunk()
                except StopIteration:
                    return
                now = time.time_ns()
                data = chunk.data
                if data is None or not data.num_rows:
                    continue
                self.ready.set()
                # Whole columns at once: per-row scalars in 50 followers would be what lags.
                seqs, sent = data.column(0).to_pylist(), data.column(1).to_pylist()
                self.latencies_ns.extend(now - s for q, s in zip(seqs, sent, strict=True) if q >= 0)
        except flight.FlightError as exc:
            if not self.stopping:
                self.error = errors.clean_message(exc)
        finally:
            self.ready.set()

    def stop(self) -> None:
        self.stopping = True
        self.reader.cancel()
        self.thread.join(5)
        self.client.close()


def run_cell(
    url: str,
    tenant: str,
    dataset: str,
    rate: int,
    followers: int,
    seconds: float,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> CellResult:
    """Measure one cell; the dataset should be new (followers start from its end).

    The followers run in a process of their own, as clients do: sharing the producer's
    interpreter (and its GIL) with 50 reading threads delays the producer's sends, which
    would be measured as the gateway's latency."""
    headers = headers or []
    result = CellResult(rate, followers, seconds)
    options = flight.FlightCallOptions(headers=headers)
    producer = flight.connect(url)
    writer = None
    parent, child = multiprocessing.get_context("spawn").Pipe()
    process = None
    try:
        writer, _ = producer.do_put(
            flight.FlightDescriptor.for_path(tenant, dataset), SCHEMA, options
        )
        # Create the dataset, so followers can open it.
        writer.write_batch(_batch(-1))
        _wait_until_listed(producer, tenant, dataset, options)
        process = multiprocessing.get_context("spawn").Process(
            target=_followers_process,
            args=(url, tenant, dataset, followers, headers, child),
            daemon=True,
        )
        process.start()
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not parent.poll(WARMUP_INTERVAL_S):
            if time.monotonic() > deadline or not process.is_alive():
                raise RuntimeError("followers did not receive the warm-up batches in time")
            writer.write_batch(_batch(-1))
        ready = parent.recv()
        if ready != "ready":
            raise RuntimeError(f"followers failed to start: {ready}")
        count = max(1, round(rate * seconds))
        started = time.perf_counter()
        for seq in range(count):
            due = started + seq / rate
            pause = due - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            writer.write_batch(_batch(seq))
        result.send_seconds = time.perf_counter() - started
        result.sent = count
        parent.send(count)
        if not parent.poll(DRAIN_TIMEOUT_S + 30):
            raise RuntimeError("the followers' process did not report")
        latencies, follower_errors = parent.recv()
        for measured in latencies:
            result.received += len(measured)
            result.latencies_ms.extend(ns / 1e6 for ns in measured)
        result.errors.extend(follower_errors)
    except flight.FlightError as exc:
        result.errors.append(f"producer: {errors.clean_message(exc)}")
    finally:
        if process is not None:
            process.join(10)
            if process.is_alive():
                process.kill()
                process.join(5)
        parent.close()
        child.close()
        if writer is not None:
            try:
                writer.done_writing()
                writer.close()
            except flight.FlightError as exc:
                result.errors.append(f"producer: {errors.clean_message(exc)}")
        producer.close()
    return result


def _followers_process(
    url: str,
    tenant: str,
    dataset: str,
    count: int,
    headers: list[tuple[bytes, bytes]],
    conn: Connection,
) -> None:
    """Open ``count`` followers, say "ready" once each has a warm-up batch, wait for the
    number of batches sent, then send back every follower's latencies and the errors."""
    try:
        followers = _open_followers(url, tenant, dataset, count, headers)
    except Exception as exc:
        conn.send(f"{type(exc).__name__}: {exc}")
        return
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not all(f.ready.is_set() for f in followers) and time.monotonic() < deadline:
            time.sleep(0.005)
        conn.send("ready")
        sent = conn.recv()
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        while time.monotonic() < deadline and any(
            len(f.latencies_ns) < sent and f.error is None for f in followers
        ):
            time.sleep(0.01)
    finally:
        for follower in followers:
            follower.stop()
    conn.send(([f.latencies_ns for f in followers], [f.error for f in followers if f.error]))


def _wait_until_listed(
    client: flight.FlightClient, tenant: str, dataset: str, options: flight.FlightCallOptions
) -> None:
    """The first put has reached the connector once the dataset can be resolved."""
    descriptor = flight.FlightDescriptor.for_path(tenant, dataset)
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        try:
            client.get_flight_info(descriptor, options)
            return
        except flight.FlightServerError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _open_followers(
    url: str, tenant: str, dataset: str, count: int, headers: list[tuple[bytes, bytes]]
) -> list[_Follower]:
    opened: list[_Follower] = []
    try:
        for _ in range(count):
            opened.append(_Follower(url, tenant, dataset, headers))
    except BaseException:
        for follower in opened:
            follower.stop()
        raise
    return opened


def _batch(seq: int) -> pa.RecordBatch:
    return pa.record_batch(
        [pa.array([seq], pa.int64()), pa.array([time.time_ns()], pa.int64())], schema=SCHEMA
    )


def aim_met(cells: list[dict[str, Any]]) -> bool | None:
    """Whether the issue's aim (p99 < 20 ms at 1,000/s with 50 followers) was met."""
    for cell in cells:
        if cell["rate_per_s"] == AIM["rate_per_s"] and cell["followers"] == AIM["followers"]:
            if cell["p99_ms"] is None:
                return False
            return cell["p99_ms"] < AIM["p99_ms"] and cell["lost"] == 0 and not cell["errors"]
    return None
