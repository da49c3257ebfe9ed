"""``streamkit ls``: tab-separated lines when piped, JSON with --json, exit codes."""

from __future__ import annotations

import json
import socket

import pytest
from conftest import DEMO_DATA, running_gateway
from typer.testing import CliRunner

from streamkit.cli import app
from streamkit.client import EXIT_NOT_FOUND, EXIT_UNAVAILABLE, EXIT_USAGE

runner = CliRunner()


def ls(*args: str):
    return runner.invoke(app, ["ls", *args], catch_exceptions=False)


@pytest.fixture(scope="module")
def two_tenants(tmp_path_factory: pytest.TempPathFactory):
    other = tmp_path_factory.mktemp("other")
    (other / "tiny.csv").write_text("a,b\n1,x\n2,y\n")
    with running_gateway({"demo": DEMO_DATA, "other": other}) as gateway:
        yield gateway.flight_url


def test_piped_output_is_tab_separated(two_tenants: str) -> None:
    result = ls("--gateway", two_tenants)
    assert result.exit_code == 0, result.stderr
    lines = [line.split("\t") for line in result.stdout.splitlines()]
    assert all(len(fields) == 5 for fields in lines)
    by_name = {(f[0], f[1]): f[2:] for f in lines}
    assert by_name[("demo", "sensors")] == ["10080", str(by_name[("demo", "sensors")][1]), "6"]
    assert int(by_name[("demo", "sensors")][1]) > 0
    assert by_name[("other", "tiny")] == ["", "12", "2"]  # CSV rows unknown without a read
    assert [f[:2] for f in lines] == sorted(f[:2] for f in lines)


def test_json(two_tenants: str) -> None:
    result = ls("--json", "--gateway", two_tenants)
    assert result.exit_code == 0, result.stderr
    datasets = json.loads(result.stdout)["datasets"]
    sensors = next(d for d in datasets if d["dataset"] == "sensors")
    assert sensors["tenant"] == "demo" and sensors["rows"] == 10080
    assert [c["name"] for c in sensors["columns"]][:2] == ["ts", "sensor"]
    tiny = next(d for d in datasets if d["dataset"] == "tiny")
    assert tiny == {
        "tenant": "other",
        "dataset": "tiny",
        "rows": None,
        "bytes": 12,
        "columns": [{"name": "a", "type": "int64"}, {"name": "b", "type": "string"}],
    }


def test_one_tenant(two_tenants: str) -> None:
    result = ls("other", "--gateway", two_tenants)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "other\ttiny\t\t12\t2\n"


def test_unknown_tenant(two_tenants: str) -> None:
    result = ls("nobody", "--gateway", two_tenants)
    assert result.exit_code == EXIT_NOT_FOUND
    assert result.stderr == "streamkit: not found: tenant 'nobody'\n"


def test_gateway_unreachable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = ls("--gateway", f"127.0.0.1:{port}")
    assert result.exit_code == EXIT_UNAVAILABLE
    assert result.stderr.startswith(
        f"streamkit: cannot reach the gateway at grpc://127.0.0.1:{port}"
    )
    assert result.stderr.count("\n") == 1


def test_bad_gateway_url() -> None:
    result = ls("--gateway", "http://localhost")
    assert result.exit_code == EXIT_USAGE
    assert "grpc://HOST:PORT" in result.stderr
