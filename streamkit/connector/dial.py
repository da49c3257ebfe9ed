"""A connector behind NAT dials the gateway: it keeps a few idle WebSockets open to
``/connect``; when the gateway pairs one with a connection (its first bytes arrive), the
connector opens a connection to its own Flight service and pipes bytes both ways, and dials
a new spare. Lost sockets are redialed with jittered backoff (at most 5 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp

from streamkit.dialout import (
    HEARTBEAT_SECONDS,
    MAX_BACKOFF_SECONDS,
    MAX_MESSAGE_BYTES,
    SPARE_TUNNELS,
    TENANT_HEADER,
    pipe,
)

log = logging.getLogger("streamkit.connector")

Opener = Callable[[], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]


class Refused(Exception):
    """The gateway refused this connector (wrong token, unknown tenant): retrying is useless
    until it is fixed, but the connector keeps trying slowly, as a restarted gateway may
    take it."""


class Dialer:
    def __init__(
        self,
        url: str,
        tenant: str,
        token: str,
        local: Path | tuple[str, int],
        *,
        tls_ca: Path | None = None,
        spare: int = SPARE_TUNNELS,
    ) -> None:
        """``local``: this connector's own Flight service: its Unix socket, or (host, port)."""
        self.url, self.tenant, self.token, self.local = url, tenant, token, local
        self.spare = spare
        self.ssl: ssl.SSLContext | bool = True
        if tls_ca is not None:
            self.ssl = ssl.create_default_context(cafile=str(tls_ca))
        self.connected = threading.Event()  # set while at least one tunnel is up
        self.refused: str | None = None  # why the gateway said no (401/403/404), if it did
        self.last_error: str | None = None  # the last failure to reach the gateway
        self._open = 0  # tunnels up, idle or carrying
        self._slots: set[asyncio.Task[None]] = set()
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> Dialer:
        ready = threading.Event()

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            self._stop = asyncio.Event()
            ready.set()
            self._loop.run_until_complete(self._run())
            self._loop.close()

        self._thread = threading.Thread(target=run, name="streamkit-dial", daemon=True)
        self._thread.start()
        ready.wait()
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(5)

    async def _run(self) -> None:
        assert self._stop is not None
        headers = {"Authorization": f"Bearer {self.token}", TENANT_HEADER: self.tenant}
        timeout = aiohttp.ClientTimeout(total=None, connect=10)
        async with aiohttp.ClientSession(headers=headers, timeout=timeout) as session:
            for _ in range(self.spare):
                self._spawn(session)
            await self._stop.wait()
            for slot in list(self._slots):
                slot.cancel()
            await asyncio.gather(*self._slots, return_exceptions=True)

    def _spawn(self, session: aiohttp.ClientSession) -> None:
        slot = asyncio.create_task(self._keep_dialing(session))
        self._slots.add(slot)
        slot.add_done_callback(self._slots.discard)

    async def _keep_dialing(self, session: aiohttp.ClientSession) -> None:
        """One spare: dialed (again, after a failure) until the gateway pairs it; then it
        carries its connection and a new spare takes its place."""
        failures = 0
        while True:
            try:
                if await self._tunnel(session):
                    return
                failures += 1
                self.refused = None
            except Refused as exc:
                if self.refused != str(exc):
                    log.error("the gateway refused this connector: %s", exc)
                self.refused = str(exc)
                failures += 1
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                self.last_error = str(exc) or type(exc).__name__
                if failures == 0:
                    log.warning("cannot reach the gateway at %s: %s", self.url, exc)
                failures += 1
            if failures:
                delay = min(MAX_BACKOFF_SECONDS, 0.2 * 2 ** min(failures, 5))
                await asyncio.sleep(random.uniform(delay / 2, delay))

    async def _tunnel(self, session: aiohttp.ClientSession) -> bool:
        """Dial, wait to be paired, then carry one connection. True if it was paired."""
        try:
            ws = await session.ws_connect(
                self.url,
                heartbeat=HEARTBEAT_SECONDS,
                max_msg_size=MAX_MESSAGE_BYTES,
                compress=0,
                ssl=self.ssl,
            )
        except aiohttp.WSServerHandshakeError as exc:
            if exc.status in (401, 403, 404):
                raise Refused(f"{exc.status} {exc.message}") from None
            raise
        if self._open == 0:
            log.info("dialed in to %s as tenant %s", self.url, self.tenant)
        self._open += 1
        self.connected.set()
        try:
            return await self._carry(session, ws)
        finally:
            self._open -= 1
            if self._open == 0:
                self.connected.clear()

    async def _carry(
        self, session: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse
    ) -> bool:
        first = await ws.receive()
        if first.type != aiohttp.WSMsgType.BINARY:
            await ws.close()
            return False
        self._spawn(session)  # a new spare, before this one starts carrying
        try:
            if isinstance(self.local, Path):
                reader, writer = await asyncio.open_unix_connection(str(self.local))
            else:
                reader, writer = await asyncio.open_connection(*self.local)
        except OSError as exc:
            log.error("cannot reach this connector's own Flight service: %s", exc)
            await ws.close()
            return True
        writer.write(first.data)
        await _pipe(ws, reader, writer)
        return True


async def _pipe(
    ws: aiohttp.ClientWebSocketResponse, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    async def received() -> AsyncIterator[bytes]:
        async for message in ws:
            if message.type != aiohttp.WSMsgType.BINARY:
                return
            yield message.data

    try:
        await pipe(ws.send_bytes, received(), reader, writer)
    finally:
        with contextlib.suppress(Exception):
            await ws.close()
