"""Flight streams from Python iterators: dictionaries (changing, nested) and metadata arrive."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.flight as flight
import pytest

from streamkit.batches import dictionaries, has_dictionaries
from streamkit.flight_streams import generator_stream

DICT = pa.dictionary(pa.int16(), pa.string())


def batch(values: list[str]) -> pa.RecordBatch:
    nested = pa.array([[v] for v in values], pa.list_(DICT))
    inner = pa.StructArray.from_arrays([pa.array(values).dictionary_encode()], names=["tag"])
    return pa.record_batch(
        {
            "kind": pa.array(values).dictionary_encode().cast(DICT),
            "tags": nested,
            "inner": inner,
            "n": pa.array(range(len(values))),
        }
    )


class Server(flight.FlightServerBase):
    def __init__(self, items: list) -> None:
        self.items = items
        super().__init__("grpc://127.0.0.1:0")

    def do_get(self, context, ticket):
        first = self.items[0][0] if isinstance(self.items[0], tuple) else self.items[0]
        return generator_stream(first.schema, iter(self.items))


def read_back(items: list) -> list[tuple[dict, bytes | None]]:
    with Server(items) as server, flight.connect(f"grpc://127.0.0.1:{server.port}") as client:
        reader = client.do_get(flight.Ticket(b""))
        out = []
        while True:
            try:
                chunk = reader.read_chunk()
            except StopIteration:
                return out
            if chunk.data.num_rows:  # new dictionaries travel with an empty batch
                meta = chunk.app_metadata.to_pybytes() if chunk.app_metadata else None
                out.append((chunk.data.to_pydict(), meta))


def test_changing_and_nested_dictionaries_arrive_with_their_metadata():
    one, two = batch(["a", "b", "a"]), batch(["x", "y", "z", "x"])
    items = [(one, b"first"), one.slice(1), (two, b"third"), two.slice(2), one]
    got = read_back(items)
    expected = [one.to_pydict(), one.slice(1).to_pydict(), two.to_pydict()]
    expected += [two.slice(2).to_pydict(), one.to_pydict()]
    assert [values for values, _ in got] == expected
    assert [meta for _, meta in got] == [b"first", None, b"third", None, None]


def test_dictionaries_are_found_at_any_depth():
    found = dictionaries(batch(["p", "q"]))
    assert [d.to_pylist() for d in found] == [["p", "q"]] * 3
    assert has_dictionaries(batch(["p"]).schema)
    assert not has_dictionaries(pa.schema([("x", pa.list_(pa.string()))]))


@pytest.mark.parametrize("with_metadata", [False, True])
def test_plain_schemas_pass_through(with_metadata):
    plain = pa.record_batch({"x": [1, 2, 3]})
    items = [(plain, b"m")] if with_metadata else [plain]
    assert read_back(items) == [({"x": [1, 2, 3]}, b"m" if with_metadata else None)]
