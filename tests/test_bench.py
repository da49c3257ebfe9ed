"""``streamkit bench``: a well-formed, self-consistent report (never speed assertions)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
from conftest import DEMO_DATA, REPO, running_gateway, wait_for
from typer.testing import CliRunner

from streamkit.bench.dataset import generate, parse_size
from streamkit.bench.measure import _percentile
from streamkit.bench.report import REFERENCE_MB_S
from streamkit.cli import app
from streamkit.client import EXIT_INTERRUPTED, EXIT_USAGE

PATHS = [
    "baseline_flight",
    "connector_flight",
    "gateway_flight",
    "gateway_dialed_flight",
    "gateway_websocket",
    "gateway_http",
]


def _bench(*args: str, env: dict[str, str] | None = None, timeout: float = 180):
    return subprocess.run(
        [sys.executable, "-m", "streamkit", "bench", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def test_small_bench_report_is_consistent(tmp_path: Path) -> None:
    result = _bench(
        "--size", "2MB", "--runs", "1", "--clients", "5", "--json", env={"TMPDIR": str(tmp_path)}
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # no progress when stderr is not a terminal
    report = json.loads(result.stdout)

    data = report["dataset"]
    assert report["mode"] == "local" and report["runs"] == 1
    assert abs(data["bytes"] - 2_000_000) < 2_000
    assert data["rows"] > 0 and data["file_bytes"] >= data["bytes"]

    assert list(report["paths"]) == PATHS
    speeds = {}
    for name, body in report["paths"].items():
        assert body["error"] is None, (name, body)
        assert len(body["runs"]) == 1
        run = body["runs"][0]
        assert run["rows"] == body["rows"] == data["rows"], name
        assert run["bytes"] == body["bytes"] == data["bytes"], name
        assert 0 < run["first_batch_s"] <= run["seconds"]
        assert body["median_seconds"] == pytest.approx(run["seconds"], abs=1e-5)
        assert body["median_mb_s"] == pytest.approx(
            data["bytes"] / 1e6 / body["median_seconds"], rel=1e-3
        )
        assert body["url"]
        speeds[name] = body["median_mb_s"]
    for name in ("gateway_websocket", "gateway_http"):  # IPC framing on top of the data
        wire = report["paths"][name]["wire_bytes"]
        assert data["bytes"] < wire < data["bytes"] * 1.05

    ratios = report["ratios"]
    for name in PATHS[2:]:
        assert ratios[f"{name}/connector_flight"] == pytest.approx(
            speeds[name] / speeds["connector_flight"], rel=1e-2
        )
    for name in PATHS[1:]:
        assert ratios[f"{name}/baseline_flight"] == pytest.approx(
            speeds[name] / speeds["baseline_flight"], rel=1e-2
        )
    assert report["reference_mb_s"] == REFERENCE_MB_S
    for name, speedup in report["speedup_vs_reference"].items():
        assert speedup == pytest.approx(speeds[name] / REFERENCE_MB_S, abs=0.01)

    conc = report["concurrency"]
    assert conc["clients"] == conc["completed"] == 5 and conc["errors"] == 0
    assert conc["rows"] == 5 * data["rows"] and conc["bytes"] == 5 * data["bytes"]
    assert 0 < conc["latency_p50_s"] <= conc["latency_p99_s"] <= conc["total_seconds"]

    rss = report["peak_rss_bytes"]
    assert set(rss) == {"baseline", "connector", "gateway", "dialed connector"}
    assert all(v["streams"] > 0 and v["concurrent"] > 0 for v in rss.values())
    assert "server_logs" not in report
    assert list(tmp_path.iterdir()) == []  # temp dataset and config removed


def test_table_output_and_client_rows() -> None:
    result = _bench("--size", "500KB", "--runs", "2", "--clients", "3", "--client-rows", "10")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for label in (
        "plain pyarrow Flight",
        "connector Flight (direct)",
        "gateway WebSocket",
        "gateway HTTP stream",
        "vs 113 MB/s",
        "gateway / direct connector",
        "3 concurrent clients",
        "0 errors",
        "gateway peak RSS",
    ):
        assert label in out, label


def test_ctrl_c_stops_servers_and_removes_temp_files(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamkit",
            "bench",
            "--size",
            "20MB",
            "--runs",
            "1000",
            "--clients",
            "0",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "TMPDIR": str(tmp_path)},
    )
    try:
        bench = psutil.Process(proc.pid)
        children = wait_for(
            lambda: len(bench.children()) == 3 and bench.children(), 60, "three server processes"
        )
        wait_for(lambda: any(tmp_path.rglob("streamkit.toml")), 60, "the gateway config")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == EXIT_INTERRUPTED, err
    assert err.strip().splitlines()[-1].startswith("streamkit: bench interrupted")
    assert "Traceback" not in err
    assert out == ""
    _, alive = psutil.wait_procs(children, timeout=10)
    assert alive == []
    assert list(tmp_path.iterdir()) == []


def test_existing_gateway() -> None:
    runner = CliRunner()
    with running_gateway({"demo": DEMO_DATA}) as gateway:
        result = runner.invoke(
            app,
            [
                "bench",
                "--gateway",
                gateway.flight_url,
                "--http",
                gateway.http_url,
                "--dataset",
                "demo/sensors",
                "--runs",
                "1",
                "--clients",
                "3",
                "--json",
            ],
            catch_exceptions=False,
        )
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["mode"] == "remote"
    assert report["dataset"]["rows"] == 10080
    assert list(report["paths"]) == ["gateway_flight", "gateway_websocket", "gateway_http"]
    for body in report["paths"].values():
        assert body["error"] is None and body["rows"] == 10080
        assert body["bytes"] == report["dataset"]["bytes"]
    assert report["concurrency"]["rows"] == 3 * 10080
    assert report["ratios"] == {}


@pytest.mark.parametrize(
    "args",
    [
        ["--size", "lots"],
        ["--size", "0MB"],
        ["--gateway", "grpc://127.0.0.1:1"],
        ["--gateway", "nonsense url", "--dataset", "a/b"],
    ],
)
def test_usage_errors(args: list[str]) -> None:
    result = CliRunner().invoke(app, ["bench", *args], catch_exceptions=False)
    assert result.exit_code == EXIT_USAGE, result.stderr
    assert result.stderr.startswith("streamkit: ") and result.stderr.count("\n") == 1


def test_parse_size() -> None:
    assert parse_size("500KB") == 500_000
    assert parse_size("100MB") == 100_000_000
    assert parse_size("2GB") == 2_000_000_000
    assert parse_size("1GiB") == 2**30
    assert parse_size("1.5mb") == 1_500_000
    assert parse_size("1234") == 1234


def test_generated_dataset_has_the_requested_size(tmp_path: Path) -> None:
    data = generate(tmp_path / "d.arrow", 300_000)
    assert abs(data.bytes - 300_000) < 100
    assert data.rows > 0 and data.file_bytes == (tmp_path / "d.arrow").stat().st_size


def test_percentile_nearest_rank() -> None:
    values = [float(i) for i in range(1, 101)]
    assert _percentile(values, 50) == 50.0
    assert _percentile(values, 99) == 99.0
    assert _percentile([3.0], 99) == 3.0


def test_existing_gateway_with_a_token() -> None:
    from streamkit.config import GatewayConfig, TenantConfig
    from streamkit.gateway import make_gateway
    from streamkit.secrets import Secret

    tenant = TenantConfig("demo", path=DEMO_DATA, tokens=(Secret("tok", literal=False),))
    gateway = make_gateway(
        GatewayConfig(flight_port=0, http_port=0, default_tenant="demo", tenants={"demo": tenant})
    )
    args = [
        "bench",
        "--gateway",
        gateway.flight_url,
        "--http",
        gateway.http_url,
        "--dataset",
        "demo/sales_by_region",
        "--runs",
        "1",
        "--clients",
        "2",
        "--json",
    ]
    try:
        refused = CliRunner().invoke(app, args, catch_exceptions=False)
        result = CliRunner().invoke(app, [*args, "--token", "tok"], catch_exceptions=False)
    finally:
        gateway.stop()
    assert refused.exit_code != 0 and "demo/sales_by_region" in refused.stderr
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert all(body["error"] is None for body in report["paths"].values())
    assert report["concurrency"]["errors"] == 0


def test_live_bench_json_is_well_formed() -> None:
    done = _bench(
        "--live",
        "--live-rates",
        "5,50",
        "--live-followers",
        "1,3",
        "--live-seconds",
        "0.4",
        "--json",
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["mode"] == "live"
    assert report["seconds_per_cell"] == 0.4
    cells = report["cells"]
    assert [(c["rate_per_s"], c["followers"]) for c in cells] == [(5, 1), (50, 1), (5, 3), (50, 3)]
    for cell in cells:
        assert cell["sent"] == max(1, round(cell["rate_per_s"] * 0.4))
        assert cell["expected"] == cell["sent"] * cell["followers"]
        assert cell["received"] + cell["lost"] == cell["expected"]
        assert cell["received"] == cell["expected"]  # none lost at these rates
        assert 0 <= cell["p50_ms"] <= cell["p99_ms"] <= cell["max_ms"]
        assert cell["errors"] == [] and cell["error_count"] == 0
    assert report["aim"]["met"] is None  # 1,000/s with 50 followers was not measured
    assert report["aim"]["p99_ms"] == 20.0
    assert report["urls"]["gateway_flight"].startswith("grpc://")
    assert report["machine"]["cpus"] >= 1


def test_live_bench_usage_errors() -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["bench", "--live", "--live-rates", "x"]).exit_code == EXIT_USAGE
    done = runner.invoke(app, ["bench", "--live", "--gateway", "grpc://127.0.0.1:1"])
    assert done.exit_code == EXIT_USAGE


def test_live_bench_p99_is_nearest_rank_not_the_maximum() -> None:
    from streamkit.bench.live import CellResult

    cell = CellResult(rate=100, followers=1, seconds=1.0, sent=100, received=100)
    cell.latencies_ms = [float(i) for i in range(100, 0, -1)]  # 1..100 ms, unsorted
    report = cell.to_json()
    assert (report["p50_ms"], report["p99_ms"], report["max_ms"]) == (50.0, 99.0, 100.0)
    cell.latencies_ms = [float(i) for i in range(1, 201)]
    assert cell.to_json()["p99_ms"] == 198.0
    cell.latencies_ms = [7.0]
    assert cell.to_json()["p99_ms"] == 7.0
    cell.latencies_ms = []
    assert cell.to_json()["p99_ms"] is None
