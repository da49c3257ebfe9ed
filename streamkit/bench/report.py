"""The bench report: one JSON document, and the same as rich tables for people."""

from __future__ import annotations

import os
import platform
from typing import Any

import pyarrow as pa

from streamkit.bench.measure import Concurrency, PathResult

REFERENCE_MB_S = 113.0  # the reference design: 100 MB in ~0.88 s
PATHS = {
    "baseline_flight": "plain pyarrow Flight",
    "connector_flight": "connector Flight (direct)",
    "gateway_flight": "gateway Flight",
    "gateway_dialed_flight": "gateway Flight, connector dialed in",
    "gateway_websocket": "gateway WebSocket",
    "gateway_http": "gateway HTTP stream",
}
DIRECT, BASELINE = "connector_flight", "baseline_flight"


def build(
    *,
    mode: str,
    dataset: dict[str, Any],
    runs: int,
    paths: dict[str, PathResult],
    concurrency: Concurrency | None,
    peak_rss: dict[str, dict[str, int]],
    urls: dict[str, str],
) -> dict[str, Any]:
    measured = {name: result.to_json(dataset["bytes"]) for name, result in paths.items()}
    for name, body in measured.items():
        body["label"] = PATHS[name]
        body["url"] = urls.get(name)
    speeds = {n: b["median_mb_s"] for n, b in measured.items() if b.get("median_mb_s")}
    ratios = {}
    for against in (DIRECT, BASELINE):
        if against not in speeds:
            continue
        for name, speed in speeds.items():
            if name not in (against, BASELINE):
                ratios[f"{name}/{against}"] = round(speed / speeds[against], 3)
    return {
        "mode": mode,
        "dataset": dataset,
        "runs": runs,
        "reference_mb_s": REFERENCE_MB_S,
        "paths": measured,
        "ratios": ratios,
        "speedup_vs_reference": {n: round(s / REFERENCE_MB_S, 2) for n, s in speeds.items()},
        "concurrency": concurrency.to_json() if concurrency else None,
        "peak_rss_bytes": peak_rss,
        "machine": _machine(),
    }


def build_live(
    *,
    cells: list[dict[str, Any]],
    seconds: float,
    aim: dict[str, Any],
    aim_met: bool | None,
    drain_seconds: float,
    urls: dict[str, str],
) -> dict[str, Any]:
    return {
        "mode": "live",
        "seconds_per_cell": seconds,
        "drain_seconds": drain_seconds,  # "lost": batches not at a follower this long after
        "cells": cells,
        "aim": {**aim, "met": aim_met},
        "urls": urls,
        "machine": _machine(),
    }


def render_live(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not console.is_terminal:
        console = Console(width=120)
    console.print(
        "[bold]streamkit bench --live[/]  latency from DoPut at a producer to arrival at"
        f" followers through the gateway, {report['seconds_per_cell']:g} s per cell"
    )
    table = Table(header_style="bold")
    for column in (
        "batches/s",
        "followers",
        "sent",
        "sent/s",
        "received",
        "lost",
        "p50",
        "p99",
        "max",
        "errors",
    ):
        table.add_column(column, justify="right")
    for cell in report["cells"]:
        table.add_row(
            f"{cell['rate_per_s']:,}",
            f"{cell['followers']:,}",
            f"{cell['sent']:,}",
            "-" if cell["sent_per_s"] is None else f"{cell['sent_per_s']:,.0f}",
            f"{cell['received']:,}",
            f"{cell['lost']:,}",
            _ms(cell["p50_ms"]),
            _ms(cell["p99_ms"]),
            _ms(cell["max_ms"]),
            f"[red]{cell['error_count']}[/]" if cell["error_count"] else "0",
        )
    console.print(table)
    for cell in report["cells"]:
        for message in cell["errors"]:
            console.print(
                f"  [red]error[/] ({cell['rate_per_s']}/s, {cell['followers']}): {message}"
            )
    aim = report["aim"]
    verdict = {True: "[green]met[/]", False: "[red]not met[/]", None: "not measured"}
    console.print(
        f"aim: p99 < {aim['p99_ms']:g} ms at {aim['rate_per_s']:,} batches/s with"
        f" {aim['followers']} followers: {verdict[aim['met']]}"
    )


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f} ms"


def _machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "pyarrow": pa.__version__,
        "platform": platform.platform(),
    }


def render(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not console.is_terminal:
        console = Console(width=120)

    data = report["dataset"]
    console.print(
        f"[bold]streamkit bench[/]  {data['rows']:,} rows, {data['bytes'] / 1e6:,.1f} MB of"
        f" Arrow data, {report['runs']} run(s) per path, median shown"
    )
    table = Table(header_style="bold")
    for column in (
        "path",
        "MB/s",
        "first batch",
        "last byte",
        "rows",
        "vs plain Flight",
        "vs 113 MB/s",
    ):
        table.add_column(column, justify="left" if column == "path" else "right")
    for name, body in report["paths"].items():
        if body.get("error"):
            table.add_row(body["label"], f"[red]failed: {body['error']}[/]", "", "", "", "", "")
            continue
        ratio = report["ratios"].get(f"{name}/{BASELINE}")
        table.add_row(
            body["label"],
            f"{body['median_mb_s']:,.1f}",
            f"{body['median_first_batch_s'] * 1000:,.1f} ms",
            f"{body['median_seconds']:,.3f} s",
            f"{body['rows']:,}",
            "1.00x" if name == BASELINE else (f"{ratio:.2f}x" if ratio else "-"),
            f"{report['speedup_vs_reference'][name]:.1f}x",
        )
    console.print(table)
    direct = [
        f"{PATHS[k.split('/')[0]]} {v:.2f}x"
        for k, v in report["ratios"].items()
        if k.endswith(f"/{DIRECT}")
    ]
    if direct:
        console.print("gateway / direct connector: " + ", ".join(direct))
    conc = report["concurrency"]
    if conc:
        p50, p99 = conc["latency_p50_s"], conc["latency_p99_s"]
        console.print(
            f"{conc['clients']} concurrent clients through the gateway: "
            f"{conc['total_seconds']:.2f} s total, {conc['errors']} errors, "
            f"p50 {_s(p50)}, p99 {_s(p99)}, {conc['aggregate_mb_s'] or 0:,.1f} MB/s aggregate"
        )
        for message in conc["error_messages"]:
            console.print(f"  [red]error:[/] {message}")
    pushdown = report.get("filter_pushdown")
    if pushdown and "error" in pushdown:
        console.print(f"filter at the connector: [red]failed: {pushdown['error']}[/]")
    elif pushdown:
        console.print(
            f"a 1 % filter ({pushdown['filter']}, {pushdown['rows_kept']:,} rows):"
            f" at the connector {_s(pushdown['pushed_median_s'])}, on the client"
            f" {_s(pushdown['client_median_s'])} ({pushdown['client_over_pushed']}x)"
        )
    rss = report["peak_rss_bytes"].get("gateway")
    if rss:
        console.print(
            f"gateway peak RSS: {rss.get('streams', 0) / 1e6:,.0f} MB while streaming, "
            f"{rss.get('concurrent', 0) / 1e6:,.0f} MB with concurrent clients"
        )


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:,.0f} ms"
