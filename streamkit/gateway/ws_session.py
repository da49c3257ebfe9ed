"""One WebSocket connection speaking the DESIGN.md protocol: list, query, cancel.

Blocking Flight reads run in the gateway's thread pool, never on the event loop; each
batch is sent (and the socket drained) before the next is read, so a slow browser slows
its upstream read instead of filling the gateway's memory.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, cast

from aiohttp import WSCloseCode, WSMsgType, web

from streamkit import errors
from streamkit.gateway.access import Identity
from streamkit.gateway.forward import Stream
from streamkit.gateway.pump import Ended
from streamkit.gateway.web_context import WebContext
from streamkit.ipc_frames import IpcFramer
from streamkit.live_wire import skipped_rows
from streamkit.query import Query

log = logging.getLogger("streamkit.gateway")

MAX_MESSAGE_BYTES = 64 * 1024
AUTH_TIMEOUT_SECONDS = 5.0
QUERY_KEYS = frozenset({"action", "id"})


class WsSession:
    def __init__(
        self,
        ws: web.WebSocketResponse,
        context: WebContext,
        identity: Identity,
        peer: str,
        authenticated: bool,
    ) -> None:
        self.ws = ws
        self.context = context
        self.identity = identity
        self.peer = peer
        self.authenticated = authenticated
        self.task: asyncio.Task[None] | None = None
        self.query_id: Any = None
        self.stream: Stream | None = None
        self.cancelled = False

    async def run(self) -> None:
        access = self.context.forwarder.access
        deadline = None
        if access.auth_required and not self.authenticated and not access.open:
            deadline = asyncio.create_task(self._close_unless_authenticated())
        try:
            async for message in self.ws:
                if message.type == WSMsgType.TEXT:
                    await self.handle(message.data)
                elif message.type == WSMsgType.BINARY:
                    await self.send_error(None, errors.invalid("send JSON text messages"))
        finally:
            if deadline is not None:
                deadline.cancel()
            await self.cancel_query()

    async def _close_unless_authenticated(self) -> None:
        """Browsers authenticate with a first ``auth`` message; a socket that never does goes."""
        await asyncio.sleep(AUTH_TIMEOUT_SECONDS)
        if not self.authenticated:
            await self.ws.close(
                code=WSCloseCode.POLICY_VIOLATION, message=b"authentication required"
            )

    async def authenticate(self, message: dict[str, Any]) -> None:
        token = message.get("token")
        try:
            if not isinstance(token, str) or not token:
                raise errors.Unauthenticated("unauthenticated: 'token' is required")
            self.identity = self.context.forwarder.identify(token, "ws")
        except errors.StreamkitError as exc:
            await self.send_error(message.get("id"), exc)
            return
        self.authenticated = True
        await self.send_json(
            {
                "type": "authenticated",
                "id": message.get("id"),
                "tenants": sorted(self.identity.tenants),
            }
        )

    async def handle(self, text: str) -> None:
        if len(text.encode()) > MAX_MESSAGE_BYTES:
            await self.send_error(
                None, errors.invalid(f"message larger than {MAX_MESSAGE_BYTES} bytes")
            )
            return
        try:
            message = json.loads(text)
        except (json.JSONDecodeError, RecursionError):  # bad, or nested thousands deep
            await self.send_error(None, errors.invalid("malformed JSON"))
            return
        if not isinstance(message, dict):
            await self.send_error(None, errors.invalid("a message must be a JSON object"))
            return
        action = message.get("action")
        query_id = message.get("id")
        if action == "auth":
            await self.authenticate(message)
        elif action == "list":
            await self.send_list(query_id)
        elif action == "query":
            await self.start_query(message)
        elif action == "cancel":
            if (
                self.task is not None
                and not self.task.done()
                and (query_id is None or query_id == self.query_id)
            ):
                await self.cancel_query(wait=False)
            else:
                await self.send_error(query_id, errors.invalid("no such query is running"))
        else:
            await self.send_error(query_id, errors.invalid(f"unknown action {action!r}"))

    async def send_json(self, payload: dict[str, Any]) -> None:
        if not self.ws.closed:
            await self.ws.send_str(json.dumps(payload))

    async def send_error(self, query_id: Any, exc: errors.StreamkitError) -> None:
        await self.send_json(
            {"type": "error", "id": query_id, "code": exc.code, "message": exc.message}
        )

    async def send_list(self, query_id: Any) -> None:
        loop = asyncio.get_running_loop()
        found = await loop.run_in_executor(
            self.context.pool, self.context.forwarder.datasets, self.identity
        )
        datasets = [
            {
                "tenant": tenant,
                "dataset": info.descriptor.path[0].decode(),
                "rows": info.total_records,
                "bytes": info.total_bytes,
                "schema": [{"name": f.name, "type": str(f.type)} for f in info.schema],
            }
            for tenant, info in found
        ]
        await self.send_json({"type": "datasets", "id": query_id, "datasets": datasets})

    async def start_query(self, message: dict[str, Any]) -> None:
        query_id = message.get("id")
        if self.task is not None and not self.task.done():
            busy = errors.Busy("a query is already running on this socket")
            await self.send_error(query_id, busy)
            return
        fields = {k: v for k, v in message.items() if k not in QUERY_KEYS}
        fields.setdefault("tenant", self.context.config.default_tenant)
        try:
            query = Query.from_json(fields)
        except errors.StreamkitError as exc:
            await self.send_error(query_id, exc)
            return
        self.query_id, self.cancelled, self.stream = query_id, False, None
        self.task = asyncio.create_task(self.run_query(query, query_id))

    async def cancel_query(self, wait: bool = True) -> None:
        task = self.task
        if task is None or task.done():
            return
        self.cancelled = True
        if self.stream is not None:
            self.stream.pump.cancel()  # wakes a wait for the next chunk
        if wait:
            try:
                await asyncio.wait_for(asyncio.shield(task), 5)
            except (TimeoutError, asyncio.CancelledError):
                task.cancel()

    async def run_query(self, query: Query, query_id: Any) -> None:
        forwarder = self.context.forwarder
        try:
            self.stream = stream = await forwarder.aopen(
                self.context.pool, query, self.identity, self.peer, "ws"
            )
        except errors.StreamkitError as exc:
            await self.send_error(query_id, exc)
            return
        try:
            await self._send(stream, query_id)
        except errors.StreamkitError as exc:  # the stream has recorded why
            await self.send_error(query_id, exc)
        except (ConnectionError, RuntimeError) as exc:  # the socket closed under us
            stream.close("disconnected")
            log.debug("websocket closed mid-query: %s", exc)
        except asyncio.CancelledError:
            stream.close("disconnected")
            raise
        except Exception as exc:  # never leave the client without an answer
            stream.close(errors.INTERNAL)
            log.exception("websocket query failed")
            failure = errors.StreamkitError(f"internal error: {type(exc).__name__}")
            await self.send_error(query_id, failure)

    async def _send(self, stream: Stream, query_id: Any) -> None:
        framer = IpcFramer(stream.schema, self.context.config.ws_frame_bytes)
        idle = self.context.config.idle_timeout
        head = framer.start()
        sent, batches = len(head), 0
        await self.ws.send_bytes(head)
        while not self.cancelled:
            try:
                chunk = await stream.aget()
            except Ended:
                break
            except errors.StreamkitError:
                if self.cancelled:  # the upstream read ended by the cancel
                    break
                raise
            if chunk is None:
                continue
            if skipped := skipped_rows(chunk.app_metadata):
                await self.send_json({"type": "skipped", "id": query_id, "rows": skipped})
            batches += 1
            try:
                async with asyncio.timeout(idle):  # one timer per batch, not a task per frame
                    for frame in framer.frames(chunk.data):
                        sent += len(frame)
                        # aiohttp takes any bytes-like object (it checks), annotated bytes
                        await self.ws.send_bytes(cast(bytes, frame))
            except TimeoutError:
                raise stream.fail(
                    errors.unavailable(f"the client took no data for {idle:g} s"), "idle"
                ) from None
        end = framer.end()
        await self.ws.send_bytes(end)
        await self._end(stream, query_id, sent + len(end), batches)

    async def _end(self, stream: Stream, query_id: Any, sent: int, batches: int) -> None:
        stream.close("cancelled" if self.cancelled else "ok")
        await self.send_json(
            {
                "type": "end",
                "id": query_id,
                "rows": stream.record.rows,
                "bytes": sent,
                "batches": batches,
                "seconds": round(stream.record.seconds, 4),
                **({"cancelled": True} if self.cancelled else {}),
            }
        )
