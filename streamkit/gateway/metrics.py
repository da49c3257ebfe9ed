"""The gateway's Prometheus metrics (DESIGN.md "Metrics and operations"), one registry per
gateway so that several gateways in one process keep their own counts.

The data path pays for a counter increment per batch, through children bound once per
stream (no label lookup per batch); live followers, lag and connector state are read when
scraped, not kept up to date.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Container, Iterable, Iterator
from typing import TypeGuard

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

UNKNOWN_TENANT = "(unknown)"  # a request naming no configured tenant: no label per guess
STREAM_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600, float("inf"))
FIRST_BATCH_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, float("inf"))


class Metrics:
    def __init__(self, tenants: Callable[[], Container[str]]) -> None:
        self._tenants = tenants
        self.registry = CollectorRegistry(auto_describe=True)
        stream = ["tenant", "surface"]
        self.requests = self._counter(
            "requests", "Requests finished, by outcome", [*stream, "outcome"]
        )
        self.rows = self._counter("rows", "Rows sent to clients", stream)
        self.bytes = self._counter("bytes", "Arrow bytes sent to clients", stream)
        self.open_streams = Gauge(
            "streamkit_open_streams", "Streams open now", stream, registry=self.registry
        )
        self.stream_seconds = Histogram(
            "streamkit_stream_seconds",
            "How long streams ran",
            stream,
            buckets=STREAM_BUCKETS,
            registry=self.registry,
        )
        self.first_batch_seconds = Histogram(
            "streamkit_first_batch_seconds",
            "Time from a stream's request to its first batch",
            stream,
            buckets=FIRST_BATCH_BUCKETS,
            registry=self.registry,
        )
        self.rate_limited = self._counter(
            "rate_limited", "Requests refused by a tenant's rate limit", ["tenant"]
        )
        self.reconnects = self._counter(
            "connector_reconnects", "Times a tenant's connector came back after being down",
            ["tenant"],
        )
        self.reloads = self._counter("config_reloads", "Configuration reloads", ["outcome"])
        self.sampled: list[Collector] = []

    def _counter(self, name: str, doc: str, labels: list[str]) -> Counter:
        return Counter(f"streamkit_{name}", doc, labels, registry=self.registry)

    def knows(self, tenant: str | None) -> TypeGuard[str]:
        return tenant is not None and tenant in self._tenants()

    def tenant_label(self, tenant: str | None) -> str:
        return tenant if self.knows(tenant) else UNKNOWN_TENANT

    def meter(self, tenant: str | None, surface: str) -> StreamMeter:
        return StreamMeter(self, self.tenant_label(tenant), surface)

    def request(self, tenant: str | None, surface: str, outcome: str) -> None:
        """A request that streamed nothing: a FlightInfo, a publish, a refused stream."""
        label = self.tenant_label(tenant)
        self.requests.labels(label, surface, outcome).inc()
        if outcome == "rate_limited":
            self.rate_limited.labels(label).inc()

    def forget(self, tenant: str) -> None:
        """Drop a removed tenant's series (its counts would otherwise stay forever)."""
        for metric in (
            self.requests, self.rows, self.bytes, self.open_streams, self.stream_seconds,
            self.first_batch_seconds, self.rate_limited, self.reconnects,
        ):
            metric.remove_by_labels({"tenant": tenant})

    def sample(self, collector: Collector) -> None:
        """Register a collector whose values are read at scrape time."""
        self.registry.register(collector)
        self.sampled.append(collector)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class StreamMeter:
    """One stream's counters, bound to its labels when it opens."""

    def __init__(self, metrics: Metrics, tenant: str, surface: str) -> None:
        self.metrics, self.tenant, self.surface = metrics, tenant, surface
        self._rows = metrics.rows.labels(tenant, surface)
        self._bytes = metrics.bytes.labels(tenant, surface)
        self._opened = time.perf_counter()
        self._first = True
        metrics.open_streams.labels(tenant, surface).inc()

    def add(self, rows: int, nbytes: int) -> None:
        self._rows.inc(rows)
        self._bytes.inc(nbytes)
        if self._first:
            self._first = False
            seconds = time.perf_counter() - self._opened
            self.metrics.first_batch_seconds.labels(self.tenant, self.surface).observe(seconds)

    def finish(self, outcome: str) -> None:
        m, labels = self.metrics, (self.tenant, self.surface)
        m.open_streams.labels(*labels).dec()
        m.stream_seconds.labels(*labels).observe(time.perf_counter() - self._opened)
        m.requests.labels(*labels, outcome).inc()
        if outcome == "rate_limited":
            m.rate_limited.labels(self.tenant).inc()


class ConnectorStates(Collector):
    """``streamkit_connector_up``: each tenant's connector as last seen by a probe or a
    call; a connector seen down and then up again counts a reconnect."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self.up: dict[str, bool] = {}
        self._lock = threading.Lock()

    def seen(self, tenant: str, up: bool) -> None:
        if not self.metrics.knows(tenant):  # a call that outlived its tenant's removal
            return
        with self._lock:
            before = self.up.get(tenant)
            self.up[tenant] = up
        if up and before is False:
            self.metrics.reconnects.labels(tenant).inc()

    def forget(self, tenant: str) -> None:
        with self._lock:
            self.up.pop(tenant, None)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "streamkit_connector_up", "1 if the tenant's connector answers", labels=["tenant"]
        )
        with self._lock:
            for tenant, up in sorted(self.up.items()):
                family.add_metric([tenant], 1.0 if up else 0.0)
        yield family


class LiveFollowers(Collector):
    """``streamkit_live_followers`` and ``streamkit_live_lag_batches`` (the most batches any
    follower of the tenant has queued), read from ``followers()`` when scraped."""

    def __init__(self, followers: Callable[[], Iterable[tuple[str, int]]]) -> None:
        self.followers = followers  # (tenant, batches queued) per follower

    def collect(self) -> Iterator[GaugeMetricFamily]:
        count: dict[str, int] = {}
        lag: dict[str, int] = {}
        for tenant, queued in self.followers():
            count[tenant] = count.get(tenant, 0) + 1
            lag[tenant] = max(lag.get(tenant, 0), queued)
        followers = GaugeMetricFamily(
            "streamkit_live_followers", "Clients following a live dataset", labels=["tenant"]
        )
        lagging = GaugeMetricFamily(
            "streamkit_live_lag_batches",
            "Most batches queued for any follower of the tenant",
            labels=["tenant"],
        )
        for tenant in sorted(count):
            followers.add_metric([tenant], count[tenant])
            lagging.add_metric([tenant], lag[tenant])
        yield followers
        yield lagging
