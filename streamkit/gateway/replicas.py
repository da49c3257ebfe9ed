"""Reads of a tenant whose data is on several replicas (DESIGN.md "Scale-out").

Each read starts on the next replica in turn. If its replica fails mid-stream, the read
goes on from another one, from the first row not yet delivered:

- a file dataset is asked for ``offset`` = rows delivered (and ``limit`` = what is left):
  a Parquet connector skips whole files and row groups by their footers, an Arrow file
  or a text file is read and the rows before the offset dropped at the connector;
- a live follow carries each batch's dataset row number, so it is asked to follow from
  the row after the last one delivered (its history replayed from there).

Replicas hold the same files, and every reader of a connector returns rows in the same
order every time, so nothing is lost or sent twice.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TypeVar

import pyarrow.flight as flight

from streamkit import errors
from streamkit.gateway.opening import PING_TIMEOUT_S, Options, answers, open_stream
from streamkit.live_wire import row_offset
from streamkit.query import Query

T = TypeVar("T")
log = logging.getLogger("streamkit.gateway")

MAX_RESUMES = 16  # per read: replicas that keep failing end it
WATCH_SECONDS = 0.5


class _Watchdog:
    """One thread for every replica read: a read whose replica has sent nothing for its
    ``stall`` seconds while the gateway waited has its replica asked whether it is there
    (a host that vanished sends no reset, and a TCP connection then waits for minutes). One
    that does not answer is given up on: the read is cancelled and resumed on another
    replica. One that answers is only slow, and is waited for as a lone connector would be."""

    def __init__(self) -> None:
        self.reads: weakref.WeakSet[ResumingReader] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def watch(self, read: ResumingReader) -> None:
        with self._lock:
            self.reads.add(read)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="streamkit-replicas", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        while True:
            time.sleep(WATCH_SECONDS)  # a timer, not synchronisation
            now = time.monotonic()
            with self._lock:
                reads = list(self.reads)
            for read in reads:
                since = read.waiting_since
                if since is not None and now - since > read.stall:
                    read.stalled()


_watchdog = _Watchdog()


def transport_failure(exc: BaseException) -> bool:
    """The connector went away (worth another replica), not a refusal of the request."""
    if isinstance(exc, flight.FlightInternalError):  # e.g. the stream was reset
        return True
    return errors.code_of(exc) == errors.UNAVAILABLE and not str(exc).startswith("rate limited")


class Rotation:
    """Which replica the next read starts on."""

    def __init__(self, count: int) -> None:
        self._turns = itertools.count()
        self.count = count

    def order(self) -> list[int]:
        first = next(self._turns) % self.count
        return [(first + i) % self.count for i in range(self.count)]


def first_answer(
    clients: Sequence[flight.FlightClient],
    order: list[int],
    call: Callable[[flight.FlightClient], T],
    seen: Callable[[int, bool], None],
) -> T:
    """``call`` on each replica in ``order`` until one answers (metadata calls)."""
    failure: BaseException | None = None
    for index in order:
        try:
            answer = call(clients[index])
        except Exception as exc:
            if not transport_failure(exc):
                raise
            seen(index, False)
            failure = exc
            continue
        seen(index, True)
        return answer
    assert failure is not None
    raise failure


class ResumingReader:
    """Read like a FlightStreamReader; resumes on another replica when its own fails."""

    def __init__(
        self,
        tenant: str,
        clients: Sequence[flight.FlightClient],
        order: list[int],
        query: Query,
        options: Options,
        seen: Callable[[int, bool], None],
        stall: float | None = None,
    ) -> None:
        """``stall``: seconds a replica may send nothing before it counts as gone (not for
        follows, which may be quiet for as long as their dataset is)."""
        self.tenant, self.clients, self.order, self.query = tenant, clients, order, query
        self._options, self._seen = options, seen
        self.stall = stall or 0.0
        self.waiting_since: float | None = None  # while waiting on the replica
        self._stalled = False
        self._checking = False  # the replica is being asked whether it is there
        self.delivered = 0  # rows handed on
        self.next_row: int | None = None  # a follow: the dataset row number after the last
        self.resumes = 0
        self.cancelled = False
        self.reader = self._open(query)
        self.schema = self.reader.schema
        if self.stall and not query.follow:
            _watchdog.watch(self)

    def stalled(self) -> None:
        """Called by the watchdog: ask the replica, in a thread of its own, whether it is
        there; if not, give up on it (the read resumes elsewhere)."""
        if not self._checking:
            self._checking = True
            check = threading.Thread(target=self._check, name="streamkit-replica", daemon=True)
            check.start()

    def _check(self) -> None:
        since, reader, client = self.waiting_since, self.reader, self.clients[self.order[0]]
        try:
            # Within the stream's idle budget: the stall took half, the question a quarter.
            there = answers(client, self._options, min(PING_TIMEOUT_S, self.stall / 2))
        finally:
            self._checking = False
        if since is None or self.waiting_since != since or self.reader is not reader:
            return  # the read moved on meanwhile
        if there:
            self.waiting_since = time.monotonic()  # slow, not gone: another ``stall`` to wait
        else:
            self._stalled = True
            self.reader.cancel()

    def _open(self, query: Query) -> flight.FlightStreamReader:
        def call(client: flight.FlightClient) -> flight.FlightStreamReader:
            return open_stream(client, query.to_ticket(), self._options)

        failure: BaseException | None = None
        for _ in range(len(self.order)):
            index = self.order[0]
            try:
                reader = call(self.clients[index])
            except Exception as exc:
                if not transport_failure(exc):
                    raise
                self._seen(index, False)
                failure = exc
                self.order = self.order[1:] + self.order[:1]
                continue
            self._seen(index, True)
            return reader
        assert failure is not None
        raise failure

    def read_chunk(self) -> flight.FlightStreamChunk:
        while True:
            self.waiting_since = time.monotonic()
            try:
                chunk = self.reader.read_chunk()
            except StopIteration:
                raise
            except Exception as exc:
                stalled, self._stalled = self._stalled, False
                gone = stalled or transport_failure(exc)
                if self.cancelled or not gone or self.resumes >= MAX_RESUMES:
                    raise
                self.waiting_since = None  # not waiting on a replica while opening another
                self._resume(exc if not stalled else TimeoutError(f"silent for {self.stall:g} s"))
                continue
            finally:
                self.waiting_since = None
            if chunk.data is not None:
                self.delivered += chunk.data.num_rows
                start = row_offset(chunk.app_metadata)
                if start is not None:
                    self.next_row = start + chunk.data.num_rows
            return chunk

    def _resume(self, exc: BaseException) -> None:
        self.resumes += 1
        failed = self.order[0]
        self._seen(failed, False)
        self.order = self.order[1:] + self.order[:1]  # the failed one is tried last
        query = self._rest()
        log.warning(
            "tenant %s: replica %d failed (%s); resuming %s at row %d on replica %d",
            self.tenant,
            failed,
            errors.clean_message(exc),
            self.query.label(),
            (query.offset or 0),
            self.order[0],
        )
        reader = self._open(query)
        if not reader.schema.equals(self.schema):
            reader.cancel()
            raise errors.unavailable(
                f"the replicas of tenant {self.tenant!r} disagree on the schema of "
                f"{self.query.label()!r}"
            )
        self.reader, self._stalled = reader, False

    def _rest(self) -> Query:
        """The query for what has not been delivered yet."""
        if not self.delivered:
            return self.query  # nothing delivered yet: as asked
        limit = None if self.query.limit is None else self.query.limit - self.delivered
        if self.query.follow and self.next_row is not None:  # rows carry their numbers
            return replace(self.query, offset=self.next_row, from_=None, limit=limit)
        if self.query.sql is not None:  # no offset goes with SQL, whose rows have no order
            raise errors.unavailable(
                f"the replica of tenant {self.tenant!r} failed during an SQL answer, which "
                "cannot be resumed where it was; retry"
            )
        if self.query.from_ == "end":
            raise errors.unavailable(
                f"the replica of tenant {self.tenant!r} failed and a follow from the end of "
                f"{self.query.label()!r} cannot tell where it was (its rows carry no numbers)"
            )
        return replace(self.query, offset=(self.query.offset or 0) + self.delivered, limit=limit)

    def cancel(self) -> None:
        self.cancelled = True
        self.waiting_since = None
        self.reader.cancel()
