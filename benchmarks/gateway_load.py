"""Load and memory of a real gateway and connector (separate processes), beyond what the test
suite can afford: many concurrent clients per round on every surface, rounds with the
gateway's RSS after each, and slow readers of a large file with both processes' peak RSS.

    python benchmarks/gateway_load.py                  # everything (several minutes)
    python benchmarks/gateway_load.py --only slow      # load | rounds | web | slow

Data is generated in a temporary folder and removed afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp
import psutil
import pyarrow as pa
import pyarrow.flight as flight
import pyarrow.parquet as pq

SMALL_ROWS = 2000


def small_table() -> pa.Table:
    return pa.table(
        {
            "id": pa.array(range(SMALL_ROWS), pa.int64()),
            "label": [f"row {i}" for i in range(SMALL_ROWS)],
            "kind": pa.array(["a", "b", "c", "d"] * (SMALL_ROWS // 4)).dictionary_encode(),
        }
    )


def write_big(path: Path, megabytes: int) -> int:
    """An Arrow IPC file of about ``megabytes`` MB: a timestamp, floats and a string;
    returns its rows."""
    rows = 1 << 16
    chunk = pa.table(
        {
            "ts": pa.array(range(rows), pa.timestamp("ms")),
            "a": pa.array([i * 0.5 for i in range(rows)]),
            "b": pa.array([i * 0.25 for i in range(rows)]),
            "name": [f"sensor-{i % 997:04d}" for i in range(rows)],
        }
    )
    copies = max(1, megabytes * 10**6 // chunk.nbytes)
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, chunk.schema) as writer:
        for _ in range(copies):
            writer.write_table(chunk)
    return rows * copies


class Proc:
    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streamkit", *args],
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
        )
        self.lines: list[str] = []
        threading.Thread(target=self._collect, daemon=True).start()
        self.peak = 0
        self._sampling = threading.Event()

    def _collect(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)

    def wait_for(self, pattern: str, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = re.search(pattern, "".join(self.lines), re.MULTILINE)
            if match:
                return match.group(1)
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError("".join(self.lines)[-2000:] or "no output")

    def rss(self) -> int:
        return psutil.Process(self.proc.pid).memory_info().rss

    @contextmanager
    def peak_rss(self) -> Iterator[None]:
        """Sample RSS every 50 ms while the block runs; ``self.peak`` holds the maximum."""
        self.peak = self.rss()
        stop = threading.Event()

        def sample() -> None:
            while not stop.wait(0.05):
                self.peak = max(self.peak, self.rss())

        thread = threading.Thread(target=sample, daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@contextmanager
def servers(root: Path) -> Iterator[tuple[Proc, Proc, int, int]]:
    connector = Proc("connector", "serve", str(root), "--port", "0")
    gateway = None
    try:
        url = connector.wait_for(r"connector serving .* at (grpc://\S+)")
        config = root.parent / "streamkit.toml"
        config.write_text(
            f'[gateway]\ndefault_tenant = "remote"\n[tenants.remote]\nconnector = "{url}"\n'
            f'[tenants.embedded]\npath = "{root}"\n'
        )
        gateway = Proc(
            "gateway", "up", "--config", str(config), "--flight-port", "0", "--http-port", "0"
        )
        flight_port = int(gateway.wait_for(r"flight +grpc://[\d.]+:(\d+)"))
        http_port = int(gateway.wait_for(r"dashboard +http://[\d.]+:(\d+)/"))
        yield connector, gateway, flight_port, http_port
        if gateway.proc.poll() is not None:
            print("".join(gateway.lines)[-3000:])
            raise RuntimeError(f"the gateway died: exit {gateway.proc.returncode}")
    finally:
        for proc in (gateway, connector):
            if proc is not None:
                proc.stop()


def at_once(clients: int, work: Callable[[], None]) -> tuple[Counter[str], float]:
    failures: Counter[str] = Counter()
    start = threading.Barrier(clients + 1)

    def run() -> None:
        start.wait()
        try:
            work()
        except Exception as exc:
            failures[f"{type(exc).__name__}: {str(exc)[:100]}"] += 1

    threads = [threading.Thread(target=run) for _ in range(clients)]
    for thread in threads:
        thread.start()
    began = time.perf_counter()
    start.wait()
    for thread in threads:
        thread.join()
    return failures, time.perf_counter() - began


def flight_reader(port: int, tenant: str, dataset: str, expect: pa.Table) -> Callable[[], None]:
    def read() -> None:
        with flight.connect(f"grpc://127.0.0.1:{port}") as client:
            info = client.get_flight_info(flight.FlightDescriptor.for_path(tenant, dataset))
            table = client.do_get(info.endpoints[0].ticket).read_all()
        if not table.equals(expect):
            raise AssertionError("the stream arrived changed")

    return read


def load(root: Path, clients: int) -> None:
    with servers(root) as (_, gateway, flight_port, _):
        for tenant in ("remote", "embedded"):
            with gateway.peak_rss():
                failures, seconds = at_once(
                    clients, flight_reader(flight_port, tenant, "small", small_table())
                )
            print(
                f"flight {clients} clients, {tenant}: {sum(failures.values())} errors "
                f"{dict(failures)}, {seconds:.1f} s, gateway peak RSS {gateway.peak / 1e6:.0f} MB"
            )


def rounds(root: Path, clients: int, count: int) -> None:
    with servers(root) as (_, gateway, flight_port, _):
        after = []
        for number in range(count):
            failures, _ = at_once(
                clients, flight_reader(flight_port, "remote", "small", small_table())
            )
            after.append(gateway.rss() / 1e6)
            if failures:
                print(f"round {number}: {dict(failures)}")
        print(f"{count} rounds of {clients}: gateway RSS after each (MB): "
              + " ".join(f"{mb:.0f}" for mb in after))


def web(root: Path, clients: int) -> None:
    expect = small_table()
    with servers(root) as (_, gateway, _, http_port):
        base = f"http://127.0.0.1:{http_port}"

        async def http_one(session: aiohttp.ClientSession) -> None:
            async with session.get(f"{base}/api/stream/remote/small") as response:
                body = await response.read()
            if not pa.ipc.open_stream(body).read_all().equals(expect):
                raise AssertionError("changed")

        async def ws_one(session: aiohttp.ClientSession) -> None:
            frames = []
            async with session.ws_connect(f"{base}/ws") as ws:
                await ws.send_json({"action": "query", "tenant": "remote", "dataset": "small"})
                async for message in ws:
                    if message.type == aiohttp.WSMsgType.BINARY:
                        frames.append(message.data)
                    elif message.json()["type"] == "end":
                        break
                    else:
                        raise AssertionError(message.data)
            if not pa.ipc.open_stream(b"".join(frames)).read_all().equals(expect):
                raise AssertionError("changed")

        async def everyone(one) -> tuple[Counter[str], float]:
            began = time.perf_counter()
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
                results = await asyncio.gather(
                    *(one(session) for _ in range(clients)), return_exceptions=True
                )
            failures = Counter(repr(r)[:100] for r in results if r is not None)
            return failures, time.perf_counter() - began

        for name, one in (("http", http_one), ("websocket", ws_one)):
            with gateway.peak_rss():
                failures, seconds = asyncio.run(everyone(one))
            print(
                f"{name} {clients} clients: {sum(failures.values())} errors {dict(failures)}, "
                f"{seconds:.1f} s, gateway peak RSS {gateway.peak / 1e6:.0f} MB"
            )


def slow(root: Path, readers: int, megabytes: int, pause: float) -> None:
    """``readers`` clients through the gateway (remote tenant), each pausing per batch."""
    write_big(root / "big.arrow", megabytes)
    with servers(root) as (connector, gateway, flight_port, _):

        def read() -> None:
            with flight.connect(f"grpc://127.0.0.1:{flight_port}") as client:
                reader = client.do_get(flight.Ticket(b'{"tenant":"remote","dataset":"big"}'))
                for _ in reader:
                    time.sleep(pause)

        with gateway.peak_rss(), connector.peak_rss():
            failures, seconds = at_once(readers, read)
        print(
            f"{readers} slow readers of {megabytes} MB ({pause * 1e3:.0f} ms per batch): "
            f"{sum(failures.values())} errors, {seconds:.1f} s, peak RSS gateway "
            f"{gateway.peak / 1e6:.0f} MB, connector {connector.peak / 1e6:.0f} MB"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["load", "rounds", "web", "slow"])
    parser.add_argument("--clients", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder) / "data"
        root.mkdir()
        pq.write_table(small_table(), root / "small.parquet")
        if args.only in (None, "load"):
            load(root, args.clients)
        if args.only in (None, "rounds"):
            rounds(root, 200, 10)
        if args.only in (None, "web"):
            web(root, args.clients)
        if args.only in (None, "slow"):
            slow(root, 20, 400, 0.002)
            slow(root, 1, 800, 0.002)


if __name__ == "__main__":
    main()
