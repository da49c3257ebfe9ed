"""The error contract at the Flight edge: class, message and code, over a real call."""

from __future__ import annotations

import pyarrow.flight as flight
import pytest
from conftest import running_gateway

from streamkit import errors
from streamkit.flight_server import BaseFlightServer

CASES = [
    (errors.not_found("dataset 'x'"), flight.FlightServerError),
    (errors.invalid("bad"), flight.FlightServerError),
    (errors.unavailable("down"), flight.FlightUnavailableError),
    (errors.rate_limited("slow down"), flight.FlightUnavailableError),
    (errors.lagging("behind"), flight.FlightUnavailableError),
    (errors.Unauthenticated("unauthenticated: who"), flight.FlightUnauthenticatedError),
    (errors.Unauthorized("unauthorized: no"), flight.FlightUnauthorizedError),
]


class Raising(BaseFlightServer):
    """Raises the typed error named by the ticket, from a call and from inside a stream."""

    def get_flight_info(self, context, descriptor):
        raise CASES[int(descriptor.command)][0]

    def list_flights(self, context, criteria):
        yield from ()
        raise CASES[int(criteria)][0]


@pytest.mark.parametrize("index", range(len(CASES)))
def test_typed_errors_arrive_with_class_message_and_code(index):
    typed, cls = CASES[index]
    with Raising() as server, flight.connect(f"grpc://127.0.0.1:{server.port}") as client:
        calls = [
            lambda: client.get_flight_info(flight.FlightDescriptor.for_command(str(index))),
            lambda: list(client.list_flights(str(index).encode())),
        ]
        for call in calls:
            with pytest.raises(cls) as raised:
                call()
            assert raised.value.extra_info == typed.code.encode()
            assert errors.clean_message(raised.value) == typed.message
            assert errors.code_of(raised.value) == typed.code
            assert type(errors.from_flight(raised.value)) is type(typed)


def test_the_code_wins_over_the_wording():
    """A client reads the code: a message without the prefix still means what was sent."""
    sent = flight.FlightUnavailableError("too many callers", extra_info=b"rate_limited")
    assert errors.code_of(sent) == errors.RATE_LIMITED
    assert errors.code_of(flight.FlightServerError("not found: x")) == errors.NOT_FOUND  # others


def test_gateway_errors_carry_their_code(demo_gateway):
    with flight.connect(demo_gateway.flight_url) as client:
        for path, code in ((("nobody", "x"), "not_found"), (("demo", "nope"), "not_found")):
            with pytest.raises(flight.FlightServerError) as raised:
                client.get_flight_info(flight.FlightDescriptor.for_path(*path))
            assert raised.value.extra_info == code.encode()
        with pytest.raises(flight.FlightServerError) as raised:
            client.do_get(flight.Ticket(b'{"tenant": "demo", "dataset": "sales", "limit": -1}'))
        assert raised.value.extra_info == b"invalid"


def test_a_stopped_connector_is_unavailable_with_its_code(tmp_path):
    with running_gateway({"gone": "grpc://127.0.0.1:9"}) as gateway:
        with flight.connect(gateway.flight_url) as client, pytest.raises(
            flight.FlightUnavailableError, match="tenant 'gone'"
        ) as raised:
            client.get_flight_info(flight.FlightDescriptor.for_path("gone", "x"))
        assert raised.value.extra_info == b"unavailable"
