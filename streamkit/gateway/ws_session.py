"""One WebSocket connection speaking the DESIGN.md protocol: list, query, cancel.

Blocking Flight reads run in the gateway's thread pool, never on the event loop; each
batch is sent (and the socket drained) before the next is read, so a slow browser slows
its upstream read instead of filling the gateway's memory.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import TYPE_CHECKING, Any

import pyarrow.flight as flight
from aiohttp import WSCloseCode, WSMsgType, web

from streamkit import errors
from streamkit.gateway.access import Identity
from streamkit.gateway.pump import AsyncPump, Ended
from streamkit.gateway.requests_log import RequestRecord
from streamkit.gateway.upstream import skipped_rows
from streamkit.ipc_frames import IpcFramer
from streamkit.query import Query

if TYPE_CHECKING:
    from streamkit.gateway.app import Gateway

log = logging.getLogger("streamkit.gateway")

MAX_MESSAGE_BYTES = 64 * 1024
AUTH_TIMEOUT_SECONDS = 5.0
QUERY_KEYS = frozenset({"action", "id"})


class QueryCancelled(Exception):
    pass


class WsSession:
    def __init__(
        self,
        ws: web.WebSocketResponse,
        gateway: Gateway,
        identity: Identity,
        peer: str,
        authenticated: bool,
    ) -> None:
        self.ws = ws
        self.gateway = gateway
        self.identity = identity
        self.peer = peer
        self.authenticated = authenticated
        self.task: asyncio.Task[None] | None = None
        self.query_id: Any = None
        self.pump: AsyncPump | None = None
        self.cancelled = False

    async def run(self) -> None:
        access = self.gateway.access
        deadline = None
        if access.auth_required and not self.authenticated and not access.open:
            deadline = asyncio.create_task(self._close_unless_authenticated())
        try:
            async for message in self.ws:
                if message.type == WSMsgType.TEXT:
                    await self.handle(message.data)
                elif message.type == WSMsgType.BINARY:
                    await self.send_error(None, errors.INVALID, "send JSON text messages")
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
                raise flight.FlightUnauthenticatedError("unauthenticated: 'token' is required")
            self.identity = self.gateway.access.identify(token)
        except flight.FlightError as exc:
            await self.send_error(message.get("id"), errors.code_of(exc), errors.clean_message(exc))
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
                None, errors.INVALID, f"message larger than {MAX_MESSAGE_BYTES} bytes"
            )
            return
        try:
            message = json.loads(text)
        except json.JSONDecodeError:
            await self.send_error(None, errors.INVALID, "malformed JSON")
            return
        if not isinstance(message, dict):
            await self.send_error(None, errors.INVALID, "a message must be a JSON object")
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
                await self.send_error(query_id, errors.INVALID, "no such query is running")
        else:
            await self.send_error(query_id, errors.INVALID, f"unknown action {action!r}")

    async def send_json(self, payload: dict[str, Any]) -> None:
        if not self.ws.closed:
            await self.ws.send_str(json.dumps(payload))

    async def send_error(self, query_id: Any, code: str, message: str) -> None:
        await self.send_json({"type": "error", "id": query_id, "code": code, "message": message})

    async def send_list(self, query_id: Any) -> None:
        loop = asyncio.get_running_loop()
        datasets = await loop.run_in_executor(
            self.gateway.pool, self.gateway.list_datasets, self.identity.tenants
        )
        await self.send_json({"type": "datasets", "id": query_id, "datasets": datasets})

    async def start_query(self, message: dict[str, Any]) -> None:
        query_id = message.get("id")
        if self.task is not None and not self.task.done():
            await self.send_error(
                query_id, errors.BUSY, "a query is already running on this socket"
            )
            return
        fields = {k: v for k, v in message.items() if k not in QUERY_KEYS}
        fields.setdefault("tenant", self.gateway.config.default_tenant)
        try:
            query = Query.from_json(fields)
            self.gateway.access.authorize(self.identity, query.tenant)
            self.gateway.upstreams.tenant(query.tenant)
            release = self.gateway.access.limits.acquire_stream(
                query.tenant, self.identity.caller(self.peer)
            )
        except flight.FlightError as exc:
            await self.send_error(query_id, errors.code_of(exc), errors.clean_message(exc))
            return
        self.query_id, self.cancelled, self.pump = query_id, False, None
        self.task = asyncio.create_task(self.stream(query, query_id))
        self.task.add_done_callback(lambda _: release())

    async def cancel_query(self, wait: bool = True) -> None:
        task = self.task
        if task is None or task.done():
            return
        self.cancelled = True
        if self.pump is not None:
            self.pump.cancel()
        if wait:
            try:
                await asyncio.wait_for(asyncio.shield(task), 5)
            except (TimeoutError, asyncio.CancelledError):
                task.cancel()

    async def stream(self, query: Query, query_id: Any) -> None:
        loop = asyncio.get_running_loop()
        idle = self.gateway.config.idle_timeout
        read_timeout = None if query.follow else idle  # a followed dataset may be quiet
        record = RequestRecord("ws", query.tenant, query.dataset)
        batches = 0
        try:
            reader = await loop.run_in_executor(
                self.gateway.pool, self.gateway.upstreams.do_get, query
            )
            self.pump = pump = AsyncPump(reader, loop)
            if self.cancelled:
                pump.cancel()
            framer = IpcFramer(pump.schema, self.gateway.config.ws_frame_bytes)
            head = framer.start()
            record.add(0, len(head))
            await self.ws.send_bytes(head)
            while not self.cancelled:
                try:
                    item = await pump.get(read_timeout)
                except Ended:
                    break
                except flight.FlightError:
                    if self.cancelled:  # our own cancel interrupted the read
                        break
                    raise
                if item is None:
                    if read_timeout is not None:
                        raise TimeoutError
                    continue
                if skipped := skipped_rows(item):
                    await self.send_json({"type": "skipped", "id": query_id, "rows": skipped})
                chunk = item.data
                batches += 1
                for frame in framer.frames(chunk):
                    record.add(0, len(frame))
                    await asyncio.wait_for(self.ws.send_bytes(frame), idle)
                record.rows += chunk.num_rows
            end = framer.end()
            record.add(0, len(end))
            await self.ws.send_bytes(end)
            await self.send_json(
                {
                    "type": "end",
                    "id": query_id,
                    "rows": record.rows,
                    "bytes": record.bytes,
                    "batches": batches,
                    "seconds": round(record.seconds, 4),
                    **({"cancelled": True} if self.cancelled else {}),
                }
            )
            record.finish("cancelled" if self.cancelled else "ok")
        except TimeoutError:
            self._cancel_pump()
            record.finish("idle")
            await self.send_error(
                query_id, errors.UNAVAILABLE, f"stream made no progress for {idle:g} s"
            )
        except flight.FlightError as exc:
            self._cancel_pump()
            record.finish(errors.code_of(exc))
            await self.send_error(query_id, errors.code_of(exc), errors.clean_message(exc))
        except (ConnectionError, RuntimeError) as exc:  # socket closed under us
            self._cancel_pump()
            record.finish("disconnected")
            log.debug("websocket closed mid-query: %s", exc)
        except asyncio.CancelledError:
            self._cancel_pump()
            record.finish("disconnected")
            raise
        except Exception as exc:  # never leave the client without an answer
            self._cancel_pump()
            record.finish(errors.INTERNAL)
            log.exception("websocket query failed")
            await self.send_error(
                query_id, errors.INTERNAL, f"internal error: {type(exc).__name__}"
            )

    def _cancel_pump(self) -> None:
        if self.pump is not None:
            self.pump.cancel()
