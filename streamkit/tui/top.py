"""The model behind ``streamkit top``: the gateway's metrics, scraped every interval, as
per-tenant rates and a short history for sparklines (headless: no Textual here).

The gateway exports Prometheus text (``GET /metrics``, the Flight action ``metrics``). Rates
are counter deltas between two scrapes over the time between them. A counter that went down,
or whose ``_created`` time changed, was reset (the gateway restarted): it counted from zero
since, so its delta is its value — Prometheus' ``rate()`` does the same — and no rate is ever
negative. A series that first appears after the first scrape also counted from zero.

What counts as what, from ``streamkit_requests_total``'s ``outcome``:

- a *refusal*: ``rate_limited``, ``unauthenticated`` or ``unauthorized`` — the gateway said
  no on purpose (``streamkit_rate_limited_total`` counts the same rate-limit refusals; the
  larger of the two is taken, so a refusal is counted once);
- not an error: ``ok``, and ``cancelled`` — a client that went away (a follow stopped, a tab
  closed) is how streams normally end, not a failure;
- an *error*: every other outcome (``not_found``, ``invalid``, ``lagging``, ``idle``,
  ``unavailable``, ``internal``…).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

HISTORY = 240
"""Intervals kept per tenant for its sparklines: two minutes at the default 0.5 s."""
RATE_WINDOW = 2.0
"""MB/s and rows/s are averaged over this many recent seconds (at least one interval)."""
EVENT_WINDOW = 30.0
"""Errors and refusals are rare: their rates are averaged over this many seconds."""
UNKNOWN_TENANT = "(unknown)"
"""The tenant label of requests that named no configured tenant."""

OK, CANCELLED = "ok", "cancelled"
REFUSALS = frozenset({"rate_limited", "unauthenticated", "unauthorized"})

REQUESTS = "streamkit_requests_total"
ROWS = "streamkit_rows_total"
BYTES = "streamkit_bytes_total"
RATE_LIMITED = "streamkit_rate_limited_total"
RECONNECTS = "streamkit_connector_reconnects_total"
FIRST_BATCH_SUM = "streamkit_first_batch_seconds_sum"
FIRST_BATCH_COUNT = "streamkit_first_batch_seconds_count"
OPEN_STREAMS = "streamkit_open_streams"
CONNECTOR_UP = "streamkit_connector_up"
FOLLOWERS = "streamkit_live_followers"
LAG = "streamkit_live_lag_batches"

COUNTERS = frozenset(
    {REQUESTS, ROWS, BYTES, RATE_LIMITED, RECONNECTS, FIRST_BATCH_SUM, FIRST_BATCH_COUNT}
)
GAUGES = frozenset({OPEN_STREAMS, CONNECTOR_UP, FOLLOWERS, LAG})

Labels = tuple[tuple[str, str], ...]
Key = tuple[str, Labels]
"""A series: its sample name and its labels, sorted."""


@dataclass(frozen=True)
class Scrape:
    """The samples of one scrape that ``top`` reads; every other metric is ignored."""

    counters: dict[Key, float]
    gauges: dict[Key, float]
    created: dict[Key, float]  # (counter sample name, labels) -> its series' creation time

    @property
    def tenants(self) -> set[str]:
        return {
            labels["tenant"]
            for name, pairs in (*self.counters, *self.gauges)
            if "tenant" in (labels := dict(pairs))
        }


def parse(text: str) -> Scrape:
    """The ``streamkit_*`` samples ``top`` knows of Prometheus text; raises ValueError if the
    text is not Prometheus text."""
    counters: dict[Key, float] = {}
    gauges: dict[Key, float] = {}
    created: dict[Key, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if not math.isfinite(sample.value):  # no streamkit metric is; a rate of it is none
                continue
            key = (sample.name, tuple(sorted(sample.labels.items())))
            if sample.name in COUNTERS:
                counters[key] = sample.value
            elif sample.name in GAUGES:
                gauges[key] = sample.value
            elif sample.name.endswith("_created"):
                base = sample.name.removesuffix("_created")
                for suffix in ("_total", "_sum", "_count"):
                    if base + suffix in COUNTERS:
                        created[(base + suffix, key[1])] = sample.value
    return Scrape(counters, gauges, created)


def increases(previous: Scrape, current: Scrape) -> dict[Key, float]:
    """How much each counter of ``current`` grew since ``previous``; never negative."""
    out: dict[Key, float] = {}
    for key, value in current.counters.items():
        before = previous.counters.get(key)
        if (
            before is None
            or value < before
            or previous.created.get(key) != current.created.get(key)
        ):
            out[key] = value  # new, or reset: counted from zero since
        else:
            out[key] = value - before
    return out


@dataclass(frozen=True)
class Interval:
    """What one tenant did between two scrapes."""

    seconds: float
    bytes: float = 0.0
    rows: float = 0.0
    requests: float = 0.0
    errors: float = 0.0
    refusals: float = 0.0
    first_batch_seconds: float = 0.0  # summed over the streams whose first batch came
    first_batches: float = 0.0
    codes: Mapping[str, float] = field(default_factory=dict)  # outcome -> requests, not ok


def tenant_intervals(deltas: Mapping[Key, float], seconds: float) -> dict[str, Interval]:
    """Per tenant, the counter increases of one interval of ``seconds``."""
    sums: dict[str, dict[str, float]] = {}
    codes: dict[str, dict[str, float]] = {}
    rate_limited: dict[str, float] = {}
    for (name, pairs), delta in deltas.items():
        labels = dict(pairs)
        tenant = labels.get("tenant")
        if tenant is None:
            continue
        totals = sums.setdefault(tenant, {})
        if name == REQUESTS:
            outcome = labels.get("outcome", OK)
            totals["requests"] = totals.get("requests", 0.0) + delta
            if outcome != OK:
                tenant_codes = codes.setdefault(tenant, {})
                tenant_codes[outcome] = tenant_codes.get(outcome, 0.0) + delta
            kind = _kind(outcome)
            if kind:
                totals[kind] = totals.get(kind, 0.0) + delta
            if outcome == "rate_limited":
                rate_limited[tenant] = rate_limited.get(tenant, 0.0) + delta
        elif name == RATE_LIMITED:
            totals["rate_limited_total"] = totals.get("rate_limited_total", 0.0) + delta
        elif name in (BYTES, ROWS, FIRST_BATCH_SUM, FIRST_BATCH_COUNT):
            totals[name] = totals.get(name, 0.0) + delta
    out = {}
    for tenant, totals in sums.items():
        # Both counters count rate-limit refusals; count each refusal once.
        extra = max(0.0, totals.get("rate_limited_total", 0.0) - rate_limited.get(tenant, 0.0))
        out[tenant] = Interval(
            seconds=seconds,
            bytes=totals.get(BYTES, 0.0),
            rows=totals.get(ROWS, 0.0),
            requests=totals.get("requests", 0.0),
            errors=totals.get("errors", 0.0),
            refusals=totals.get("refusals", 0.0) + extra,
            first_batch_seconds=totals.get(FIRST_BATCH_SUM, 0.0),
            first_batches=totals.get(FIRST_BATCH_COUNT, 0.0),
            codes=codes.get(tenant, {}),
        )
    return out


def _kind(outcome: str) -> str | None:
    """``"refusals"``, ``"errors"``, or None for a request that went as it should."""
    if outcome in REFUSALS:
        return "refusals"
    return None if outcome in (OK, CANCELLED) else "errors"


@dataclass(frozen=True)
class TenantView:
    """One tenant as the screen shows it; rates are None until two scrapes have been made."""

    name: str
    connector_up: bool | None  # None: no connector (the ``(unknown)`` tenant)
    open_streams: int
    open_by_surface: tuple[tuple[str, int], ...]
    followers: int
    lag_batches: int
    reconnects: int
    mb_per_s: float | None
    rows_per_s: float | None
    requests_per_s: float | None
    errors_per_s: float | None
    refusals_per_s: float | None
    first_batch_seconds: float | None  # the mean over the rate window; None: no stream
    mb_history: tuple[float, ...]  # MB/s of each interval, oldest first
    rows_history: tuple[float, ...]
    outcomes: tuple[tuple[str, int], ...]  # requests not ok since top started, by outcome


@dataclass(frozen=True)
class TopSnapshot:
    """The gateway at one scrape: immutable, made in the polling thread, drawn by the UI."""

    tenants: tuple[TenantView, ...]
    wall_time: float  # time.time() of the scrape

    def total(self, attribute: str) -> float | None:
        """The sum over tenants of a rate (``"mb_per_s"``…); None before rates exist."""
        values = [getattr(t, attribute) for t in self.tenants]
        known = [v for v in values if v is not None]
        return sum(known) if known else None

    @property
    def open_streams(self) -> int:
        return sum(t.open_streams for t in self.tenants)


@dataclass
class _Tenant:
    intervals: deque[Interval]
    outcomes: dict[str, float] = field(default_factory=dict)


class TopModel:
    """Scrapes in, snapshots out; call from one thread (the poller)."""

    def __init__(
        self,
        *,
        history: int = HISTORY,
        rate_window: float = RATE_WINDOW,
        event_window: float = EVENT_WINDOW,
    ) -> None:
        self.history = history
        self.rate_window = rate_window
        self.event_window = event_window
        self._previous: Scrape | None = None
        self._previous_time = 0.0
        self._tenants: dict[str, _Tenant] = {}

    def update(self, text: str, now: float, wall_time: float) -> TopSnapshot:
        """Take one scrape's text, made at monotonic time ``now``."""
        scrape = parse(text)
        tenants = scrape.tenants
        if self._previous is not None:
            seconds = max(now - self._previous_time, 1e-6)
            intervals = tenant_intervals(increases(self._previous, scrape), seconds)
            for name in tenants:
                state = self._tenant(name)
                interval = intervals.get(name, Interval(seconds))
                state.intervals.append(interval)
                for code, requests in interval.codes.items():
                    state.outcomes[code] = state.outcomes.get(code, 0.0) + requests
        for gone in set(self._tenants) - tenants:  # removed from the gateway's config
            del self._tenants[gone]
        self._previous, self._previous_time = scrape, now
        views = (self._view(name, scrape) for name in sorted(tenants))
        return TopSnapshot(tuple(views), wall_time)

    def _tenant(self, name: str) -> _Tenant:
        if name not in self._tenants:
            self._tenants[name] = _Tenant(deque(maxlen=self.history))
        return self._tenants[name]

    def _view(self, name: str, scrape: Scrape) -> TenantView:
        gauges = _tenant_values(scrape.gauges, name)
        open_by_surface: dict[str, int] = {}
        for labels, value in gauges.get(OPEN_STREAMS, []):
            surface = labels.get("surface", "?")
            open_by_surface[surface] = open_by_surface.get(surface, 0) + int(value)
        up = gauges.get(CONNECTOR_UP)
        reconnects = _tenant_values(scrape.counters, name).get(RECONNECTS, [])
        state = self._tenant(name)
        recent = _newest(state.intervals, self.rate_window)
        events = _newest(state.intervals, self.event_window)
        first_batches = sum(i.first_batches for i in recent)
        return TenantView(
            name=name,
            connector_up=None if not up else any(value >= 1 for _, value in up),
            open_streams=sum(open_by_surface.values()),
            open_by_surface=tuple(sorted((s, n) for s, n in open_by_surface.items() if n)),
            followers=int(sum(value for _, value in gauges.get(FOLLOWERS, []))),
            lag_batches=int(max((value for _, value in gauges.get(LAG, [])), default=0)),
            reconnects=int(sum(value for _, value in reconnects)),
            mb_per_s=_rate(recent, "bytes", 1e-6),
            rows_per_s=_rate(recent, "rows"),
            requests_per_s=_rate(recent, "requests"),
            errors_per_s=_rate(events, "errors"),
            refusals_per_s=_rate(events, "refusals"),
            first_batch_seconds=(
                sum(i.first_batch_seconds for i in recent) / first_batches
                if first_batches
                else None
            ),
            mb_history=tuple(i.bytes / i.seconds * 1e-6 for i in state.intervals),
            rows_history=tuple(i.rows / i.seconds for i in state.intervals),
            outcomes=tuple(sorted((code, round(n)) for code, n in state.outcomes.items())),
        )


def _tenant_values(
    series: Mapping[Key, float], tenant: str
) -> dict[str, list[tuple[dict[str, str], float]]]:
    """``tenant``'s samples of ``series`` by name, each with its labels."""
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for (name, pairs), value in series.items():
        labels = dict(pairs)
        if labels.get("tenant") == tenant:
            out.setdefault(name, []).append((labels, value))
    return out


def _newest(intervals: Iterable[Interval], window: float) -> list[Interval]:
    """The newest intervals that cover ``window`` seconds (at least the newest one)."""
    out: list[Interval] = []
    covered = 0.0
    for interval in reversed(list(intervals)):
        if out and covered >= window:
            break
        out.append(interval)
        covered += interval.seconds
    return out


def _rate(intervals: list[Interval], attribute: str, scale: float = 1.0) -> float | None:
    if not intervals:
        return None
    seconds = sum(i.seconds for i in intervals)
    total: float = sum(getattr(i, attribute) for i in intervals)
    return total / seconds * scale
