"""Headless Chromium (Debian's, never a downloaded one) driving the dashboard, and test data."""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
NODE_MODULES = REPO / "web" / "node_modules"
START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
VIEWPORT = {"width": 1440, "height": 960}

# Records every long task (main thread busy > 50 ms) so tests can tell a frozen page.
LONG_TASK_OBSERVER = """
window.__longTasks = [];
new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) {
    window.__longTasks.push({ start: entry.startTime, duration: entry.duration });
  }
}).observe({ type: "longtask", buffered: true });
"""
# The longest task (ms, 0 if none) that ran at or after `since` (a performance.now() value).
LONGEST_TASK_SINCE = """(since) => Math.max(0, ...window.__longTasks
  .filter((t) => t.start + t.duration >= since).map((t) => t.duration))"""

# The dashboard's decoding worker, and a probe installed in it: it counts the readers made by
# the worker's apache-arrow (the global `Arrow` of its classic script) and the batches and rows
# they yield. It waits (with a deadline) for importScripts to have loaded apache-arrow.
DECODE_WORKER = "/js/decode_worker.js"
WORKER_DECODE_PROBE = """async (timeoutMs) => {
  const deadline = performance.now() + timeoutMs;
  while (!self.Arrow?.RecordBatchReader) {
    if (performance.now() > deadline) throw new Error("apache-arrow did not load in the worker");
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  const seen = (self.__decoded = { readers: 0, batches: 0, rows: 0 });
  const Reader = self.Arrow.RecordBatchReader;
  const from = Reader.from;
  const counted = (reader) => {
    const iterate = reader[Symbol.asyncIterator].bind(reader);
    reader[Symbol.asyncIterator] = () => {
      const batches = iterate();
      return {
        async next() {
          const step = await batches.next();
          if (!step.done) {
            seen.batches += 1;
            seen.rows += step.value.numRows;
          }
          return step;
        },
        return: (value) => batches.return?.(value) ?? Promise.resolve({ value, done: true }),
        [Symbol.asyncIterator]() { return this; },
      };
    };
    return reader;
  };
  Reader.from = function (source) {
    seen.readers += 1;
    const made = from.call(this, source);
    return typeof made?.then === "function" ? made.then(counted) : counted(made);
  };
}"""
# What the page itself loaded and holds: apache-arrow (a global, or any of its files fetched)
# and the HTTP bulk path's requests (a worker's fetches are in its own resource timeline).
RESOURCES = "performance.getEntriesByType('resource').map((e) => new URL(e.name).pathname)"


def missing_prerequisite() -> str | None:
    """Why browser tests cannot run here (``./dev test`` installs both), or None."""
    if not CHROMIUM.exists() and not shutil.which("chromium"):
        return "Debian chromium is not installed (apt-get install chromium, or ./dev test)"
    if not (NODE_MODULES / "apache-arrow").is_dir() or not (NODE_MODULES / "chart.js").is_dir():
        return "web/node_modules is missing (cd web && npm ci, or ./dev test)"
    return None


def launch_options() -> dict:
    executable = CHROMIUM if CHROMIUM.exists() else Path(shutil.which("chromium") or CHROMIUM)
    return {"executable_path": str(executable), "args": CHROMIUM_ARGS}


def decoding_worker(page, timeout_ms: float):
    """The page's decoding worker (Playwright's Worker), waiting up to `timeout_ms` for it."""

    def find():
        return next((w for w in page.workers if w.url.endswith(DECODE_WORKER)), None)

    worker = find()
    if worker is None:  # no event can be dispatched between find() and this wait
        page.wait_for_event(
            "worker", predicate=lambda w: w.url.endswith(DECODE_WORKER), timeout=timeout_ms
        )
        worker = find()
    return worker


@dataclass
class ConsoleLog:
    """Console errors, uncaught page errors and failed requests of one page."""

    errors: list[str] = field(default_factory=list)

    def attach(self, page) -> ConsoleLog:
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.errors.append(f"page error: {error}"))
        page.on("response", self._response)
        return self

    def _console(self, message) -> None:
        if message.type == "error":
            self.errors.append(f"console: {message.text}")

    def _response(self, response) -> None:
        if response.status >= 400:
            self.errors.append(f"HTTP {response.status}: {response.url}")


def write_big_dataset(folder: Path, rows: int, name: str = "big") -> Path:
    """``rows`` rows of a minute-by-minute time series: ts, three measures and an id."""
    folder.mkdir(parents=True, exist_ok=True)
    steps = pa.array(range(rows), pa.int64())
    minutes = pc.multiply(steps, 60_000)
    day = pc.divide(pc.multiply(pc.cast(steps, pa.float64()), 2 * math.pi), 1440.0)

    def wave(mean: float, amplitude: float, days: float, seed: int, noise: float) -> pa.Array:
        jitter = pc.multiply(pc.subtract(pc.random(rows, initializer=seed), 0.5), noise)
        curve = pc.multiply(pc.sin(pc.divide(day, days)), amplitude)
        return pc.add(pc.add(curve, mean), jitter)

    table = pa.table(
        {
            "ts": pc.cast(pc.add(minutes, START_MS), pa.timestamp("ms", tz="UTC")),
            "temperature": wave(20.0, 5.0, 1.0, seed=1, noise=1.0),
            "load": wave(50.0, 30.0, 7.0, seed=2, noise=6.0),
            "pressure": wave(1013.0, 8.0, 30.0, seed=3, noise=0.0),
            "id": steps,
        }
    )
    path = folder / f"{name}.parquet"
    pq.write_table(table, path, row_group_size=65_536)
    return path
