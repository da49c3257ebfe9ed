"""The gateway's Arrow Flight service: Flight calls translated to the forwarding core.

It holds no data: ``DoGet`` hands each upstream batch on as it arrives, in the call's own
thread (the only one that may look at its context), and gRPC flow control on both sides
keeps memory bounded: a client that reads slowly slows its upstream read.
"""

from __future__ import annotations

import json
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import pyarrow.flight as flight

from streamkit import errors
from streamkit.config import ConfigError
from streamkit.flight_server import BaseFlightServer
from streamkit.flight_streams import Item, generator_stream
from streamkit.gateway.access import Identity
from streamkit.gateway.flight_sql import CLOSE_PREPARED, CREATE_PREPARED, FlightSql
from streamkit.gateway.forward import Forwarder, Stream
from streamkit.gateway.pump import Ended
from streamkit.query import Query
from streamkit.security import is_loopback

HEALTH_ACTION = "health"
METRICS_ACTION = "metrics"
RELOAD_ACTION = "reload"


class GatewayFlightServer(BaseFlightServer):
    def __init__(
        self,
        forwarder: Forwarder,
        location: str = "grpc://127.0.0.1:0",
        reload: Callable[[], dict[str, list[str]]] | None = None,
        **kwargs: Any,
    ) -> None:
        self.forwarder = forwarder
        self.reload = reload
        self.sql = FlightSql(forwarder)  # Flight SQL requests, told apart by their bytes
        super().__init__(location, **self.sql.server_options(kwargs))

    def _caller(self, context: flight.ServerCallContext) -> tuple[Identity, str]:
        peer, token = self.admit(context)
        return self.forwarder.identify(token), peer

    def list_flights(
        self, context: flight.ServerCallContext, criteria: bytes
    ) -> Iterator[flight.FlightInfo]:
        identity, _ = self._caller(context)
        wanted = criteria.decode("utf-8", "replace") if criteria else None
        for tenant, info in self.forwarder.datasets(identity, wanted):
            dataset = info.descriptor.path[0].decode()
            yield self._info(
                Query(dataset=dataset, tenant=tenant),
                info,
                flight.FlightDescriptor.for_path(tenant, dataset),
            )

    def get_flight_info(
        self, context: flight.ServerCallContext, descriptor: flight.FlightDescriptor
    ) -> flight.FlightInfo:
        identity, peer = self._caller(context)
        sql_info = self.sql.get_flight_info(identity, peer, descriptor)
        if sql_info is not None:
            return sql_info
        query = Query.from_descriptor(descriptor, with_tenant=True)
        return self._info(query, self.forwarder.info(query, identity, peer), descriptor)

    def do_get(
        self, context: flight.ServerCallContext, ticket: flight.Ticket
    ) -> flight.FlightDataStream:
        identity, peer = self._caller(context)
        served = self.sql.do_get(identity, ticket)
        if isinstance(served, flight.FlightDataStream):
            return served  # Flight SQL metadata
        # A ticket names a tenant, but only the caller's identity grants it: a ticket minted
        # for one tenant and replayed with another tenant's token is refused.
        read = served or self.forwarder.read_ticket(ticket.ticket)
        stream = self.forwarder.open(read.query, identity, peer, "flight", read.shard)
        items = _items(stream, context)
        # A generator that never started does not run its ``finally``: release it anyway.
        weakref.finalize(items, stream.close, errors.CANCELLED)
        return generator_stream(stream.schema, items)

    def do_put(
        self,
        context: flight.ServerCallContext,
        descriptor: flight.FlightDescriptor,
        reader: flight.MetadataRecordBatchReader,
        writer: flight.FlightMetadataWriter,
    ) -> None:
        identity, peer = self._caller(context)
        if self.sql.do_put(identity, descriptor, reader, writer):
            return  # Flight SQL parameters
        query = Query.from_descriptor(descriptor, with_tenant=True)
        self.forwarder.put(query, identity, peer, reader)

    def do_action(
        self, context: flight.ServerCallContext, action: flight.Action
    ) -> Iterator[flight.Result]:
        if action.type == METRICS_ACTION:  # its own token, not a tenant's
            self.forwarder.access.check_metrics(*self.admit(context))
            yield flight.Result(self.forwarder.metrics.render())
            return
        if action.type == RELOAD_ACTION:
            yield flight.Result(json.dumps(self._reload(context)).encode())
            return
        identity, peer = self._caller(context)
        if self.sql.serves_action(action.type):
            yield from self.sql.do_action(identity, peer, action)
            return
        if action.type != HEALTH_ACTION:
            raise errors.invalid(
                f"unknown action {action.type!r} (the gateway serves 'health' and 'metrics')"
            )
        status, tenants = self.forwarder.health(identity)
        yield flight.Result(json.dumps({"status": status, "tenants": tenants}).encode())

    def _reload(self, context: flight.ServerCallContext) -> dict[str, list[str]]:
        """Like ``kill -HUP``, so only from the gateway's own machine."""
        peer, _ = self.admit(context)
        if not is_loopback(peer):
            raise errors.Unauthorized("unauthorized: reload is served to loopback peers only")
        if self.reload is None:
            raise errors.invalid("this gateway was not started from a configuration file")
        try:
            return self.reload()
        except ConfigError as exc:
            raise errors.invalid(f"the running configuration is kept: {exc}") from None

    def _info(
        self, query: Query, upstream: flight.FlightInfo, descriptor: flight.FlightDescriptor
    ) -> flight.FlightInfo:
        """The gateway's FlightInfo: signed tickets, one endpoint per shard of a sharded
        tenant, no location (any gateway of the deployment serves them)."""
        endpoints = [
            flight.FlightEndpoint(flight.Ticket(minted), [])
            for minted in self.forwarder.tickets_for(query)
        ]
        return flight.FlightInfo(
            upstream.schema, descriptor, endpoints, upstream.total_records, upstream.total_bytes
        )

    def list_actions(self, context: flight.ServerCallContext) -> list[tuple[str, str]]:
        self._caller(context)
        return [
            (HEALTH_ACTION, "the /healthz document, for the caller's tenants"),
            (METRICS_ACTION, "the /metrics text (Prometheus), for metrics_allow or metrics_token"),
            (RELOAD_ACTION, "read streamkit.toml again (loopback peers only)"),
            (CREATE_PREPARED, "Flight SQL: prepare a statement"),
            (CLOSE_PREPARED, "Flight SQL: close a prepared statement"),
        ]

    def stop(self) -> None:
        self.forwarder.stop()




def _items(stream: Stream, context: flight.ServerCallContext) -> Iterator[Item]:
    """Batches (with their metadata) as they arrive, until the end or the client leaves."""
    try:
        while True:
            try:
                chunk = stream.get()
            except Ended:
                return
            if chunk is not None:
                yield (chunk.data, chunk.app_metadata) if chunk.app_metadata else chunk.data
            elif context.is_cancelled():
                # Asked only while the upstream is quiet (the call costs a gRPC queue poll):
                # while data flows, a client that left fails the next write.
                return
    finally:
        stream.close(errors.CANCELLED)  # a no-op after the end or a failure
