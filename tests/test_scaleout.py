"""Scale-out: signed tickets served by any gateway of a deployment, replicas that fail
mid-stream (rows compared exactly), shards read in parallel, and SQL over shards."""

from __future__ import annotations

import json
import logging
import runpy
import shutil
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import adbc_driver_flightsql.dbapi as flightsql
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.feather as feather
import pyarrow.flight as flight
import pyarrow.parquet as pq
import pytest
from conftest import REPO, running_connector, running_gateway, wait_for
from websockets.sync.client import connect

from streamkit.client import GatewayClient, read_chunks
from streamkit.config import TenantConfig
from streamkit.query import Query
from streamkit.secrets import Secret
from streamkit.tickets import TicketSigner

KEY = Secret("a-shared-ticket-key-for-tests", False)
ROWS = 1_500_000


def table(start: int, stop: int) -> pa.Table:
    ids = pa.array(range(start, stop), pa.int64())
    tags = pc.cast(pc.bit_wise_and(ids, 7), pa.string())
    return pa.table({"id": ids, "v": pc.multiply(ids, 2), "tag": tags})


def write_all_formats(root: Path, data: pa.Table) -> None:
    root.mkdir(parents=True)
    pq.write_table(data, root / "big.parquet", row_group_size=50_000)
    feather.write_feather(data, root / "big.arrow", chunksize=50_000)
    pcsv.write_csv(data, root / "big.csv")
    with (root / "big.jsonl").open("w") as out:  # smaller: JSON is slow to write
        for row in data.slice(0, 200_000).to_pylist():
            out.write(json.dumps(row) + "\n")


def rows(reader) -> pa.Table:
    return pa.Table.from_batches(list(read_chunks(reader)), schema=reader.schema)


def sorted_ids(data: pa.Table) -> list[int]:
    return sorted(data.column("id").to_pylist())


# -- tickets --------------------------------------------------------------------------------


def test_a_ticket_of_one_gateway_is_served_by_another_and_forgeries_are_refused(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    pq.write_table(table(0, 1000), root / "t.parquet")
    with (
        running_gateway({"a": root}, ticket_key=KEY) as one,
        running_gateway({"a": root}, ticket_key=KEY) as two,
        running_gateway({"a": root}, ticket_key=Secret("another-key-of-16-chars", False)) as other,
        flight.connect(one.flight_url) as first,
        flight.connect(two.flight_url) as second,
        flight.connect(other.flight_url) as third,
    ):
        info = first.get_flight_info(flight.FlightDescriptor.for_path("a", "t"))
        [endpoint] = info.endpoints
        assert endpoint.locations == []  # any gateway of the deployment
        minted = endpoint.ticket.ticket
        assert second.do_get(endpoint.ticket).read_all().num_rows == 1000
        with pytest.raises(flight.FlightServerError, match="invalid: the ticket's signature"):
            third.do_get(endpoint.ticket).read_all()
        altered = json.loads(minted)
        altered["signed"]["limit"] = 5
        with pytest.raises(flight.FlightServerError, match="invalid: the ticket's signature"):
            second.do_get(flight.Ticket(json.dumps(altered))).read_all()
        forged = TicketSigner(b"guessed-key").mint(Query(dataset="t", tenant="a"))
        with pytest.raises(flight.FlightServerError, match="invalid: the ticket's signature"):
            second.do_get(flight.Ticket(forged)).read_all()
        for bad in (b'{"signed": {"dataset": "t"}}', b'{"signed": 1, "sig": "x"}'):
            with pytest.raises(flight.FlightServerError, match="invalid: the ticket"):
                second.do_get(flight.Ticket(bad)).read_all()
        # A plain query is a ticket too: it grants nothing the caller's token does not.
        plain = flight.Ticket(json.dumps({"tenant": "a", "dataset": "t", "limit": 7}))
        assert second.do_get(plain).read_all().num_rows == 7
        assert one.http_port and two.http_port  # both up after it all


# -- replicas -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def replica_roots(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    base = tmp_path_factory.mktemp("replicas")
    write_all_formats(base / "r0", table(0, ROWS))
    shutil.copytree(base / "r0", base / "r1")
    return [base / "r0", base / "r1"]


def replica_tenant(ports: list[int]) -> TenantConfig:
    return TenantConfig("r", replicas=tuple(f"grpc://127.0.0.1:{p}" for p in ports))


@pytest.mark.parametrize("dataset", ["big.parquet", "big.arrow", "big.csv", "big.jsonl"])
def test_a_replica_killed_mid_stream_is_resumed_on_the_other(
    process, replica_roots, dataset, caplog: pytest.LogCaptureFixture
):
    name = dataset.split(".")[1]  # two datasets share "big": each keeps its extension
    procs = [process("connector", "serve", str(root), "--port", "0") for root in replica_roots]
    ports = [int(p.wait_for_stderr(r"at grpc://127\.0\.0\.1:(\d+)").group(1)) for p in procs]
    expected = {"parquet": ROWS, "arrow": ROWS, "csv": ROWS, "jsonl": 200_000}[name]
    caplog.set_level(logging.WARNING, logger="streamkit.gateway")
    with (
        running_gateway({"r": replica_tenant(ports)}) as gateway,
        flight.connect(gateway.flight_url) as client,
    ):
        ticket = flight.Ticket(json.dumps({"tenant": "r", "dataset": dataset}))
        reader = client.do_get(ticket)  # the first read starts on replica 0
        first = reader.read_chunk().data
        procs[0].signal(signal.SIGKILL)
        rest = rows(reader)
        got = pa.Table.from_batches([first, *rest.to_batches()], schema=reader.schema)
        assert got.num_rows == expected
        assert got.column("id").to_pylist() == list(range(expected))  # in order, once each
        assert "resuming" in caplog.text
        # Later reads go to the live replica only.
        for _ in range(2):
            assert client.do_get(ticket).read_all().num_rows == expected


def test_reads_spread_over_replicas_and_a_follow_resumes_by_row_number(process, tmp_path):
    roots = [tmp_path / "r0", tmp_path / "r1"]
    for root in roots:
        root.mkdir()
    procs = [process("connector", "serve", str(root), "--port", "0") for root in roots]
    ports = [int(p.wait_for_stderr(r"at grpc://127\.0\.0\.1:(\d+)").group(1)) for p in procs]
    schema = pa.schema([("id", pa.int64())])

    def publish(port: int, start: int, count: int) -> None:
        with flight.connect(f"grpc://127.0.0.1:{port}") as direct:
            writer, _ = direct.do_put(flight.FlightDescriptor.for_path("feed"), schema)
            writer.write_batch(pa.record_batch({"id": list(range(start, start + count))}))
            writer.close()

    for port in ports:  # the replicas' producer publishes to each
        publish(port, 0, 100)
        publish(port, 100, 100)
    with (
        running_gateway({"r": replica_tenant(ports)}) as gateway,
        flight.connect(gateway.flight_url) as client,
    ):
        follow = client.do_get(
            flight.Ticket(json.dumps({"tenant": "r", "dataset": "feed", "follow": True}))
        )
        seen: list[int] = []
        while len(seen) < 200:
            seen.extend(follow.read_chunk().data.column("id").to_pylist())
        procs[0].signal(signal.SIGKILL)
        publish(ports[1], 200, 50)
        while len(seen) < 250:
            seen.extend(follow.read_chunk().data.column("id").to_pylist())
        assert seen == list(range(250))
        follow.cancel()
        health = GatewayClient(gateway.flight_url).health()
        assert health["r"]["reachable"]


def test_reads_rotate_over_replicas(replica_roots):
    with (
        running_connector(replica_roots[0]) as a,
        running_connector(replica_roots[1]) as b,
        running_gateway({"r": replica_tenant([a.port, b.port])}) as gateway,
        flight.connect(gateway.flight_url) as client,
    ):
        ticket = flight.Ticket(json.dumps({"tenant": "r", "dataset": "big.parquet", "limit": 10}))
        for _ in range(4):
            assert client.do_get(ticket).read_all().num_rows == 10
        b.shutdown()  # one replica gone: every read is still answered
        for _ in range(4):
            assert client.do_get(ticket).read_all().num_rows == 10
            info = client.get_flight_info(flight.FlightDescriptor.for_path("r", "big.parquet"))
            assert info.total_records == ROWS
        with pytest.raises(flight.FlightServerError, match="several connectors"):
            writer, _ = client.do_put(
                flight.FlightDescriptor.for_path("r", "x"), pa.schema([("a", pa.int64())])
            )
            writer.close()


# -- shards ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shard_roots(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    base = tmp_path_factory.mktemp("shards")
    roots = [base / "s0", base / "s1", base / "s2"]
    bounds = [(0, 100_000), (100_000, 250_000), (250_000, 300_000)]
    for root, (start, stop) in zip(roots, bounds, strict=True):
        root.mkdir()
        pq.write_table(table(start, stop), root / "events.parquet")
    return roots


@pytest.fixture
def sharded(shard_roots):
    with (
        running_connector(shard_roots[0]) as s0,
        running_connector(shard_roots[1]) as s1,
        running_connector(shard_roots[2]) as s2,
    ):
        shards = tuple(f"grpc://127.0.0.1:{s.port}" for s in (s0, s1, s2))
        with running_gateway({"s": TenantConfig("s", shards=shards)}, ticket_key=KEY) as gateway:
            yield gateway


def test_one_endpoint_per_shard_read_in_parallel(sharded):
    with flight.connect(sharded.flight_url) as client:
        info = client.get_flight_info(flight.FlightDescriptor.for_path("s", "events"))
        assert len(info.endpoints) == 3
        assert info.total_records == 300_000
        parts = [client.do_get(e.ticket).read_all() for e in info.endpoints]
        assert [p.num_rows for p in parts] == [100_000, 150_000, 50_000]
        whole = pa.concat_tables(parts)
        assert sorted_ids(whole) == list(range(300_000))
        # A ticket that names no shard (and WebSocket, HTTP) reads them merged.
        merged = client.do_get(flight.Ticket(json.dumps({"tenant": "s", "dataset": "events"})))
        assert sorted_ids(merged.read_all()) == list(range(300_000))
        # A limit over all shards is one merged endpoint, cut exactly.
        limited = client.get_flight_info(
            flight.FlightDescriptor.for_command(
                json.dumps({"tenant": "s", "dataset": "events", "limit": 123_456})
            )
        )
        assert len(limited.endpoints) == 1
        assert client.do_get(limited.endpoints[0].ticket).read_all().num_rows == 123_456
        [listed] = [i for i in client.list_flights() if i.descriptor.path == [b"s", b"events"]]
        assert listed.total_records == 300_000 and len(listed.endpoints) == 3
        bad = json.loads(info.endpoints[0].ticket.ticket)
        bad["signed"]["shard"] = 7
        with pytest.raises(flight.FlightServerError, match="invalid"):
            client.do_get(flight.Ticket(json.dumps(bad))).read_all()
    # streamkit's own client walks the endpoints.
    with GatewayClient(sharded.flight_url) as ours:
        _, reader = ours.open(Query(dataset="events", tenant="s"))
        assert sorted_ids(rows(reader)) == list(range(300_000))


def test_sql_over_shards_where_it_is_correct(sharded):
    expected = table(0, 300_000).filter(pc.equal(pc.field("tag"), "3"))
    with flight.connect(sharded.flight_url) as client:
        for sql, count in (
            ("SELECT id, v FROM events WHERE tag = '3'", expected.num_rows),
            ("SELECT id FROM events WHERE id % 1000 = 0 LIMIT 50", 50),
            ("SELECT upper(tag) AS t, id FROM events WHERE id < 10 OR id >= 299990", 20),
        ):
            descriptor = flight.FlightDescriptor.for_command(
                json.dumps({"tenant": "s", "sql": sql})
            )
            info = client.get_flight_info(descriptor)
            got = pa.concat_tables(client.do_get(e.ticket).read_all() for e in info.endpoints)
            assert got.num_rows == count, sql
        assert sorted_ids(got) == [*range(10), *range(299_990, 300_000)]
        for refused in (
            "SELECT count(*) FROM events",
            "SELECT id FROM events ORDER BY id LIMIT 3",
            "SELECT DISTINCT tag FROM events",
            "SELECT id FROM events LIMIT 5 OFFSET 5",
            "SELECT id FROM events WHERE v > (SELECT avg(v) FROM events)",
            "SELECT a.id FROM events a JOIN events b ON a.id = b.id",
        ):
            descriptor = flight.FlightDescriptor.for_command(
                json.dumps({"tenant": "s", "sql": refused})
            )
            with pytest.raises(flight.FlightServerError, match="cannot be answered shard by shard"):
                client.get_flight_info(descriptor)
    # The ADBC Flight SQL driver reads the shards' endpoints itself.
    with (
        flightsql.connect(sharded.flight_url, autocommit=True) as connection,
        connection.cursor() as cursor,
    ):
        cursor.execute("SELECT id, v FROM s.events WHERE tag = '3'")
        result = cursor.fetch_arrow_table()
    assert sorted_ids(result) == sorted_ids(expected)


def test_what_shards_cannot_answer_row_for_row_is_refused_or_answered_once(sharded):
    def command(**query: object) -> flight.FlightDescriptor:
        return flight.FlightDescriptor.for_command(json.dumps({"tenant": "s", **query}))

    with flight.connect(sharded.flight_url) as client:
        # A merged read has no row order to skip rows by: refused at GetFlightInfo, not
        # answered with a ticket that DoGet then refuses.
        with pytest.raises(flight.FlightServerError, match="invalid: 'offset' on sharded"):
            client.get_flight_info(command(dataset="events", offset=10))
        # A table function gives every shard the same rows: one shard answers.
        for sql in ("SELECT * FROM generate_series(1, 3)", "SELECT value FROM range(3)"):
            info = client.get_flight_info(command(sql=sql))
            assert len(info.endpoints) == 1, sql
            assert client.do_get(info.endpoints[0].ticket).read_all().num_rows == 3, sql
        # A dataset named with its schema is still a dataset: every shard answers.
        for name in ("public.events", "datafusion.public.events"):
            info = client.get_flight_info(command(sql=f"SELECT id FROM {name} WHERE id % 1000 = 0"))
            assert len(info.endpoints) == 3, name
            got = pa.concat_tables(client.do_get(e.ticket).read_all() for e in info.endpoints)
            assert sorted_ids(got) == list(range(0, 300_000, 1000)), name
        # A LIMIT that is an expression is refused in a sentence, not in the planner's words.
        with pytest.raises(flight.FlightServerError, match="is not a plain number") as caught:
            client.get_flight_info(command(sql="SELECT id FROM events LIMIT 2 + 1"))
        assert "Expr" not in str(caught.value)


def test_a_shard_ticket_is_refused_once_the_shard_list_changed(shard_roots):
    """Tickets name a shard by its place in the list: a gateway whose list differs (a
    rolling change, a reload) refuses them rather than read another shard."""
    with (
        running_connector(shard_roots[0]) as s0,
        running_connector(shard_roots[1]) as s1,
        running_connector(shard_roots[2]) as s2,
    ):
        urls = [f"grpc://127.0.0.1:{s.port}" for s in (s0, s1, s2)]
        before = TenantConfig("s", shards=tuple(urls))
        after = TenantConfig("s", shards=(urls[0], urls[2]))
        with (
            running_gateway({"s": before}, ticket_key=KEY) as old,
            running_gateway({"s": after}, ticket_key=KEY) as new,
            flight.connect(old.flight_url) as old_client,
            flight.connect(new.flight_url) as new_client,
        ):
            descriptor = flight.FlightDescriptor.for_path("s", "events")
            stale = old_client.get_flight_info(descriptor).endpoints
            for endpoint in stale:
                with pytest.raises(flight.FlightServerError, match="shards of tenant 's' have"):
                    new_client.do_get(endpoint.ticket).read_all()
            fresh = new_client.get_flight_info(descriptor).endpoints
            parts = [old_client.do_get(e.ticket).read_all() for e in stale]
            assert [p.num_rows for p in parts] == [100_000, 150_000, 50_000]
            rows = [new_client.do_get(e.ticket).read_all().num_rows for e in fresh]
            assert rows == [100_000, 50_000]


def test_one_bad_dataset_of_a_sharded_tenant_hides_no_other(tmp_path):
    roots = [tmp_path / "s0", tmp_path / "s1"]
    for number, root in enumerate(roots):
        root.mkdir()
        pq.write_table(table(number * 10, number * 10 + 10), root / "good.parquet")
        odd = table(0, 5) if number == 0 else table(0, 5).cast(
            pa.schema([("id", pa.string()), ("v", pa.int64()), ("tag", pa.string())])
        )
        pq.write_table(odd, root / "odd.parquet")
    pq.write_table(table(0, 5), roots[0] / "only.parquet")
    with (
        running_connector(roots[0]) as s0,
        running_connector(roots[1]) as s1,
    ):
        shards = (f"grpc://127.0.0.1:{s0.port}", f"grpc://127.0.0.1:{s1.port}")
        with (
            running_gateway({"s": TenantConfig("s", shards=shards)}) as gateway,
            flight.connect(gateway.flight_url) as client,
        ):
            listed = {tuple(i.descriptor.path) for i in client.list_flights()}
            assert listed == {(b"s", b"good")}
            assert [i.total_records for i in client.list_flights(b"s")] == [20]
            disagree = "invalid: the shards of 's/odd' disagree"
            with pytest.raises(flight.FlightServerError, match=disagree):
                client.get_flight_info(flight.FlightDescriptor.for_path("s", "odd"))
            with pytest.raises(flight.FlightServerError, match="not found"):
                client.get_flight_info(flight.FlightDescriptor.for_path("s", "only"))
            with urllib.request.urlopen(f"{gateway.http_url}/healthz", timeout=10) as response:
                health = json.load(response)
            assert health["status"] == "ok" and health["tenants"]["s"]["datasets"] == 1


def test_sharded_reads_over_websocket_http_and_the_cli(sharded):
    with connect(f"ws://127.0.0.1:{sharded.http_port}/ws", max_size=None) as ws:
        ws.send(json.dumps({"action": "query", "tenant": "s", "dataset": "events"}))
        frames = []
        while isinstance(message := ws.recv(timeout=60), bytes):
            frames.append(message)
        assert json.loads(message)["type"] == "end"
    over_ws = pa.ipc.open_stream(b"".join(frames)).read_all()
    assert sorted_ids(over_ws) == list(range(300_000))
    url = f"{sharded.http_url}/api/stream/s/events?limit=1000"
    with urllib.request.urlopen(url, timeout=60) as response:
        assert pa.ipc.open_stream(response.read()).read_all().num_rows == 1000
    done = subprocess.run(
        [sys.executable, "-m", "streamkit", "query", "s/events", "--format", "csv",
         "--columns", "id", "--gateway", sharded.flight_url],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    ids = [int(line) for line in done.stdout.splitlines()[1:]]
    assert sorted(ids) == list(range(300_000))


def test_the_dask_recipe_reads_one_task_per_shard(sharded):
    recipe = runpy.run_path(str(REPO / "examples" / "dask_shards.py"))
    parts = recipe["read_parallel"](sharded.flight_url, "s", "events")
    assert [p.num_rows for p in parts] == [100_000, 150_000, 50_000]
    assert sorted_ids(pa.concat_tables(parts)) == list(range(300_000))


def test_live_followers_on_two_gateways_each_with_its_hub(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    schema = pa.schema([("id", pa.int64())])
    with running_connector(root) as connector:
        remote = f"grpc://127.0.0.1:{connector.port}"
        with (
            running_gateway({"t": remote}, ticket_key=KEY) as one,
            running_gateway({"t": remote}, ticket_key=KEY) as two,
            flight.connect(one.flight_url) as first,
            flight.connect(two.flight_url) as second,
        ):
            writer, _ = first.do_put(flight.FlightDescriptor.for_path("t", "feed"), schema)
            try:
                writer.write_batch(pa.record_batch({"id": [0]}))
                # The put is on its way: follow once the connector has made the dataset.
                wait_for(
                    lambda: any(i.descriptor.path == [b"t", b"feed"] for i in first.list_flights()),
                    what="the published dataset",
                )
                follow = json.dumps({"tenant": "t", "dataset": "feed", "follow": True})
                readers = [
                    c.do_get(flight.Ticket(follow)) for c in (first, second) for _ in range(3)
                ]
                for reader in readers:
                    assert reader.read_chunk().data.to_pydict() == {"id": [0]}
                for start in (1, 4):
                    writer.write_batch(pa.record_batch({"id": list(range(start, start + 3))}))
                for reader in readers:
                    got: list[int] = []
                    while len(got) < 6:
                        got.extend(reader.read_chunk().data.column("id").to_pylist())
                    assert got == list(range(1, 7))
                # One upstream follow per gateway, whatever its number of followers.
                for gateway in (one, two):
                    [hub] = gateway.upstreams.hubs.all()
                    assert hub.key == ("t", "feed") and len(hub.followers) == 3
                for reader in readers:
                    reader.cancel()
            finally:
                writer.close()  # an open put would hold the gateway's stop
