"""The connector's Flight service: formats, naming, projection, limits, bad input, concurrency."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import struct
import threading
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.dataset as ds
import pyarrow.feather as feather
import pyarrow.flight as flight
import pyarrow.json as pjson
import pyarrow.parquet as pq
import pytest
from conftest import running_connector, wait_for

TABLE = pa.table(
    {
        "id": pa.array(range(1000), pa.int64()),
        "name": [f"név-{i}" for i in range(1000)],
        "value": [i / 7 for i in range(1000)],
    }
)


def fetch(client: flight.FlightClient, descriptor: flight.FlightDescriptor) -> pa.Table:
    info = client.get_flight_info(descriptor)
    return client.do_get(info.endpoints[0].ticket).read_all()


def path(name: str) -> flight.FlightDescriptor:
    return flight.FlightDescriptor.for_path(name)


def command(**query) -> flight.FlightDescriptor:
    return flight.FlightDescriptor.for_command(json.dumps(query))


@pytest.fixture
def formats_root(tmp_path: Path) -> Path:
    """The same table in every supported format, each under its own name."""
    pcsv.write_csv(TABLE, tmp_path / "t_csv.csv")
    pcsv.write_csv(TABLE, tmp_path / "t_tsv.tsv", pcsv.WriteOptions(delimiter="\t"))
    rows = TABLE.to_pylist()
    lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    (tmp_path / "t_jsonl.jsonl").write_text(lines, encoding="utf-8")
    (tmp_path / "t_ndjson.ndjson").write_text(lines, encoding="utf-8")
    (tmp_path / "t_json_lines.json").write_text(lines, encoding="utf-8")
    (tmp_path / "t_json_array.json").write_text(json.dumps(rows, indent=2), encoding="utf-8")
    pq.write_table(TABLE, tmp_path / "t_parquet.parquet", row_group_size=100)
    feather.write_feather(TABLE, tmp_path / "t_arrow.arrow")
    feather.write_feather(TABLE, tmp_path / "t_feather.feather", compression="zstd")
    with gzip.open(tmp_path / "t_csv_gz.csv.gz", "wb") as f:
        f.write((tmp_path / "t_csv.csv").read_bytes())
    with pa.output_stream(str(tmp_path / "t_jsonl_zst.jsonl.zst"), compression="zstd") as f:
        f.write(lines.encode())
    return tmp_path


EXPECTED_READ = {
    "t_csv": lambda p: pcsv.read_csv(p / "t_csv.csv"),
    "t_tsv": lambda p: pcsv.read_csv(
        p / "t_tsv.tsv", parse_options=pcsv.ParseOptions(delimiter="\t")
    ),
    "t_jsonl": lambda p: pjson.read_json(p / "t_jsonl.jsonl"),
    "t_ndjson": lambda p: pjson.read_json(p / "t_ndjson.ndjson"),
    "t_json_lines": lambda p: pjson.read_json(p / "t_json_lines.json"),
    "t_json_array": lambda p: pjson.read_json(p / "t_jsonl.jsonl"),
    "t_parquet": lambda p: pq.read_table(p / "t_parquet.parquet"),
    "t_arrow": lambda p: feather.read_table(p / "t_arrow.arrow"),
    "t_feather": lambda p: feather.read_table(p / "t_feather.feather"),
    "t_csv_gz": lambda p: pcsv.read_csv(p / "t_csv_gz.csv.gz"),
    "t_jsonl_zst": lambda p: pjson.read_json(
        pa.input_stream(str(p / "t_jsonl_zst.jsonl.zst"), compression="zstd")
    ),
}


@pytest.mark.parametrize("name", sorted(EXPECTED_READ))
def test_every_format_round_trips_like_pyarrow(formats_root, client_for, name):
    with running_connector(formats_root, batch_rows=128) as server:
        table = fetch(client_for(server), path(name))
    expected = EXPECTED_READ[name](formats_root)
    assert table.equals(expected), f"{name}: {table.schema} vs {expected.schema}"
    assert table.num_rows == 1000


def test_partitioned_parquet_folder_is_one_dataset(tmp_path, client_for):
    ds.write_dataset(
        TABLE.append_column("part", pa.array([i % 3 for i in range(1000)])),
        tmp_path / "events",
        format="parquet",
        partitioning=["part"],
        partitioning_flavor="hive",
    )
    with running_connector(tmp_path) as server:
        client = client_for(server)
        [info] = list(client.list_flights())
        assert info.descriptor.path == [b"events"]
        assert info.total_records == 1000
        table = fetch(client, path("events"))
    assert table.num_rows == 1000
    assert sorted(set(table.column("part").to_pylist())) == [0, 1, 2]
    assert sorted(table.column("id").to_pylist()) == list(range(1000))


def test_listing_names_sizes_and_new_files(tmp_path, client_for):
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    (tmp_path / ".hidden").mkdir()
    pq.write_table(TABLE, tmp_path / "sales.parquet")
    pcsv.write_csv(TABLE, tmp_path / "sales.csv")  # same stem: both keep extensions
    pcsv.write_csv(TABLE, tmp_path / "sub" / "deeper" / "x.csv")
    pcsv.write_csv(TABLE, tmp_path / ".hidden" / "secret.csv")
    (tmp_path / "notes.txt").write_text("not data")
    with running_connector(tmp_path) as server:
        client = client_for(server)
        infos = {tuple(p.decode() for p in i.descriptor.path): i for i in client.list_flights()}
        assert set(infos) == {("sales.parquet",), ("sales.csv",), ("sub/deeper/x",)}
        parquet = infos[("sales.parquet",)]
        assert parquet.total_records == 1000
        assert parquet.total_bytes == (tmp_path / "sales.parquet").stat().st_size
        assert infos[("sales.csv",)].total_records == -1
        assert parquet.schema.equals(TABLE.schema)

        # Appears without a restart, and the other files keep working.
        feather.write_feather(TABLE, tmp_path / "sub" / "new.arrow")
        names = {i.descriptor.path[0].decode() for i in client.list_flights()}
        assert "sub/new" in names
        assert fetch(client, path("sub/new")).equals(TABLE)
        schema = client.get_schema(path("sub/deeper/x")).schema
        assert schema.names == ["id", "name", "value"]


def test_projection_and_limit(formats_root, client_for):
    with running_connector(formats_root, batch_rows=100) as server:
        client = client_for(server)
        for name in ("t_parquet", "t_csv", "t_jsonl", "t_arrow"):
            info = client.get_flight_info(command(dataset=name, columns=["value", "id"], limit=250))
            assert info.schema.names == ["value", "id"]
            reader = client.do_get(info.endpoints[0].ticket)
            table = reader.read_all()
            assert table.schema.names == ["value", "id"]
            assert table.column("id").to_pylist() == list(range(250))
        info = client.get_flight_info(command(dataset="t_parquet", limit=10))
        assert info.total_records == 10
        empty = fetch(client, command(dataset="t_parquet", limit=0))
        assert empty.num_rows == 0 and empty.schema.names == ["id", "name", "value"]
        batches = list(client.do_get(client.get_flight_info(path("t_parquet")).endpoints[0].ticket))
        assert max(b.data.num_rows for b in batches) <= 100


def test_parquet_projection_returns_only_requested_columns(tmp_path, client_for):
    wide = pa.table({"keep": list(range(50_000)), "big": ["x" * 200] * 50_000})
    pq.write_table(wide, tmp_path / "wide.parquet")
    with running_connector(tmp_path) as server:
        client = client_for(server)
        table = fetch(client, command(dataset="wide", columns=["keep"]))
    assert table.column_names == ["keep"] and table.num_rows == 50_000


@pytest.mark.parametrize(
    "bad",
    [
        {"dataset": "t_csv", "columns": ["nope"]},
        {"dataset": "t_csv", "limit": -1},
        {"dataset": "t_csv", "limit": "ten"},
        {"dataset": "t_csv", "colums": ["id"]},
        {"dataset": ""},
        ["t_csv"],
    ],
)
def test_bad_query_is_invalid(formats_root, client_for, bad):
    with running_connector(formats_root) as server:
        client = client_for(server)
        with pytest.raises(flight.FlightServerError, match=r"^invalid: "):
            client.get_flight_info(flight.FlightDescriptor.for_command(json.dumps(bad)))
        with pytest.raises(flight.FlightServerError, match=r"^invalid: "):
            client.do_get(flight.Ticket(json.dumps(bad).encode())).read_all()
        with pytest.raises(flight.FlightServerError, match=r"^invalid: "):
            client.do_get(flight.Ticket(b"\xff not json")).read_all()


@pytest.fixture
def guarded_root(tmp_path: Path) -> tuple[Path, Path]:
    """A root inside tmp_path, with a secret file beside it and tricks pointing at it."""
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    secret = tmp_path / "secret.csv"
    pcsv.write_csv(TABLE, secret)
    pcsv.write_csv(TABLE, root / "sub" / "ok.csv")
    (root / "escape.csv").symlink_to(secret)
    (root / "linkdir").symlink_to(tmp_path)
    pcsv.write_csv(TABLE, root / "%2e%2e.csv")  # a literal name, served as itself
    return root, secret


TRICKS = [
    "../secret",
    "../secret.csv",
    "/etc/passwd",
    str(Path("/etc/passwd")),
    "sub/../../secret",
    "sub/../ok",
    "./sub/ok",
    "sub//ok",
    "escape",
    "linkdir/secret",
    "linkdir/root/sub/ok",
    "sub\\ok",
    "..\\secret",
    "sub/ok\x00.csv",
    "%2e%2e/secret",
    "..%2fsecret",
    "sub/ok/..",
    "",
    ".",
    "..",
    "sub/",
]


@pytest.mark.parametrize("name", TRICKS)
def test_path_tricks_are_not_found(guarded_root, client_for, name):
    root, secret = guarded_root
    with running_connector(root) as server:
        client = client_for(server)
        with pytest.raises(flight.FlightError) as raised:
            fetch(client, path(name) if name else command(dataset=name))
        message = str(raised.value)
        assert message.startswith(("not found: ", "invalid: "))
        assert str(root) not in message and str(secret.parent) not in message
        with pytest.raises(flight.FlightServerError, match="^(not found|invalid): "):
            client.do_get(flight.Ticket(json.dumps({"dataset": name}).encode())).read_all()
        # The server is still serving.
        assert fetch(client, path("sub/ok")).num_rows == 1000


def test_symlinks_out_of_root_are_not_listed(guarded_root, client_for):
    root, _ = guarded_root
    with running_connector(root) as server:
        names = {i.descriptor.path[0].decode() for i in client_for(server).list_flights()}
    assert names == {"sub/ok", "%2e%2e"}


def _parquet_with_footer_length(tmp_path: Path, length: int) -> Path:
    target = tmp_path / "huge_footer.parquet"
    pq.write_table(TABLE, target)
    data = bytearray(target.read_bytes())
    data[-8:-4] = struct.pack("<I", length)
    target.write_bytes(bytes(data))
    return target


BAD_FILES = {
    "corrupt.parquet": lambda p: (p / "corrupt.parquet").write_bytes(
        b"PAR1" + os.urandom(4000) + b"PAR1"
    ),
    "truncated.parquet": lambda p: (p / "truncated.parquet").write_bytes(_parquet_bytes()[:-100]),
    "footer2gb.parquet": lambda p: _parquet_with_footer_length(p, 2**31 - 1).rename(
        p / "footer2gb.parquet"
    ),
    "wide.parquet": lambda p: pq.write_table(
        pa.table({f"c{i}": [1] for i in range(20_000)}), p / "wide.parquet"
    ),
    "typo.csv": lambda p: (p / "typo.csv").write_text(
        "a,b\n" + "".join(f"{i},x\n" for i in range(200_000)) + "oops,y\n"
    ),
    "ragged.csv": lambda p: (p / "ragged.csv").write_text("a,b\n1,2\n3,4,5\n"),
    "longline.csv": lambda p: (p / "longline.csv").write_text("a\n" + "x" * 5_000_000 + "\n"),
    "empty.csv": lambda p: (p / "empty.csv").write_bytes(b""),
    "empty.parquet": lambda p: (p / "empty.parquet").write_bytes(b""),
    "typo.jsonl": lambda p: (p / "typo.jsonl").write_text('{"a": 1}\n{"a": "x"}\n'),
    "broken.jsonl": lambda p: (p / "broken.jsonl").write_text('{"a": 1}\n{"a": \n'),
    "broken.json": lambda p: (p / "broken.json").write_text('[{"a": 1}, {"a": '),
    "deep.jsonl": lambda p: (p / "deep.jsonl").write_text(
        '{"a": ' + "[" * 30_000 + "]" * 30_000 + "}\n"
    ),
    "deep.json": lambda p: (p / "deep.json").write_text(
        '[{"a": ' + "[" * 30_000 + "]" * 30_000 + "}]"
    ),
    "bomb.csv.gz": lambda p: _gzip_bomb(p / "bomb.csv.gz"),
}


def _parquet_bytes() -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(TABLE, sink)
    return sink.getvalue().to_pybytes()


def _gzip_bomb(target: Path) -> None:
    """~1 MB of gzip that expands to 1 GB of valid CSV rows."""
    row = b"1,2\n" * 262_144  # 1 MB
    with gzip.open(target, "wb", compresslevel=9) as f:
        f.write(b"a,b\n")
        for _ in range(1024):
            f.write(row)


@pytest.mark.parametrize("filename", sorted(BAD_FILES))
def test_bad_files_give_clean_errors_and_server_stays_up(tmp_path, client_for, filename):
    BAD_FILES[filename](tmp_path)
    pcsv.write_csv(TABLE, tmp_path / "good.csv")
    name = filename.split(".")[0]
    with running_connector(tmp_path) as server:
        client = client_for(server)
        with pytest.raises(flight.FlightServerError) as raised:
            fetch(client, path(name))
        message = str(raised.value)
        assert message.startswith(f"invalid: dataset {name!r}: "), message
        assert "Traceback" not in message and str(tmp_path) not in message
        listed = {i.descriptor.path[0].decode() for i in client.list_flights()}
        assert "good" in listed
        assert fetch(client, path("good")).num_rows == 1000


def test_hundred_concurrent_streams(tmp_path, client_for):
    big = pa.table({"id": range(200_000), "x": [i * 0.5 for i in range(200_000)]})
    pq.write_table(big, tmp_path / "big.parquet")
    with running_connector(tmp_path, batch_rows=10_000) as server:
        client = client_for(server)
        ticket = client.get_flight_info(path("big")).endpoints[0].ticket
        results: list[int] = []
        failures: list[BaseException] = []
        lock = threading.Lock()

        def read() -> None:
            try:
                rows = client.do_get(ticket).read_all().num_rows
                with lock:
                    results.append(rows)
            except BaseException as exc:
                with lock:
                    failures.append(exc)

        threads = [threading.Thread(target=read) for _ in range(100)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
    assert failures == []
    assert results == [200_000] * 100


def test_cancelled_stream_stops_reading(tmp_path, client_for):
    pq.write_table(
        pa.table({"id": range(2_000_000)}), tmp_path / "long.parquet", row_group_size=10_000
    )
    with running_connector(tmp_path, batch_rows=1000) as server:
        client = client_for(server)
        reader = client.do_get(
            flight.Ticket(json.dumps({"dataset": "long", "limit": 1_999_999}).encode())
        )
        reader.read_chunk()
        reader.cancel()
        # The server keeps serving, and the cancelled call ended on its side.
        assert fetch(client, command(dataset="long", limit=5)).num_rows == 5


def test_csv_values_with_line_breaks_past_the_first_block(tmp_path, client_for):
    """Quoted values may hold line breaks anywhere in the file, not only in the first block
    the reader parses (about 1 MiB)."""
    rows = 150_000
    notes = [f"first of {i}\nsecond, with a comma" if i % 7 == 0 else f"n{i}" for i in range(rows)]
    scores = pa.array([None if i % 5 == 0 else i * 0.5 for i in range(rows)], pa.float64())
    want = pa.table({"id": pa.array(range(rows), pa.int64()), "note": notes, "score": scores})
    pcsv.write_csv(want, tmp_path / "notes.csv")
    text = (tmp_path / "notes.csv").read_text().replace(",\n", ",NA\n")  # R's null marker
    (tmp_path / "notes.csv").write_text(text)
    assert (tmp_path / "notes.csv").stat().st_size > 2 * 1024 * 1024
    with running_connector(tmp_path) as server:
        client = client_for(server)
        assert fetch(client, path("notes")).equals(want)
        filtered = fetch(client, command(dataset="notes", where="id % 7 = 0"))
        assert filtered.column("note").to_pylist() == notes[::7]
        sql = fetch(client, command(sql="SELECT count(*) AS n, count(score) AS s FROM notes"))
        assert sql.to_pylist() == [{"n": rows, "s": rows - rows // 5}]
        nulls = fetch(client, command(dataset="notes", where="score IS NULL", columns=["id"]))
        assert nulls.column("id").to_pylist() == list(range(0, rows, 5))


def test_demo_data_is_served(demo_connector, client_for):
    client = client_for(demo_connector)
    names = {i.descriptor.path[0].decode() for i in client.list_flights()}
    assert {
        "sensors",
        "sales",
        "sales_by_region",
        "formats/sensors.csv",
        "formats/sales.json",
        "archive/2025/sensors_day1",
    } <= names
    sensors = fetch(client, path("sensors"))
    assert sensors.num_rows == 10_080
    assert pa.types.is_timestamp(sensors.schema.field("ts").type)


def test_copy_of_root_is_independent(tmp_path, client_for):
    shutil.copytree(Path(__file__).parent.parent / "examples" / "data", tmp_path / "d")
    with running_connector(tmp_path / "d") as server:
        client = client_for(server)
        (tmp_path / "d" / "sensors.parquet").unlink()
        wait_for(
            lambda: "sensors" not in {i.descriptor.path[0].decode() for i in client.list_flights()},
            5,
            "removal",
        )
        with pytest.raises(flight.FlightServerError, match="^not found: dataset 'sensors'"):
            fetch(client, path("sensors"))
