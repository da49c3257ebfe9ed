"""The gateway's Arrow Flight service: routes ``[tenant, dataset]`` to the tenant's connector.

It holds no data: ``DoGet`` hands each upstream batch on as it arrives. gRPC flow control
on both sides keeps memory bounded: a client that reads slowly slows its upstream read.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import pyarrow.flight as flight

from streamkit import errors
from streamkit.flight_server import BaseFlightServer
from streamkit.gateway.access import Access, Identity
from streamkit.gateway.requests_log import RequestRecord
from streamkit.gateway.upstream import Upstreams, upstream_error
from streamkit.query import Query

log = logging.getLogger("streamkit.gateway")

WATCH_SECONDS = 0.25


class GatewayFlightServer(BaseFlightServer):
    def __init__(
        self,
        upstreams: Upstreams,
        access: Access,
        location: str = "grpc://127.0.0.1:0",
        *,
        idle_timeout: float = 60.0,
        **kwargs: Any,
    ) -> None:
        self.upstreams = upstreams
        self.access = access
        self.stopping = threading.Event()
        self.idle_timeout = idle_timeout
        self._streams: set[_Stream] = set()  # open forwarded streams
        # Reentrant: a stream's finalizer (run by the garbage collector in any thread, maybe
        # one holding this lock) closes the stream, which takes the lock.
        self._lock = threading.RLock()
        super().__init__(location, **kwargs)
        threading.Thread(target=self._watch, name="streamkit-watch", daemon=True).start()

    def _watch(self) -> None:
        """Cancel the upstream read of a stream whose client went away, or that delivered
        nothing for ``idle_timeout`` seconds (followed streams may rightly be quiet).

        A stream waiting on a quiet upstream would otherwise notice neither until its next
        batch; a whole-call gRPC deadline would also cut healthy long streams.
        """
        while not self.stopping.wait(WATCH_SECONDS):
            now = time.monotonic()
            with self._lock:
                streams = list(self._streams)
            for stream in streams:
                if stream.context.is_cancelled():
                    stream.cancel_upstream("cancelled")
                elif not stream.follow and now - stream.last_progress > self.idle_timeout:
                    log.warning("cancelling a stream idle for %.0f s", self.idle_timeout)
                    stream.cancel_upstream("idle")

    def _caller(self, context: flight.ServerCallContext) -> tuple[Identity, str]:
        peer, token = self.admit(context)
        return self.access.identify(token), peer

    def _query(self, query: Query, identity: Identity) -> Query:
        """The tenant comes from the request, but the caller's identity decides if it may."""
        if query.tenant is None:
            raise errors.invalid("the query needs a 'tenant'")
        self.access.authorize(identity, query.tenant)
        self.upstreams.tenant(query.tenant)  # unknown tenant: not found
        return query

    def _info(
        self, query: Query, upstream: flight.FlightInfo, descriptor: flight.FlightDescriptor
    ) -> flight.FlightInfo:
        endpoint = flight.FlightEndpoint(query.to_ticket(), [])
        return flight.FlightInfo(
            upstream.schema, descriptor, [endpoint], upstream.total_records, upstream.total_bytes
        )

    def list_flights(
        self, context: flight.ServerCallContext, criteria: bytes
    ) -> Iterator[flight.FlightInfo]:
        identity, _ = self._caller(context)
        wanted = criteria.decode("utf-8", "replace") if criteria else None
        if wanted:
            self.access.authorize(identity, wanted)
            tenants = [self.upstreams.tenant(wanted)]
        else:
            tenants = [t for t in self.upstreams.tenants.values() if t.name in identity.tenants]
        for tenant in tenants:
            try:
                infos = self.upstreams.list_flights(tenant)
            except flight.FlightError:
                if wanted:
                    raise
                continue  # one tenant down does not hide the others
            for info in infos:
                dataset = info.descriptor.path[0].decode()
                query = Query(dataset=dataset, tenant=tenant.name)
                yield self._info(
                    query, info, flight.FlightDescriptor.for_path(tenant.name, dataset)
                )

    def get_flight_info(
        self, context: flight.ServerCallContext, descriptor: flight.FlightDescriptor
    ) -> flight.FlightInfo:
        identity, peer = self._caller(context)
        query = self._query(Query.from_descriptor(descriptor, with_tenant=True), identity)
        self.access.limits.request(query.tenant, identity.caller(peer))
        return self._info(query, self.upstreams.get_flight_info(query), descriptor)

    def do_get(
        self, context: flight.ServerCallContext, ticket: flight.Ticket
    ) -> flight.FlightDataStream:
        identity, peer = self._caller(context)
        # A ticket names a tenant, but only the caller's identity grants it: a ticket minted
        # for one tenant and replayed with another tenant's token is refused here.
        query = self._query(Query.from_ticket(ticket), identity)
        record = RequestRecord("flight", query.tenant, query.dataset)
        try:
            release = self.access.limits.acquire_stream(query.tenant, identity.caller(peer))
        except flight.FlightError as exc:
            record.finish(errors.code_of(exc))
            raise
        stream = _Stream(record, release, context, bool(query.follow), self._streams, self._lock)
        try:
            stream.reader = self.upstreams.do_get(query)
        except flight.FlightError as exc:
            stream.close(errors.code_of(exc))
            raise
        batches = self._forward(query, stream)
        # A generator that never started does not run its ``finally``: release it anyway.
        weakref.finalize(batches, stream.close, "cancelled")
        return flight.GeneratorStream(stream.reader.schema, batches)

    def _forward(self, query: Query, stream: _Stream) -> Iterator[Any]:
        """Pass batches (and their metadata) on; when the client goes away, the upstream call
        is cancelled too. Followed streams may rightly be quiet, so only others time out."""
        reader = stream.reader
        assert reader is not None
        outcome = "cancelled"
        try:
            while not self.stopping.is_set():
                stream.last_progress = time.monotonic()
                try:
                    chunk = reader.read_chunk()
                except StopIteration:
                    outcome = "ok"
                    return
                except flight.FlightCancelledError:
                    outcome = stream.cancelled_for or "cancelled"
                    if outcome == "idle":
                        raise errors.unavailable(
                            f"stream of {query.label()!r} made no progress for "
                            f"{self.idle_timeout:g} s"
                        ) from None
                    if outcome == "stopped":
                        raise errors.unavailable("the gateway is shutting down") from None
                    return  # the client went away
                except flight.FlightError as exc:
                    outcome = errors.code_of(exc)
                    raise upstream_error(query.tenant or "", exc) from None
                stream.record.add(chunk.data.num_rows, chunk.data.nbytes)
                yield (chunk.data, chunk.app_metadata) if chunk.app_metadata else chunk.data
            outcome = "stopped"
            raise errors.unavailable("the gateway is shutting down")
        finally:
            stream.close(outcome)

    def do_put(
        self,
        context: flight.ServerCallContext,
        descriptor: flight.FlightDescriptor,
        reader: flight.MetadataRecordBatchReader,
        writer: flight.FlightMetadataWriter,
    ) -> None:
        """Publish to ``[tenant, dataset]``: batches go on to the tenant's connector as read."""
        identity, peer = self._caller(context)
        query = self._query(Query.from_descriptor(descriptor, with_tenant=True), identity)
        self.access.limits.request(query.tenant, identity.caller(peer))
        record = RequestRecord("flight-put", query.tenant, query.dataset)
        try:
            record.rows = self.upstreams.do_put(query, reader)
            record.finish("ok")
        except flight.FlightError as exc:
            record.finish(errors.code_of(exc))
            raise

    def stop(self) -> None:
        """End open streams now, including followed ones waiting on a quiet upstream."""
        self.stopping.set()
        with self._lock:
            streams = list(self._streams)
        for stream in streams:
            stream.cancel_upstream("stopped")


class _Stream:
    """One forwarded stream's resources, released exactly once however the stream ends."""

    def __init__(
        self,
        record: RequestRecord,
        release: Callable[[], None],
        context: flight.ServerCallContext,
        follow: bool,
        registry: set[_Stream],
        lock: threading.RLock,
    ) -> None:
        self.record, self.release, self.context, self.follow = record, release, context, follow
        self._registry, self._lock = registry, lock
        self.reader: flight.FlightStreamReader | None = None
        self.last_progress = time.monotonic()
        self.cancelled_for: str | None = None
        self._closed = False
        with lock:
            registry.add(self)

    def cancel_upstream(self, reason: str) -> None:
        """Cancel the upstream read; ``reason`` says why, for the stream and its log line."""
        self.cancelled_for = self.cancelled_for or reason
        if self.reader is not None:
            self.reader.cancel()

    def close(self, outcome: str) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._registry.discard(self)
        if outcome != "ok":
            self.cancel_upstream(outcome)
        self.release()
        self.record.finish(outcome)
