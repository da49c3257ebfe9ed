"""Talking to a gateway from a command line client (``ls``, ``query``, ``bench``, ``tui``).

Gateway URL resolution (``--gateway``, ``STREAMKIT_GATEWAY``, default), one Flight client
with the caller's token, and failures turned into :class:`ClientError` with a one-line message
and a distinct exit code. No rich or Textual here, so every front end can reuse it.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.flight as flight

from streamkit import errors
from streamkit.merged import MergedReader
from streamkit.query import Query

DEFAULT_GATEWAY = "grpc://localhost:8815"
GATEWAY_ENV = "STREAMKIT_GATEWAY"
TOKEN_ENV = "STREAMKIT_TOKEN"
METADATA_TIMEOUT_S = 30.0

# Exit codes shared by every client command (documented in each command's help).
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_UNAVAILABLE = 4
EXIT_AUTH = 5
EXIT_INVALID = 6
EXIT_INTERRUPTED = 130

EXIT_CODES_HELP = (
    "Exit codes: 0 success; 1 other failure; 2 bad usage; 3 tenant or dataset not found; "
    "4 gateway or connector unavailable (or rate limited); 5 authentication or authorization "
    "refused; 6 invalid request (e.g. unknown column); 130 interrupted."
)

_EXIT_BY_CODE = {
    errors.NOT_FOUND: EXIT_NOT_FOUND,
    errors.INVALID: EXIT_INVALID,
    errors.UNAVAILABLE: EXIT_UNAVAILABLE,
    errors.RATE_LIMITED: EXIT_UNAVAILABLE,
    errors.LAGGING: EXIT_UNAVAILABLE,
    errors.BUSY: EXIT_UNAVAILABLE,
    errors.UNAUTHENTICATED: EXIT_AUTH,
    errors.UNAUTHORIZED: EXIT_AUTH,
}
_DETAIL = re.compile(r"(\. Detail: [A-Za-z ]+)+$")  # gRPC status detail pyarrow appends
_URL = re.compile(r"^(grpc(?:\+tcp|\+tls)?)://(\[[0-9a-fA-F:.]+\]|[^/:\s\[\]]+):(\d{1,5})/?$")


class ClientError(Exception):
    """A failure to report as one line on stderr, ending the process with ``exit_code``."""

    def __init__(self, message: str, exit_code: int = EXIT_ERROR, code: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code
        self.code = code


def resolve_gateway(url: str | None = None) -> str:
    """``--gateway`` if given, else ``STREAMKIT_GATEWAY``, else the default; validated.

    ``HOST:PORT`` without a scheme means ``grpc://HOST:PORT``.
    """
    url = (url or os.environ.get(GATEWAY_ENV) or DEFAULT_GATEWAY).strip()
    if "://" not in url:
        url = f"grpc://{url}"
    match = _URL.match(url)
    if not match or not 0 < int(match.group(3)) <= 65535:
        raise ClientError(
            f"gateway URL {url!r} is not grpc://HOST:PORT (or grpc+tls://HOST:PORT)", EXIT_USAGE
        )
    return url.rstrip("/")


def parse_target(target: str) -> tuple[str, str]:
    """``TENANT/DATASET`` (the dataset may contain ``/``) into its two parts."""
    tenant, _, dataset = target.strip().partition("/")
    if not tenant or not dataset.strip("/"):
        raise ClientError(f"expected TENANT/DATASET, got {target!r}", EXIT_USAGE)
    return tenant, dataset.strip("/")


def exit_code_for(code: str) -> int:
    """The exit code of a contract error code."""
    return _EXIT_BY_CODE.get(code, EXIT_ERROR)


def from_flight_error(exc: BaseException, url: str) -> ClientError:
    """One clean line and an exit code for an error raised by a Flight call."""
    code = errors.code_of(exc)
    message = _DETAIL.sub("", errors.clean_message(exc))
    if code == errors.UNAVAILABLE and not message.startswith("unavailable:"):
        # Not the gateway speaking: gRPC could not reach it at all.
        detail = message.split("; last error:")[0]
        message = f"cannot reach the gateway at {url}: {detail}"
    elif code == errors.UNAUTHENTICATED:
        message = f"authentication failed: {message or 'missing or wrong token'}"
    elif code == errors.UNAUTHORIZED:
        message = f"not authorized: {message}"
    elif code == errors.INTERNAL:
        message = f"the gateway failed: {message}"
    return ClientError(message, _EXIT_BY_CODE.get(code, EXIT_ERROR), code)


@dataclass(frozen=True)
class DatasetListing:
    tenant: str
    dataset: str
    rows: int | None
    bytes: int | None
    schema: pa.Schema

    def to_json(self) -> dict[str, object]:
        return {
            "tenant": self.tenant,
            "dataset": self.dataset,
            "rows": self.rows,
            "bytes": self.bytes,
            "columns": [{"name": f.name, "type": str(f.type)} for f in self.schema],
        }


class GatewayClient:
    """A Flight client of one gateway; every method raises :class:`ClientError` on failure."""

    def __init__(
        self, url: str | None = None, *, token: str | None = None, tls_ca: Path | None = None
    ) -> None:
        self.url = resolve_gateway(url)
        token = token if token is not None else os.environ.get(TOKEN_ENV)
        self._headers = [(b"authorization", f"Bearer {token}".encode())] if token else []
        kwargs = {}
        if tls_ca is not None:
            try:
                kwargs["tls_root_certs"] = Path(tls_ca).read_bytes()
            except OSError as exc:
                raise ClientError(f"cannot read --tls-ca {tls_ca}: {exc.strerror}") from None
        with self.errors():
            self._client = flight.connect(self.url, **kwargs)

    def options(self, timeout: float | None = None) -> flight.FlightCallOptions:
        return flight.FlightCallOptions(timeout=timeout, headers=self._headers)

    @contextmanager
    def errors(self) -> Iterator[None]:
        """Turn Flight and Arrow errors raised inside into :class:`ClientError`."""
        try:
            yield
        except (flight.FlightError, pa.ArrowException) as exc:
            raise from_flight_error(exc, self.url) from None

    def list(self, tenant: str | None = None) -> list[DatasetListing]:
        criteria = tenant.encode() if tenant else b""
        with self.errors():
            infos = list(self._client.list_flights(criteria, self.options(METADATA_TIMEOUT_S)))
        out = []
        for info in infos:
            parts = [p.decode("utf-8", "replace") for p in info.descriptor.path or []]
            if len(parts) != 2:
                continue
            out.append(
                DatasetListing(
                    parts[0],
                    parts[1],
                    info.total_records if info.total_records >= 0 else None,
                    info.total_bytes if info.total_bytes >= 0 else None,
                    info.schema,
                )
            )
        return sorted(out, key=lambda d: (d.tenant, d.dataset))

    def health(self) -> dict[str, dict[str, Any]]:
        """The state of the caller's tenants (``/healthz``'s ``tenants``); empty from a
        gateway that does not serve the ``health`` action."""
        action = flight.Action("health", b"")
        try:
            with self.errors():
                results = list(self._client.do_action(action, self.options(METADATA_TIMEOUT_S)))
        except ClientError as exc:
            if exc.code in (errors.UNIMPLEMENTED, errors.INVALID):
                return {}
            raise
        tenants: dict[str, dict[str, Any]] = json.loads(results[0].body.to_pybytes())["tenants"]
        return tenants

    def metrics(self, *, timeout: float | None = METADATA_TIMEOUT_S) -> str:
        """The gateway's metrics as Prometheus text (what ``GET /metrics`` serves), from the
        ``metrics`` action; refused unless this host is in ``metrics_allow`` or the token is
        ``metrics_token``."""
        with self.errors():
            results = list(
                self._client.do_action(flight.Action("metrics", b""), self.options(timeout))
            )
        if not results:
            raise ClientError("the gateway answered the metrics action with nothing")
        text: str = results[0].body.to_pybytes().decode("utf-8")
        return text

    def reload(self) -> dict[str, Any]:
        """Have the gateway read its configuration again (``kill -HUP``); only from the
        gateway's own machine. Returns what changed; a bad file is ``invalid``."""
        with self.errors():
            results = list(self._client.do_action(flight.Action("reload", b""), self.options(30)))
        changes: dict[str, Any] = json.loads(results[0].body.to_pybytes())
        return changes

    def info(self, query: Query) -> flight.FlightInfo:
        with self.errors():
            return self._client.get_flight_info(
                query.to_descriptor(), self.options(METADATA_TIMEOUT_S)
            )

    def open(self, query: Query) -> tuple[flight.FlightInfo, flight.FlightStreamReader]:
        """Plan and open a stream, all of its endpoints (a sharded dataset's, read in
        parallel and merged); read it inside ``with client.errors():``."""
        info = self.info(query)
        if not info.endpoints:
            raise ClientError(f"the gateway offered no endpoint for {query.label()}")
        with self.errors():
            readers = []
            try:
                for endpoint in info.endpoints:
                    readers.append(self._client.do_get(endpoint.ticket, self.options()))
            except BaseException:
                for reader in readers:
                    reader.cancel()
                raise
            if len(readers) == 1:
                return info, readers[0]
            return info, MergedReader(readers, None)

    def publish(self, tenant: str, dataset: str, schema: pa.Schema) -> flight.FlightStreamWriter:
        """Open a DoPut to ``TENANT/DATASET``; write batches, then ``done_writing`` and
        ``close`` inside ``with client.errors():`` (server errors surface there)."""
        descriptor = flight.FlightDescriptor.for_path(tenant, dataset)
        with self.errors():
            writer, _ = self._client.do_put(descriptor, schema, self.options())
        return writer

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> GatewayClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_chunks(reader: flight.FlightStreamReader) -> Iterator[pa.RecordBatch]:
    """The batches of a Flight stream as they arrive (raises Flight errors, not ClientError)."""
    while True:
        try:
            chunk = reader.read_chunk()
        except StopIteration:
            return
        if chunk.data is not None:
            yield chunk.data


def silence_stdout() -> None:
    """After a closed pipe (``| head``): point stdout at /dev/null so the exit flush is quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


def unexpected(exc: BaseException) -> str:
    """One line about an error nobody planned for: its type and first line, no traceback."""
    return f"{type(exc).__name__}: {errors.clean_message(exc)}"
