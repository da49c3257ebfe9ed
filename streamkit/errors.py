"""The error contract of DESIGN.md: Flight error classes and messages, WebSocket codes.

Only ``flight.Flight*Error`` classes reach clients without the server's traceback, so every
failure a client may see is raised as one of them, recognised by its message prefix.
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
}


def not_found(what: str) -> flight.FlightServerError:
    return flight.FlightServerError(f"not found: {what}")


def invalid(what: str) -> flight.FlightServerError:
    return flight.FlightServerError(f"invalid: {what}")


def unavailable(what: str) -> flight.FlightUnavailableError:
    return flight.FlightUnavailableError(f"unavailable: {what}")


def lagging(what: str) -> flight.FlightUnavailableError:
    return flight.FlightUnavailableError(f"lagging: {what}")


_DETAIL = re.compile(r"(\. Detail: [A-Za-z ]+)+$")


def clean_message(exc: BaseException) -> str:
    """The first line of an error's message, without the gRPC debug context pyarrow appends."""
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
    """The WebSocket/HTTP error code of an exception raised by a Flight call."""
    message = clean_message(exc)
    if isinstance(exc, flight.FlightUnauthenticatedError):
        return UNAUTHENTICATED
    if isinstance(exc, flight.FlightUnauthorizedError):
        return UNAUTHORIZED
    if message.startswith("rate limited:"):
        return RATE_LIMITED
    if message.startswith("lagging:"):
        return LAGGING
    if isinstance(exc, flight.FlightUnavailableError | flight.FlightTimedOutError):
        return UNAVAILABLE
    if message.startswith("not found:"):
        return NOT_FOUND
    if message.startswith("invalid:") or isinstance(exc, pa.ArrowInvalid | pa.ArrowTypeError):
        return INVALID
    return INTERNAL


def as_flight_error(exc: BaseException, context: str, hide: str = "") -> flight.FlightError:
    """Turn an error from reading data into a clean ``invalid:`` Flight error.

    ``hide`` (a server path) is removed from the message so clients never learn where data lives.
    """
    if isinstance(exc, flight.FlightError):
        return exc
    message = clean_message(exc)
    if hide:
        message = message.replace(hide.rstrip("/") + "/", "").replace(hide, "")
    return invalid(f"{context}: {message}")
