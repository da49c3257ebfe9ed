"""The gateway's live hubs in isolation, with fake feeds: joining a hub that just closed,
one slow connector beside a fast one, and bad follow queries."""

from __future__ import annotations

import json
import threading
import time

import pyarrow as pa
import pyarrow.flight as flight
import pytest

from streamkit import errors
from streamkit.flight_streams import Chunk
from streamkit.gateway.live_hub import Hubs
from streamkit.live import Follower
from streamkit.query import Query

BATCH = pa.record_batch({"seq": [0, 1, 2], "value": [1.0, 2.0, 3.0]})


class Feed:
    """An upstream follow: ``open`` may block; ``read_chunk`` serves what was put."""

    schema = BATCH.schema

    def __init__(self) -> None:
        self.chunks: list[Chunk | Exception] = []
        self.ready = threading.Condition()
        self.cancelled = False

    def put(self, item: Chunk | Exception) -> None:
        with self.ready:
            self.chunks.append(item)
            self.ready.notify_all()

    def read_chunk(self) -> Chunk:
        with self.ready:
            while not self.chunks and not self.cancelled:
                self.ready.wait(0.05)
            if self.cancelled:
                raise flight.FlightCancelledError("cancelled")
            item = self.chunks.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    def cancel(self) -> None:
        self.cancelled = True


def offset(n: int) -> pa.Buffer:
    return pa.py_buffer(json.dumps({"offset": n}).encode())


def follow(hubs: Hubs, feed_for, key=("t", "d"), **query):
    return hubs.follow(
        key,
        Query(dataset=key[1], tenant=key[0], follow=True, from_="end", **query),
        open_follow=lambda: feed_for(key),
        open_history=lambda: None,
        error=lambda exc: flight.FlightUnavailableError(f"unavailable: {exc}"),
    )


def test_a_follower_after_the_feed_failed_gets_a_new_hub_not_silence():
    feeds: list[Feed] = []

    def open_feed(key) -> Feed:
        feeds.append(Feed())
        return feeds[-1]

    hubs = Hubs()
    first = follow(hubs, open_feed)
    hub = first.hub
    feeds[0].put(ConnectionError("connector gone"))
    with pytest.raises(flight.FlightUnavailableError, match="connector gone"):
        first.read_chunk()
    assert hub.closed
    late = Follower()
    assert not hub.join(late)  # a closed hub takes no one: they would wait forever
    assert late not in hub.followers
    second = follow(hubs, open_feed)
    assert second.hub is not hub and len(feeds) == 2
    feeds[1].put(Chunk(BATCH, offset(0)))
    assert second.read_chunk().data.equals(BATCH)
    second.cancel()


def test_a_slow_connector_holds_up_only_its_own_followers():
    slow_open = threading.Event()
    feeds: dict[tuple[str, str], Feed] = {}

    def open_feed(key) -> Feed:
        if key[0] == "slow":
            slow_open.wait(10)
        feeds[key] = Feed()
        return feeds[key]

    hubs = Hubs()
    waiting = threading.Thread(target=follow, args=(hubs, open_feed, ("slow", "d")))
    waiting.start()
    try:
        started = time.monotonic()
        fast = follow(hubs, open_feed, ("fast", "d"))
        assert time.monotonic() - started < 2, "the fast tenant waited for the slow one"
        feeds[("fast", "d")].put(Chunk(BATCH, offset(0)))
        assert fast.read_chunk().data.num_rows == 3
        fast.cancel()
    finally:
        slow_open.set()
        waiting.join(10)


def test_an_unknown_column_is_invalid_and_leaves_no_follower():
    feed = Feed()
    hubs = Hubs()
    reader = follow(hubs, lambda key: feed)
    with pytest.raises(errors.Invalid, match="^invalid: .*no column 'nope'"):
        follow(hubs, lambda key: feed, columns=("nope",))
    assert reader.hub.followers == {reader.follower}
    reader.cancel()
    assert reader.hub.closed and feed.cancelled
