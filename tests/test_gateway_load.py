"""Hundreds of clients at once through a real gateway process, on every surface: every
stream complete and exact, no error, and the process alive afterwards (it once died with
SIGSEGV here). The longer version, 1,000 clients and memory per round, is
``benchmarks/gateway_load.py``."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pyarrow as pa
import pyarrow.flight as flight
import pyarrow.parquet as pq
import pytest
from test_gateway_process import start_gateway, write_config

CLIENTS = 300
ROUNDS = 2
ROWS = 2000
TABLE = pa.table(
    {
        "id": pa.array(range(ROWS), pa.int64()),
        "label": pa.array([f"row {i}" for i in range(ROWS)]),
        "kind": pa.array(["a", "b", "c", "d"] * (ROWS // 4)).dictionary_encode(),
    }
)


@pytest.fixture
def gateway(tmp_path: Path, process):
    """A connector process, and a gateway process with it as tenant ``remote`` and the
    same folder embedded as tenant ``embedded``."""
    data = tmp_path / "data"
    data.mkdir()
    pq.write_table(TABLE, data / "items.parquet")
    connector = process("connector", "serve", str(data), "--port", "0")
    url = connector.wait_for_stderr(r"connector serving .* at (grpc://\S+)").group(1)
    config = write_config(
        tmp_path,
        f'[gateway]\ndefault_tenant = "remote"\n'
        f'[tenants.remote]\nconnector = "{url}"\n'
        f'[tenants.embedded]\npath = "{data}"\n',
    )
    proc, flight_port, http_port = start_gateway(process, config)
    yield proc, flight_port, http_port
    assert proc.proc.poll() is None, proc.stderr[-3000:]


def at_once(clients: int, work: Callable[[], None]) -> Counter[str]:
    """Run ``work`` in ``clients`` threads released together; count the errors by message."""
    failures: Counter[str] = Counter()
    start = threading.Barrier(clients)

    def run() -> None:
        start.wait()
        try:
            work()
        except Exception as exc:
            failures[f"{type(exc).__name__}: {str(exc)[:120]}"] += 1

    threads = [threading.Thread(target=run) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not any(t.is_alive() for t in threads), "clients still running after 120 s"
    return failures


@pytest.mark.parametrize("tenant", ["remote", "embedded"])
def test_hundreds_of_flight_clients_at_once(gateway, tenant):
    proc, flight_port, _ = gateway

    def read() -> None:
        with flight.connect(f"grpc://127.0.0.1:{flight_port}") as client:
            info = client.get_flight_info(flight.FlightDescriptor.for_path(tenant, "items"))
            table = client.do_get(info.endpoints[0].ticket).read_all()
        assert table.equals(TABLE), "a stream arrived changed"

    for round_ in range(ROUNDS):
        failures = at_once(CLIENTS, read)
        assert not failures, f"round {round_}: {failures}"
        assert proc.proc.poll() is None, f"the gateway died ({proc.proc.returncode})"


def test_hundreds_of_websocket_and_http_clients_at_once(gateway):
    proc, _, http_port = gateway
    base = f"http://127.0.0.1:{http_port}"

    async def over_http(session: aiohttp.ClientSession, tenant: str) -> pa.Table:
        async with session.get(f"{base}/api/stream/{tenant}/items") as response:
            assert response.status == 200, await response.text()
            return pa.ipc.open_stream(await response.read()).read_all()

    async def over_websocket(session: aiohttp.ClientSession, tenant: str) -> pa.Table:
        frames = []
        async with session.ws_connect(f"{base}/ws") as ws:
            await ws.send_json({"action": "query", "tenant": tenant, "dataset": "items"})
            async for message in ws:
                if message.type == aiohttp.WSMsgType.BINARY:
                    frames.append(message.data)
                    continue
                answer = message.json()
                assert answer["type"] == "end", answer
                break
        return pa.ipc.open_stream(b"".join(frames)).read_all()

    async def everyone() -> list[object]:
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as session:
            calls = [
                way(session, tenant)
                for way in (over_http, over_websocket)
                for tenant in ("remote", "embedded")
                for _ in range(CLIENTS // 2)
            ]
            return await asyncio.gather(*calls, return_exceptions=True)

    results = asyncio.run(everyone())
    failures = Counter(repr(r)[:160] for r in results if not isinstance(r, pa.Table))
    assert not failures, failures
    assert all(table.equals(TABLE) for table in results)
    assert proc.proc.poll() is None, f"the gateway died ({proc.proc.returncode})"
