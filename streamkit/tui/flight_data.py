"""The TUI's Flight calls, blocking and headless: run them in worker threads (no Textual here).

Gateway URL resolution, the token header, TLS and error messages come from
``streamkit.client``, shared with ``query`` and ``ls``, so every client says the same thing.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.flight as flight

from streamkit import errors
from streamkit.client import (
    DEFAULT_GATEWAY,
    GATEWAY_ENV,
    TOKEN_ENV,
    ClientError,
    GatewayClient,
    from_flight_error,
    resolve_gateway,
)
from streamkit.live_wire import skipped_rows
from streamkit.query import Query

__all__ = [
    "DEFAULT_GATEWAY",
    "GATEWAY_ENV",
    "TOKEN_ENV",
    "Connection",
    "DatasetEntry",
    "DatasetStream",
    "Failure",
    "describe_error",
    "list_datasets",
    "resolve_gateway",
]

AUTH_CODES = (errors.UNAUTHENTICATED, errors.UNAUTHORIZED)


@dataclass(frozen=True)
class Connection:
    """How to reach the gateway: its URL, the caller's token and the CA that signed its cert.

    ``token=None`` falls back to ``$STREAMKIT_TOKEN`` (as every client command does).
    """

    url: str
    token: str | None = None
    tls_ca: Path | None = None

    def client_token(self) -> str | None:
        """The token calls carry: ``token``, else ``$STREAMKIT_TOKEN``; None for none."""
        token = self.token if self.token is not None else os.environ.get(TOKEN_ENV)
        return token or None

    def client(self) -> GatewayClient:
        return GatewayClient(self.url, token=self.token, tls_ca=self.tls_ca)


@dataclass(frozen=True)
class Failure:
    """An error for the screen: one line, and its contract code (``unauthenticated``…)."""

    message: str
    code: str = ""

    @property
    def is_auth(self) -> bool:
        return self.code in AUTH_CODES


def describe_error(exc: BaseException, gateway: str) -> Failure:
    """One line for the screen: what went wrong, naming the gateway when it cannot be reached."""
    if isinstance(exc, ClientError):
        return Failure(_once(exc.message), exc.code)
    if isinstance(exc, flight.FlightError | pa.ArrowException):
        error = from_flight_error(exc, gateway)
        return Failure(_once(error.message), error.code)
    return Failure(errors.clean_message(exc) or type(exc).__name__)


def _once(message: str) -> str:
    """``authentication failed: unauthenticated: …`` → ``authentication failed: …``: the
    gateway's own code word after the client's explanation says the same thing twice."""
    head, sep, rest = message.partition(": ")
    word, sep2, tail = rest.partition(": ")
    if sep and sep2 and word in ("unauthenticated", "unauthorized"):
        return f"{head}: {tail}"
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


def list_datasets(connection: Connection) -> list[DatasetEntry]:
    """Every dataset of every tenant the gateway lets us see, sorted by tenant and name."""
    with connection.client() as client:
        listings = client.list()
    return [
        DatasetEntry(
            item.tenant,
            item.dataset,
            -1 if item.rows is None else item.rows,
            -1 if item.bytes is None else item.bytes,
            item.schema,
        )
        for item in listings
    ]


class DatasetStream:
    """One ``DoGet`` of ``[tenant, dataset]``; ``cancel()`` may be called from any thread.

    With ``follow``, the gateway sends the rows so far, then each new batch until cancelled;
    a viewer wants the newest rows, so a follower that falls behind skips ahead
    (``on_lag: skip``) and is told how many rows it missed. Cancelling cancels the gRPC
    call, so the gateway stops its upstream read (or follower) as well. ``where`` is a SQL
    filter run at the dataset's connector: only matching rows arrive, followed ones too; a
    bad filter fails ``open()`` (``invalid: …``) before any row is read.
    """

    def __init__(
        self,
        connection: Connection,
        tenant: str,
        dataset: str,
        *,
        follow: bool = False,
        where: str | None = None,
    ) -> None:
        self.connection = connection
        self.tenant = tenant
        self.dataset = dataset
        self.follow = follow
        self.where = where or None
        self._lock = threading.Lock()
        self._cancelled = threading.Event()
        self._client: GatewayClient | None = None
        self._reader: flight.FlightStreamReader | None = None
        self.completed = False  # read to the end: a late cancel() changes nothing

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def query(self) -> Query:
        if self.follow:
            return Query(self.dataset, self.tenant, follow=True, on_lag="skip", where=self.where)
        return Query(self.dataset, self.tenant, where=self.where)

    def open(self) -> pa.Schema:
        """Plan and start the stream; returns its schema."""
        client = self.connection.client()
        with self._lock:
            self._client = client
        _, reader = client.open(self.query())
        with self._lock:
            self._reader = reader
        if self.cancelled:  # cancelled while the call was being set up
            reader.cancel()
        return reader.schema

    def chunks(self) -> Iterator[tuple[pa.RecordBatch, int]]:
        """``(batch, rows skipped before it)`` as they arrive; ends quietly once cancelled."""
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
                yield chunk.data, skipped_rows(chunk.app_metadata)

    def batches(self) -> Iterator[pa.RecordBatch]:
        for batch, _ in self.chunks():
            yield batch

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
