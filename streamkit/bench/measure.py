"""Timing one read of a dataset over each path: Flight, WebSocket, HTTP; and many at once.

Every fetch decodes what it receives into record batches (as a real client would) and
reports rows, Arrow bytes, time to the first batch and time to the last byte.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import ssl
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import pyarrow as pa
import pyarrow.flight as flight

from streamkit.batches import batch_bytes


class FetchError(Exception):
    """A fetch failed; the message is one clean line."""


@dataclass(frozen=True)
class Credentials:
    """A bearer token and a CA file for TLS, as ``--token`` and ``--tls-ca`` give them."""

    token: str | None = None
    tls_ca: str | None = None

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.tls_ca)


NO_CREDENTIALS = Credentials()


@dataclass(frozen=True)
class Sample:
    seconds: float  # request sent -> last byte received
    first_batch_s: float  # request sent -> first batch decoded
    rows: int
    bytes: int  # Arrow bytes of the decoded batches
    wire_bytes: int | None = None  # IPC bytes received (WebSocket, HTTP)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["mb_s"] = round(self.bytes / 1e6 / self.seconds, 2) if self.seconds > 0 else None
        if self.wire_bytes is None:
            del out["wire_bytes"]
        return out


def fetch_flight(
    url: str, path: list[str], limit: int | None = None, creds: Credentials = NO_CREDENTIALS
) -> Sample:
    """GetFlightInfo + DoGet, exactly as the reference design's client code does it."""
    try:
        tls = {"tls_root_certs": Path(creds.tls_ca).read_bytes()} if creds.tls_ca else {}
    except OSError as exc:
        raise FetchError(f"cannot read {creds.tls_ca}: {exc.strerror}") from None
    client = flight.connect(url, **tls)
    options = flight.FlightCallOptions(
        headers=[(k.lower().encode(), v.encode()) for k, v in creds.headers().items()]
    )
    try:
        started = time.perf_counter()
        if limit is None:
            descriptor = flight.FlightDescriptor.for_path(*path)
        else:
            command = {"tenant": path[0], "dataset": path[1], "limit": limit}
            descriptor = flight.FlightDescriptor.for_command(json.dumps(command))
        info = client.get_flight_info(descriptor, options)
        reader = client.do_get(info.endpoints[0].ticket, options)
        first = None
        rows = nbytes = 0
        while True:
            try:
                batch = reader.read_chunk().data
            except StopIteration:
                break
            if first is None:
                first = time.perf_counter() - started
            rows += batch.num_rows
            nbytes += batch_bytes(batch)
        seconds = time.perf_counter() - started
    except flight.FlightError as exc:
        raise FetchError(_first_line(exc)) from None
    finally:
        client.close()
    return Sample(seconds, first if first is not None else seconds, rows, nbytes)


class _IpcCounter:
    """Decodes IPC messages piece by piece (each piece holds whole messages)."""

    def __init__(self) -> None:
        self.schema: pa.Schema | None = None
        self.rows = self.bytes = self.wire = 0
        self.ended = False

    def feed(self, piece: bytes) -> int:
        """Rows decoded from this piece."""
        self.wire += len(piece)
        source = pa.BufferReader(piece)
        rows = 0
        while source.tell() < len(piece):
            try:
                message = pa.ipc.read_message(source)
            except EOFError:  # the end-of-stream marker
                self.ended = True
                break
            if message.type == "schema":
                self.schema = pa.ipc.read_schema(message)
            elif message.type == "record batch":
                batch = pa.ipc.read_record_batch(message, self.schema)
                rows += batch.num_rows
                self.bytes += batch_bytes(batch)
        self.rows += rows
        return rows


def fetch_websocket(
    http_url: str, tenant: str, dataset: str, creds: Credentials = NO_CREDENTIALS
) -> Sample:
    return asyncio.run(_fetch_websocket(http_url, tenant, dataset, creds))


async def _fetch_websocket(http_url: str, tenant: str, dataset: str, creds: Credentials) -> Sample:
    from websockets.asyncio.client import connect
    from websockets.exceptions import WebSocketException

    ws_url = "ws" + http_url.removeprefix("http").rstrip("/") + "/ws"
    counter = _IpcCounter()
    first = None
    try:
        started = time.perf_counter()
        tls: dict[str, Any] = {"ssl": creds.ssl_context()} if ws_url.startswith("wss:") else {}
        async with connect(
            ws_url,
            compression=None,
            max_size=None,
            additional_headers=creds.headers(),
            **tls,
        ) as ws:
            await ws.send(
                json.dumps({"action": "query", "tenant": tenant, "dataset": dataset, "id": "bench"})
            )
            async for message in ws:
                if isinstance(message, bytes):
                    if counter.feed(message) and first is None:
                        first = time.perf_counter() - started
                    continue
                reply = json.loads(message)
                if reply.get("type") == "end":
                    break
                if reply.get("type") == "error":
                    raise FetchError(f"{reply.get('code')}: {reply.get('message')}")
            else:
                raise FetchError("the WebSocket closed before the end of the stream")
        seconds = time.perf_counter() - started
    except (OSError, WebSocketException) as exc:
        raise FetchError(
            f"WebSocket {ws_url}: {type(exc).__name__}: {exc} (after {counter.rows:,} rows,"
            f" {counter.wire:,} bytes)"
        ) from None
    if not counter.ended:
        raise FetchError("the WebSocket stream ended without its end-of-stream marker")
    return Sample(seconds, first or seconds, counter.rows, counter.bytes, counter.wire)


class _CountingReader:
    """A file object over an HTTP response that counts the bytes read."""

    def __init__(self, response: http.client.HTTPResponse) -> None:
        self.response = response
        self.count = 0
        self.closed = False

    def read(self, size: int = -1) -> bytes:
        data = self.response.read(size if size >= 0 else None)
        self.count += len(data)
        return data

    def readable(self) -> bool:
        return True


def fetch_http(
    http_url: str, tenant: str, dataset: str, creds: Credentials = NO_CREDENTIALS
) -> Sample:
    """``GET /api/stream/TENANT/DATASET``, decoded as it arrives."""
    parts = urlsplit(http_url)
    if parts.hostname is None:
        raise FetchError(f"HTTP {http_url}: no host in the URL")
    if parts.scheme == "https":
        connection: http.client.HTTPConnection = http.client.HTTPSConnection(
            parts.hostname, parts.port, timeout=120, context=creds.ssl_context()
        )
    else:
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)
    try:
        started = time.perf_counter()
        path = f"/api/stream/{quote(tenant)}/{quote(dataset)}"
        connection.request("GET", path, headers=creds.headers())
        response = connection.getresponse()
        if response.status != 200:
            body = response.read(4096).decode("utf-8", "replace")
            raise FetchError(f"HTTP {response.status}: {body}")
        source = _CountingReader(response)
        reader = pa.ipc.open_stream(pa.PythonFile(source, mode="r"))
        first = None
        rows = nbytes = 0
        for batch in reader:
            if first is None:
                first = time.perf_counter() - started
            rows += batch.num_rows
            nbytes += batch_bytes(batch)
        seconds = time.perf_counter() - started
    except (OSError, http.client.HTTPException, pa.ArrowInvalid) as exc:
        raise FetchError(f"HTTP {http_url}: {_first_line(exc)}") from None
    finally:
        connection.close()
    return Sample(seconds, first or seconds, rows, nbytes, source.count)


@dataclass
class PathResult:
    """One path measured ``runs`` times: the samples and their medians, or the error."""

    samples: list[Sample]
    error: str | None = None

    def to_json(self, dataset_bytes: int) -> dict[str, Any]:
        out: dict[str, Any] = {"error": self.error, "runs": [s.to_json() for s in self.samples]}
        if self.samples:
            seconds = statistics.median(s.seconds for s in self.samples)
            out.update(
                median_seconds=round(seconds, 6),
                median_first_batch_s=round(
                    statistics.median(s.first_batch_s for s in self.samples), 6
                ),
                median_mb_s=round(dataset_bytes / 1e6 / seconds, 2),
                rows=self.samples[-1].rows,
                bytes=self.samples[-1].bytes,
            )
            if self.samples[-1].wire_bytes is not None:
                out["wire_bytes"] = self.samples[-1].wire_bytes
        return out


def repeat(fetch: Callable[[], Sample], runs: int, after_each: Callable[[], None]) -> PathResult:
    samples = []
    for _ in range(runs):
        try:
            samples.append(fetch())
        except FetchError as exc:
            return PathResult(samples, str(exc))
        after_each()
    return PathResult(samples)


@dataclass
class Concurrency:
    clients: int
    total_seconds: float
    latencies: list[float]
    errors: list[str]
    rows: int
    bytes: int

    def to_json(self) -> dict[str, Any]:
        ordered = sorted(self.latencies)
        return {
            "clients": self.clients,
            "total_seconds": round(self.total_seconds, 6),
            "completed": len(ordered),
            "errors": len(self.errors),
            "error_messages": sorted(set(self.errors))[:5],
            "latency_p50_s": round(_percentile(ordered, 50), 6) if ordered else None,
            "latency_p99_s": round(_percentile(ordered, 99), 6) if ordered else None,
            "latency_max_s": round(ordered[-1], 6) if ordered else None,
            "rows": self.rows,
            "bytes": self.bytes,
            "aggregate_mb_s": round(self.bytes / 1e6 / self.total_seconds, 2)
            if self.total_seconds > 0
            else None,
        }


def concurrent_flight(
    url: str,
    path: list[str],
    clients: int,
    limit: int | None,
    on_done: Callable[[], None],
    creds: Credentials = NO_CREDENTIALS,
) -> Concurrency:
    """``clients`` threads, released together, each reading once through the gateway."""
    barrier = threading.Barrier(clients + 1)
    lock = threading.Lock()
    samples: list[Sample] = []
    failures: list[str] = []

    def client() -> None:
        try:
            barrier.wait(60)
            sample = fetch_flight(url, path, limit, creds)
        except (FetchError, threading.BrokenBarrierError) as exc:
            with lock:
                failures.append(str(exc) or type(exc).__name__)
        else:
            with lock:
                samples.append(sample)
        finally:
            on_done()

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    started = time.perf_counter()  # before the release, so no latency exceeds the total
    barrier.wait(60)
    for thread in threads:
        thread.join()
    total = time.perf_counter() - started
    return Concurrency(
        clients,
        total,
        [s.seconds for s in samples],
        failures,
        sum(s.rows for s in samples),
        sum(s.bytes for s in samples),
    )


def _percentile(ordered: list[float], pct: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    rank = max(1, -(-len(ordered) * pct // 100))
    return ordered[int(rank) - 1]


def _first_line(exc: BaseException) -> str:
    text = str(exc).split(". gRPC client debug context:")[0]
    return text.splitlines()[0] if text else type(exc).__name__


FILTER = "value < 0.01"  # the bench dataset's ``value`` is uniform in [0, 1): keeps 1 %


@dataclass
class FilterResult:
    """The same 1 % filter run at the connector (``where``) and on the client."""

    pushed_s: list[float]
    client_s: list[float]
    rows: int

    def to_json(self) -> dict[str, Any]:
        pushed, client = statistics.median(self.pushed_s), statistics.median(self.client_s)
        return {
            "filter": FILTER,
            "rows_kept": self.rows,
            "pushed_median_s": round(pushed, 6),
            "client_median_s": round(client, 6),
            "client_over_pushed": round(client / pushed, 2) if pushed > 0 else None,
        }


def filter_pushdown(url: str, path: list[str], runs: int) -> FilterResult:
    """``where`` at the connector vs reading everything and filtering with pyarrow."""
    import pyarrow.compute as pc

    tenant, dataset = path
    pushed: list[float] = []
    on_client: list[float] = []
    rows = 0
    with flight.connect(url) as client:
        for _ in range(runs):
            started = time.perf_counter()
            command = {"tenant": tenant, "dataset": dataset, "where": FILTER}
            info = client.get_flight_info(flight.FlightDescriptor.for_command(json.dumps(command)))
            rows = client.do_get(info.endpoints[0].ticket).read_all().num_rows
            pushed.append(time.perf_counter() - started)
            started = time.perf_counter()
            info = client.get_flight_info(flight.FlightDescriptor.for_path(tenant, dataset))
            kept = 0
            for chunk in client.do_get(info.endpoints[0].ticket):
                kept += chunk.data.filter(pc.less(chunk.data["value"], 0.01)).num_rows
            on_client.append(time.perf_counter() - started)
            if kept != rows:
                raise FetchError(f"the pushed filter kept {rows} rows, the client's {kept}")
    return FilterResult(pushed, on_client, rows)
