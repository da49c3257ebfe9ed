"""Connector Flight service: ListFlights, GetFlightInfo, GetSchema and DoGet over a root folder."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.flight as flight

from streamkit import errors
from streamkit.catalog import Catalog, Entry, safe_name
from streamkit.connector.live_streams import follow_file, follow_live, shape, take_put
from streamkit.flight_server import BaseFlightServer
from streamkit.flight_streams import generator_stream
from streamkit.live import LiveDataset, LiveRegistry
from streamkit.query import Query
from streamkit.readers import DEFAULT_BATCH_ROWS, BatchStream, DatasetInfo, Readers
from streamkit.security import same_secret

log = logging.getLogger("streamkit.connector")


class ConnectorServer(BaseFlightServer):
    def __init__(
        self,
        root: str,
        location: str = "grpc://127.0.0.1:0",
        *,
        batch_rows: int = DEFAULT_BATCH_ROWS,
        token: str | None = None,
        **kwargs: Any,
    ) -> None:
        """``token``: a shared secret every call must bring (``Authorization: Bearer``);
        ``kwargs``: ``allow``, ``tls_cert``, ``tls_key``, ``tls_client_ca`` (see base)."""
        self.catalog = Catalog(root)
        self.readers = Readers(str(self.catalog.root), batch_rows=batch_rows)
        self.live = LiveRegistry(self.catalog.root)
        self.stopping = threading.Event()
        self.token = token
        super().__init__(location, **kwargs)

    def _admit(self, context: flight.ServerCallContext) -> None:
        _, given = self.admit(context)
        if self.token is not None and (given is None or not same_secret(given, self.token)):
            raise flight.FlightUnauthenticatedError(
                "unauthenticated: this connector needs its token"
            )

    # -- helpers ---------------------------------------------------------------

    def _flight_info(self, entry: Entry, info: DatasetInfo, query: Query) -> flight.FlightInfo:
        schema = query.projected(info.schema)
        rows = info.rows
        if rows >= 0 and query.limit is not None:
            rows = min(rows, query.limit)
        descriptor = (
            query.to_descriptor()
            if query.columns is not None or query.limit is not None
            else flight.FlightDescriptor.for_path(entry.name)
        )
        endpoint = flight.FlightEndpoint(query.to_ticket(), [])
        # Live datasets say so: their followed batches carry row offsets (see live_streams).
        metadata = b'{"live": true}' if entry.format == "live" else b""
        return flight.FlightInfo(
            schema, descriptor, [endpoint], rows, info.bytes, app_metadata=metadata
        )

    def _resolve(self, query: Query) -> tuple[Entry, DatasetInfo]:
        """A file dataset, or a published live dataset (as a pseudo entry)."""
        try:
            entry = self.catalog.resolve(query.dataset)
        except flight.FlightError:
            live = self._live(query.dataset)
            if live is None:
                raise
            return _live_entry(live), _live_info(live)
        return entry, self.readers.info(entry)

    def _live(self, name: str) -> LiveDataset | None:
        live = self.live.get(name)
        return live if live is not None and live.schema is not None else None

    # -- Flight methods --------------------------------------------------------

    def list_flights(
        self, context: flight.ServerCallContext, criteria: bytes
    ) -> Iterator[flight.FlightInfo]:
        self._admit(context)
        prefix = criteria.decode("utf-8", "replace") if criteria else ""
        for live in self.live.all():
            if live.name.startswith(prefix):
                yield self._flight_info(
                    _live_entry(live), _live_info(live), Query(dataset=live.name)
                )
        for entry in self.catalog.scan():
            if not entry.name.startswith(prefix):
                continue
            try:
                info = self.readers.info(entry)
            except flight.FlightError as exc:  # unreadable files are skipped, not fatal
                log.warning("listing skips %s: %s", entry.name, errors.clean_message(exc))
                continue
            yield self._flight_info(entry, info, Query(dataset=entry.name))

    def get_flight_info(
        self, context: flight.ServerCallContext, descriptor: flight.FlightDescriptor
    ) -> flight.FlightInfo:
        self._admit(context)
        query = Query.from_descriptor(descriptor, with_tenant=False)
        entry, info = self._resolve(query)
        return self._flight_info(entry, info, query)

    def do_get(
        self, context: flight.ServerCallContext, ticket: flight.Ticket
    ) -> flight.FlightDataStream:
        self._admit(context)
        query = Query.from_ticket(ticket)
        entry, info = self._resolve(query)

        def should_stop() -> bool:
            return self.stopping.is_set() or context.is_cancelled()

        live = self._live(query.dataset) if entry.format == "live" else None
        if live is None and not query.follow:
            reader = self.readers.open(entry, query.columns, query.limit, should_stop=should_stop)
            if isinstance(reader, BatchStream):
                return generator_stream(reader.schema, reader.batches)
            return flight.RecordBatchStream(reader)  # all in C++, dictionaries included
        schema = query.projected(info.schema)
        if live is not None:
            items = follow_live(live, query, should_stop) if query.follow else live.history()
        else:
            items = follow_file(entry, info.schema, query, should_stop)
        return generator_stream(schema, _clean_errors(shape(items, query, entry.name), entry.name))

    def do_put(
        self,
        context: flight.ServerCallContext,
        descriptor: flight.FlightDescriptor,
        reader: flight.MetadataRecordBatchReader,
        writer: flight.FlightMetadataWriter,
    ) -> None:
        """Append batches to a live dataset (created by the first put)."""
        self._admit(context)
        name = Query.from_descriptor(descriptor, with_tenant=False).dataset
        if not safe_name(name):
            raise errors.invalid(f"{name!r} is not a valid dataset name")
        try:
            self.catalog.resolve(name)
        except flight.FlightError:
            pass
        else:
            raise errors.invalid(f"dataset {name!r} is a file; publish under another name")
        live = self.live.get_or_create(name)
        try:
            rows = take_put(live, reader)
        except flight.FlightError:
            raise
        except pa.ArrowException as exc:
            raise errors.invalid(f"publishing to {name!r}: {errors.clean_message(exc)}") from None
        log.info("published %d rows to %s", rows, name)

    def stop(self) -> None:
        """Ask open streams to end at their next batch (before ``shutdown``)."""
        self.stopping.set()


def _live_entry(live: LiveDataset) -> Entry:
    return Entry(name=live.name, path=live.path, format="live")


def _live_info(live: LiveDataset) -> DatasetInfo:
    assert live.schema is not None
    return DatasetInfo(live.schema, live.rows, live.size)


def _clean_errors(items: Iterator, name: str) -> Iterator:
    """Errors while following become clean Flight errors for the client."""
    try:
        yield from items
    except flight.FlightError:
        raise
    except Exception as exc:
        raise errors.invalid(f"dataset {name!r}: {errors.clean_message(exc)}") from None
