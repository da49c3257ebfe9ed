"""Opening an upstream stream without hanging on a connector that does not answer.

pyarrow's ``do_get`` returns once the stream's schema has come, and a call deadline would
cut the whole stream, not just its opening. A connector that is stopped (SIGSTOP), wedged,
or on a host that left the network without a reset would hold the caller (and its stream
slot) forever. So the call waits in a thread of its own; while it waits, the connector is
asked a cheap question (ListActions) every ``PATIENCE_S`` seconds. A connector that answers
is only slow (a big folder to look at, a busy machine) and is waited for; one that does not
is given up on as ``unavailable`` (a replica read then tries the next replica). The call
given up on (a parked thread) cancels its stream if it ever opens. Such calls are the opens
already under way when the connector stopped answering: while any of them waits, a new open
first asks the connector and fails at once without a thread if it does not answer, and past
``MAX_ABANDONED`` of them it fails at once whatever the answer.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable

import pyarrow as pa
import pyarrow.flight as flight

PATIENCE_S = 5.0  # an open taking longer has its connector asked whether it is there
PING_TIMEOUT_S = 5.0
MAX_ABANDONED = 16

Options = Callable[[float | None], flight.FlightCallOptions]  # a deadline -> call options

_abandoned: Counter[flight.FlightClient] = Counter()
_abandoned_lock = threading.Lock()


def answers(client: flight.FlightClient, options: Options, timeout: float = PING_TIMEOUT_S) -> bool:
    """Whether the connector answers a ListActions within ``timeout`` seconds (any answer,
    even a refusal, means it is there)."""
    try:
        client.list_actions(options(timeout))
    except (flight.FlightUnavailableError, flight.FlightTimedOutError):
        return False
    except (flight.FlightError, pa.ArrowNotImplementedError):  # refused or unimplemented
        return True
    except Exception:  # e.g. the client was closed (its tenant reloaded away)
        return False
    return True


def open_stream(
    client: flight.FlightClient, ticket: flight.Ticket, options: Options
) -> flight.FlightStreamReader:
    """``client.do_get(ticket)``, or ``FlightUnavailableError`` once the connector stops
    answering while it waits."""
    with _abandoned_lock:
        waiting = _abandoned[client]
    # Opens given up on still wait: a new one waits too only if the connector answers now.
    if waiting >= MAX_ABANDONED or (waiting and not answers(client, options)):
        raise flight.FlightUnavailableError(
            "the connector does not answer (streams opened on it are still waiting)"
        )
    call = _Call(client, ticket, options(None))
    while not call.done.wait(PATIENCE_S):
        if not answers(client, options) and call.abandon():
            raise flight.FlightUnavailableError(
                f"the connector did not answer for {PATIENCE_S + PING_TIMEOUT_S:g} s"
            )
    if call.error is not None:
        raise call.error
    reader: flight.FlightStreamReader = call.reader
    return reader


class _Call:
    """One ``do_get`` in a thread of its own."""

    def __init__(
        self, client: flight.FlightClient, ticket: flight.Ticket, options: flight.FlightCallOptions
    ) -> None:
        self.client = client
        self.done = threading.Event()
        self.reader: flight.FlightStreamReader | None = None
        self.error: BaseException | None = None
        self._abandoned = False
        self._lock = threading.Lock()
        threading.Thread(
            target=self._run, args=(ticket, options), name="streamkit-open", daemon=True
        ).start()

    def _run(self, ticket: flight.Ticket, options: flight.FlightCallOptions) -> None:
        reader: flight.FlightStreamReader | None = None
        error: BaseException | None = None
        try:
            reader = self.client.do_get(ticket, options)
        except BaseException as exc:
            error = exc
        with self._lock:
            abandoned = self._abandoned
            self.reader, self.error = reader, error
            self.done.set()
        if abandoned:
            if reader is not None:
                reader.cancel()
            with _abandoned_lock:
                _abandoned[self.client] -= 1
                if _abandoned[self.client] <= 0:
                    del _abandoned[self.client]

    def abandon(self) -> bool:
        """Give up on the call, unless it has just ended (then its outcome stands)."""
        with self._lock:
            if self.done.is_set():
                return False
            self._abandoned = True
            with _abandoned_lock:  # counted before the call can see it was abandoned
                _abandoned[self.client] += 1
        return True
