"""Hostile JSON: nesting that overflows Python's parser is a clean error, not a crash."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.flight as flight
import pyarrow.parquet as pq
import pytest
from conftest import running_gateway
from websockets.sync.client import connect


def test_deeply_nested_json_is_invalid_everywhere(tmp_path):
    """40,000 nested brackets overflow Python's JSON parser (RecursionError): a clean
    ``invalid`` on every surface that parses client JSON, and the gateway stays up."""
    root = tmp_path / "data"
    root.mkdir()
    pq.write_table(pa.table({"x": list(range(10))}), root / "t.parquet")
    deep = "[" * 40_000
    with running_gateway({"a": root}) as gateway, flight.connect(gateway.flight_url) as client:
        for ticket in (deep, json.dumps({"signed": {}, "sig": "x"})[:-1] + deep):
            with pytest.raises(flight.FlightServerError, match="^invalid: "):
                client.do_get(flight.Ticket(ticket.encode())).read_all()
        with pytest.raises(flight.FlightServerError, match="^invalid: "):
            client.get_flight_info(flight.FlightDescriptor.for_command(deep.encode()))
        with connect(f"ws://127.0.0.1:{gateway.http_port}/ws") as ws:
            ws.send(deep)
            reply = json.loads(ws.recv(timeout=10))
            assert (reply["type"], reply["code"]) == ("error", "invalid")
            ws.send(json.dumps({"action": "query", "tenant": "a", "dataset": "t"}))
            while isinstance(ws.recv(timeout=10), bytes):
                pass
        assert client.do_get(flight.Ticket(b'{"tenant":"a","dataset":"t"}')).read_all()
