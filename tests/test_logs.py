"""``--log-format json``: one JSON object a line on stderr, from real server processes."""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import sys

import pyarrow as pa
import pyarrow.flight as flight
import pytest
from conftest import DEMO_DATA, wait_for
from typer.testing import CliRunner

from streamkit.cli import app
from streamkit.logs import JsonFormatter

TEXT_LOG_LINE = re.compile(r"^streamkit\.[\w.]+: ")  # the text format's "logger: message"


def json_lines(stderr: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]


def request_lines(proc) -> list[dict[str, object]]:
    return [line for line in json_lines(proc.stderr) if line["logger"] == "streamkit.requests"]


def assert_only_json_logs(stderr: str) -> None:
    """Every line a JSON record: start-up, warnings and stopping as much as requests."""
    for line in stderr.splitlines():
        assert not TEXT_LOG_LINE.match(line), line
        record = json.loads(line)
        assert {"ts", "level", "logger", "message"} <= record.keys(), record
        ts = dt.datetime.fromisoformat(str(record["ts"]))
        assert ts.utcoffset() == dt.timedelta(0), record


def test_gateway_logs_requests_as_json(tmp_path, process):
    config = tmp_path / "streamkit.toml"
    # A literal secret: its warning is a record too.
    config.write_text(
        '[gateway]\nmetrics_token = "literal-metrics-secret"\n'
        f'[tenants.demo]\npath = "{DEMO_DATA}"\n'
    )
    proc = process(
        "gateway", "up", "--config", str(config), "--flight-port", "0", "--http-port", "0",
        "--log-format", "json",
    )  # fmt: skip
    port = int(proc.wait_for_stderr(r"flight +grpc://127\.0\.0\.1:(\d+)").group(1))
    with flight.connect(f"grpc://127.0.0.1:{port}") as client:
        command = json.dumps({"tenant": "demo", "dataset": "sensors", "limit": 5}).encode()
        info = client.get_flight_info(flight.FlightDescriptor.for_command(command))
        assert client.do_get(info.endpoints[0].ticket).read_all().num_rows == 5

    ok = wait_for(
        lambda: [r for r in request_lines(proc) if r.get("outcome") == "ok"],
        what="the request's JSON log line",
    )[0]
    assert ok["level"] == "info"
    assert str(ok["message"]).startswith("flight tenant=demo dataset=sensors rows=5 ")
    assert {k: ok[k] for k in ("transport", "tenant", "dataset", "rows", "outcome")} == {
        "transport": "flight",
        "tenant": "demo",
        "dataset": "sensors",
        "rows": 5,
        "outcome": "ok",
    }
    assert isinstance(ok["bytes"], int) and ok["bytes"] > 0
    assert isinstance(ok["seconds"], float)
    proc.stop()
    assert_only_json_logs(proc.stderr)
    records = json_lines(proc.stderr)
    warning = next(r for r in records if r["level"] == "warning")
    assert "gateway.metrics_token: a literal secret" in str(warning["message"])
    assert "literal-metrics-secret" not in proc.stderr
    assert any(r["message"] == "stopping" for r in records)


def test_connector_logs_as_json(tmp_path, process):
    proc = process("connector", "serve", str(tmp_path), "--port", "0", "--log-format", "json")
    port = int(proc.wait_for_stderr(r"at grpc://127\.0\.0\.1:(\d+)").group(1))
    table = pa.table({"x": [1, 2, 3]})
    with flight.connect(f"grpc://127.0.0.1:{port}") as client:
        writer, _ = client.do_put(flight.FlightDescriptor.for_path("events"), table.schema)
        writer.write_table(table)
        writer.close()
    line = wait_for(
        lambda: [
            r for r in json_lines(proc.stderr) if r["message"] == "published 3 rows to events"
        ],
        what="the publish log line",
    )[0]
    assert line["logger"] == "streamkit.connector" and line["level"] == "info"
    proc.stop()
    assert_only_json_logs(proc.stderr)


@pytest.mark.parametrize("command", [["gateway", "up"], ["connector", "serve", "."]])
def test_bad_log_format_is_refused(command):
    result = CliRunner().invoke(app, [*command, "--log-format", "xml"])
    assert result.exit_code == 2
    assert "--log-format" in result.stderr and "'xml'" in result.stderr


def record(msg: str = "hello", **extra: object) -> logging.LogRecord:
    rec = logging.LogRecord("streamkit.test", logging.WARNING, __file__, 1, msg, None, None)
    rec.__dict__.update(extra)
    return rec


def test_json_fields_exception_and_request_merge():
    try:
        raise ValueError("boom")
    except ValueError:
        rec = record("failed %s", exc_info=sys.exc_info())
        rec.args = ("hard",)
    line = json.loads(JsonFormatter().format(rec))
    assert line["level"] == "warning" and line["logger"] == "streamkit.test"
    assert line["message"] == "failed hard"
    assert "ValueError: boom" in line["exception"] and "Traceback" in line["exception"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line["ts"])

    # request fields join the line; they cannot replace the fixed ones; odd values become text
    rec = record(request={"tenant": "demo", "rows": 3, "level": "debug", "took": dt.timedelta(1)})
    line = json.loads(JsonFormatter().format(rec))
    assert line["tenant"] == "demo" and line["rows"] == 3
    assert line["level"] == "warning" and line["took"] == "1 day, 0:00:00"
    assert "\n" not in JsonFormatter().format(record("two\nlines"))
