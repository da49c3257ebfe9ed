"""The gateway's HTTP port: the dashboard (``web/``), ``/healthz``, ``/api/stream`` and ``/ws``."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from streamkit import dialout, errors
from streamkit.gateway.access import Identity
from streamkit.gateway.forward import Stream
from streamkit.gateway.pump import Ended
from streamkit.gateway.web_context import WebContext
from streamkit.gateway.ws_session import MAX_MESSAGE_BYTES, WsSession
from streamkit.ipc_frames import IpcFramer
from streamkit.query import Query
from streamkit.security import bearer_token, same_secret

log = logging.getLogger("streamkit.gateway")
MAX_SQL_BODY_BYTES = 64 * 1024

# The dashboard: shipped inside the package by a wheel, beside it in a source checkout.
WEB_ROOT = Path(__file__).resolve().parent.parent / "web"
if not WEB_ROOT.is_dir():
    WEB_ROOT = WEB_ROOT.parent.parent / "web"
ARROW_STREAM = "application/vnd.apache.arrow.stream"
CONTEXT = web.AppKey("context", WebContext)
HEARTBEAT_SECONDS = 20.0

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_response(exc: errors.StreamkitError) -> web.Response:
    return web.json_response(
        {"code": exc.code, "message": exc.message}, status=errors.HTTP_STATUS[exc.code]
    )


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse peers outside the allow-list before any work; typed errors become JSON."""
    address = request.remote or ""
    if not request.app[CONTEXT].forwarder.access.peers.allows(address):
        return error_response(errors.Unauthorized(f"peer not allowed: {address}"))
    try:
        return await handler(request)
    except errors.StreamkitError as exc:
        return error_response(exc)


def request_identity(request: web.Request) -> Identity:
    """From the ``Authorization: Bearer`` header; raises unauthenticated for a bad token."""
    token = bearer_token(request.headers.get("Authorization"))
    return request.app[CONTEXT].forwarder.identify(token, "http")


def make_http_app(context: WebContext) -> web.Application:
    app = web.Application(middlewares=[guard])
    app[CONTEXT] = context
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/ws", websocket)
    app.router.add_get(dialout.PATH, connect)
    app.router.add_get("/api/stream/{tenant}/{dataset:.+}", stream)
    app.router.add_get("/api/sql/{tenant}", sql)
    app.router.add_post("/api/sql/{tenant}", sql)
    app.router.add_get("/{path:.*}", static_file)
    return app


async def healthz(request: web.Request) -> web.Response:
    """Status for load balancers; tenant details only for callers who may see them."""
    context = request.app[CONTEXT]
    identity = request_identity(request)
    loop = asyncio.get_running_loop()
    status, shown = await loop.run_in_executor(context.pool, context.forwarder.health, identity)
    if context.forwarder.access.auth_required and identity.token is None:
        return web.json_response({"status": status})
    return web.json_response({"status": status, "tenants": shown})


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text, for ``metrics_allow`` peers or the ``metrics_token``."""
    forwarder = request.app[CONTEXT].forwarder
    token = bearer_token(request.headers.get("Authorization"))
    forwarder.access.check_metrics(request.remote or "", token)
    body = await asyncio.get_running_loop().run_in_executor(None, forwarder.metrics.render)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def origin_allowed(request: web.Request, allowed: tuple[str, ...] | None) -> bool:
    """Browsers send Origin; CLIs and scripts do not, and are not subject to this check."""
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    if allowed is None:
        return origin == f"{request.scheme}://{request.host}"
    return origin in allowed


async def websocket(request: web.Request) -> web.StreamResponse:
    context = request.app[CONTEXT]
    if not origin_allowed(request, context.config.allowed_origins):
        raise errors.Unauthorized("origin not allowed")
    identity = request_identity(request)
    if context.open_sockets >= context.config.max_connections:
        raise errors.unavailable("too many connections")
    # No per-message deflate: Arrow frames barely compress and deflate costs ~30x throughput.
    # Messages over MAX_MESSAGE_BYTES get an error frame; far larger ones close the socket.
    ws = web.WebSocketResponse(
        heartbeat=HEARTBEAT_SECONDS, compress=False, max_msg_size=16 * MAX_MESSAGE_BYTES
    )
    await ws.prepare(request)
    context.open_sockets += 1
    try:
        authenticated = identity.token is not None
        await WsSession(ws, context, identity, request.remote or "", authenticated).run()
    finally:
        context.open_sockets -= 1
    return ws


async def connect(request: web.Request) -> web.StreamResponse:
    """``GET /connect``: a connector dials in; its socket becomes a tunnel of its tenant.

    Refused before the upgrade: a tenant that does not dial in (or does not exist) is 404, a
    missing or wrong token 401 (compared in constant time, never logged)."""
    context = request.app[CONTEXT]
    name = request.headers.get(dialout.TENANT_HEADER, "")
    tunnels = context.tunnels.get(name)
    if tunnels is None:
        raise errors.not_found(f"no tenant {name!r} takes connectors that dial in")
    expected = context.config.tenants[name].connector_token
    given = bearer_token(request.headers.get("Authorization"))
    if expected is None or given is None or not same_secret(given, expected.value):
        raise errors.Unauthenticated(f"unauthenticated: wrong connector token for {name!r}")
    ws = web.WebSocketResponse(
        heartbeat=dialout.HEARTBEAT_SECONDS,
        compress=False,
        max_msg_size=dialout.MAX_MESSAGE_BYTES,
    )
    await ws.prepare(request)
    await tunnels.hold(ws)
    return ws


async def stream(request: web.Request) -> web.StreamResponse:
    """``GET /api/stream/TENANT/DATASET?columns=a,b&limit=N&where=EXPR``: a chunked Arrow
    IPC stream."""
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
            raise errors.invalid("'limit' must be an integer") from None
    if request.query.get("where"):
        fields["where"] = request.query["where"]
    return await _forward(request, Query.from_json(fields))


async def sql(request: web.Request) -> web.StreamResponse:
    """``GET /api/sql/TENANT?q=SELECT…`` or ``POST`` with the SQL as the body: the result as
    a chunked Arrow IPC stream, run at the tenant's connector."""
    if request.method == "POST":
        if (request.content_length or 0) > MAX_SQL_BODY_BYTES:
            raise errors.invalid(f"the SQL is longer than {MAX_SQL_BODY_BYTES} bytes")
        text = (await request.content.read(MAX_SQL_BODY_BYTES + 1)).decode("utf-8", "replace")
        if len(text) > MAX_SQL_BODY_BYTES:
            raise errors.invalid(f"the SQL is longer than {MAX_SQL_BODY_BYTES} bytes")
    else:
        text = request.query.get("q", "")
    return await _forward(
        request, Query.from_json({"tenant": request.match_info["tenant"], "sql": text})
    )


async def _forward(request: web.Request, query: Query) -> web.StreamResponse:
    context = request.app[CONTEXT]
    identity = request_identity(request)
    opened = await context.forwarder.aopen(
        context.pool, query, identity, request.remote or "", "http"
    )
    return await _send_stream(request, opened, context.config.idle_timeout)


async def _send_stream(request: web.Request, opened: Stream, idle: float) -> web.StreamResponse:
    response = web.StreamResponse(
        headers={"Content-Type": ARROW_STREAM, "Cache-Control": "no-store"}
    )
    response.enable_chunked_encoding()
    framer = IpcFramer(opened.schema)
    try:
        await response.prepare(request)
        await response.write(framer.start())
        while True:
            try:
                chunk = await opened.aget()
            except Ended:
                break
            if chunk is not None:
                async with asyncio.timeout(idle):  # one timer per batch, not a task per piece
                    for piece in framer.frames(chunk.data):
                        await response.write(piece)
        await response.write(framer.end())
        await response.write_eof()
        return response
    except errors.StreamkitError:
        return _cut(request, response)  # the stream has recorded why
    except TimeoutError:  # the client took no data for the idle time
        opened.close("idle")
        return _cut(request, response)
    except ConnectionError:
        opened.close("disconnected")
        return _cut(request, response)
    except asyncio.CancelledError:
        opened.close("disconnected")
        _cut(request, response)
        raise
    except Exception:
        opened.close(errors.INTERNAL)
        log.exception("http stream failed")
        return _cut(request, response)


def _cut(request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
    """After the first byte an error can only end the body early, without the end-of-stream
    marker: readers see a truncated stream, never a short "complete" one."""
    if request.transport is not None:
        request.transport.close()
    return response


async def static_file(request: web.Request) -> web.StreamResponse:
    relative = request.match_info["path"] or "index.html"
    root = WEB_ROOT.resolve()
    target = (root / relative).resolve()
    if not target.is_relative_to(root) or not target.is_file():
        raise errors.not_found(f"/{relative}")
    return web.FileResponse(target, headers={"Cache-Control": "no-cache"})
