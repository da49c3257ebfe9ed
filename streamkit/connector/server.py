"""The connector's Flight service: ListFlights, GetFlightInfo, GetSchema, DoGet and DoPut over
a root folder, each a thin translation of :class:`~streamkit.connector.service.Connector`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.flight as flight

from streamkit import errors
from streamkit.connector.service import Connector
from streamkit.flight_server import BaseFlightServer
from streamkit.flight_streams import generator_stream
from streamkit.query import Query
from streamkit.readers import DEFAULT_BATCH_BYTES, DEFAULT_BATCH_ROWS
from streamkit.security import same_secret


class ConnectorServer(BaseFlightServer):
    def __init__(
        self,
        root: str,
        location: str = "grpc://127.0.0.1:0",
        *,
        batch_rows: int = DEFAULT_BATCH_ROWS,
        batch_bytes: int = DEFAULT_BATCH_BYTES,
        token: str | None = None,
        sql_memory: int | None = None,
        spill_dir: Path | None = None,
        **kwargs: Any,
    ) -> None:
        """``token``: a shared secret every call must bring (``Authorization: Bearer``);
        ``sql_memory``, ``spill_dir``: each SQL query's memory pool and spill folder;
        ``kwargs``: ``allow``, ``tls_cert``, ``tls_key``, ``tls_client_ca`` (see base)."""
        self.connector = Connector(
            root,
            batch_rows=batch_rows,
            batch_bytes=batch_bytes,
            sql_memory=sql_memory,
            spill_dir=spill_dir,
        )
        self.live = self.connector.live
        self.token = token
        super().__init__(location, **kwargs)

    def _admit(self, context: flight.ServerCallContext) -> None:
        _, given = self.admit(context)
        if self.token is not None and (given is None or not same_secret(given, self.token)):
            raise errors.Unauthenticated("unauthenticated: this connector needs its token")

    def list_flights(
        self, context: flight.ServerCallContext, criteria: bytes
    ) -> Iterator[flight.FlightInfo]:
        self._admit(context)
        yield from self.connector.list_flights(
            criteria.decode("utf-8", "replace") if criteria else ""
        )

    def get_flight_info(
        self, context: flight.ServerCallContext, descriptor: flight.FlightDescriptor
    ) -> flight.FlightInfo:
        self._admit(context)
        return self.connector.flight_info(Query.from_descriptor(descriptor, with_tenant=False))

    def do_get(
        self, context: flight.ServerCallContext, ticket: flight.Ticket
    ) -> flight.FlightDataStream:
        self._admit(context)
        # ``should_stop`` runs between batches, in this call's own thread: it may ask the
        # context (no other thread may, the context dies with the call).
        opened = self.connector.open(Query.from_ticket(ticket), context.is_cancelled)
        if isinstance(opened.source, pa.RecordBatchReader):
            return flight.RecordBatchStream(opened.source)  # all in C++, dictionaries too
        return generator_stream(opened.schema, opened.source)

    def do_put(
        self,
        context: flight.ServerCallContext,
        descriptor: flight.FlightDescriptor,
        reader: flight.MetadataRecordBatchReader,
        writer: flight.FlightMetadataWriter,
    ) -> None:
        """Append batches to a live dataset (created by the first put)."""
        self._admit(context)
        self.connector.publish(Query.from_descriptor(descriptor, with_tenant=False).dataset, reader)

    def stop(self) -> None:
        """Ask open streams to end at their next batch (before ``shutdown``)."""
        self.connector.stop()
