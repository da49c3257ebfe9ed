"""``streamkit bench``: the project's yardstick, every path measured in one run."""

from __future__ import annotations

import json
import os
import signal
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import pyarrow.flight as flight
import typer

from streamkit.bench import measure, report
from streamkit.bench.dataset import generate, parse_size
from streamkit.bench.servers import PeakRss, Servers
from streamkit.client import (
    EXIT_CODES_HELP,
    EXIT_ERROR,
    EXIT_USAGE,
    TOKEN_ENV,
    ClientError,
    parse_target,
    resolve_gateway,
)
from streamkit.commands._progress import Progress
from streamkit.commands._run import reported

DATASET = "data"


def bench(
    size: Annotated[str, typer.Option(help="Generated dataset size: 500KB, 100MB, 2GB.")] = "100MB",
    clients: Annotated[
        int, typer.Option(min=0, help="Concurrent clients through the gateway (0: skip).")
    ] = 100,
    runs: Annotated[int, typer.Option(min=1, help="Reads per path; medians are reported.")] = 5,
    client_rows: Annotated[
        int | None,
        typer.Option(min=1, help="Rows each concurrent client reads (default: all of them)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
    gateway: Annotated[
        str | None,
        typer.Option(help="Measure this running gateway instead of starting servers."),
    ] = None,
    dataset: Annotated[
        str | None, typer.Option(help="TENANT/DATASET to read with --gateway.")
    ] = None,
    http: Annotated[
        str | None,
        typer.Option(help="The gateway's HTTP URL with --gateway (default: its host, port 8080)."),
    ] = None,
    connector: Annotated[
        str | None, typer.Option(help="With --gateway: the tenant's connector, read directly.")
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(
            help="With --gateway: bearer token (default: $STREAMKIT_TOKEN).", show_default=False
        ),
    ] = None,
    tls_ca: Annotated[
        Path | None, typer.Option(help="With --gateway: CA certificate of a TLS gateway.")
    ] = None,
    live: Annotated[
        bool,
        typer.Option(
            "--live",
            help="Measure live latency instead: DoPut at a producer to arrival at followers"
            " through the gateway (its own connector and gateway processes).",
        ),
    ] = False,
    live_rates: Annotated[
        str, typer.Option(help="With --live: batches per second to measure, comma-separated.")
    ] = "1,100,1000",
    live_followers: Annotated[
        str, typer.Option(help="With --live: follower counts to measure, comma-separated.")
    ] = "1,50",
    live_seconds: Annotated[
        float, typer.Option(min=0.1, help="With --live: seconds of sending per cell.")
    ] = 2.5,
) -> None:
    with reported("bench interrupted; servers stopped, temp files removed"):
        try:
            if live:
                if gateway is not None:
                    raise ClientError(
                        "--live starts its own servers; it does not take --gateway", EXIT_USAGE
                    )
                body = _live(
                    _ints(live_rates, "--live-rates"),
                    _ints(live_followers, "--live-followers"),
                    live_seconds,
                )
            elif gateway is None:
                body = _local(parse_size(size), runs, clients, client_rows)
            else:
                creds = measure.Credentials(
                    token or os.environ.get(TOKEN_ENV) or None, str(tls_ca) if tls_ca else None
                )
                body = _remote(gateway, dataset, http, connector, runs, clients, client_rows, creds)
        except ValueError as exc:  # a bad size or list of numbers
            raise ClientError(str(exc), EXIT_USAGE) from None
        except RuntimeError as exc:  # a server did not start
            raise ClientError(f"bench: {exc}", EXIT_ERROR) from None
    if live:
        if as_json:
            print(json.dumps(body, indent=2))
        else:
            report.render_live(body)
        if any(cell["error_count"] for cell in body["cells"]):
            raise typer.Exit(EXIT_ERROR)
        return
    if as_json:
        print(json.dumps(body, indent=2))
    else:
        report.render(body)
    if any(path.get("error") for path in body["paths"].values()):
        raise typer.Exit(EXIT_ERROR)


bench.__doc__ = f"""Measure throughput and latency of every path through streamkit.

Without --gateway: generate a dataset of --size in a temp folder, start a plain pyarrow \
Flight server, a connector and a gateway as separate processes, and measure direct Flight, \
gateway Flight, gateway WebSocket and gateway HTTP (median MB/s, time to first batch and to \
last byte over --runs), then --clients concurrent clients through the gateway (total time, \
errors, p50/p99 latency, gateway peak RSS). Ratios are against the connector and the plain \
pyarrow server measured in the same run, and against the reference design's 113 MB/s. \
Everything started is stopped and removed, also on Ctrl-C.

With --gateway URL --dataset TENANT/DATASET: measure that deployment instead.

With --live: start a connector and a gateway, and measure the latency from a producer's \
DoPut to the arrival at followers through the gateway (p50/p99) for each --live-rates \
(batches per second) and --live-followers combination, --live-seconds each.

{EXIT_CODES_HELP}
"""


def _ints(text: str, option: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        values = []
    if not values or any(v <= 0 for v in values):
        raise ValueError(f"{option} takes positive whole numbers, e.g. 1,100,1000")
    return values


def _live(rates: list[int], followers: list[int], seconds: float) -> dict[str, Any]:
    from streamkit.bench import live as live_bench

    cells: list[dict[str, Any]] = []
    with (
        _terminate_as_interrupt(),
        Progress() as progress,
        tempfile.TemporaryDirectory(prefix="streamkit-bench-live-") as tmp,
    ):
        work = Path(tmp)
        root = work / "root"
        root.mkdir()
        progress.say("starting connector and gateway")
        servers = Servers(root, None, work)
        try:
            servers.start()
            total = len(rates) * len(followers)
            progress.say("live latency", total=total)
            for count in followers:
                for rate in rates:
                    progress.say(f"{rate}/s to {count} follower(s)", total=None)
                    dataset = f"bench/live-{rate}-{count}"
                    cell = live_bench.run_cell(
                        servers.gateway_url, servers.tenant, dataset, rate, count, seconds
                    )
                    cells.append(cell.to_json())
            logs = {p.name: p.stderr.splitlines()[-5:] for p in servers.processes}
        finally:
            progress.say("stopping servers")
            servers.stop()
    body = report.build_live(
        cells=cells,
        seconds=seconds,
        aim=live_bench.AIM,
        aim_met=live_bench.aim_met(cells),
        drain_seconds=live_bench.DRAIN_TIMEOUT_S,
        urls={"gateway_flight": servers.gateway_url, "connector_flight": servers.connector_url},
    )
    if any(cell["error_count"] for cell in cells):
        body["server_logs"] = logs
    return body


def _local(size: int, runs: int, clients: int, client_rows: int | None) -> dict[str, Any]:
    with (
        _terminate_as_interrupt(),
        Progress() as progress,
        tempfile.TemporaryDirectory(prefix="streamkit-bench-") as tmp,
    ):
        work = Path(tmp)
        data_dir = work / "data"
        data_dir.mkdir()
        progress.say(f"generating {size / 1e6:,.1f} MB")
        data = generate(data_dir / f"{DATASET}.arrow", size)
        progress.say("starting baseline, connector and gateway")
        servers = Servers(data_dir, data.path, work, dial=True)
        try:
            servers.start()
            fetches: dict[str, Callable[[], measure.Sample]] = {
                "baseline_flight": lambda: measure.fetch_flight(servers.baseline_url, [DATASET]),
                "connector_flight": lambda: measure.fetch_flight(servers.connector_url, [DATASET]),
                "gateway_flight": lambda: measure.fetch_flight(
                    servers.gateway_url, [servers.tenant, DATASET]
                ),
                "gateway_dialed_flight": lambda: measure.fetch_flight(
                    servers.gateway_url, [str(servers.dialed_tenant), DATASET]
                ),
                "gateway_websocket": lambda: measure.fetch_websocket(
                    servers.http_url, servers.tenant, DATASET
                ),
                "gateway_http": lambda: measure.fetch_http(
                    servers.http_url, servers.tenant, DATASET
                ),
            }
            urls = {
                "baseline_flight": servers.baseline_url,
                "connector_flight": servers.connector_url,
                "gateway_flight": servers.gateway_url,
                "gateway_dialed_flight": servers.gateway_url,
                "gateway_websocket": servers.http_url + "/ws",
                "gateway_http": servers.http_url + "/api/stream",
            }
            with PeakRss(servers.pids()) as rss:
                paths = _measure_paths(fetches, runs, progress)
                streams_rss = dict(rss.peak)
                rss.reset()
                concurrency = _measure_clients(
                    servers.gateway_url, [servers.tenant, DATASET], clients, client_rows, progress
                )
                clients_rss = dict(rss.peak)
            progress.say("a 1 % filter: at the connector vs on the client")
            try:
                pushdown = measure.filter_pushdown(
                    servers.gateway_url, [servers.tenant, DATASET], runs
                ).to_json()
            except (measure.FetchError, flight.FlightError) as exc:
                pushdown = {"error": str(exc).split("\n")[0]}
            logs = {p.name: p.stderr.splitlines()[-5:] for p in servers.processes}
        finally:
            progress.say("stopping servers")
            servers.stop()
    peak = {
        name: {"streams": streams_rss[name], "concurrent": clients_rss[name]}
        for name in streams_rss
    }
    body = report.build(
        mode="local",
        dataset={"name": f"{servers.tenant}/{DATASET}", **data.to_json()},
        runs=runs,
        paths=paths,
        concurrency=concurrency,
        peak_rss=peak,
        urls=urls,
    )
    body["filter_pushdown"] = pushdown
    if any(result.error for result in paths.values()):
        body["server_logs"] = logs  # the servers' last words, to explain a failed path
    return body


def _remote(
    gateway: str,
    target: str | None,
    http: str | None,
    connector: str | None,
    runs: int,
    clients: int,
    client_rows: int | None,
    creds: measure.Credentials,
) -> dict[str, Any]:
    if not target:
        raise ClientError("--gateway needs --dataset TENANT/DATASET", EXIT_USAGE)
    tenant, name = parse_target(target)
    url = resolve_gateway(gateway)
    if http is None:
        scheme = "https" if url.startswith("grpc+tls") else "http"
        http = f"{scheme}://{urlsplit(url).hostname}:8080"
    http = http.rstrip("/")
    fetches: dict[str, Callable[[], measure.Sample]] = {}
    urls = {}
    if connector:
        connector = resolve_gateway(connector)
        fetches["connector_flight"] = lambda: measure.fetch_flight(connector, [name], None, creds)
        urls["connector_flight"] = connector
    fetches.update(
        gateway_flight=lambda: measure.fetch_flight(url, [tenant, name], None, creds),
        gateway_websocket=lambda: measure.fetch_websocket(http, tenant, name, creds),
        gateway_http=lambda: measure.fetch_http(http, tenant, name, creds),
    )
    urls.update(
        gateway_flight=url, gateway_websocket=http + "/ws", gateway_http=http + "/api/stream"
    )
    with _terminate_as_interrupt(), Progress() as progress:
        try:
            probe = measure.fetch_flight(url, [tenant, name], None, creds)
        except measure.FetchError as exc:
            raise ClientError(f"cannot read {target} from {url}: {exc}", EXIT_ERROR) from None
        paths = _measure_paths(fetches, runs, progress)
        concurrency = _measure_clients(url, [tenant, name], clients, client_rows, progress, creds)
    return report.build(
        mode="remote",
        dataset={"name": target, "rows": probe.rows, "bytes": probe.bytes},
        runs=runs,
        paths=paths,
        concurrency=concurrency,
        peak_rss={},
        urls=urls,
    )


def _measure_paths(
    fetches: dict[str, Callable[[], measure.Sample]], runs: int, progress: Progress
) -> dict[str, measure.PathResult]:
    """Runs interleaved across paths, so machine noise touches every path alike."""
    results = {name: measure.PathResult([]) for name in fetches}
    for run in range(runs):
        for name, fetch in fetches.items():
            result = results[name]
            if result.error:
                continue
            progress.say(f"run {run + 1}/{runs}: {report.PATHS[name]}")
            try:
                result.samples.append(fetch())
            except measure.FetchError as exc:
                result.error = f"run {run + 1}: {exc}"
    return results


def _measure_clients(
    url: str,
    path: list[str],
    clients: int,
    limit: int | None,
    progress: Progress,
    creds: measure.Credentials = measure.NO_CREDENTIALS,
) -> measure.Concurrency | None:
    if clients == 0:
        return None
    progress.say(f"{clients} concurrent clients through the gateway", total=clients)
    return measure.concurrent_flight(url, path, clients, limit, progress.advance, creds)


@contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C, so servers and temp files are cleaned up either way."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
