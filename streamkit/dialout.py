"""What a dialing connector and the gateway agree on (DESIGN.md "Connector dial-out").

A connector behind NAT opens WebSockets to the gateway's ``GET /connect``; each socket is a
byte tunnel for one HTTP/2 (gRPC) connection to the connector's own Flight service, which the
gateway reaches as if it were local. Nothing here is a new protocol: binary messages carry
the connection's bytes in order, in pieces of at most ``CHUNK_BYTES``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

PATH = "/connect"
TENANT_HEADER = "X-Streamkit-Tenant"
CHUNK_BYTES = 256 * 1024  # well under aiohttp's 4 MiB message cap
MAX_MESSAGE_BYTES = 4 * CHUNK_BYTES
HEARTBEAT_SECONDS = 15.0  # below proxies' 60 s idle cut
SPARE_TUNNELS = 2  # idle tunnels a connector keeps open, so a reconnect never waits for one
MAX_BACKOFF_SECONDS = 5.0
PAIR_TIMEOUT_SECONDS = 3.0  # how long the gateway waits for a free tunnel for a new connection


async def pipe(
    send: Callable[[bytes], Awaitable[None]],
    received: AsyncIterator[bytes],
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
) -> None:
    """Carry a local connection's bytes both ways through a socket (``send`` and the
    ``received`` messages) until either side ends; then close the local end."""

    async def outgoing() -> None:
        while chunk := await reader.read(CHUNK_BYTES):
            await send(chunk)

    async def incoming() -> None:
        async for data in received:
            writer.write(data)
            await writer.drain()

    tasks = [asyncio.create_task(outgoing()), asyncio.create_task(incoming())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        writer.close()
