"""The error contract of DESIGN.md: typed errors raised by the core, converted at the edges.

The core (catalog, readers, query, live, the connector and the gateway's routing) raises a
:class:`StreamkitError` subclass whose ``code`` is the contract's WebSocket code and whose
message starts as DESIGN.md says (``not found: …``, ``invalid: …``). Only the edges convert:
:func:`to_flight` (the Flight error class, the message, and the code in ``extra_info``),
``HTTP_STATUS``, and the WebSocket ``code``. A client reads the code (:func:`code_of`), not
the text; the message prefix stays for Flight clients that only see text.
"""

from __future__ import annotations

import re

import pyarrow as pa
import pyarrow.flight as flight

NOT_FOUND = "not_found"
INVALID = "invalid"
BUSY = "busy"
UNAVAILABLE = "unavailable"
UNAUTHENTICATED = "unauthenticated"
UNAUTHORIZED = "unauthorized"
RATE_LIMITED = "rate_limited"
LAGGING = "lagging"
INTERNAL = "internal"
CANCELLED = "cancelled"  # a stream ended by its own client: an outcome, never sent
UNIMPLEMENTED = "unimplemented"

HTTP_STATUS = {
    NOT_FOUND: 404,
    INVALID: 400,
    BUSY: 409,
    UNAVAILABLE: 503,
    UNAUTHENTICATED: 401,
    UNAUTHORIZED: 403,
    RATE_LIMITED: 429,
    LAGGING: 503,
    INTERNAL: 500,
    CANCELLED: 499,
    UNIMPLEMENTED: 501,
}


class StreamkitError(Exception):
    """A failure a client may see: a contract code and a one-line message."""

    code = INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(StreamkitError):
    code = NOT_FOUND


class Invalid(StreamkitError):
    code = INVALID


class Unavailable(StreamkitError):
    code = UNAVAILABLE


class RateLimited(Unavailable):
    code = RATE_LIMITED


class Lagging(Unavailable):
    code = LAGGING


class Busy(StreamkitError):
    code = BUSY


class Unauthenticated(StreamkitError):
    code = UNAUTHENTICATED


class Unauthorized(StreamkitError):
    code = UNAUTHORIZED


class Cancelled(StreamkitError):
    code = CANCELLED


class Unimplemented(StreamkitError):
    code = UNIMPLEMENTED


_BY_CODE: dict[str, type[StreamkitError]] = {
    cls.code: cls
    for cls in (
        StreamkitError,
        NotFound,
        Invalid,
        Unavailable,
        RateLimited,
        Lagging,
        Busy,
        Unauthenticated,
        Unauthorized,
        Cancelled,
        Unimplemented,
    )
}

_FLIGHT_CLASS: dict[str, type[flight.FlightError]] = {
    UNAVAILABLE: flight.FlightUnavailableError,
    RATE_LIMITED: flight.FlightUnavailableError,
    LAGGING: flight.FlightUnavailableError,
    BUSY: flight.FlightUnavailableError,
    UNAUTHENTICATED: flight.FlightUnauthenticatedError,
    UNAUTHORIZED: flight.FlightUnauthorizedError,
    CANCELLED: flight.FlightCancelledError,
}


def error(code: str, message: str) -> StreamkitError:
    """The typed error of ``code`` (unknown codes: internal)."""
    return _BY_CODE.get(code, StreamkitError)(message)


def not_found(what: str) -> NotFound:
    return NotFound(f"not found: {what}")


def invalid(what: str) -> Invalid:
    return Invalid(f"invalid: {what}")


def unavailable(what: str) -> Unavailable:
    return Unavailable(f"unavailable: {what}")


def lagging(what: str) -> Lagging:
    return Lagging(f"lagging: {what}")


def rate_limited(what: str) -> RateLimited:
    return RateLimited(f"rate limited: {what}")


def to_flight(exc: StreamkitError) -> flight.FlightError:
    """The Flight error a client receives: class by code, the code in ``extra_info``."""
    cls = _FLIGHT_CLASS.get(exc.code, flight.FlightServerError)
    return cls(exc.message, extra_info=exc.code.encode())


def from_flight(exc: BaseException) -> StreamkitError:
    """A typed error for one raised by a Flight call (or pyarrow), clean of gRPC detail."""
    if isinstance(exc, StreamkitError):
        return exc
    return error(code_of(exc), clean_message(exc))


_DETAIL = re.compile(r"(\. Detail: [A-Za-z ]+)+$")


def clean_message(exc: BaseException) -> str:
    """The first line of an error's message, without the gRPC debug context pyarrow appends."""
    if isinstance(exc, StreamkitError):
        return exc.message
    text = str(exc).split(". gRPC client debug context:")[0]
    text = text.split("\n")[0].strip()
    text = _DETAIL.sub("", text)  # the gRPC status detail pyarrow appends
    for prefix in (
        "Flight error: ",
        "Flight returned unavailable error, with message: ",
        "Flight returned internal error, with message: ",
    ):
        text = text.removeprefix(prefix)
    return text


def code_of(exc: BaseException) -> str:
    """The contract code of any error: typed, a Flight error (its ``extra_info``, else —
    from a server that does not send it — its class and message prefix), or pyarrow's."""
    if isinstance(exc, StreamkitError):
        return exc.code
    if isinstance(exc, flight.FlightError):
        sent = (exc.extra_info or b"").decode("ascii", "replace")
        if sent in _BY_CODE:
            return sent
    message = clean_message(exc)
    if isinstance(exc, flight.FlightUnauthenticatedError):
        return UNAUTHENTICATED
    if isinstance(exc, flight.FlightUnauthorizedError):
        return UNAUTHORIZED
    if isinstance(exc, flight.FlightCancelledError):
        return CANCELLED
    if message.startswith("rate limited:"):
        return RATE_LIMITED
    if message.startswith("lagging:"):
        return LAGGING
    if isinstance(exc, flight.FlightUnavailableError | flight.FlightTimedOutError):
        return UNAVAILABLE
    if message.startswith("not found:"):
        return NOT_FOUND
    if message.startswith("unimplemented:"):
        return UNIMPLEMENTED
    if message.startswith("invalid:") or isinstance(exc, pa.ArrowInvalid | pa.ArrowTypeError):
        return INVALID
    return INTERNAL


def as_error(exc: BaseException, context: str, hide: str = "") -> StreamkitError:
    """Turn an error from reading data into a clean ``invalid:`` error.

    ``hide`` (a server path) is removed from the message so clients never learn where data lives.
    """
    if isinstance(exc, StreamkitError):
        return exc
    message = clean_message(exc)
    if hide:
        message = message.replace(hide.rstrip("/") + "/", "").replace(hide, "")
    return invalid(f"{context}: {message}")
