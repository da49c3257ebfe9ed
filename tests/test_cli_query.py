"""``streamkit query``: every format read back and compared to the source, pipes, exit codes."""

from __future__ import annotations

import decimal
import io
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.flight as flight
import pyarrow.parquet as pq
import pytest
from conftest import REPO, running_connector, running_gateway, wait_for
from typer.testing import CliRunner

from streamkit.cli import app
from streamkit.client import (
    EXIT_AUTH,
    EXIT_INTERRUPTED,
    EXIT_INVALID,
    EXIT_NOT_FOUND,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
)

NESTED = ("tags", "point")


def types_table() -> pa.Table:
    big = "x" * 200_000 + "ñ"
    return pa.table(
        {
            "id": pa.array([1, 2, 3, None], pa.int64()),
            "ts": pa.array(
                [1_700_000_000_123_456_789, 0, None, -1_000_000_007],
                pa.timestamp("ns", "America/New_York"),
            ),
            "naive": pa.array([1_700_000_000_123_456, None, 0, 5], pa.timestamp("us")),
            "price": pa.array(
                [decimal.Decimal("12345.6789"), decimal.Decimal("-0.0001"), None, 0],
                pa.decimal128(20, 4),
            ),
            "day": pa.array([19000, None, 0, -1], pa.date32()),
            "text": pa.array(['héllo, "wörld"', "multi\nline", "", None]),
            "emoji": pa.array(["🙂", "日本語", None, "a\tb"], pa.string()),
            "big": pa.array([big, None, "small", ""], pa.large_string()),
            "ok": pa.array([True, False, None, True]),
            "ratio": pa.array([0.5, -1e300, None, 3.0], pa.float64()),
            "tags": pa.array([["a", "b"], [], None, ["ç", None]], pa.list_(pa.string())),
            "point": pa.array(
                [
                    {"x": 1.5, "label": "p"},
                    None,
                    {"x": None, "label": "ü"},
                    {"x": 0.0, "label": None},
                ],
                pa.struct([("x", pa.float64()), ("label", pa.string())]),
            ),
        }
    )


def many_table(rows: int = 150_000) -> pa.Table:
    return pa.table(
        {
            "n": pa.array(range(rows), pa.int64()),
            "s": pa.array([f"row {i}" for i in range(rows)]),
        }
    )


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data")
    pq.write_table(types_table(), root / "types.parquet")
    pq.write_table(many_table(), root / "many.parquet")
    return root


@pytest.fixture(scope="module")
def gw(data_dir: Path) -> Iterator[str]:
    with running_gateway({"t": data_dir}) as gateway:
        yield gateway.flight_url


runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, ["query", *args], catch_exceptions=False)


def query_bytes(url: str, *args: str) -> bytes:
    result = run(*args, "--gateway", url)
    assert result.exit_code == 0, result.stderr
    return result.stdout_bytes


# -- formats ----------------------------------------------------------------------------


def test_arrow_round_trip(gw: str) -> None:
    data = query_bytes(gw, "t/types", "--format", "arrow")
    assert pa.ipc.open_stream(data).read_all().equals(types_table())


def test_arrow_multiple_batches(gw: str) -> None:
    reader = pa.ipc.open_stream(query_bytes(gw, "t/many", "-f", "arrow"))
    batches = list(reader)
    assert len(batches) > 1
    assert pa.Table.from_batches(batches).equals(many_table())


def test_parquet_round_trip(gw: str) -> None:
    data = query_bytes(gw, "t/types", "--format", "parquet")
    assert pq.read_table(io.BytesIO(data)).equals(types_table())


def test_csv_round_trip(gw: str) -> None:
    source = types_table()
    data = query_bytes(gw, "t/types", "--format", "csv")
    flat = {f.name: f.type for f in source.schema if f.name not in NESTED}
    back = pcsv.read_csv(
        io.BytesIO(data),
        convert_options=pcsv.ConvertOptions(
            column_types={**flat, **{name: pa.string() for name in NESTED}},
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,
        ),
    )
    assert back.column_names == source.column_names
    assert back.select(list(flat)).equals(source.select(list(flat)))
    for name in NESTED:  # lists and structs travel as JSON text
        decoded = [None if v is None else json.loads(v) for v in back.column(name).to_pylist()]
        assert decoded == source.column(name).to_pylist()


def test_csv_many_rows(gw: str) -> None:
    back = pcsv.read_csv(io.BytesIO(query_bytes(gw, "t/many", "-f", "csv")))
    assert back.equals(many_table())


def _from_json_rows(rows: list[dict], schema: pa.Schema) -> pa.Table:
    """JSON values back into Arrow: temporal and decimal values arrive as strings."""
    columns = []
    for field in schema:
        values = [row[field.name] for row in rows]
        if pa.types.is_temporal(field.type) or pa.types.is_decimal(field.type):
            columns.append(pa.array(values, pa.string()).cast(field.type))
        else:
            columns.append(pa.array(values, field.type))
    return pa.Table.from_arrays(columns, schema=schema)


def test_json_array_round_trip(gw: str) -> None:
    source = types_table()
    rows = json.loads(query_bytes(gw, "t/types", "--format", "json"))
    assert isinstance(rows, list)
    assert [list(r) for r in rows] == [source.column_names] * source.num_rows
    assert _from_json_rows(rows, source.schema).equals(source)


def test_ndjson_round_trip(gw: str) -> None:
    source = types_table()
    lines = query_bytes(gw, "t/types", "--format", "ndjson").decode().splitlines()
    assert len(lines) == source.num_rows
    rows = [json.loads(line) for line in lines]
    assert _from_json_rows(rows, source.schema).equals(source)


def test_json_many_rows_is_one_array(gw: str) -> None:
    rows = json.loads(query_bytes(gw, "t/many", "-f", "json"))
    assert rows == many_table().to_pylist()


def test_empty_results_are_still_valid(gw: str) -> None:
    assert json.loads(query_bytes(gw, "t/many", "-f", "json", "--limit", "0")) == []
    assert query_bytes(gw, "t/many", "-f", "ndjson", "--limit", "0") == b""
    assert query_bytes(gw, "t/many", "-f", "csv", "--limit", "0") == b'"n","s"\n'
    table = pa.ipc.open_stream(query_bytes(gw, "t/many", "-f", "arrow", "-n", "0")).read_all()
    assert table.num_rows == 0 and table.schema.names == ["n", "s"]
    parquet = pq.read_table(io.BytesIO(query_bytes(gw, "t/many", "-f", "parquet", "-n", "0")))
    assert parquet.num_rows == 0


def test_table_is_a_preview(gw: str) -> None:
    result = run("t/many", "--format", "table", "--gateway", gw)
    assert result.exit_code == 0, result.stderr
    assert "row 0" in result.stdout and "row 99" in result.stdout
    assert "row 100" not in result.stdout
    assert "first 100 of 150,000 rows" in result.stderr


def test_default_format_when_piped_is_csv(gw: str) -> None:
    data = query_bytes(gw, "t/many", "--limit", "2")
    assert data == b'"n","s"\n0,"row 0"\n1,"row 1"\n'


# -- columns, limit, output -------------------------------------------------------------


def test_columns_and_limit(gw: str) -> None:
    data = query_bytes(gw, "t/types", "-f", "arrow", "--columns", "text, id", "--limit", "2")
    expected = types_table().select(["text", "id"]).slice(0, 2)
    assert pa.ipc.open_stream(data).read_all().equals(expected)


def test_limit_across_batches(gw: str) -> None:
    data = query_bytes(gw, "t/many", "-f", "arrow", "--limit", "70000", "-c", "n")
    assert pa.ipc.open_stream(data).read_all().equals(many_table().select(["n"]).slice(0, 70000))


@pytest.mark.parametrize(
    ("name", "read"),
    [
        ("out.parquet", lambda p: pq.read_table(p)),
        ("out.arrow", lambda p: pa.ipc.open_stream(p.read_bytes()).read_all()),
        ("out.csv", lambda p: pcsv.read_csv(p)),
        (
            "out.ndjson",
            lambda p: pa.Table.from_pylist([json.loads(x) for x in p.read_text().splitlines()]),
        ),
    ],
)
def test_output_file_format_from_extension(gw: str, tmp_path: Path, name: str, read) -> None:
    target = tmp_path / name
    result = run("t/many", "--output", str(target), "--gateway", gw)
    assert result.exit_code == 0, result.stderr
    assert result.stdout_bytes == b""
    assert read(target).equals(many_table())
    assert [p.name for p in tmp_path.iterdir()] == [name]  # no partial file left behind


def test_output_unknown_extension_is_usage_error(gw: str, tmp_path: Path) -> None:
    result = run("t/many", "--output", str(tmp_path / "out.xyz"), "--gateway", gw)
    assert result.exit_code == EXIT_USAGE
    assert "--format" in result.stderr
    assert not list(tmp_path.iterdir())


def test_failed_query_leaves_no_output_file(gw: str, tmp_path: Path) -> None:
    target = tmp_path / "out.csv"
    result = run("t/missing", "--output", str(target), "--gateway", gw)
    assert result.exit_code == EXIT_NOT_FOUND
    assert not list(tmp_path.iterdir())


# -- exit codes -------------------------------------------------------------------------


def _one_line_error(result, code: int, text: str) -> None:
    assert result.exit_code == code, (result.stdout, result.stderr)
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("streamkit: ")
    assert text in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_dataset_and_tenant(gw: str) -> None:
    _one_line_error(run("t/nope", "--gateway", gw), EXIT_NOT_FOUND, "not found: dataset 'nope'")
    _one_line_error(run("x/types", "--gateway", gw), EXIT_NOT_FOUND, "tenant 'x'")


def test_unknown_column_is_invalid(gw: str) -> None:
    _one_line_error(run("t/types", "-c", "bogus", "--gateway", gw), EXIT_INVALID, "'bogus'")


def test_gateway_unreachable(unused_url: str) -> None:
    _one_line_error(
        run("t/types", "--gateway", unused_url), EXIT_UNAVAILABLE, "cannot reach the gateway"
    )


def test_connector_down(unused_url: str) -> None:
    with running_gateway({"remote": unused_url}) as gateway:
        result = run("remote/types", "--gateway", gateway.flight_url)
    _one_line_error(result, EXIT_UNAVAILABLE, "tenant 'remote'")


def test_gateway_from_environment(gw: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMKIT_GATEWAY", gw)
    result = run("t/many", "-n", "1")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == '"n","s"\n0,"row 0"\n'


@pytest.mark.parametrize(
    "args",
    [["no-slash"], ["t/"], ["t/many", "--gateway", "http://x:1"], ["t/many", "-c", ","]],
)
def test_usage_errors(args: list[str]) -> None:
    result = run(*args)
    assert result.exit_code == EXIT_USAGE, result.stderr
    assert "Traceback" not in result.stderr


# -- purpose-built Flight servers: authentication, streaming order -----------------------


class _AuthMiddleware(flight.ServerMiddlewareFactory):
    def start_call(self, info, headers):
        token = headers.get("authorization", [""])[0]
        if token != "Bearer right":
            raise flight.FlightUnauthenticatedError("missing or wrong token")
        return None


class TinyServer(flight.FlightServerBase):
    """Serves ``table`` for any descriptor; ``gate`` (if set) holds back the last batch."""

    def __init__(self, table: pa.Table, gate: threading.Event | None = None, **kwargs) -> None:
        super().__init__("grpc://127.0.0.1:0", **kwargs)
        self.table = table
        self.gate = gate
        self.gate_timed_out = False

    def get_flight_info(self, context, descriptor):
        if b"forbidden" in (descriptor.command or b""):
            raise flight.FlightUnauthorizedError("tenant 'forbidden' is not yours")
        ticket = flight.Ticket(b"all")
        endpoint = flight.FlightEndpoint(ticket, [])
        return flight.FlightInfo(self.table.schema, descriptor, [endpoint], -1, -1)

    def do_get(self, context, ticket):
        batches = self.table.to_batches(max_chunksize=max(1, self.table.num_rows // 2))

        def generate():
            yield batches[0]
            if self.gate is not None and not self.gate.wait(20):
                self.gate_timed_out = True
            yield from batches[1:]

        return flight.GeneratorStream(self.table.schema, generate())


def test_authentication_errors() -> None:
    server = TinyServer(many_table(10), middleware={"auth": _AuthMiddleware()})
    url = f"grpc://127.0.0.1:{server.port}"
    try:
        _one_line_error(run("t/x", "--gateway", url), EXIT_AUTH, "authentication failed")
        _one_line_error(
            run("t/x", "--gateway", url, "--token", "wrong"), EXIT_AUTH, "authentication"
        )
        result = run("t/x", "--gateway", url, "--token", "right", "-f", "ndjson")
        assert result.exit_code == 0, result.stderr
        assert len(result.stdout.splitlines()) == 10
        _one_line_error(
            run("forbidden/x", "--gateway", url, "--token", "right"), EXIT_AUTH, "not authorized"
        )
    finally:
        server.shutdown()


def _streamkit(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "streamkit", *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        **kwargs,
    )


@pytest.mark.parametrize("fmt", ["csv", "ndjson", "arrow"])
def test_first_rows_arrive_before_the_last_batch(fmt: str) -> None:
    gate = threading.Event()
    server = TinyServer(many_table(1000), gate=gate)
    proc = _streamkit("query", "t/x", "-f", fmt, "--gateway", f"grpc://127.0.0.1:{server.port}")
    try:
        assert proc.stdout is not None
        first = proc.stdout.read(64)  # the server holds the last batch until this arrives
        gate.set()
        rest = proc.stdout.read()
        assert proc.wait(20) == 0, proc.stderr.read() if proc.stderr else ""
        assert not server.gate_timed_out
        assert len(first + rest) > 64
    finally:
        gate.set()
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        for stream in (proc.stdout, proc.stderr):
            if stream:
                stream.close()
        server.shutdown()


# -- pipes ------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["csv", "ndjson", "json", "arrow", "parquet"])
def test_closed_pipe_ends_quietly(gw: str, fmt: str) -> None:
    proc = _streamkit("query", "t/many", "-f", fmt, "--gateway", gw)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.read(10)
    proc.stdout.close()  # like `head` exiting
    stderr = proc.stderr.read().decode()
    assert proc.wait(20) == 0
    proc.stderr.close()
    assert stderr == ""


def test_head_one_through_a_shell_pipe(gw: str) -> None:
    command = (
        f"set -o pipefail; {sys.executable} -m streamkit query t/many --format csv"
        f" --gateway {gw} | head -1"
    )
    result = subprocess.run(
        ["bash", "-c", command], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == '"n","s"\n'
    assert result.stderr == ""


# -- helpers ----------------------------------------------------------------------------


@pytest.fixture
def unused_url() -> str:
    """A gRPC URL where nothing listens (a port bound and released by the OS)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"grpc://127.0.0.1:{port}"


# -- a gateway whose tenant demands a token ---------------------------------------------


@pytest.fixture(scope="module")
def locked_gateway(data_dir: Path) -> Iterator[str]:
    from streamkit.config import GatewayConfig, TenantConfig
    from streamkit.gateway import make_gateway
    from streamkit.secrets import Secret

    config = GatewayConfig(
        flight_port=0,
        http_port=0,
        default_tenant="t",
        tenants={"t": TenantConfig("t", path=data_dir, tokens=(Secret("s3cret", literal=False),))},
    )
    gateway = make_gateway(config)
    try:
        yield gateway.flight_url
    finally:
        gateway.stop()


def test_token_from_flag_and_environment(
    locked_gateway: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("STREAMKIT_TOKEN", raising=False)
    _one_line_error(run("t/many", "--gateway", locked_gateway), EXIT_AUTH, "authentication")
    _one_line_error(
        run("t/many", "--gateway", locked_gateway, "--token", "nope"), EXIT_AUTH, "authentication"
    )
    ok = run("t/many", "-n", "1", "--gateway", locked_gateway, "--token", "s3cret")
    assert ok.exit_code == 0, ok.stderr
    assert ok.stdout == '"n","s"\n0,"row 0"\n'
    monkeypatch.setenv("STREAMKIT_TOKEN", "s3cret")
    assert run("t/many", "-n", "1", "--gateway", locked_gateway).stdout == ok.stdout
    other = runner.invoke(app, ["ls", "--gateway", locked_gateway], catch_exceptions=False)
    assert other.exit_code == 0, other.stderr
    assert other.stdout.startswith("t\tmany\t150000\t")


# -- terminals and signals --------------------------------------------------------------


def _run_with_terminal(args: list[str], *, stdout_tty: bool) -> tuple[int, bytes, str]:
    """Run streamkit with stderr (and optionally stdout) on a pseudo-terminal."""
    import os
    import pty

    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamkit", *args],
        cwd=REPO,
        stdout=slave if stdout_tty else subprocess.PIPE,
        stderr=slave,
        env={**os.environ, "COLUMNS": "120", "TERM": "xterm"},
    )
    os.close(slave)
    captured = b""
    stdout = b""
    try:
        if proc.stdout is not None:
            stdout = proc.stdout.read()
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the terminal's other side closed
                break
            if not chunk:
                break
            captured += chunk
    finally:
        os.close(master)
        code = proc.wait(30)
        if proc.stdout is not None:
            proc.stdout.close()
    return code, stdout, captured.decode("utf-8", "replace")


def test_progress_only_on_a_terminal(gw: str) -> None:
    code, stdout, terminal = _run_with_terminal(
        ["query", "t/many", "-f", "csv", "--gateway", gw], stdout_tty=False
    )
    assert code == 0, terminal
    assert pcsv.read_csv(io.BytesIO(stdout)).equals(many_table())  # data untouched
    assert "t/many: 150,000 rows" in terminal and "MB/s" in terminal


def test_table_is_the_default_on_a_terminal(gw: str) -> None:
    code, _, terminal = _run_with_terminal(["query", "t/many", "--gateway", gw], stdout_tty=True)
    assert code == 0, terminal
    assert "row 99" in terminal and "row 100 " not in terminal
    assert "first 100 of 150,000 rows" in terminal


def test_ctrl_c_ends_with_one_line() -> None:
    gate = threading.Event()
    server = TinyServer(many_table(1000), gate=gate)
    proc = _streamkit("query", "t/x", "-f", "csv", "--gateway", f"grpc://127.0.0.1:{server.port}")
    try:
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.read(16)  # streaming has started; the server now holds the rest back
        proc.send_signal(signal.SIGINT)
        stderr = proc.stderr.read().decode()
        assert proc.wait(20) == EXIT_INTERRUPTED
        assert stderr == "streamkit: interrupted\n"
    finally:
        gate.set()
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        for stream in (proc.stdout, proc.stderr):
            if stream:
                stream.close()
        server.shutdown()


def test_json_has_no_nan() -> None:
    from streamkit.formats import dumps

    assert dumps({"a": float("nan"), "b": [float("inf"), 1.0]}) == '{"a": null, "b": [null, 1.0]}'


def test_client_module_is_headless() -> None:
    code = "import sys, streamkit.client; print(sorted({'rich', 'textual'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_nested_nanoseconds_do_not_break_json_or_csv() -> None:
    from streamkit.formats import CsvWriter, JsonWriter

    kind = pa.struct([("t", pa.timestamp("ns", "UTC")), ("d", pa.list_(pa.duration("ns")))])
    batch = pa.record_batch(
        {"s": pa.array([{"t": 1_700_000_000_123_456_789, "d": [1_500]}, None], kind)}
    )
    sink = io.BytesIO()
    writer = JsonWriter(sink, array=False)
    writer.write(batch)
    writer.close()
    first = json.loads(sink.getvalue().splitlines()[0])
    assert first == {"s": {"t": "2023-11-14T22:13:20.123456+00:00", "d": [1e-06]}}
    sink = io.BytesIO()
    csv_writer = CsvWriter(sink, batch.schema)
    csv_writer.write(batch)
    csv_writer.close()
    assert sink.getvalue().splitlines()[0] == b'"s"'


def test_binary_formats_refuse_a_terminal(gw: str) -> None:
    code, _, terminal = _run_with_terminal(
        ["query", "t/many", "-f", "arrow", "--gateway", gw], stdout_tty=True
    )
    assert code == EXIT_USAGE
    assert "not writing binary arrow to a terminal" in terminal


# --- query --follow -------------------------------------------------------------------------

FOLLOW_SCHEMA = pa.schema([("seq", pa.int64()), ("value", pa.float64())])


def follow_batch(start: int, rows: int = 3) -> pa.RecordBatch:
    return pa.record_batch(
        [pa.array(range(start, start + rows), pa.int64()), pa.array([0.5] * rows)],
        schema=FOLLOW_SCHEMA,
    )


def put(url: str, dataset: str, *batches: pa.RecordBatch) -> None:
    with flight.connect(url) as client:
        writer, _ = client.do_put(flight.FlightDescriptor.for_path("t", dataset), FOLLOW_SCHEMA)
        for batch in batches:
            writer.write_batch(batch)
        writer.close()


@pytest.fixture
def live_gateway(tmp_path: Path) -> Iterator[str]:
    root = tmp_path / "root"
    root.mkdir()
    with (
        running_connector(root) as connector,
        running_gateway({"t": f"grpc://127.0.0.1:{connector.port}"}) as gateway,
    ):
        try:
            yield gateway.flight_url
        finally:
            connector.stop()  # ends followed streams first, so the gateway can stop


class Lines:
    """stdout of a process, line by line, collected in a thread."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    def wait(self, count: int, timeout: float = 20.0) -> list[str]:
        wait_for(lambda: len(self.lines) >= count, timeout, f"{count} lines on stdout")
        return self.lines


def start_follow(url: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "streamkit", "query", "t/feed", "--follow", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env={**os.environ, "STREAMKIT_GATEWAY": url, "STREAMKIT_TOKEN": ""},
    )


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(10)
    for stream in (proc.stdout, proc.stderr):
        if stream:
            stream.close()


def test_follow_prints_history_then_new_rows_as_they_come(live_gateway):
    put(live_gateway, "feed", follow_batch(0), follow_batch(3))
    proc = start_follow(live_gateway, "--format", "ndjson")
    try:
        out = Lines(proc)
        lines = out.wait(6)
        assert [json.loads(line)["seq"] for line in lines] == list(range(6))
        put(live_gateway, "feed", follow_batch(6))
        lines = out.wait(9)
        assert [json.loads(line)["seq"] for line in lines] == list(range(9))
        assert proc.poll() is None  # still following
        proc.send_signal(signal.SIGINT)
        assert proc.wait(20) == EXIT_INTERRUPTED
        assert proc.stderr is not None and proc.stderr.read() == ""  # Ctrl-C ends quietly
    finally:
        stop(proc)


def test_follow_csv_from_end_prints_the_header_once(live_gateway):
    put(live_gateway, "feed", follow_batch(0))
    proc = start_follow(live_gateway, "--from", "end")
    try:
        out = Lines(proc)
        out.wait(1)  # the header comes at once, before any row
        put(live_gateway, "feed", follow_batch(3))
        put(live_gateway, "feed", follow_batch(6))
        lines = out.wait(7)
        assert lines[0].strip() == '"seq","value"'
        assert [int(line.split(",")[0]) for line in lines[1:]] == list(range(3, 9))
    finally:
        stop(proc)


def test_follow_into_a_closed_pipe_ends_quietly(live_gateway):
    put(live_gateway, "feed", follow_batch(0))
    proc = start_follow(live_gateway, "--format", "ndjson")
    try:
        assert proc.stdout is not None
        assert json.loads(proc.stdout.readline())["seq"] == 0  # like ``| head -1``
        proc.stdout.close()

        # The next batch finds the pipe closed: exit 0, nothing on stderr.
        def ended() -> bool:
            put(live_gateway, "feed", follow_batch(100))
            return proc.poll() is not None

        wait_for(ended, 20, "the follower to end")
        assert proc.returncode == 0
        assert proc.stderr is not None and proc.stderr.read() == ""
    finally:
        stop(proc)


def test_follow_option_errors():
    runner = CliRunner()
    done = runner.invoke(app, ["query", "t/x", "--from", "end", "--gateway", "127.0.0.1:1"])
    assert done.exit_code == EXIT_USAGE
    done = runner.invoke(
        app, ["query", "t/x", "--follow", "--format", "parquet", "--gateway", "127.0.0.1:1"]
    )
    assert done.exit_code == EXIT_USAGE


def test_a_follower_that_falls_behind_exits_4(tmp_path, monkeypatch):
    import functools

    from streamkit.gateway import live_hub
    from streamkit.live import Follower

    # The gateway keeps one queue per client (the connector serves it one shared follow).
    monkeypatch.setattr(live_hub, "Follower", functools.partial(Follower, capacity=2))
    root = tmp_path / "root"
    root.mkdir()
    wide = pa.record_batch(
        [pa.array(range(2000), pa.int64()), pa.array([0.5] * 2000)], schema=FOLLOW_SCHEMA
    )
    with (
        running_connector(root) as connector,
        running_gateway({"t": f"grpc://127.0.0.1:{connector.port}"}) as gateway,
    ):
        try:
            put(gateway.flight_url, "feed", follow_batch(0))
            proc = start_follow(gateway.flight_url, "--format", "ndjson")
            try:
                assert proc.stdout is not None
                proc.stdout.readline()  # following; then stop reading stdout for a while
                feed = connector.live.get("feed")
                wait_for(lambda: feed.followers, 20, "the follower")

                # Publish until the client's queue at the gateway overflows (how many
                # batches that takes depends on transport buffers and coalescing).
                def overflowed() -> bool:
                    put(gateway.flight_url, "feed", *[wide] * 50)
                    return not feed.followers  # the last gateway follower left: hub closed

                wait_for(overflowed, 30, "the follower to be dropped")
                Lines(proc)  # drain what was sent before the error
                assert proc.wait(20) == EXIT_UNAVAILABLE
                assert proc.stderr is not None
                err = proc.stderr.read()
                assert err.startswith("streamkit: lagging: ") and len(err.splitlines()) == 1
            finally:
                stop(proc)
        finally:
            connector.stop()


def test_a_follower_that_skips_ahead_says_so_on_stderr(tmp_path, monkeypatch):
    import functools

    from streamkit.gateway import live_hub
    from streamkit.live import Follower

    # The gateway keeps one queue per client (the connector serves it one shared follow).
    monkeypatch.setattr(live_hub, "Follower", functools.partial(Follower, capacity=2))
    root = tmp_path / "root"
    root.mkdir()
    wide = pa.record_batch(
        [pa.array(range(2000), pa.int64()), pa.array([0.5] * 2000)], schema=FOLLOW_SCHEMA
    )
    with (
        running_connector(root) as connector,
        running_gateway({"t": f"grpc://127.0.0.1:{connector.port}"}) as gateway,
    ):
        try:
            put(gateway.flight_url, "feed", follow_batch(0))
            proc = start_follow(gateway.flight_url, "--format", "ndjson", "--on-lag", "skip")
            try:
                assert proc.stdout is not None and proc.stderr is not None
                proc.stdout.readline()  # following; then stop reading stdout for a while
                feed = connector.live.get("feed")
                wait_for(lambda: feed.followers, 20, "the follower")
                hub = gateway.upstreams.hubs._hubs[("t", "feed")]
                [client] = hub.followers

                def overflowed() -> bool:
                    put(gateway.flight_url, "feed", *[wide] * 50)
                    return client.skipped > 0

                wait_for(overflowed, 30, "rows to be skipped")
                put(gateway.flight_url, "feed", follow_batch(10_000))  # the newest row
                out = Lines(proc)
                wait_for(
                    lambda: any('"seq": 10000' in line for line in out.lines), 30, "the newest"
                )
                assert proc.poll() is None  # still following
                proc.send_signal(signal.SIGINT)
                assert proc.wait(20) == EXIT_INTERRUPTED
                err = proc.stderr.read()
                assert "streamkit: skipped " in err and "rows" in err
            finally:
                stop(proc)
        finally:
            connector.stop()
