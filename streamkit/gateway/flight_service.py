"""The gateway's Arrow Flight service: routes ``[tenant, dataset]`` to the tenant's connector.

It holds no data: ``DoGet`` hands each upstream batch on as it arrives. gRPC flow control
on both sides keeps memory bounded: a client that reads slowly slows its upstream read.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.flight as flight

from streamkit import errors
from streamkit.gateway.requests_log import RequestRecord
from streamkit.gateway.upstream import Upstreams, upstream_error
from streamkit.query import Query

log = logging.getLogger("streamkit.gateway")


class GatewayFlightServer(flight.FlightServerBase):
    def __init__(
        self,
        upstreams: Upstreams,
        location: str | None = None,
        *,
        idle_timeout: float = 60.0,
        **kwargs: Any,
    ) -> None:
        self.upstreams = upstreams
        self.stopping = threading.Event()
        self.idle_timeout = idle_timeout
        # Open streams: upstream reader -> when it last delivered a batch.
        self._progress: dict[flight.FlightStreamReader, float] = {}
        self._lock = threading.Lock()
        super().__init__(location, **kwargs)
        threading.Thread(target=self._watch_idle, name="streamkit-idle", daemon=True).start()

    def _watch_idle(self) -> None:
        """Cancel upstream reads that have delivered nothing for ``idle_timeout`` seconds.

        A whole-call gRPC deadline would also cut healthy long streams, so progress is
        watched instead; the cancelled read ends the client's stream with an error.
        """
        while not self.stopping.wait(min(1.0, self.idle_timeout / 4)):
            now = time.monotonic()
            with self._lock:
                stale = [r for r, t in self._progress.items() if now - t > self.idle_timeout]
            for reader in stale:
                log.warning("cancelling a stream idle for %.0f s", self.idle_timeout)
                reader.cancel()

    def _query(self, query: Query) -> Query:
        if query.tenant is None:
            raise errors.invalid("the query needs a 'tenant'")
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
        wanted = criteria.decode("utf-8", "replace") if criteria else None
        tenants = (
            [self.upstreams.tenant(wanted)] if wanted else list(self.upstreams.tenants.values())
        )
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
        query = self._query(Query.from_descriptor(descriptor, with_tenant=True))
        return self._info(query, self.upstreams.get_flight_info(query), descriptor)

    def get_schema(
        self, context: flight.ServerCallContext, descriptor: flight.FlightDescriptor
    ) -> flight.SchemaResult:
        return flight.SchemaResult(self.get_flight_info(context, descriptor).schema)

    def do_get(
        self, context: flight.ServerCallContext, ticket: flight.Ticket
    ) -> flight.FlightDataStream:
        query = self._query(Query.from_ticket(ticket))
        record = RequestRecord("flight", query.tenant, query.dataset)
        try:
            reader = self.upstreams.do_get(query)
        except flight.FlightError as exc:
            record.finish(errors.code_of(exc))
            raise
        return flight.GeneratorStream(reader.schema, self._forward(query, reader, record))

    def _forward(
        self, query: Query, reader: flight.FlightStreamReader, record: RequestRecord
    ) -> Iterator[pa.RecordBatch]:
        """Pass batches on; when the client goes away, the upstream call is cancelled too."""
        try:
            while not self.stopping.is_set():
                with self._lock:
                    self._progress[reader] = time.monotonic()
                try:
                    chunk = reader.read_chunk()
                except StopIteration:
                    record.outcome = "ok"
                    return
                except flight.FlightCancelledError:
                    raise errors.unavailable(
                        f"stream of {query.label()!r} made no progress for {self.idle_timeout:g} s"
                    ) from None
                except flight.FlightError as exc:
                    raise upstream_error(query.tenant or "", exc) from None
                record.add(chunk.data.num_rows, chunk.data.nbytes)
                yield chunk.data
            raise errors.unavailable("the gateway is shutting down")
        except GeneratorExit:
            record.outcome = "cancelled"
            raise
        finally:
            with self._lock:
                self._progress.pop(reader, None)
            if record.outcome != "ok":
                reader.cancel()
            record.finish()

    def stop(self) -> None:
        self.stopping.set()
