"""The gateway's end of dialed-in connectors: tunnels waiting to carry a connection, and the
Unix socket the gateway's own Flight client connects to for each ``websocket`` tenant.

When that client opens a connection (a channel connects or reconnects), the socket's
accept takes an idle tunnel and pipes bytes both ways until either side ends; gRPC does the
rest (multiplexing, flow control, cancellation). A tenant with no idle tunnel gets its
connection closed at once, so calls fail fast as ``unavailable``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tempfile
from collections import deque
from collections.abc import AsyncIterator

from aiohttp import WSMsgType, web

from streamkit.dialout import PAIR_TIMEOUT_SECONDS, pipe

log = logging.getLogger("streamkit.gateway")


class Tunnel:
    """One WebSocket from a connector, idle until paired with one connection. Its messages
    are read all along (aiohttp answers pings and notices a close only while reading)."""

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws
        self.done = asyncio.Event()
        self.incoming: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=4)
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for message in self.ws:
                if message.type != WSMsgType.BINARY:
                    break
                await self.incoming.put(message.data)  # bounded: backpressure on the socket
        finally:
            await self.incoming.put(None)
            if self.incoming.qsize() == 1 and not self.done.is_set():
                self.done.set()  # closed while idle: nothing will read the end

    @property
    def open(self) -> bool:
        return not self.ws.closed and not self.done.is_set()

    async def carry(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Pipe the connection through the socket until either side ends."""

        async def received() -> AsyncIterator[bytes]:
            while (data := await self.incoming.get()) is not None:
                yield data

        try:
            await pipe(self.ws.send_bytes, received(), reader, writer)
        finally:
            await self.close()

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.ws.close()
        self._reader.cancel()
        self.done.set()


class TenantTunnels:
    def __init__(self, tenant: str, socket_path: str) -> None:
        self.tenant = tenant
        self.socket_path = socket_path
        self.idle: deque[Tunnel] = deque()
        self.busy = 0
        self.arrived = asyncio.Event()
        self._server: asyncio.AbstractServer | None = None

    @property
    def location(self) -> str:
        return f"grpc+unix://{self.socket_path}"

    @property
    def connected(self) -> bool:
        return self.busy > 0 or any(t.open for t in self.idle)

    async def start(self) -> None:
        self._server = await asyncio.start_unix_server(self._connection, self.socket_path)

    async def hold(self, ws: web.WebSocketResponse) -> None:
        """Keep a connector's socket as a tunnel until it has carried a connection or closed."""
        tunnel = Tunnel(ws)
        self.idle.append(tunnel)
        self.arrived.set()
        log.info("tenant %s: connector dialed in (%d idle tunnels)", self.tenant, len(self.idle))
        try:
            await tunnel.done.wait()
        finally:
            if tunnel in self.idle:
                self.idle.remove(tunnel)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        tunnel = await self._take()
        if tunnel is None:
            log.warning("tenant %s: no connector is dialed in", self.tenant)
            writer.close()
            return
        self.busy += 1
        try:
            await tunnel.carry(reader, writer)
        finally:
            self.busy -= 1

    async def _take(self) -> Tunnel | None:
        """An idle, open tunnel; while a connector is carrying others, waits briefly for
        one (its next spare is on its way)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + PAIR_TIMEOUT_SECONDS
        while True:
            while self.idle:
                tunnel = self.idle.popleft()
                if tunnel.open:
                    return tunnel
                await tunnel.close()
            left = deadline - loop.time()
            if left <= 0 or self.busy == 0:  # no connector at all: fail fast, wait for none
                return None
            self.arrived.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(left):
                    await self.arrived.wait()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for tunnel in list(self.idle):
            await tunnel.close()


class Tunnels:
    """The tunnels of every ``websocket`` tenant; sockets live in a private folder."""

    def __init__(self, tenants: list[str]) -> None:
        self.folder = tempfile.mkdtemp(prefix="streamkit-tunnels-")
        os.chmod(self.folder, 0o700)
        self.by_tenant: dict[str, TenantTunnels] = {}
        self._made = 0
        for name in tenants:
            self.add(name)

    def add(self, tenant: str) -> TenantTunnels:
        """Tunnels for a tenant (a reload may add one; ``start`` it on the event loop)."""
        self._made += 1
        tunnels = TenantTunnels(tenant, os.path.join(self.folder, f"{self._made}.sock"))
        self.by_tenant[tenant] = tunnels
        return tunnels

    def remove(self, tenant: str) -> TenantTunnels | None:
        return self.by_tenant.pop(tenant, None)

    def __contains__(self, tenant: str) -> bool:
        return tenant in self.by_tenant

    def get(self, tenant: str) -> TenantTunnels | None:
        return self.by_tenant.get(tenant)

    async def start(self) -> None:
        for tenant in self.by_tenant.values():
            await tenant.start()

    async def close(self) -> None:
        for tenant in self.by_tenant.values():
            await tenant.close()
        with contextlib.suppress(OSError):
            for name in os.listdir(self.folder):
                os.unlink(os.path.join(self.folder, name))
            os.rmdir(self.folder)
