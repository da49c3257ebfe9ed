"""What the connector's and the gateway's Flight servers share: TLS, bearer tokens read by a
middleware, the peer allow-list, a clean "unimplemented" for methods they do not serve, and
the Flight edge of the error contract: a typed error raised by any handler reaches the
client as its Flight error class, with its code in ``extra_info``.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow.flight as flight

from streamkit import errors
from streamkit.security import AUTH_MIDDLEWARE, PeerFilter, TokenMiddlewareFactory, call_token

FLIGHT_METHODS = (
    "list_flights",
    "get_flight_info",
    "get_schema",
    "do_get",
    "do_put",
    "do_exchange",
    "do_action",
    "list_actions",
)


def flight_edge(method: Callable[..., Any]) -> Callable[..., Any]:
    """``method`` with typed errors turned into Flight errors (generators: as they iterate)."""
    if inspect.isgeneratorfunction(method):

        @functools.wraps(method)
        def iterate(*args: Any, **kwargs: Any) -> Any:
            try:
                yield from method(*args, **kwargs)
            except errors.StreamkitError as exc:
                raise errors.to_flight(exc) from None

        return iterate

    @functools.wraps(method)
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except errors.StreamkitError as exc:
            raise errors.to_flight(exc) from None

    return call


class BaseFlightServer(flight.FlightServerBase):  # type: ignore[misc]  # pyarrow: no stubs
    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Every Flight handler a subclass defines goes through :func:`flight_edge`."""
        super().__init_subclass__(**kwargs)
        for name in FLIGHT_METHODS:
            if name in cls.__dict__:
                setattr(cls, name, flight_edge(cls.__dict__[name]))

    def __init__(
        self,
        location: str = "grpc://127.0.0.1:0",
        *,
        allow: tuple[str, ...] | list[str] | None = None,
        tls_cert: Path | None = None,
        tls_key: Path | None = None,
        tls_client_ca: Path | None = None,
        **kwargs: Any,
    ) -> None:
        self.peers = PeerFilter(allow)
        self.tls = tls_cert is not None
        self.unix = location if location.startswith("grpc+unix://") else None
        self.host = location.split("://", 1)[1].rsplit(":", 1)[0]
        if self.tls:
            location = location.replace("grpc://", "grpc+tls://", 1)
            assert tls_cert is not None and tls_key is not None
            kwargs["tls_certificates"] = [(tls_cert.read_bytes(), tls_key.read_bytes())]
            if tls_client_ca is not None:  # mutual TLS: only clients with a cert it signed
                kwargs["verify_client"] = True
                kwargs["root_certificates"] = tls_client_ca.read_bytes()
        kwargs.setdefault("middleware", {})[AUTH_MIDDLEWARE] = TokenMiddlewareFactory()
        super().__init__(location, **kwargs)

    @property
    def url(self) -> str:
        if self.unix is not None:
            return self.unix
        return f"{'grpc+tls' if self.tls else 'grpc'}://{self.host}:{self.port}"

    def admit(self, context: flight.ServerCallContext) -> tuple[str, str | None]:
        """Check the peer before any work; return its address and its bearer token."""
        return self.peers.check_flight(context), call_token(context)

    def get_schema(
        self, context: flight.ServerCallContext, descriptor: flight.FlightDescriptor
    ) -> flight.SchemaResult:
        """The schema of what ``get_flight_info`` describes (same checks, same errors)."""
        return flight.SchemaResult(self.get_flight_info(context, descriptor).schema)

    def _unimplemented(self, method: str) -> flight.FlightError:
        return errors.to_flight(errors.Unimplemented(f"unimplemented: {method} is not served here"))

    def do_put(
        self,
        context: flight.ServerCallContext,
        descriptor: flight.FlightDescriptor,
        reader: flight.MetadataRecordBatchReader,
        writer: flight.FlightMetadataWriter,
    ) -> None:
        raise self._unimplemented("DoPut")

    def do_exchange(
        self,
        context: flight.ServerCallContext,
        descriptor: flight.FlightDescriptor,
        reader: flight.MetadataRecordBatchReader,
        writer: flight.MetadataRecordBatchWriter,
    ) -> None:
        raise self._unimplemented("DoExchange")

    def do_action(
        self, context: flight.ServerCallContext, action: flight.Action
    ) -> Iterator[flight.Result]:
        raise self._unimplemented("DoAction")

    def list_actions(self, context: flight.ServerCallContext) -> list[tuple[str, str]]:
        raise self._unimplemented("ListActions")
