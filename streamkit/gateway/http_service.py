"""The gateway's HTTP port: the dashboard (``web/``), ``/healthz``, ``/api/stream`` and ``/ws``."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow.flight as flight
from aiohttp import web

from streamkit import errors
from streamkit.gateway.access import Identity
from streamkit.gateway.pump import AsyncPump, Ended
from streamkit.gateway.requests_log import RequestRecord
from streamkit.gateway.ws_session import MAX_MESSAGE_BYTES, WsSession
from streamkit.ipc_frames import IpcFramer
from streamkit.query import Query
from streamkit.security import bearer_token

if TYPE_CHECKING:
    from streamkit.gateway.app import Gateway

log = logging.getLogger("streamkit.gateway")

# The dashboard: shipped inside the package by a wheel, beside it in a source checkout.
WEB_ROOT = Path(__file__).resolve().parent.parent / "web"
if not WEB_ROOT.is_dir():
    WEB_ROOT = WEB_ROOT.parent.parent / "web"
ARROW_STREAM = "application/vnd.apache.arrow.stream"
GATEWAY_KEY = web.AppKey("gateway", object)
HEARTBEAT_SECONDS = 20.0


def error_response(code: str, message: str) -> web.Response:
    return web.json_response({"code": code, "message": message}, status=errors.HTTP_STATUS[code])


@web.middleware
async def guard(request: web.Request, handler):
    """Refuse peers outside the allow-list before any work."""
    gateway = _gateway(request)
    address = request.remote or ""
    if not gateway.access.peers.allows(address):
        return error_response(errors.UNAUTHORIZED, f"peer not allowed: {address}")
    return await handler(request)


def request_identity(request: web.Request) -> Identity:
    """From the ``Authorization: Bearer`` header; raises unauthenticated for a bad token."""
    token = bearer_token(request.headers.get("Authorization"))
    return _gateway(request).access.identify(token)


def make_http_app(gateway: Gateway) -> web.Application:
    app = web.Application(middlewares=[guard])
    app[GATEWAY_KEY] = gateway
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/ws", websocket)
    app.router.add_get("/api/stream/{tenant}/{dataset:.+}", stream)
    app.router.add_get("/{path:.*}", static_file)
    return app


def _gateway(request: web.Request) -> Gateway:
    return request.app[GATEWAY_KEY]  # type: ignore[return-value]


async def healthz(request: web.Request) -> web.Response:
    """Status for load balancers; tenant details only for callers who may see them."""
    gateway = _gateway(request)
    try:
        identity = request_identity(request)
    except flight.FlightError as exc:
        return error_response(errors.code_of(exc), errors.clean_message(exc))
    loop = asyncio.get_running_loop()
    tenants = await loop.run_in_executor(gateway.pool, gateway.upstreams.health)
    status = "ok" if all(t["reachable"] for t in tenants.values()) else "degraded"
    if gateway.access.auth_required and identity.token is None:
        return web.json_response({"status": status})
    shown = {name: tenants[name] for name in tenants if name in identity.tenants}
    return web.json_response({"status": status, "tenants": shown})


def origin_allowed(request: web.Request, allowed: tuple[str, ...] | None) -> bool:
    """Browsers send Origin; CLIs and scripts do not, and are not subject to this check."""
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    if allowed is None:
        return origin == f"{request.scheme}://{request.host}"
    return origin in allowed


async def websocket(request: web.Request) -> web.StreamResponse:
    gateway = _gateway(request)
    if not origin_allowed(request, gateway.config.allowed_origins):
        return error_response(errors.UNAUTHORIZED, "origin not allowed")
    try:
        identity = request_identity(request)
    except flight.FlightError as exc:
        return error_response(errors.code_of(exc), errors.clean_message(exc))
    if gateway.connections >= gateway.config.max_connections:
        return error_response(errors.UNAVAILABLE, "unavailable: too many connections")
    # No per-message deflate: Arrow frames barely compress and deflate costs ~30x throughput.
    # Messages over MAX_MESSAGE_BYTES get an error frame; far larger ones close the socket.
    ws = web.WebSocketResponse(
        heartbeat=HEARTBEAT_SECONDS, compress=False, max_msg_size=16 * MAX_MESSAGE_BYTES
    )
    await ws.prepare(request)
    gateway.connections += 1
    try:
        authenticated = identity.token is not None
        await WsSession(ws, gateway, identity, request.remote or "", authenticated).run()
    finally:
        gateway.connections -= 1
    return ws


async def stream(request: web.Request) -> web.StreamResponse:
    """``GET /api/stream/TENANT/DATASET?columns=a,b&limit=N``: a chunked Arrow IPC stream."""
    gateway = _gateway(request)
    fields: dict[str, object] = {
        "tenant": request.match_info["tenant"],
        "dataset": request.match_info["dataset"],
    }
    if request.query.get("columns"):
        fields["columns"] = request.query["columns"].split(",")
    if "limit" in request.query:
        try:
            fields["limit"] = int(request.query["limit"])
        except ValueError:
            return error_response(errors.INVALID, "invalid: 'limit' must be an integer")
    loop = asyncio.get_running_loop()
    release = None
    try:
        identity = request_identity(request)
        query = Query.from_json(fields)
        gateway.access.authorize(identity, query.tenant)
        gateway.upstreams.tenant(query.tenant)
        caller = identity.caller(request.remote or "")
        release = gateway.access.limits.acquire_stream(query.tenant, caller)
        record = RequestRecord("http", query.tenant, query.dataset)
        reader = await loop.run_in_executor(gateway.pool, gateway.upstreams.do_get, query)
    except flight.FlightError as exc:
        if release is not None:
            release()
        return error_response(errors.code_of(exc), errors.clean_message(exc))
    try:
        return await _send_stream(request, gateway, reader, record)
    finally:
        release()


async def _send_stream(
    request: web.Request, gateway: Gateway, reader: flight.FlightStreamReader, record: RequestRecord
) -> web.StreamResponse:
    pump = AsyncPump(reader, asyncio.get_running_loop())
    idle = gateway.config.idle_timeout
    response = web.StreamResponse(
        headers={"Content-Type": ARROW_STREAM, "Cache-Control": "no-store"}
    )
    response.enable_chunked_encoding()
    framer = IpcFramer(pump.schema)
    try:
        await response.prepare(request)
        head = framer.start()
        record.add(0, len(head))
        await response.write(head)
        while True:
            try:
                chunk = await pump.get(idle)
            except Ended:
                break
            if chunk is None:
                raise TimeoutError
            record.rows += chunk.data.num_rows
            for piece in framer.frames(chunk.data):
                record.add(0, len(piece))
                await asyncio.wait_for(response.write(piece), idle)
        await response.write(framer.end())
        await response.write_eof()
        record.finish("ok")
        return response
    except (flight.FlightError, TimeoutError, ConnectionError, asyncio.CancelledError) as exc:
        pump.cancel()
        outcome = (
            errors.code_of(exc)
            if isinstance(exc, flight.FlightError)
            else ("idle" if isinstance(exc, TimeoutError) else "disconnected")
        )
        record.finish(outcome)
        # After the first byte an error can only end the body early, without the
        # end-of-stream marker: readers see a truncated stream, never a short "complete" one.
        if request.transport is not None:
            request.transport.close()
        if isinstance(exc, asyncio.CancelledError):
            raise
        return response
    except Exception:
        pump.cancel()
        record.finish(errors.INTERNAL)
        log.exception("http stream failed")
        if request.transport is not None:
            request.transport.close()
        return response


async def static_file(request: web.Request) -> web.StreamResponse:
    relative = request.match_info["path"] or "index.html"
    root = WEB_ROOT.resolve()
    target = (root / relative).resolve()
    if not target.is_relative_to(root) or not target.is_file():
        return error_response(errors.NOT_FOUND, f"not found: /{relative}")
    return web.FileResponse(target, headers={"Cache-Control": "no-cache"})
