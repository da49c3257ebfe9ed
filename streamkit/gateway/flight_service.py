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
from streamkit.batches import batch_bytes
from streamkit.flight_server import BaseFlightServer
from streamkit.flight_streams import generator_stream
from streamkit.gateway.access import Access, Identity
from streamkit.gateway.pump import Ended, Pump
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
        super().__init__(location, **kwargs)

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
        try:
            pump = Pump(self.upstreams.do_get(query))
        except flight.FlightError as exc:
            release()
            record.finish(errors.code_of(exc))
            raise
        stream = _Stream(record, release, pump)
        batches = self._forward(query, stream, context)
        # A generator that never started does not run its ``finally``: release it anyway.
        weakref.finalize(batches, stream.close, "cancelled")
        return generator_stream(pump.schema, batches)

    def _forward(
        self, query: Query, stream: _Stream, context: flight.ServerCallContext
    ) -> Iterator[Any]:
        """Pass batches (and their metadata) on as they arrive. Runs in the call's own
        thread, the only one that may look at ``context``: between chunks (or every
        ``WATCH_SECONDS`` while the upstream is quiet) it notices a client that went away,
        a stream idle for ``idle_timeout`` (followed streams may rightly be quiet), and a
        gateway that stops; each ends the upstream call too."""
        outcome = "cancelled"
        last_progress = time.monotonic()
        try:
            while True:
                if self.stopping.is_set():
                    outcome = "stopped"
                    raise errors.unavailable("the gateway is shutting down")
                if context.is_cancelled():
                    return  # the client went away
                try:
                    chunk = stream.pump.get(WATCH_SECONDS)
                except Ended:
                    outcome = "ok"
                    return
                except flight.FlightError as exc:
                    outcome = errors.code_of(exc)
                    raise upstream_error(query.tenant or "", exc) from None
                now = time.monotonic()
                if chunk is None:
                    if not query.follow and now - last_progress > self.idle_timeout:
                        outcome = "idle"
                        log.warning("cancelling a stream idle for %.0f s", self.idle_timeout)
                        raise errors.unavailable(
                            f"stream of {query.label()!r} made no progress for "
                            f"{self.idle_timeout:g} s"
                        )
                    continue
                last_progress = now
                stream.record.add(chunk.data.num_rows, batch_bytes(chunk.data))
                yield (chunk.data, chunk.app_metadata) if chunk.app_metadata else chunk.data
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
        """End open streams within ``WATCH_SECONDS``, followed ones on a quiet upstream too."""
        self.stopping.set()


class _Stream:
    """One forwarded stream's resources, released exactly once however the stream ends
    (its generator's ``finally``, or a finalizer run by the garbage collector anywhere)."""

    def __init__(self, record: RequestRecord, release: Callable[[], None], pump: Pump) -> None:
        self.record, self.release, self.pump = record, release, pump
        self._once = threading.Lock()

    def close(self, outcome: str) -> None:
        if not self._once.acquire(blocking=False):
            return
        if outcome != "ok":
            self.pump.cancel()
        self.release()
        self.record.finish(outcome)
