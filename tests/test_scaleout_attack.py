"""Scale-out under what users feed it: every Arrow type (dictionaries that change between
batches, row groups and files, nested types, large strings, extension types, unions)
through a replica killed mid-stream and through merged shards on every surface; hostile
signed tickets; odd but valid SQL over shards; a follow on a sharded tenant; reloads that
turn a tenant into replicas and shards while streams run; hundreds of clients with a
replica killed; slow and vanishing clients of merged streams; the metrics after it all."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.flight as flight
import pyarrow.parquet as pq
import pytest
from arrow_types import every_type_table, parquet_table, tables_equal
from conftest import running_gateway, wait_for
from test_metrics import samples, value
from type_paths import differences, ws_query

from streamkit.client import read_chunks
from streamkit.config import TenantConfig
from streamkit.connector import ConnectorServer
from streamkit.flight_streams import generator_stream
from streamkit.query import Query
from streamkit.secrets import Secret
from streamkit.tickets import TicketSigner

KEY = Secret("attack-ticket-key-0123456789", False)
ROWS_PER_BATCH = 2000
PORT = r"at grpc://127\.0\.0\.1:(\d+)"


# -- data -----------------------------------------------------------------------------------


def _words(batch: int, rows: int, salt: str) -> pa.DictionaryArray:
    """A dictionary column whose dictionary differs in every batch (and every ``salt``)."""
    words = [f"{salt}-{batch}-{i}" for i in range(3 + batch % 4)]
    indices = pa.array([None if i % 9 == 4 else i % len(words) for i in range(rows)], pa.int32())
    return pa.DictionaryArray.from_arrays(indices, pa.array(words))


def with_ids(table: pa.Table, start: int, salt: str) -> pa.Table:
    """``table`` with a unique ``rowid`` and a ``words`` dictionary changing per batch."""
    batches = []
    row = start
    for number, batch in enumerate(table.to_batches()):
        ids = pa.array(range(row, row + batch.num_rows), pa.int64())
        words = _words(number, batch.num_rows, salt)
        batches.append(
            pa.RecordBatch.from_arrays(
                [ids, words, *batch.columns], ["rowid", "words", *batch.schema.names]
            )
        )
        row += batch.num_rows
    return pa.Table.from_batches(batches)


def write_arrows(path: Path, table: pa.Table) -> None:
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
        for batch in table.to_batches():
            writer.write_batch(batch)


def read_all(reader) -> pa.Table:
    return pa.Table.from_batches(list(read_chunks(reader)), schema=reader.schema)


def assert_same(got: pa.Table, want: pa.Table, check_metadata: bool = True) -> None:
    assert got.num_rows == want.num_rows, (got.num_rows, want.num_rows)
    assert tables_equal(got, want, check_metadata=check_metadata), differences(
        got, want, check_metadata=check_metadata
    )


def by_rowid(batches: list[pa.RecordBatch], schema: pa.Schema) -> pa.Table:
    """Merged shards interleave whole batches: put them back in ``rowid`` order (each
    shard's batches arrive in its order, and shards hold disjoint ranges)."""
    kept = [b for b in batches if b.num_rows]
    kept.sort(key=lambda b: b.column("rowid")[0].as_py())
    return pa.Table.from_batches(kept, schema=schema)


def ticket(**query: object) -> flight.Ticket:
    return flight.Ticket(json.dumps(query).encode())


def command(**query: object) -> flight.FlightDescriptor:
    return flight.FlightDescriptor.for_command(json.dumps(query).encode())


def scrape(gateway) -> dict:
    with urllib.request.urlopen(f"{gateway.http_url}/metrics", timeout=10) as response:
        return samples(response.read().decode())


def assert_no_open_streams(gateway) -> dict:
    """Every stream ended: none left in the gateway, no gauge above or below zero."""
    wait_for(lambda: not gateway.forwarder.open_streams(), 20, "the gateway's streams to end")
    found = scrape(gateway)
    gauges = {k: v for k, v in found.items() if k[0] == "streamkit_open_streams"}
    assert all(v == 0 for v in gauges.values()), gauges
    return found


def pump_threads() -> int:
    return sum(t.name == "streamkit-pump" for t in threading.enumerate())


# -- replicas: every type through a replica killed mid-stream ----------------------------------


@pytest.fixture(scope="module")
def replica_roots(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    base = tmp_path_factory.mktemp("attack_replicas")
    root = base / "r0"
    root.mkdir()
    # ~50 MB of every type: far more than the gRPC windows and queues hold, so the kill
    # lands mid-stream.
    write_arrows(root / "every.arrows", with_ids(every_type_table(ROWS_PER_BATCH, 30), 0, "a"))
    pq.write_table(
        with_ids(parquet_table(ROWS_PER_BATCH, 30), 0, "p"),
        root / "every.parquet",
        row_group_size=ROWS_PER_BATCH,
    )
    other = base / "r1"
    other.mkdir()
    for path in root.iterdir():
        (other / path.name).hardlink_to(path)
    return [root, other]


def start_replicas(process, roots: list[Path]) -> tuple[list, list[int]]:
    procs = [process("connector", "serve", str(root), "--port", "0") for root in roots]
    return procs, [int(p.wait_for_stderr(PORT).group(1)) for p in procs]


def replicas(ports: list[int]) -> TenantConfig:
    return TenantConfig("r", replicas=tuple(f"grpc://127.0.0.1:{p}" for p in ports))


PARQUET_COLUMNS = ["rowid", "words", *parquet_table(1, 1).column_names]
# What DataFusion filters (no unions, extension types or views): still nested and dictionaries.
FILTERABLE = ["words", "rowid", "large_string", "struct", "map", "list_of_lists", "dict_int32"]
REPLICA_READS = [
    pytest.param({"dataset": "every.arrows"}, id="arrows"),
    pytest.param({"dataset": "every.parquet"}, id="parquet"),
    pytest.param(  # every column but the first, in reverse order: big enough to be cut
        {"dataset": "every.parquet", "columns": PARQUET_COLUMNS[:0:-1], "limit": 51_234},
        id="parquet-columns-limit",
    ),
    pytest.param(
        {"dataset": "every.parquet", "where": "rowid % 3 = 1", "columns": FILTERABLE},
        id="parquet-where",
    ),
    pytest.param(
        {"dataset": "every.arrows", "where": "rowid % 3 = 1", "columns": FILTERABLE},
        # The connector once filtered an Arrow stream file in memory, scanned as many
        # fragments, in another order on every read: a resumed read lost and doubled rows.
        id="arrows-where",
    ),
]


@pytest.mark.parametrize("asked", REPLICA_READS)
def test_every_type_resumes_on_the_other_replica_after_a_kill(process, replica_roots, asked):
    procs, ports = start_replicas(process, replica_roots)
    with (
        running_gateway({"r": replicas(ports)}) as gateway,
        flight.connect(gateway.flight_url) as client,
        flight.connect(f"grpc://127.0.0.1:{ports[1]}") as direct,
    ):
        want = direct.do_get(ticket(**asked)).read_all()  # an uninterrupted read
        reader = client.do_get(ticket(tenant="r", **asked))  # starts on replica 0
        first = reader.read_chunk().data
        procs[0].signal(signal.SIGKILL)
        rest = read_all(reader)
        got = pa.Table.from_batches([first, *rest.to_batches()], schema=reader.schema)
        assert_same(got, want, check_metadata="parquet" not in asked["dataset"])
        assert gateway.upstreams.tenants["r"].up.get(0) is False  # the resume saw it down
        assert_no_open_streams(gateway)


def test_a_sql_read_cut_by_a_replica_kill_ends_unavailable_not_invalid(process, replica_roots):
    """An SQL answer has no row order to resume from (and a connector takes no ``offset``
    with ``sql``): the client is told the connector failed and to retry, not that its own
    query is invalid."""
    procs, ports = start_replicas(process, replica_roots)
    sql = 'SELECT rowid, words, large_string, "struct", list_of_lists FROM "every.parquet"'
    with (
        running_gateway({"r": replicas(ports)}) as gateway,
        flight.connect(gateway.flight_url) as client,
    ):
        reader = client.do_get(ticket(tenant="r", sql=sql))
        reader.read_chunk()
        procs[0].signal(signal.SIGKILL)
        with pytest.raises(flight.FlightUnavailableError, match="unavailable: .*SQL"):
            read_all(reader)
        # The next read goes to the live replica, whole.
        whole = client.do_get(ticket(tenant="r", sql=sql)).read_all()
        assert sorted(whole.column("rowid").to_pylist()) == list(range(30 * ROWS_PER_BATCH))
        found = assert_no_open_streams(gateway)
        counted = {"tenant": "r", "surface": "sql"}
        assert value(found, "streamkit_requests_total", **counted, outcome="ok") == 1
        assert value(found, "streamkit_requests_total", **counted, outcome="unavailable") == 1


# -- shards: every type merged on every surface ------------------------------------------------

SHARD_BATCHES = (4, 3, 5)  # rows differ per shard; dictionaries differ per shard and batch


class CountingConnector(ConnectorServer):
    """A connector that counts its DoGet streams still running (to see cancels arrive)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.running = 0
        self._lock = threading.Lock()

    def do_get(self, context, ticket):
        self._admit(context)
        opened = self.connector.open(Query.from_ticket(ticket), context.is_cancelled)

        def counted() -> Iterator:
            with self._lock:
                self.running += 1
            try:
                yield from opened.source
            finally:
                with self._lock:
                    self.running -= 1

        return generator_stream(opened.schema, counted())


def shard_tables() -> list[pa.Table]:
    """Each shard's part: every type, ``rowid`` ranges disjoint, dictionaries of their own."""
    tables, start = [], 0
    for number, batches in enumerate(SHARD_BATCHES):
        every = every_type_table(50 + number, batches)
        tables.append(with_ids(every, start, f"s{number}"))
        start += every.num_rows
    return tables


@pytest.fixture(scope="module")
def shard_data(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Path], list[pa.Table]]:
    base = tmp_path_factory.mktemp("attack_shards")
    tables = shard_tables()
    roots = []
    for number, part in enumerate(tables):
        root = base / f"s{number}"
        root.mkdir()
        write_arrows(root / "every.arrows", part)
        pq.write_table(  # a dictionary per row group, different in every file
            part.select(["rowid", "words", *parquet_table(1, 1).column_names]),
            root / "pq.parquet",
            row_group_size=50,
        )
        pq.write_table(part.select(["rowid", "words"]), root / "My Events.parquet")
        (root / "feed.jsonl").write_text(
            "".join(json.dumps({"id": number * 1000 + i}) + "\n" for i in range(5))
        )
        roots.append(root)
    return roots, tables


@pytest.fixture
def sharded(shard_data):
    roots, _ = shard_data
    servers = [CountingConnector(str(root), "grpc://127.0.0.1:0") for root in roots]
    try:
        shards = tuple(f"grpc://127.0.0.1:{s.port}" for s in servers)
        with running_gateway({"s": TenantConfig("s", shards=shards)}, ticket_key=KEY) as gateway:
            gateway.shard_servers = servers
            yield gateway
    finally:
        for server in servers:
            server.stop()
            server.shutdown()


def expected_merged(tables: list[pa.Table], columns: list[str] | None = None) -> pa.Table:
    whole = pa.Table.from_batches(
        [b for t in tables for b in t.to_batches()], schema=tables[0].schema
    )
    return whole if columns is None else whole.select(columns)


def test_every_type_over_merged_shards_on_every_surface(sharded, shard_data):
    _, tables = shard_data
    want = expected_merged(tables)
    with flight.connect(sharded.flight_url) as client:
        # One endpoint per shard, each exactly its shard's part.
        info = client.get_flight_info(flight.FlightDescriptor.for_path("s", "every"))
        assert info.schema.equals(want.schema) and len(info.endpoints) == 3
        for endpoint, part in zip(info.endpoints, tables, strict=True):
            assert_same(client.do_get(endpoint.ticket).read_all(), part)
        # A ticket that names no shard: merged.
        merged = client.do_get(ticket(tenant="s", dataset="every"))
        assert_same(by_rowid(read_all(merged).to_batches(), want.schema), want)
    # WebSocket and HTTP read merged too.
    frames, end = ws_query(sharded.http_port, tenant="s", dataset="every")
    assert end["type"] == "end", end
    over_ws = pa.ipc.open_stream(b"".join(frames)).read_all()
    assert_same(by_rowid(over_ws.to_batches(), want.schema), want)
    with urllib.request.urlopen(f"{sharded.http_url}/api/stream/s/every", timeout=30) as response:
        over_http = pa.ipc.open_stream(response.read()).read_all()
    assert_same(by_rowid(over_http.to_batches(), want.schema), want)
    found = assert_no_open_streams(sharded)
    for surface, count in (("flight", 5), ("ws", 1), ("http", 1)):  # the info too
        assert value(found, "streamkit_requests_total", tenant="s", surface=surface,
                     outcome="ok") == count, surface
    assert value(found, "streamkit_rows_total", tenant="s", surface="ws") == want.num_rows


def test_parquet_dictionaries_of_every_row_group_and_file_merged(sharded, shard_data):
    _, tables = shard_data
    columns = ["rowid", "words", *parquet_table(1, 1).column_names]
    want = expected_merged(tables, columns)
    with flight.connect(sharded.flight_url) as client:
        got = read_all(client.do_get(ticket(tenant="s", dataset="pq")))
    assert len({tuple(c.dictionary.to_pylist()) for c in got.column("words").chunks}) > 3
    ordered = by_rowid(got.to_batches(), got.schema)
    # Row groups are not the written batches: the dictionaries' values, not their layout.
    assert ordered.column("words").cast(pa.string()).equals(want.column("words").cast(pa.string()))
    assert_same(ordered.drop_columns("words"), want.drop_columns("words"), check_metadata=False)


@pytest.mark.parametrize(
    "asked",
    [
        {"columns": ["dense_union", "words", "rowid", "uuid", "large_string", "map"]},
        {"limit": 0},
        {"limit": 1},
        {"limit": 170, "columns": ["rowid", "sparse_union", "words"]},
        {"limit": 10**12},
    ],
    ids=["columns", "limit0", "limit1", "limit-columns", "huge-limit"],
)
def test_limits_and_columns_over_merged_shards(sharded, shard_data, asked):
    _, tables = shard_data
    columns = asked.get("columns")
    want = expected_merged(tables, columns)
    limit = asked.get("limit")
    with flight.connect(sharded.flight_url) as client:
        info = client.get_flight_info(command(tenant="s", dataset="every", **asked))
        assert len(info.endpoints) == (3 if limit is None else 1)
        batches = [
            b for e in info.endpoints for b in read_all(client.do_get(e.ticket)).to_batches()
        ]
    got = pa.Table.from_batches(batches, schema=want.schema)
    assert got.num_rows == min(want.num_rows, limit if limit is not None else want.num_rows)
    # Whatever rows came, each batch is its shard's rows of those rowids, whole.
    ids = got.column("rowid").to_pylist()
    assert len(set(ids)) == len(ids)
    for batch in batches:
        if batch.num_rows:
            start = batch.column("rowid")[0].as_py()  # rowids are positions in ``want``
            assert_same(pa.Table.from_batches([batch]), want.slice(start, batch.num_rows))
    # A statement that reads no table (a tool's connection test) is one shard's answer:
    # every shard would give the same rows, and their union would repeat them.
    with flight.connect(sharded.flight_url) as client:
        info = client.get_flight_info(command(tenant="s", sql="SELECT 1 AS one"))
        assert len(info.endpoints) == 1
        assert client.do_get(info.endpoints[0].ticket).read_all().to_pydict() == {"one": [1]}
        merged = client.do_get(ticket(tenant="s", sql="SELECT 1 AS one")).read_all()
        assert merged.to_pydict() == {"one": [1]}
    assert_no_open_streams(sharded)


def test_where_is_answered_per_shard(sharded, shard_data):
    _, tables = shard_data
    want = expected_merged(tables, ["rowid", "words"]).filter(
        pc.equal(pc.bit_wise_and(pc.field("rowid"), 1), 1)
    )
    frames, end = ws_query(
        sharded.http_port, tenant="s", dataset="My Events", where="rowid % 2 = 1"
    )
    assert end["type"] == "end", end
    got = pa.ipc.open_stream(b"".join(frames)).read_all()
    assert sorted(got.column("rowid").to_pylist()) == want.column("rowid").to_pylist()


# -- hostile tickets ---------------------------------------------------------------------------


def forged(body: dict, sig: object = None, **extra: object) -> bytes:
    """A ticket signed with the deployment's key (as if minted), or with ``sig``."""
    signer = TicketSigner(KEY.value.encode())
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    signed = signer._sign(canonical.encode()) if sig is None else sig
    return json.dumps({"signed": body, "sig": signed, **extra}, ensure_ascii=False).encode()


BASE = {"tenant": "s", "dataset": "every"}
HOSTILE = {
    "shard-negative": forged({**BASE, "shard": -1}),
    "shard-huge": forged({**BASE, "shard": 10**30}),
    "shard-bool": forged({**BASE, "shard": True}),
    "shard-string": forged({**BASE, "shard": "0"}),
    "shard-float": forged({**BASE, "shard": 1.0}),
    "shard-3": forged({**BASE, "shard": 3}),
    "extra-signed-key": forged({**BASE, "admin": True}),
    "extra-top-key": forged(BASE, extra="x"),
    "unicode-sig": forged(BASE, sig="é" * 64),
    "emoji-sig": forged(BASE, sig="🎉"),
    "number-sig": forged(BASE, sig=7),
    "unicode-dataset": forged({**BASE, "dataset": "ünï/../🎉"}),
    "64KB": forged({**BASE, "where": "rowid > 0" + " " * (64 * 1024)}),
    "nan-shard": b'{"signed": {"tenant": "s", "dataset": "every", "shard": NaN}, "sig": "00"}',
    "lone-surrogate": b'{"signed": {"tenant": "s", "dataset": "\\ud800"}, "sig": "\\ud800"}',
    "plain-with-shard": json.dumps({**BASE, "shard": 0}).encode(),
}


def test_hostile_tickets_are_clean_refusals(sharded):
    with flight.connect(sharded.flight_url) as client:
        for name, raw in HOSTILE.items():
            with pytest.raises(flight.FlightError) as caught:
                client.do_get(flight.Ticket(raw)).read_all()
            message = str(caught.value)
            assert "Traceback" not in message and "Python exception" not in message, name
            assert message.startswith(("invalid:", "not found:")), (name, message[:200])
        # Still serving, and a ticket it minted reads its shard.
        info = client.get_flight_info(flight.FlightDescriptor.for_path("s", "every"))
        assert client.do_get(info.endpoints[2].ticket).read_all().num_rows == 5 * 52
    found = assert_no_open_streams(sharded)
    refused = sum(
        v for (n, labels), v in found.items()
        if n == "streamkit_requests_total" and ("outcome", "invalid") in labels
    )
    assert refused >= 1  # refusals that reached a tenant are counted, none left open


# -- SQL over shards: odd but valid ------------------------------------------------------------


SQL_CASES = [  # (statement, rows expected over all endpoints, endpoints)
    ('SELECT "rowid" AS "Row Id", words AS w FROM "My Events" AS e WHERE e.rowid < 5', 5, 3),
    ('SELECT e.rowid FROM "My Events" e WHERE e."words" IS NULL', None, 3),
    ("SELECT rowid FROM every LIMIT 0", 0, 1),
    ("SELECT rowid FROM every LIMIT 7", 7, 1),
    ("SELECT rowid FROM every LIMIT 9223372036854775807", 613, 1),  # every row
    # (WHERE on "My Events": the connector cannot filter every.arrows, held in memory, at all:
    # pyarrow has no filter kernel for its string_view column.)
    ('SELECT rowid FROM "My Events" WHERE rowid >= 600 -- a comment with SELECT\n', 13, 3),
    ("select rowid, 'SELECT' AS s from EVERY limit 3", 3, 1),
    ("""select rowid, 'it''s' AS "x""y" from "My Events" where rowid in (1, 2, 3)""", 3, 3),
]


def test_odd_but_valid_sql_over_shards(sharded, shard_data):
    _, tables = shard_data
    nulls = expected_merged(tables, ["words"]).column("words").null_count
    with flight.connect(sharded.flight_url) as client:
        for sql, count, endpoints in SQL_CASES:
            info = client.get_flight_info(command(tenant="s", sql=sql))
            assert len(info.endpoints) == endpoints, sql
            got = [client.do_get(e.ticket).read_all() for e in info.endpoints]
            rows = sum(t.num_rows for t in got)
            assert rows == (nulls if count is None else count), sql
            # Each endpoint's ticket is served by itself (no state between the calls).
    with flight.connect(sharded.flight_url) as client:
        for sql in (
            "WITH t AS (SELECT rowid FROM every) SELECT rowid FROM t",
            "SELECT rowid FROM every LIMIT 99999999999999999999999",
        ):
            with pytest.raises(flight.FlightServerError, match="invalid:"):
                client.get_flight_info(command(tenant="s", sql=sql))
            with pytest.raises(flight.FlightServerError, match="invalid:"):
                client.do_get(ticket(tenant="s", sql=sql)).read_all()
    assert_no_open_streams(sharded)


# -- follows and vanishing clients of merged shards --------------------------------------------


def test_a_follow_on_a_sharded_tenant_and_its_cancel_reach_every_shard(sharded, shard_data):
    roots, _ = shard_data
    servers = sharded.shard_servers
    pumps = pump_threads()
    with flight.connect(sharded.flight_url) as client:
        for round_ in range(3):
            follow = client.do_get(ticket(tenant="s", dataset="feed", follow=True))
            seen: list[int] = []
            history = 15 + 3 * round_  # the lines earlier rounds appended are history now
            while len(seen) < history:
                seen.extend(follow.read_chunk().data.column("id").to_pylist())
            for number, root in enumerate(roots):  # every shard's file grows
                with (root / "feed.jsonl").open("a") as out:
                    out.write(json.dumps({"id": number * 1000 + 100 + round_}) + "\n")
            while len(seen) < history + 3:
                seen.extend(follow.read_chunk().data.column("id").to_pylist())
            assert sorted(seen) == sorted(
                [n * 1000 + i for n in range(3) for i in range(5)]
                + [n * 1000 + 100 + r for n in range(3) for r in range(round_ + 1)]
            )
            wait_for(lambda: all(s.running == 1 for s in servers), 10, "a follow per shard")
            follow.cancel()
            wait_for(lambda: all(s.running == 0 for s in servers), 10, "the shards' follows end")
    # Nothing of the merged reads is left waiting in the gateway.
    wait_for(lambda: pump_threads() <= pumps, 10, "the merged reads' threads to end")
    assert_no_open_streams(sharded)
    for root in roots:  # the next test's data as it was
        lines = (root / "feed.jsonl").read_text().splitlines()[:5]
        (root / "feed.jsonl").write_text("".join(line + "\n" for line in lines))


VANISHING_CLIENT = """
import json, sys, threading
import pyarrow.flight as flight
client = flight.connect(sys.argv[1])
query = {"tenant": "s", "dataset": "feed", "follow": True}
reader = client.do_get(flight.Ticket(json.dumps(query).encode()))
reader.read_chunk()
print("reading", flush=True)
threading.Event().wait()
"""


def test_a_client_that_leaves_a_merged_stream_cancels_every_shard_read(sharded):
    servers = sharded.shard_servers
    for surface in ("flight", "ws"):  # (HTTP has no follow: see the slow readers below)
        pumps = pump_threads()
        if surface == "flight":  # a client process that dies: its connection is reset
            client = subprocess.Popen(
                [sys.executable, "-c", VANISHING_CLIENT, sharded.flight_url],
                stdout=subprocess.PIPE, text=True,
            )
            try:
                assert client.stdout is not None and client.stdout.readline() == "reading\n"
                wait_for(lambda: all(s.running == 1 for s in servers), 10, "reads per shard")
            finally:
                client.kill()
                client.wait(10)
                client.stdout.close()
        else:
            from websockets.sync.client import connect

            with connect(f"ws://127.0.0.1:{sharded.http_port}/ws", max_size=None) as ws:
                ws.send(json.dumps(
                    {"action": "query", "tenant": "s", "dataset": "feed", "follow": True}
                ))
                assert isinstance(ws.recv(timeout=10), bytes)
                wait_for(lambda: all(s.running == 1 for s in servers), 10, "reads per shard")
        wait_for(lambda: all(s.running == 0 for s in servers), 15, f"{surface}: shard reads end")
        wait_for(lambda p=pumps: pump_threads() <= p, 15, f"{surface}: merged threads end")
    assert_no_open_streams(sharded)


# -- reload: one connector, then replicas, then shards, while streams run ----------------------


def test_reload_from_one_connector_to_replicas_to_shards_under_streams(tmp_path, shard_data):
    from streamkit.config import load
    from streamkit.gateway import make_gateway

    roots, tables = shard_data
    servers = [CountingConnector(str(root), "grpc://127.0.0.1:0") for root in roots]
    urls = [f"grpc://127.0.0.1:{s.port}" for s in servers]
    config = tmp_path / "streamkit.toml"
    key = 'ticket_key = "attack-ticket-key-0123456789"'

    def write(body: str) -> None:
        head = f"[gateway]\nflight_port = 0\nhttp_port = 0\n{key}\n"
        config.write_text(f"{head}[tenants.t]\n{body}\n")

    write(f'connector = "{urls[0]}"')
    gateway = make_gateway(load(config))
    gateway.loader = lambda: load(config)
    follow = ticket(tenant="t", dataset="feed", follow=True)
    try:
        with flight.connect(gateway.flight_url) as client:
            single = client.do_get(follow)
            single.read_chunk()
            same = urls[0].replace("127.0.0.1", "localhost")  # the same files, another address
            write(f'replicas = ["{urls[0]}", "{same}"]')
            assert gateway.reload().reconnected == ["t"]
            with pytest.raises(flight.FlightUnavailableError, match="changed in the configuration"):
                read_all(single)
            replicated = client.do_get(follow)
            replicated.read_chunk()
            write("shards = [" + ", ".join(f'"{u}"' for u in urls) + "]")
            assert gateway.reload().reconnected == ["t"]
            with pytest.raises(flight.FlightUnavailableError, match="changed in the configuration"):
                read_all(replicated)
            info = client.get_flight_info(flight.FlightDescriptor.for_path("t", "every"))
            assert len(info.endpoints) == 3
            old_shard_ticket = info.endpoints[2].ticket
            merged = client.do_get(follow)
            merged.read_chunk()
            write(f'connector = "{urls[0]}"')  # back to one connector
            assert gateway.reload().reconnected == ["t"]
            with pytest.raises(flight.FlightUnavailableError, match="changed in the configuration"):
                read_all(merged)
            with pytest.raises(flight.FlightServerError, match="invalid: .*not sharded"):
                client.do_get(old_shard_ticket).read_all()
            assert_same(client.do_get(ticket(tenant="t", dataset="every")).read_all(), tables[0])
        wait_for(lambda: all(s.running == 0 for s in servers), 15, "every upstream read to end")
        wait_for(lambda: pump_threads() == 0, 15, "the gateway's reads to end")
        found = assert_no_open_streams(gateway)
        assert value(found, "streamkit_config_reloads_total", outcome="ok") == 3
        ended = value(found, "streamkit_requests_total", tenant="t", surface="flight",
                      outcome="unavailable")
        assert ended == 3
    finally:
        gateway.stop()
        for server in servers:
            server.stop()
            server.shutdown()
