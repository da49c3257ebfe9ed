"""The TUI's Flight calls, blocking and headless: run them in worker threads (no Textual here)."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.flight as flight

from streamkit.errors import clean_message

DEFAULT_GATEWAY = "grpc://localhost:8815"
GATEWAY_ENV = "STREAMKIT_GATEWAY"
CALL_TIMEOUT = 10.0
"""Seconds for listing and planning calls; a stream itself may run as long as it likes."""


def resolve_gateway(url: str | None = None) -> str:
    """``--gateway``, else ``$STREAMKIT_GATEWAY``, else the default local gateway."""
    return url or os.environ.get(GATEWAY_ENV) or DEFAULT_GATEWAY


def describe_error(exc: BaseException, gateway: str) -> str:
    """One line for the screen: what went wrong, naming the gateway when it cannot be reached."""
    message = clean_message(exc) or type(exc).__name__
    from_gateway = message.startswith(("unavailable:", "rate limited:", "lagging:"))
    if isinstance(exc, flight.FlightUnavailableError) and not from_gateway:
        if "failed to connect" in message.lower():  # gRPC's detail ends with the reason
            message = message.rsplit(": ", 1)[-1]
        return f"cannot reach the gateway at {gateway}: {message}"
    return message


@dataclass(frozen=True)
class DatasetEntry:
    tenant: str
    dataset: str
    rows: int  # -1: unknown without a full read
    bytes: int  # -1: unknown
    schema: pa.Schema

    @property
    def key(self) -> str:
        return f"{self.tenant}/{self.dataset}"


def connect(gateway: str) -> flight.FlightClient:
    return flight.connect(gateway)


def list_datasets(gateway: str) -> list[DatasetEntry]:
    """Every dataset of every tenant the gateway lets us see, sorted by tenant and name."""
    options = flight.FlightCallOptions(timeout=CALL_TIMEOUT)
    with connect(gateway) as client:
        entries = []
        for info in client.list_flights(options=options):
            path = [part.decode("utf-8", "replace") for part in info.descriptor.path]
            if len(path) != 2:
                continue
            entries.append(
                DatasetEntry(path[0], path[1], info.total_records, info.total_bytes, info.schema)
            )
    return sorted(entries, key=lambda entry: (entry.tenant, entry.dataset))


class DatasetStream:
    """One ``DoGet`` of ``[tenant, dataset]``; ``cancel()`` may be called from any thread.

    Cancelling cancels the gRPC call, so the gateway stops its upstream read as well.
    """

    def __init__(self, gateway: str, tenant: str, dataset: str) -> None:
        self.gateway = gateway
        self.tenant = tenant
        self.dataset = dataset
        self._lock = threading.Lock()
        self._cancelled = threading.Event()
        self._client: flight.FlightClient | None = None
        self._reader: flight.FlightStreamReader | None = None
        self.completed = False  # read to the end: a late cancel() changes nothing

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def open(self) -> pa.Schema:
        """Plan and start the stream; returns its schema."""
        client = connect(self.gateway)
        with self._lock:
            self._client = client
        descriptor = flight.FlightDescriptor.for_path(self.tenant, self.dataset)
        options = flight.FlightCallOptions(timeout=CALL_TIMEOUT)
        info = client.get_flight_info(descriptor, options)
        reader = client.do_get(info.endpoints[0].ticket)
        with self._lock:
            self._reader = reader
        if self.cancelled:  # cancelled while the call was being set up
            reader.cancel()
        return reader.schema

    def batches(self) -> Iterator[pa.RecordBatch]:
        """The batches as they arrive; ends early, without error, once cancelled."""
        reader = self._reader
        if reader is None:
            raise RuntimeError("open() the stream first")
        while not self.cancelled:
            try:
                chunk = reader.read_chunk()
            except StopIteration:
                self.completed = True
                return
            except pa.ArrowException:  # Flight errors included
                if self.cancelled:
                    return
                raise
            if chunk.data is not None:
                yield chunk.data

    def cancel(self) -> None:
        self._cancelled.set()
        with self._lock:
            if self._reader is not None:
                self._reader.cancel()

    def close(self) -> None:
        with self._lock:
            client, self._client, self._reader = self._client, None, None
        if client is not None:
            client.close()
