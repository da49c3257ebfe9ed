"""Arrow streaming into headless Chromium: WebSocket vs HTTP fetch, and WebSocket frame sizes.

Generates ~100 MB of Arrow data in a temporary folder, serves it from an in-process gateway
(once per ``ws_frame_bytes`` value tried), and measures in Debian's chromium:

* ``decode``: transport + Arrow decoding only (the page's worker decoder,
  ``window.streamkit.decoder.run(..., {views: false})``: batches decoded in the worker,
  counted and dropped) — what the wire and apache-arrow can do;
* ``dashboard``: the real page (Run button): decode + downsampled chart + table + progress,
  with time to first chart points and the longest main-thread task during the run;
* ``1M rows``: the dashboard loading the browser tests' 1,000,000-row time series (Parquet,
  ts + three measures + id) over HTTP and the WebSocket: the longest main-thread task, which
  says whether the page stays responsive while it loads.

    .venv/bin/python benchmarks/browser_stream.py [--size-mb 100] [--repeat 3] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from browser_helpers import (  # noqa: E402
    LONG_TASK_OBSERVER,
    LONGEST_TASK_SINCE,
    VIEWPORT,
    launch_options,
    missing_prerequisite,
    write_big_dataset,
)

from streamkit.config import GatewayConfig, TenantConfig  # noqa: E402
from streamkit.gateway import make_gateway  # noqa: E402

FRAME_SIZES = [64 * 1024, 128 * 1024, 256 * 1024, 512 * 1024, 1024 * 1024, 2 * 1024 * 1024]
BYTES_PER_ROW = 48  # ts + four float64 + int64
BATCH_ROWS = 65_536
TIMEOUT_MS = 180_000
MILLION = 1_000_000

# The dashboard's own Decoder (web/js/stream.js) with no views: the worker fetches (HTTP) or
# gets the socket's frames (WebSocket), decodes and counts. `firstBatchAt` comes from the
# worker on an epoch-based clock (timeOrigin + now), comparable across the two threads.
DECODE_ONLY = """
async ({ transport, tenant, dataset }) => {
  const { decoder, connection } = window.streamkit;
  let firstBatchAt = null;
  const onUpdate = (update) => {
    if (firstBatchAt === null && update.firstBatchAt != null) firstBatchAt = update.firstBatchAt;
  };
  const started = performance.now();
  const outcome = await decoder.run(transport, { tenant, dataset }, {
    connection, views: false, onUpdate,
  });
  const seconds = (performance.now() - started) / 1000;
  if (outcome.cancelled) throw new Error("the decode-only run was cancelled");
  const firstBatchMs =
    firstBatchAt === null ? null : firstBatchAt - (performance.timeOrigin + started);
  return { rows: outcome.rows, batches: outcome.batches, bytes: outcome.bytes, seconds,
           firstBatchMs, firstChartMs: null, mbPerSecond: outcome.bytes / 1e6 / seconds };
}
"""


def write_dataset(folder: Path, size_mb: int) -> tuple[Path, int]:
    rows = size_mb * 1_000_000 // BYTES_PER_ROW
    steps = pa.array(range(rows), pa.int64())
    x = pc.cast(steps, pa.float64())
    table = pa.table(
        {
            "ts": pc.cast(pc.add(pc.multiply(steps, 1000), 1_767_225_600_000), pa.timestamp("ms")),
            "a": pc.sin(pc.divide(x, 5000.0)),
            "b": pc.cos(pc.divide(x, 777.0)),
            "c": pc.random(rows, initializer=1),
            "d": pc.multiply(x, 0.5),
            "id": steps,
        }
    )
    path = folder / "bench.arrow"
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table, max_chunksize=BATCH_ROWS)
    return path, rows


def measure(page, gateway, transport: str, mode: str, dataset: str = "bench") -> dict:
    page.goto(f"{gateway.http_url}/#/bench/{dataset}")
    page.wait_for_selector("#connection[data-status=open]")
    page.wait_for_function("document.querySelector('#dataset').options.length > 0")
    if mode == "decode":
        args = {"transport": transport, "tenant": "bench", "dataset": dataset}
        return page.evaluate(DECODE_ONLY, args)
    page.check(f"input[name=transport][value={transport}]")
    since = page.evaluate("performance.now()")
    page.click("#run")
    page.wait_for_selector("#progress[data-state=done], #progress[data-state=error]")
    result = page.evaluate("window.streamkit.lastRun")
    if result["state"] != "done":
        raise RuntimeError(f"dashboard run ended {result['state']}: {page.inner_text('#error')}")
    return {**result, "longestTaskMs": page.evaluate(LONGEST_TASK_SINCE, since)}


def runs_on_new_page(browser, gateway, transport: str, mode: str, repeat: int, **kw) -> list:
    page = browser.new_page(viewport=VIEWPORT)
    page.set_default_timeout(TIMEOUT_MS)
    page.add_init_script(LONG_TASK_OBSERVER)
    try:
        return [measure(page, gateway, transport, mode, **kw) for _ in range(repeat)]
    finally:
        page.close()


def best_of(runs: list[dict]) -> dict:
    best = max(runs, key=lambda r: r["mbPerSecond"])
    tasks = [r["longestTaskMs"] for r in runs if "longestTaskMs" in r]
    firsts = [r["firstBatchMs"] for r in runs if r["firstBatchMs"] is not None]
    return {
        "longest_task_ms": round(statistics.median(tasks)) if tasks else None,
        "longest_task_ms_worst": round(max(tasks)) if tasks else None,
        "mb_per_s": round(best["mbPerSecond"], 1),
        "mb_per_s_median": round(statistics.median(r["mbPerSecond"] for r in runs), 1),
        "first_batch_ms": round(min(firsts), 1) if firsts else None,
        "first_chart_ms": (
            round(min(r["firstChartMs"] for r in runs), 1) if runs[0]["firstChartMs"] else None
        ),
        "seconds": round(best["seconds"], 3),
        "rows": best["rows"],
        "mb": round(best["bytes"] / 1e6, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=100, help="Arrow data to stream (MB)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement (best kept)")
    parser.add_argument(
        "--frames",
        default=",".join(str(f // 1024) for f in FRAME_SIZES),
        help="ws_frame_bytes values to try, in KB",
    )
    parser.add_argument("--no-million", action="store_true", help="skip the 1M-row load")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    options = parser.parse_args()
    if reason := missing_prerequisite():
        print(f"cannot run: {reason}", file=sys.stderr)
        return 1
    frames = [int(kb) * 1024 for kb in options.frames.split(",")]

    from playwright.sync_api import sync_playwright

    results: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="streamkit-bench-") as tmp, sync_playwright() as pw:
        path, rows = write_dataset(Path(tmp), options.size_mb)
        log(f"dataset: {rows:,} rows, {path.stat().st_size / 1e6:.0f} MB Arrow file")
        if not options.no_million:
            write_big_dataset(Path(tmp), MILLION)
        browser = pw.chromium.launch(**launch_options())
        try:
            for index, frame_bytes in enumerate(frames):
                with bench_gateway(Path(tmp), frame_bytes) as gateway:
                    # HTTP does not depend on the WebSocket frame size: measure it once.
                    transports = ["ws", "http"] if index == 0 else ["ws"]
                    for transport in transports:
                        for mode in ("decode", "dashboard"):
                            runs = runs_on_new_page(
                                browser, gateway, transport, mode, options.repeat
                            )
                            frame_kb = frame_bytes // 1024 if transport == "ws" else None
                            row = {"transport": transport, "frame_kb": frame_kb, "mode": mode}
                            results.append({**row, **best_of(runs)})
                            log(format_row(results[-1]))
            if not options.no_million:
                with bench_gateway(Path(tmp), None) as gateway:
                    for transport in ("http", "ws"):
                        runs = runs_on_new_page(
                            browser, gateway, transport, "dashboard", options.repeat, dataset="big"
                        )
                        frame_kb = 256 if transport == "ws" else None
                        row = {"transport": transport, "frame_kb": frame_kb, "mode": "1M rows"}
                        results.append({**row, **best_of(runs)})
                        log(format_row(results[-1]))
        finally:
            browser.close()

    if options.json:
        print(json.dumps({"size_mb": options.size_mb, "results": results}, indent=2))
    else:
        print_summary(results)
    return 0


@contextlib.contextmanager
def bench_gateway(folder: Path, frame_bytes: int | None) -> Iterator[object]:
    """An in-process gateway serving `folder` as tenant ``bench`` (default frame size: None)."""
    frames = {} if frame_bytes is None else {"ws_frame_bytes": frame_bytes}
    config = GatewayConfig(
        flight_port=0,
        http_port=0,
        default_tenant="bench",
        tenants={"bench": TenantConfig("bench", path=folder)},
        **frames,
    )
    gateway = make_gateway(config)
    try:
        yield gateway
    finally:
        gateway.stop()


def format_row(row: dict) -> str:
    frame = f"{row['frame_kb']:>5} KB" if row["frame_kb"] else f"{'-':>5}   "
    first_chart = row["first_chart_ms"]
    chart = f"{first_chart:>7.0f} ms" if first_chart is not None else f"{'-':>7}   "
    first = row["first_batch_ms"]
    first_batch = f"{first:>6.0f} ms" if first is not None else f"{'-':>6}   "
    task = row["longest_task_ms"]
    tasks = (
        f"  longest task {task:>4} ms (worst {row['longest_task_ms_worst']})"
        if task is not None
        else ""
    )
    return (
        f"{row['transport']:<5} {frame}  {row['mode']:<9} {row['mb_per_s']:>7.1f} MB/s "
        f"(median {row['mb_per_s_median']:>6.1f})  first batch {first_batch}  "
        f"first chart {chart}  {row['seconds']:.2f} s for {row['mb']} MB{tasks}"
    )


def print_summary(results: list[dict]) -> None:
    print("transport frame     mode      speed                   first batch     first chart")
    for row in results:
        print(format_row(row))
    ws = [r for r in results if r["transport"] == "ws" and r["mode"] == "decode"]
    if ws:
        best = max(ws, key=lambda r: r["mb_per_s_median"])
        print(
            f"best WebSocket frame size: {best['frame_kb']} KB "
            f"({best['mb_per_s_median']} MB/s median decode)"
        )


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
