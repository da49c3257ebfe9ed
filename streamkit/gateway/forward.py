"""One path for every request the gateway forwards, whatever the transport.

Admission (the tenant named, the caller's right to it, the tenant known, the rate limits),
the upstream stream read by a :class:`~streamkit.gateway.pump.Pump`, idle and shutdown
checks, the outcome and its log line: all here. Flight, HTTP and WebSocket only translate
their wire format to a :class:`~streamkit.query.Query` and a :class:`Stream`'s chunks back.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor

import pyarrow.flight as flight

from streamkit import errors
from streamkit.batches import batch_bytes
from streamkit.config import GatewayConfig, TenantConfig
from streamkit.gateway.access import Access, Identity
from streamkit.gateway.metrics import Metrics
from streamkit.gateway.pump import AsyncPump, Chunk, Ended, Polled, Pump
from streamkit.gateway.reload import same_connector
from streamkit.gateway.requests_log import RequestRecord
from streamkit.gateway.upstream import Upstreams, upstream_error
from streamkit.query import Query
from streamkit.tickets import ShardRef, Ticket, TicketSigner

WATCH_SECONDS = 0.25  # how often a waiting stream looks at its client, idle time and shutdown


class Forwarder:
    def __init__(
        self,
        config: GatewayConfig,
        access: Access,
        upstreams: Upstreams,
        metrics: Metrics | None = None,
    ) -> None:
        self.config, self.access, self.upstreams = config, access, upstreams
        self.metrics = metrics or Metrics(lambda: self.config.tenants)
        self.tickets, self._ticket_key = signer_for(config), config.ticket_key
        self.stopping = threading.Event()
        self.streams: set[Stream] = set()  # open now (a reload may have to end some)
        self.publishes: set[Publish] = set()
        self._streams_lock = threading.Lock()

    def identify(self, token: str | None, surface: str = "flight") -> Identity:
        """The caller of ``token``; a token that is no one's is refused, and counted (as
        the tenant it meant is not known yet: a guessed token shows in the metrics)."""
        try:
            return self.access.identify(token)
        except errors.StreamkitError as exc:
            self.metrics.request(None, surface, exc.code)
            raise

    def read_ticket(self, raw: bytes) -> Ticket:
        """A ticket's query and routing; a forged or malformed one is refused, and counted."""
        try:
            return self.tickets.read(raw)
        except errors.StreamkitError as exc:
            self.metrics.request(None, "flight", exc.code)
            raise

    def admit(self, query: Query, identity: Identity) -> Query:
        """The tenant comes from the request, but the caller's identity decides if it may."""
        self._admitted_tenant(query, identity)
        return query

    def _admitted_tenant(self, query: Query, identity: Identity) -> str:
        """``admit``, returning the query's tenant (known then not to be ``None``)."""
        tenant = query.tenant
        if tenant is None:
            raise errors.invalid("the query needs a 'tenant'")
        self.access.authorize(identity, tenant)
        self.upstreams.tenant(tenant)  # unknown tenant: not found
        return tenant

    def info(self, query: Query, identity: Identity, peer: str) -> flight.FlightInfo:
        """The upstream FlightInfo of an admitted query (one request of the rate limit)."""
        surface = _surface(query, "flight")
        try:
            tenant = self._admitted_tenant(query, identity)
            self.access.limits.request(tenant, identity.caller(peer))
            info = self.upstreams.get_flight_info(query)
        except errors.StreamkitError as exc:
            self.metrics.request(query.tenant, surface, exc.code)
            raise
        self.metrics.request(query.tenant, surface, "ok")
        return info

    def health(self, identity: Identity) -> tuple[str, dict[str, dict[str, object]]]:
        """``ok`` or ``degraded`` (any tenant unreachable), and the state of the tenants the
        caller may see: reachable, latency, datasets, and for a connector that dials in,
        ``dialed in`` or ``not connected``."""
        tenants = self.upstreams.health()
        status = "ok" if all(t["reachable"] for t in tenants.values()) else "degraded"
        return status, {name: state for name, state in tenants.items() if name in identity.tenants}

    def datasets(
        self, identity: Identity, tenant: str | None = None
    ) -> list[tuple[str, flight.FlightInfo]]:
        """``(tenant, info)`` of every dataset the caller may see (of ``tenant`` only if
        given, whose failure is then an error; otherwise a tenant that is down is left out)."""
        if tenant:
            self.access.authorize(identity, tenant)
            chosen = [self.upstreams.tenant(tenant)]
        else:
            chosen = [t for t in self.upstreams.tenants.values() if t.name in identity.tenants]
        out: list[tuple[str, flight.FlightInfo]] = []
        for each in chosen:
            try:
                infos = self.upstreams.list_flights(each)
            except errors.StreamkitError:
                if tenant:
                    raise
                continue  # one tenant down does not hide the others
            out.extend((each.name, info) for info in infos)
        return out

    def rekey(self, config: GatewayConfig) -> None:
        """A reload's ``ticket_key``: tickets signed with the old one are refused from now."""
        if config.ticket_key != self._ticket_key:
            self.tickets, self._ticket_key = signer_for(config), config.ticket_key

    def tickets_for(self, query: Query) -> list[bytes]:
        """The signed tickets of ``query``'s endpoints: one per shard of a sharded tenant,
        unless a limit must be cut over all of them (then one, read merged) or one shard
        answers (SQL that reads no table)."""
        shards = self.upstreams.shards(query.tenant)
        if shards > 1 and query.limit is None and not query.offset:
            plan = self.upstreams.sql_plan(query) if query.sql is not None else None
            if plan is None or (plan.limit is None and not plan.one_shard):
                layout = self.upstreams.shard_layout(query.tenant)
                return [self.tickets.mint(query, ShardRef(i, layout)) for i in range(shards)]
        return [self.tickets.mint(query)]

    def open(
        self,
        query: Query,
        identity: Identity,
        peer: str,
        surface: str,
        shard: ShardRef | None = None,
    ) -> Stream:
        """Admit ``query`` and open its upstream stream (blocking: a worker thread's job);
        ``shard``: of a sharded tenant, only that shard (a signed ticket's)."""
        label = _surface(query, surface)
        record = RequestRecord(surface, query.tenant, query.dataset or "(sql)")
        try:
            tenant = self._admitted_tenant(query, identity)
        except errors.StreamkitError as exc:
            self.metrics.request(query.tenant, label, exc.code)
            raise
        settings = self.config.tenants.get(tenant)
        try:
            release = self.access.limits.acquire_stream(tenant, identity.caller(peer))
        except errors.StreamkitError as exc:
            self.metrics.request(tenant, label, exc.code)
            record.finish(exc.code)
            raise
        try:
            reader = self.upstreams.do_get(query, shard)
        except errors.StreamkitError as exc:
            release()
            self.metrics.request(tenant, label, exc.code)
            record.finish(exc.code)
            raise
        record.meter = self.metrics.meter(tenant, label)
        # A Flight call has a thread of its own to wait in; an event loop has not.
        pump = Polled(reader) if surface == "flight" and hasattr(reader, "poll") else Pump(reader)
        stream = Stream(query, record, pump, release, self.config.idle_timeout, self.stopping)
        stream.identity, stream.settings, stream.on_close = identity, settings, self._forget
        with self._streams_lock:
            self.streams.add(stream)
        self.end_stale([stream])  # a reload while it opened
        return stream

    async def aopen(
        self, pool: Executor, query: Query, identity: Identity, peer: str, surface: str
    ) -> Stream:
        """``open`` in ``pool``, awaited from an event loop. Should the awaiting task be
        cancelled (its socket closed while a slow connector opened the stream), the open
        goes on in its thread, and the stream is closed once it is opened."""
        opening = asyncio.get_running_loop().run_in_executor(
            pool, self.open, query, identity, peer, surface
        )
        try:
            return await asyncio.shield(opening)
        except asyncio.CancelledError:
            opening.add_done_callback(_close_opened)
            raise

    def end_stale(self, streams: Sequence[Stream | Publish] | None = None) -> None:
        """End the open streams and publishes (or ``streams``) that the configuration no
        longer allows: of a removed tenant, of a tenant whose connector changed, of a
        revoked token."""
        if streams is None:
            with self._streams_lock:
                publishes = list(self.publishes)
            streams = [*self.open_streams(), *publishes]
        for stream in streams:
            why = self._stale(stream)
            if why is not None:
                stream.end(why)

    def _stale(self, stream: Stream | Publish) -> errors.StreamkitError | None:
        tenant = stream.query.tenant or ""
        now = self.config.tenants.get(tenant)
        if now is None:
            return errors.unavailable(f"tenant {tenant!r} was removed from the configuration")
        if stream.settings is not None and not same_connector(now, stream.settings):
            return errors.unavailable(
                f"the connector of tenant {tenant!r} changed in the configuration; retry"
            )
        if stream.identity is not None and tenant not in self.access.tenants_of(stream.identity):
            return errors.Unauthorized(f"unauthorized: this token may no longer read {tenant!r}")
        return None

    def _forget(self, stream: Stream) -> None:
        with self._streams_lock:
            self.streams.discard(stream)

    def open_streams(self) -> list[Stream]:
        with self._streams_lock:
            return list(self.streams)

    def put(
        self, query: Query, identity: Identity, peer: str, reader: flight.MetadataRecordBatchReader
    ) -> int:
        """Publish to ``[tenant, dataset]``: batches go on to the tenant's connector as read."""
        record = RequestRecord("flight-put", query.tenant, query.dataset)
        publish: Publish | None = None
        try:
            tenant = self._admitted_tenant(query, identity)
            self.access.limits.request(tenant, identity.caller(peer))
            publish = Publish(query, identity, self.config.tenants.get(tenant), reader)
            with self._streams_lock:
                self.publishes.add(publish)
            self.end_stale([publish])  # a reload while it was admitted
            record.rows = self.upstreams.do_put(query, publish)
        except errors.StreamkitError as exc:
            self.metrics.request(query.tenant, "flight", exc.code)
            record.finish(exc.code)
            raise
        finally:
            if publish is not None:
                with self._streams_lock:
                    self.publishes.discard(publish)
        self.metrics.request(query.tenant, "flight", "ok")
        record.finish("ok")
        return record.rows

    def stop(self) -> None:
        """Open streams end within ``WATCH_SECONDS``, followed ones on a quiet upstream too."""
        self.stopping.set()


class Stream:
    """One forwarded stream. ``get`` (or ``aget`` on an event loop) hands on its chunks and
    raises a typed error for every way it can fail; it ends, exactly once, with ``close``."""

    def __init__(
        self,
        query: Query,
        record: RequestRecord,
        pump: Pump | Polled,
        release: Callable[[], None],
        idle_timeout: float,
        stopping: threading.Event,
    ) -> None:
        self.query, self.record, self.pump, self.schema = query, record, pump, pump.schema
        self._release, self._idle, self._stopping = release, idle_timeout, stopping
        self._last = time.monotonic()
        self._once = threading.Lock()
        self._async: AsyncPump | None = None
        self.identity: Identity | None = None
        self.settings: TenantConfig | None = None  # the tenant's, when the stream opened
        self.on_close: Callable[[Stream], None] = lambda stream: None
        self._ended: errors.StreamkitError | None = None  # see ``end``

    def get(self, timeout: float = WATCH_SECONDS) -> Chunk | None:
        """The next chunk, or None if none came within ``timeout``; raises :class:`Ended`."""
        self._check_stopping()
        try:
            chunk = self.pump.get(timeout)
        except Ended:  # complete, or ended by a cancel (a live follow's generator returns)
            self.close(errors.CANCELLED if self.pump.cancelled else "ok")
            raise
        except Exception as exc:
            raise self._failed(exc) from None
        return self._arrived(chunk)

    async def aget(self, timeout: float = WATCH_SECONDS) -> Chunk | None:
        """:meth:`get` for an event loop (the first call binds the stream to the loop)."""
        import asyncio

        if self._async is None:
            assert isinstance(self.pump, Pump), "an event loop cannot wait in a Polled read"
            self._async = AsyncPump(self.pump, asyncio.get_running_loop())
        self._check_stopping()
        try:
            chunk = await self._async.get(timeout)
        except Ended:  # complete, or ended by a cancel (a live follow's generator returns)
            self.close(errors.CANCELLED if self.pump.cancelled else "ok")
            raise
        except Exception as exc:
            raise self._failed(exc) from None
        return self._arrived(chunk)

    def end(self, exc: errors.StreamkitError) -> None:
        """End the stream from another thread (a reload): its reader is told ``exc``."""
        self._ended = exc
        self.close(exc.code)

    def _check_stopping(self) -> None:
        if self._ended is not None:
            raise self._ended
        if self._stopping.is_set():
            raise self.fail(errors.unavailable("the gateway is shutting down"), "stopped")

    def _arrived(self, chunk: Chunk | None) -> Chunk | None:
        now = time.monotonic()
        if chunk is not None:
            self._last = now
            self.record.add(chunk.data.num_rows, batch_bytes(chunk.data))
        elif not self.query.follow and now - self._last > self._idle:  # follows may be quiet
            raise self.fail(
                errors.unavailable(
                    f"stream of {self.query.label()!r} made no progress for {self._idle:g} s"
                ),
                "idle",
            )
        return chunk

    def _failed(self, exc: Exception) -> errors.StreamkitError:
        if self._ended is not None:  # the upstream read was cancelled by ``end``
            return self._ended
        return self.fail(upstream_error(self.query.tenant or "", exc))

    def fail(self, exc: errors.StreamkitError, outcome: str | None = None) -> errors.StreamkitError:
        """End the stream because of ``exc`` (its code the outcome unless told); returns it."""
        self.close(outcome or exc.code)
        return exc

    def close(self, outcome: str) -> None:
        """Release the stream (the upstream call cancelled unless it completed); safe from
        any thread, and more than once: only the first outcome counts."""
        if not self._once.acquire(blocking=False):
            return
        if outcome != "ok":
            self.pump.cancel()
        self._release()
        self.on_close(self)
        self.record.finish(outcome)


class Publish:
    """An open publish, its batches read through here so that a reload can end it: the
    next batch its client sends (or the one it is waiting for) ends it with the reason."""

    def __init__(
        self,
        query: Query,
        identity: Identity,
        settings: TenantConfig | None,
        reader: flight.MetadataRecordBatchReader,
    ) -> None:
        self.query, self.identity, self.settings = query, identity, settings
        self.schema = reader.schema
        self._reader = reader
        self._ended: errors.StreamkitError | None = None

    def end(self, exc: errors.StreamkitError) -> None:
        self._ended = exc

    def read_chunk(self) -> flight.FlightStreamChunk:
        if self._ended is not None:
            raise self._ended
        chunk = self._reader.read_chunk()
        if self._ended is not None:
            raise self._ended
        return chunk


def signer_for(config: GatewayConfig) -> TicketSigner:
    key = config.ticket_key
    return TicketSigner(key.value.encode() if key is not None else None)


def _surface(query: Query, transport: str) -> str:
    """The metrics' ``surface`` label: flight, ws or http, or sql for any SQL statement."""
    return "sql" if query.sql is not None else transport


def _close_opened(opening: asyncio.Future[Stream]) -> None:
    if not opening.cancelled() and opening.exception() is None:
        opening.result().close(errors.CANCELLED)
