"""SQL at the connector (DESIGN.md "SQL at the connector"): results equal pyarrow's own
computation, filters on datasets and on follow streams, every surface through the gateway,
a hostile corpus refused with nothing written, memory bounded, 50 concurrent streams."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.flight as flight
import pyarrow.parquet as pq
import pytest
from conftest import REPO, running_connector, running_gateway, wait_for
from test_live import Collector, publish
from websockets.sync.client import connect as ws_connect

ROWS = 20_000
REGIONS = ["eu", "us", "apac", "latam"]


def sales_table() -> pa.Table:
    return pa.table(
        {
            "id": pa.array(range(ROWS), pa.int64()),
            "region": pa.array([REGIONS[i % 4] for i in range(ROWS)]),
            "amount": pa.array([(i * 37) % 1000 / 10 for i in range(ROWS)], pa.float64()),
            "customer": pa.array([i % 50 for i in range(ROWS)], pa.int64()),
        }
    )


def customers_table() -> pa.Table:
    return pa.table(
        {"customer": pa.array(range(50), pa.int64()), "name": [f"c{i:02d}" for i in range(50)]}
    )


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("sql-data")
    pq.write_table(sales_table(), folder / "sales.parquet", row_group_size=4096)
    pcsv.write_csv(customers_table(), folder / "customers.csv")
    (folder / "archive" / "2025").mkdir(parents=True)
    pq.write_table(sales_table().slice(0, 100), folder / "archive" / "2025" / "q1.parquet")
    (folder / "secret.txt").write_text("do not read me")
    return folder


@pytest.fixture(scope="module")
def gateway(root) -> Iterator:
    """Tenant ``local`` embedded, tenant ``remote`` behind a connector: both run SQL."""
    with (
        running_connector(root) as connector,
        running_gateway({"local": root, "remote": f"grpc://127.0.0.1:{connector.port}"}) as gw,
    ):
        yield gw


def sql(client: flight.FlightClient, tenant: str, statement: str) -> pa.Table:
    command = json.dumps({"tenant": tenant, "sql": statement})
    info = client.get_flight_info(flight.FlightDescriptor.for_command(command))
    return client.do_get(info.endpoints[0].ticket).read_all()


def filtered(client: flight.FlightClient, tenant: str, **query) -> pa.Table:
    command = json.dumps({"tenant": tenant, **query})
    info = client.get_flight_info(flight.FlightDescriptor.for_command(command))
    return client.do_get(info.endpoints[0].ticket).read_all()


@pytest.mark.parametrize("tenant", ["local", "remote"])
def test_results_equal_pyarrows_own_computation(gateway, tenant):
    sales, customers = sales_table(), customers_table()
    with flight.connect(gateway.flight_url) as client:
        grouped = sql(
            client,
            tenant,
            "SELECT region, count(*) AS n, sum(amount) AS total FROM sales "
            "WHERE amount > 20 GROUP BY region ORDER BY region",
        )
        expected = (
            sales.filter(pc.greater(sales["amount"], 20))
            .group_by("region")
            .aggregate([("id", "count"), ("amount", "sum")])
            .sort_by("region")
        )
        assert grouped["region"].to_pylist() == expected["region"].to_pylist()
        assert grouped["n"].to_pylist() == expected["id_count"].to_pylist()
        assert grouped["total"].to_pylist() == pytest.approx(expected["amount_sum"].to_pylist())

        joined = sql(
            client,
            tenant,
            "SELECT c.name, sum(s.amount) AS total FROM sales s JOIN customers c "
            "ON s.customer = c.customer GROUP BY c.name ORDER BY total DESC, c.name LIMIT 5",
        )
        by_customer = sales.group_by("customer").aggregate([("amount", "sum")])
        named = by_customer.join(customers, "customer").sort_by(
            [("amount_sum", "descending"), ("name", "ascending")]
        )
        assert joined["name"].to_pylist() == named["name"].to_pylist()[:5]
        assert joined["total"].to_pylist() == pytest.approx(named["amount_sum"].to_pylist()[:5])

        top = sql(client, tenant, "SELECT id, amount FROM sales ORDER BY amount DESC, id LIMIT 7")
        ordered = sales.sort_by([("amount", "descending"), ("id", "ascending")]).slice(0, 7)
        assert top["id"].to_pylist() == ordered["id"].to_pylist()
        quoted = sql(
            client,
            tenant,
            'WITH q AS (SELECT * FROM "archive/2025") SELECT count(*) AS n FROM q',
        )
        assert quoted["n"].to_pylist() == [100]


@pytest.mark.parametrize("tenant", ["local", "remote"])
def test_where_keeps_order_columns_and_limit(gateway, tenant):
    sales = sales_table()
    with flight.connect(gateway.flight_url) as client:
        table = filtered(
            client,
            tenant,
            dataset="sales",
            where="region = 'eu' AND amount >= 50",
            columns=["id", "amount"],
            limit=300,
        )
    mask = pc.and_(pc.equal(sales["region"], "eu"), pc.greater_equal(sales["amount"], 50))
    expected = sales.filter(mask).select(["id", "amount"]).slice(0, 300)
    assert table.column_names == ["id", "amount"]
    assert table.to_pylist() == expected.to_pylist()


def test_where_on_a_follow_stream_filters_each_batch(tmp_path):
    schema = pa.schema([("seq", pa.int64()), ("value", pa.float64())])

    def batch(start: int) -> pa.RecordBatch:
        return pa.record_batch(
            [
                pa.array(range(start, start + 10)),
                pa.array([float(i % 7) for i in range(start, start + 10)]),
            ],
            schema=schema,
        )

    with (
        running_connector(tmp_path) as connector,
        running_gateway({"t": f"grpc://127.0.0.1:{connector.port}"}) as gw,
        flight.connect(gw.flight_url) as client,
    ):
        publish(client, ["t", "feed"], [batch(0)])
        ticket = {"tenant": "t", "dataset": "feed", "follow": True, "where": "value >= 5"}
        follower = Collector(client.do_get(flight.Ticket(json.dumps(ticket).encode())))
        for start in range(10, 200, 10):
            publish(client, ["t", "feed"], [batch(start)])
        expected = [i for i in range(200) if i % 7 >= 5]
        wait_for(lambda: len(follower.seqs) >= len(expected), 15, "the filtered rows")
        assert follower.seqs == expected and follower.error is None
        follower.stop()
        bad = {"tenant": "t", "dataset": "feed", "follow": True, "where": "nope > 1"}
        with pytest.raises(flight.FlightServerError, match="invalid: no column 'nope'"):
            client.do_get(flight.Ticket(json.dumps(bad).encode())).read_all()


def test_http_websocket_and_cli_surfaces(gateway):
    base = f"http://127.0.0.1:{gateway.http_port}"
    statement = "SELECT region, count(*) AS n FROM sales GROUP BY region ORDER BY region"
    url = f"{base}/api/sql/remote?q={urllib.parse.quote(statement)}"
    with urllib.request.urlopen(url, timeout=30) as response:
        got = pa.ipc.open_stream(response.read()).read_all()
    assert got["n"].to_pylist() == [ROWS // 4] * 4
    posted = urllib.request.Request(f"{base}/api/sql/local", data=statement.encode(), method="POST")
    with urllib.request.urlopen(posted, timeout=30) as response:
        assert pa.ipc.open_stream(response.read()).read_all().equals(got)
    where = urllib.parse.quote("amount < 1")
    with urllib.request.urlopen(f"{base}/api/stream/local/sales?where={where}", timeout=30) as r:
        assert pa.ipc.open_stream(r.read()).read_all()["amount"].to_pylist() == [
            a for a in sales_table()["amount"].to_pylist() if a < 1
        ]
    for bad, status, code in [
        ("DROP TABLE sales", 400, "invalid"),
        ("SELECT * FROM nowhere", 404, "not_found"),
    ]:
        with pytest.raises(urllib.error.HTTPError) as failure:
            urllib.request.urlopen(f"{base}/api/sql/local?q={urllib.parse.quote(bad)}", timeout=30)
        assert failure.value.code == status
        assert json.loads(failure.value.read())["code"] == code

    with ws_connect(f"ws://127.0.0.1:{gateway.http_port}/ws", max_size=None) as ws:
        ws.send(json.dumps({"action": "query", "id": "s", "tenant": "remote", "sql": statement}))
        frames = []
        while isinstance(message := ws.recv(timeout=30), bytes):
            frames.append(message)
        assert json.loads(message)["type"] == "end"
        assert pa.ipc.open_stream(b"".join(frames)).read_all().equals(got)
        ws.send(json.dumps({"action": "query", "id": "b", "tenant": "remote", "sql": "SET x = 1"}))
        error = json.loads(ws.recv(timeout=30))
        assert error["type"] == "error" and error["code"] == "invalid"

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "streamkit", *args, "--gateway", gateway.flight_url],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=REPO,
        )

    for fmt in ("csv", "json", "ndjson", "table"):
        result = cli("sql", "remote", statement, "--format", fmt)
        assert result.returncode == 0, result.stderr
        assert "apac" in result.stdout and str(ROWS // 4) in result.stdout
    for fmt in ("arrow", "parquet"):
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "streamkit",
                "sql",
                "local",
                statement,
                "--format",
                fmt,
                "--gateway",
                gateway.flight_url,
            ],
            capture_output=True,
            timeout=60,
            cwd=REPO,
        )
        assert result.returncode == 0, result.stderr
        read = (
            pa.ipc.open_stream(result.stdout).read_all()
            if fmt == "arrow"
            else pq.read_table(pa.BufferReader(result.stdout))
        )
        assert read["n"].to_pylist() == [ROWS // 4] * 4
    result = cli("query", "local/sales", "--where", "id < 3", "--format", "csv", "-c", "id")
    assert result.returncode == 0 and result.stdout.split() == ['"id"', "0", "1", "2"]
    result = cli("sql", "local", "COPY (SELECT 1) TO 'x.csv'")
    assert result.returncode == 6 and "only SELECT" in result.stderr
    result = cli("sql", "local", "SELECT * FROM missing")
    assert result.returncode == 3 and "not found: dataset 'missing'" in result.stderr


HOSTILE = [
    "SELECT * FROM '/etc/passwd'",
    "SELECT * FROM 'secret.txt'",
    'SELECT * FROM "../secret"',
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM read_parquet('sales.parquet')",
    "SELECT * FROM glob('/etc/*')",
    "ATTACH '/tmp/x.db' AS x",
    "COPY (SELECT 1) TO '/tmp/streamkit-copied.csv'",
    "COPY sales TO 'copied.parquet'",
    "INSTALL httpfs",
    "SET datafusion.execution.batch_size = 1",
    "CREATE EXTERNAL TABLE t STORED AS CSV LOCATION '/etc/passwd'",
    "CREATE TABLE t AS SELECT 1",
    "DROP TABLE sales",
    "INSERT INTO sales VALUES (1, 'x', 1.0, 1)",
    "SELECT 1; SELECT 2",
    "SELECT 1; COPY (SELECT 1) TO '/tmp/streamkit-copied.csv'",
    "EXPLAIN SELECT * FROM sales",
    "/* hidden */ COPY (SELECT 1) TO 'x.csv'",
    "SELECT * FROM information_schema.tables",
    "SELECT * FROM datafusion.public.sales_x",
    "DESCRIBE sales",
    "SHOW TABLES",
    "",
    "SELECT",
]


def test_a_hostile_corpus_is_refused_and_nothing_is_written(gateway, root):
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    with flight.connect(gateway.flight_url) as client:
        for statement in HOSTILE:
            for tenant in ("local", "remote"):
                with pytest.raises(flight.FlightServerError) as failure:
                    sql(client, tenant, statement)
                message = str(failure.value)
                assert message.startswith(("invalid: ", "not found: ")), (statement, message)
                assert str(root) not in message and "Traceback" not in message
                assert "do not read me" not in message
        # The servers are fine afterwards.
        assert sql(client, "remote", "SELECT count(*) AS n FROM sales")["n"].to_pylist() == [ROWS]
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == before
    assert not Path("/tmp/streamkit-copied.csv").exists()


def test_a_huge_result_streams_and_a_memory_hungry_query_is_bounded(tmp_path):
    big = pa.table({"x": pa.array(range(200_000), pa.int64())})
    pq.write_table(big, tmp_path / "big.parquet")
    with (
        running_connector(tmp_path, sql_memory=32 * 1024 * 1024) as connector,
        flight.connect(f"grpc://127.0.0.1:{connector.port}") as client,
    ):
        me = psutil.Process(os.getpid())
        before = me.memory_info().rss
        # 4e10 rows: streamed, read a little, then cancelled.
        command = json.dumps({"sql": "SELECT a.x, b.x AS y FROM big a CROSS JOIN big b"})
        info = client.get_flight_info(flight.FlightDescriptor.for_command(command))
        reader = client.do_get(info.endpoints[0].ticket)
        rows = sum(reader.read_chunk().data.num_rows for _ in range(20))
        reader.cancel()
        assert rows > 0
        assert me.memory_info().rss - before < 400 * 1024 * 1024
        # Grouping it cannot fit in 32 MB: with no spill folder it fails at once, cleanly.
        command = json.dumps(
            {"sql": "SELECT a.x, count(*) AS n FROM big a CROSS JOIN big b GROUP BY a.x, b.x"}
        )
        failure = []

        def hungry() -> None:
            try:
                info = client.get_flight_info(flight.FlightDescriptor.for_command(command))
                client.do_get(info.endpoints[0].ticket).read_chunk()
            except flight.FlightError as exc:
                failure.append(exc)

        worker = threading.Thread(target=hungry, daemon=True)
        worker.start()
        worker.join(60)
        assert not worker.is_alive(), "the memory-hungry query hung"
        assert failure and "invalid: " in str(failure[0]), failure
        assert "memory" in str(failure[0]).lower()
        assert me.memory_info().rss - before < 600 * 1024 * 1024
        # Still serving.
        small = json.dumps({"sql": "SELECT count(*) AS n FROM big"})
        info = client.get_flight_info(flight.FlightDescriptor.for_command(small))
        assert client.do_get(info.endpoints[0].ticket).read_all()["n"].to_pylist() == [200_000]


def test_50_concurrent_sql_streams(gateway):
    statement = "SELECT region, sum(amount) AS total FROM sales GROUP BY region ORDER BY region"
    with flight.connect(gateway.flight_url) as client:
        expected = sql(client, "remote", statement)
    barrier = threading.Barrier(50)

    def one(i: int) -> pa.Table:
        with flight.connect(gateway.flight_url) as client:
            barrier.wait(30)
            return sql(client, "remote" if i % 2 else "local", statement)

    with ThreadPoolExecutor(50) as pool:
        tables = list(pool.map(one, range(50)))
    assert all(t.equals(expected) for t in tables)


def test_where_keeps_every_column_type(tmp_path):
    import decimal

    table = pa.table(
        {
            "n": pa.array(range(6), pa.int32()),
            "kind": pa.array(["a", "b", "a", "c", "b", "a"]).dictionary_encode(),
            "at": pa.array([i * 1000 for i in range(6)], pa.timestamp("ms", "Europe/Madrid")),
            "price": pa.array([decimal.Decimal(f"{i}.25") for i in range(6)], pa.decimal128(9, 2)),
            "tags": pa.array([[str(i)] * i for i in range(6)], pa.list_(pa.string())),
            "label": pa.array([f"x{i}" for i in range(6)], pa.large_string()),
        }
    )
    pq.write_table(table, tmp_path / "typed.parquet", store_schema=True)
    with (
        running_connector(tmp_path) as connector,
        running_gateway({"t": f"grpc://127.0.0.1:{connector.port}"}) as gw,
        flight.connect(gw.flight_url) as client,
    ):
        info = client.get_flight_info(flight.FlightDescriptor.for_path("t", "typed"))
        full = client.do_get(info.endpoints[0].ticket).read_all()
        kept = filtered(client, "t", dataset="typed", where="n % 2 = 0")
    assert kept.schema == full.schema
    assert kept.to_pylist() == [row for row in full.to_pylist() if row["n"] % 2 == 0]
