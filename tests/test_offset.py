"""``offset``: the rows after the first N, exactly, for every format (what a read resumed
on another replica asks for), with ``where`` and ``limit``, and on a live follow."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.feather as feather
import pyarrow.flight as flight
import pyarrow.parquet as pq
import pytest
from conftest import running_connector, running_gateway

from streamkit.connector.service import Connector
from streamkit.query import Query

ROWS = 30_000


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("offset")
    table = pa.table({"id": pa.array(range(ROWS), pa.int64()), "s": [str(i) for i in range(ROWS)]})
    pq.write_table(table, root / "p.parquet", row_group_size=7_000)
    (root / "folder").mkdir()
    pq.write_table(table.slice(0, 12_000), root / "folder" / "a.parquet", row_group_size=5_000)
    pq.write_table(table.slice(12_000), root / "folder" / "b.parquet", row_group_size=5_000)
    pcsv.write_csv(table, root / "c.csv")
    feather.write_feather(table, root / "f.arrow")
    (root / "j.jsonl").write_text(
        "".join(json.dumps({"id": i, "s": str(i)}) + "\n" for i in range(ROWS))
    )
    return root


def ids(connector: Connector, **query: object) -> list[int]:
    opened = connector.open(Query(**query))  # type: ignore[arg-type]
    out: list[int] = []
    for item in opened.source:
        batch = item[0] if isinstance(item, tuple) else item
        out.extend(batch.column("id").to_pylist())
    return out


@pytest.mark.parametrize("dataset", ["p", "folder", "c", "f", "j"])
def test_offset_and_limit_cut_exactly(root: Path, dataset: str):
    connector = Connector(str(root))
    try:
        for offset, limit in (
            (1, None), (6_999, 5), (7_000, None), (12_345, 100), (ROWS - 1, None),
            (ROWS, None), (ROWS + 5, None),
        ):
            want = list(range(offset, ROWS))[:limit]
            assert ids(connector, dataset=dataset, offset=offset, limit=limit) == want
        # With a filter the offset counts matching rows, in the dataset's order (a folder's
        # files too, every time).
        for _ in range(3):
            got = ids(connector, dataset=dataset, where="id % 3 = 0", offset=100, limit=5)
            assert got == [300, 303, 306, 309, 312]
            assert ids(connector, dataset=dataset, where="id % 2 = 0") == list(range(0, ROWS, 2))
    finally:
        connector.stop()


def test_offset_through_the_gateway_and_a_live_follow(root: Path):
    with (
        running_connector(root) as connector,
        running_gateway({"r": f"grpc://127.0.0.1:{connector.port}"}) as gateway,
        flight.connect(gateway.flight_url) as client,
    ):
        ticket = {"tenant": "r", "dataset": "p", "offset": 29_990}
        table = client.do_get(flight.Ticket(json.dumps(ticket))).read_all()
        assert table.column("id").to_pylist() == list(range(29_990, ROWS))
        writer, _ = client.do_put(
            flight.FlightDescriptor.for_path("r", "live/feed"), pa.schema([("id", pa.int64())])
        )
        for start in (0, 10, 20):
            writer.write_batch(pa.record_batch({"id": list(range(start, start + 10))}))
        writer.close()
        follow = {"tenant": "r", "dataset": "live/feed", "follow": True, "offset": 15}
        reader = client.do_get(flight.Ticket(json.dumps(follow)))
        got: list[int] = []
        while len(got) < 15:
            got.extend(reader.read_chunk().data.column("id").to_pylist())
        assert got == list(range(15, 30))
        reader.cancel()
        with pytest.raises(flight.FlightServerError, match="'offset' must be a non-negative"):
            client.do_get(flight.Ticket(json.dumps({**ticket, "offset": -1}))).read_all()
